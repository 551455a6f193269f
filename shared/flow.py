"""Continuous flow matching paths: interpolants ``x_t = alpha(t) x1 + sigma(t) x0`` (t=0 noise, t=1 data), their
conditional velocities and the marginal velocity implied by a clean-data (x1) prediction. The loss and the sampling
loop over continuous and categorical fields together are ``shared.joint_flow``.

A *state* is a tensor or a ``dict[str, Tensor]`` sharing the batch dimension; every function maps over dicts.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
from torch import Tensor

from shared.tensors import per_sample

__all__ = ["Interpolant", "LinearInterpolant", "CosineInterpolant"]

State = Tensor | dict[str, Tensor]
ScheduleFn = Callable[[Tensor], Tensor]


def _map(fn: Callable[..., Tensor], *states: State) -> State:
    """Apply ``fn`` leaf-wise to tensors or to dicts with the same keys."""
    first = states[0]
    if isinstance(first, Mapping):
        for s in states[1:]:
            if not isinstance(s, Mapping) or set(s) != set(first):
                raise ValueError(f"states must all be dicts with keys {sorted(first)}")
        return {k: fn(*(s[k] for s in states)) for k in first}
    return fn(*states)


class Interpolant:
    """``x_t = alpha(t) x1 + sigma(t) x0`` with user-supplied schedules and their time derivatives.

    Requires ``alpha(0) = 0, sigma(0) = 1`` (pure noise) and ``alpha(1) = 1, sigma(1) = 0`` (data); not checked
    beyond those endpoints, which are validated at construction.
    """

    def __init__(self, alpha: ScheduleFn, sigma: ScheduleFn, d_alpha: ScheduleFn, d_sigma: ScheduleFn):
        self.alpha, self.sigma, self.d_alpha, self.d_sigma = alpha, sigma, d_alpha, d_sigma
        ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
        a, s = alpha(ends), sigma(ends)
        if not (torch.allclose(a, ends, atol=1e-6) and torch.allclose(s, 1 - ends, atol=1e-6)):
            raise ValueError(f"need alpha(0)=0, alpha(1)=1, sigma(0)=1, sigma(1)=0; got alpha={a}, sigma={s}")

    def interpolate(self, x0: State, x1: State, t: Tensor) -> State:
        a, s = self.alpha(t), self.sigma(t)
        return _map(lambda n, d: per_sample(a, d) * d + per_sample(s, d) * n, x0, x1)

    def velocity(self, x0: State, x1: State, t: Tensor) -> State:
        """Conditional velocity ``d x_t / dt = alpha'(t) x1 + sigma'(t) x0``."""
        da, ds = self.d_alpha(t), self.d_sigma(t)
        return _map(lambda n, d: per_sample(da, d) * d + per_sample(ds, d) * n, x0, x1)

    def velocity_from_x1(self, x1_hat: State, x_t: State, t: Tensor, min_sigma: float = 1e-4) -> State:
        """Marginal velocity of a model that predicts clean data: ``x0_hat = (x_t - alpha x1_hat) / sigma``.

        ``sigma`` is clamped below by ``min_sigma`` because ``x0_hat`` is undefined at t = 1.
        """
        a, s = self.alpha(t), self.sigma(t).clamp_min(min_sigma)
        da, ds = self.d_alpha(t), self.d_sigma(t)

        def one(x1h: Tensor, xt: Tensor) -> Tensor:
            x0_hat = (xt - per_sample(a, xt) * x1h) / per_sample(s, xt)
            return per_sample(da, xt) * x1h + per_sample(ds, xt) * x0_hat

        return _map(one, x1_hat, x_t)


class LinearInterpolant(Interpolant):
    """Rectified-flow / optimal-transport path ``x_t = t x1 + (1 - t) x0``; velocity ``x1 - x0``."""

    def __init__(self) -> None:
        super().__init__(
            alpha=lambda t: t,
            sigma=lambda t: 1 - t,
            d_alpha=torch.ones_like,
            d_sigma=lambda t: -torch.ones_like(t),
        )

    def velocity_from_x1(self, x1_hat: State, x_t: State, t: Tensor, min_sigma: float = 1e-4) -> State:
        """``(x1_hat - x_t) / (1 - t)``: the general formula, simplified (one rounding instead of four)."""
        gap = (1 - t).clamp_min(min_sigma)
        return _map(lambda x1h, xt: (x1h - xt) / per_sample(gap, xt), x1_hat, x_t)


class CosineInterpolant(Interpolant):
    """Variance-preserving trigonometric path ``x_t = sin(pi t / 2) x1 + cos(pi t / 2) x0``."""

    def __init__(self) -> None:
        h = math.pi / 2
        super().__init__(
            alpha=lambda t: torch.sin(h * t),
            sigma=lambda t: torch.cos(h * t),
            d_alpha=lambda t: h * torch.cos(h * t),
            d_sigma=lambda t: -h * torch.sin(h * t),
        )
