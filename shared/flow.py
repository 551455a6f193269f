"""Continuous flow matching: interpolants ``x_t = alpha(t) x1 + sigma(t) x0`` (t=0 noise, t=1 data),
conditional velocity targets, the CFM loss and fixed-step ODE integration of velocity fields.

A *state* is a tensor or a ``dict[str, Tensor]`` sharing the batch dimension; every function maps over dicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from shared.integrators import heun_step
from shared.tensors import per_sample

__all__ = [
    "Interpolant",
    "LinearInterpolant",
    "CosineInterpolant",
    "cfm_target",
    "velocity_from_x1_prediction",
    "FlowMatchingLoss",
    "FlowResult",
    "integrate_flow",
]

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


def _leaf(state: State) -> Tensor:
    return next(iter(state.values())) if isinstance(state, Mapping) else state


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


def cfm_target(interpolant: Interpolant, x0: State, x1: State, t: Tensor) -> State:
    """Conditional flow-matching regression target ``u_t(x | x0, x1) = alpha' x1 + sigma' x0``."""
    return interpolant.velocity(x0, x1, t)


def velocity_from_x1_prediction(
    x1_hat: State, x_t: State, t: Tensor, interpolant: Interpolant | None = None, min_sigma: float = 1e-4
) -> State:
    """Velocity implied by a clean-data prediction (linear path by default: ``(x1_hat - x_t) / (1 - t)``)."""
    return (interpolant or LinearInterpolant()).velocity_from_x1(x1_hat, x_t, t, min_sigma)


def _masked_mean(sq: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return sq.flatten(1).mean(1)
    if mask.dim() > sq.dim() or mask.shape[0] != sq.shape[0]:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast against {tuple(sq.shape)}")
    m = mask.reshape(*mask.shape, *([1] * (sq.dim() - mask.dim()))).to(sq.dtype).expand_as(sq)
    return (sq * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)


def _zero_padded(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return x
    return x * mask.reshape(*mask.shape, *([1] * (x.dim() - mask.dim()))).to(x.dtype)


def _component_mask(mask: Tensor | Mapping[str, Tensor] | None, key: str | None) -> Tensor | None:
    if isinstance(mask, Mapping):
        return mask.get(key)
    return mask


class FlowMatchingLoss:
    """Conditional flow matching: ``|| v_theta(x_t, t) - (alpha' x1 + sigma' x0) ||^2`` per sample.

    ``time_sampling`` is ``"uniform"`` on ``[t_min, t_max]`` or ``"logit_normal"`` (``t = sigmoid(N(m, s^2))``,
    SD3-style, rescaled to ``[t_min, t_max]``). With ``prediction="x1"`` the model predicts clean data and the
    loss is taken on the implied velocity. The model is called as ``model(x_t, t)``, with ``cond=`` and ``mask=``
    keyword arguments added only when they are given. Returns ``(B,)`` losses, or a dict of them for dict states.
    """

    def __init__(
        self,
        interpolant: Interpolant | None = None,
        time_sampling: str = "uniform",
        t_min: float = 0.0,
        t_max: float = 1.0,
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        prediction: str = "velocity",
    ):
        if time_sampling not in ("uniform", "logit_normal"):
            raise ValueError(f"time_sampling must be 'uniform' or 'logit_normal', got {time_sampling!r}")
        if prediction not in ("velocity", "x1"):
            raise ValueError(f"prediction must be 'velocity' or 'x1', got {prediction!r}")
        if not 0.0 <= t_min < t_max <= 1.0:
            raise ValueError(f"need 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
        self.interpolant = interpolant or LinearInterpolant()
        self.time_sampling, self.prediction = time_sampling, prediction
        self.t_min, self.t_max = t_min, t_max
        self.logit_mean, self.logit_std = logit_mean, logit_std

    def sample_time(self, batch: int, generator: torch.Generator | None = None, device=None, dtype=None) -> Tensor:
        if self.time_sampling == "uniform":
            u = torch.rand(batch, generator=generator, device=device, dtype=dtype)
        else:
            z = torch.randn(batch, generator=generator, device=device, dtype=dtype)
            u = torch.sigmoid(self.logit_mean + self.logit_std * z)
        return self.t_min + (self.t_max - self.t_min) * u

    def __call__(
        self,
        model: Callable[..., State],
        x1: State,
        cond: Any = None,
        mask: Tensor | Mapping[str, Tensor] | None = None,
        generator: torch.Generator | None = None,
        t: Tensor | None = None,
        x0: State | None = None,
    ) -> Tensor | dict[str, Tensor]:
        ref = _leaf(x1)
        if t is None:
            t = self.sample_time(ref.shape[0], generator, ref.device, ref.dtype)
        if x0 is None:
            x0 = _map(lambda d: torch.randn(d.shape, generator=generator, device=d.device, dtype=d.dtype), x1)
            if isinstance(x0, Mapping):  # padded entries stay zero along the whole path, as in the data
                x0 = {k: _zero_padded(v, _component_mask(mask, k)) for k, v in x0.items()}
            else:
                x0 = _zero_padded(x0, _component_mask(mask, None))
        x_t = self.interpolant.interpolate(x0, x1, t)
        kwargs = {k: v for k, v in (("cond", cond), ("mask", mask)) if v is not None}
        out = model(x_t, t, **kwargs)
        if self.prediction == "x1":
            out = self.interpolant.velocity_from_x1(out, x_t, t)
        target = self.interpolant.velocity(x0, x1, t)
        if isinstance(x1, Mapping):
            return {k: _masked_mean((out[k] - target[k]) ** 2, _component_mask(mask, k)) for k in x1}
        return _masked_mean((out - target) ** 2, _component_mask(mask, None))


@dataclass
class FlowResult:
    samples: State
    nfe: int
    trajectory: list[State] = field(default_factory=list)


def _standard_normal(shape: Sequence[int] | Mapping[str, Sequence[int]], generator, device, dtype) -> State:
    if isinstance(shape, Mapping):
        return {k: torch.randn(tuple(s), generator=generator, device=device, dtype=dtype) for k, s in shape.items()}
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)


def integrate_flow(
    velocity_fn: Callable[..., State],
    x0: State | Sequence[int] | Mapping[str, Sequence[int]],
    steps: int = 100,
    method: str = "euler",
    t0: float = 0.0,
    t1: float = 1.0,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
    device=None,
    dtype=None,
    **model_kwargs: Any,
) -> FlowResult:
    """Integrate ``dx/dt = velocity_fn(x, t, **model_kwargs)`` from ``t0`` to ``t1`` on a uniform grid.

    ``x0`` is a state, or a shape (dict of shapes) to draw standard-normal noise from with ``generator``.
    ``method``: ``"euler"`` (1 NFE per step) or ``"heun"`` (2 NFE per step, second order). Runs under ``no_grad``.
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"method must be 'euler' or 'heun', got {method!r}")
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    is_state = isinstance(x0, Tensor) or (isinstance(x0, Mapping) and all(isinstance(v, Tensor) for v in x0.values()))
    x = x0 if is_state else _standard_normal(x0, generator, device, dtype or torch.float32)
    ref = _leaf(x)
    grid = torch.linspace(t0, t1, steps + 1, device=ref.device, dtype=ref.dtype)
    batch = ref.shape[0]
    trajectory = [x] if return_trajectory else []
    nfe = 0
    indices = range(steps)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="integrate_flow")
    with torch.no_grad():
        for i in indices:
            x, evaluations = heun_step(lambda y, t: velocity_fn(y, t.expand(batch), **model_kwargs), x, grid[i],
                                       grid[i + 1], heun=method == "heun")
            nfe += evaluations
            if return_trajectory:
                trajectory.append(x)
    return FlowResult(samples=x, nfe=nfe, trajectory=trajectory)
