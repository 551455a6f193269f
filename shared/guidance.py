"""Guidance as wrappers around a model or score function, so that every sampler can use it unchanged.

- :class:`ClassifierFreeGuidance` (Ho & Salimans 2022): ``uncond + scale (cond - uncond)`` from one batched
  forward pass of size 2B; works for scores, EDM denoisers and velocities, tensor or dict outputs.
- :func:`drop_condition`: replaces the condition by the null condition with probability p while training.
- :class:`GradientGuidance`: adds ``scale * grad_x log p(y | x_t)`` for a Gaussian likelihood around a
  regressor's prediction (classifier/regressor guidance, Dhariwal & Nichol 2021 style).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import Tensor

__all__ = ["ClassifierFreeGuidance", "drop_condition", "GradientGuidance"]

Cond = Tensor | Mapping[str, Tensor]
State = Tensor | Mapping[str, Tensor]


def _map(fn: Callable[..., Any], *trees: Any) -> Any:
    first = trees[0]
    if isinstance(first, Mapping):
        return {k: fn(*(t[k] if isinstance(t, Mapping) else t for t in trees)) for k in first}
    return fn(*trees)


def _leaf(tree: State) -> Tensor:
    return next(iter(tree.values())) if isinstance(tree, Mapping) else tree


def _null_like(cond: Tensor, null: Tensor | float | int) -> Tensor:
    """The null condition with ``cond``'s full batch shape (from a scalar, one per-sample entry, or a batch)."""
    if not torch.is_tensor(null):
        return torch.full_like(cond, null)
    null = null.to(device=cond.device, dtype=cond.dtype)
    if null.shape == cond.shape:
        return null
    if null.shape == cond.shape[1:] or null.dim() == 0:
        return null.expand_as(cond)
    raise ValueError(f"null condition of shape {tuple(null.shape)} does not fit condition {tuple(cond.shape)}")


class ClassifierFreeGuidance:
    """``f(x, t, cond) = f_u + scale (f_c - f_u)`` with ``f_u = model(x, t, cond=null_cond)``.

    ``model(x, t, cond=..., **kwargs)`` returns a tensor or dict; the wrapper is called like the model, as
    ``guided(x, t, cond)`` or, with ``cond`` bound at construction, ``guided(x, t)``. Tensor keyword arguments
    with the batch size (e.g. a node mask) are repeated for the doubled batch.
    """

    def __init__(self, model: Callable[..., Any], scale: float, null_cond: Any, cond: Cond | None = None):
        self.model, self.scale, self.null_cond, self.cond = model, float(scale), null_cond, cond

    def __call__(self, x: State, t: Tensor, cond: Cond | None = None, **kwargs: Any) -> State:
        cond = self.cond if cond is None else cond
        if cond is None:
            raise ValueError("ClassifierFreeGuidance needs a condition: pass cond= or bind one at construction")
        batch = _leaf(x).shape[0]
        null = _map(_null_like, cond, self.null_cond)
        both = _map(lambda c, n: torch.cat([c, n]), cond, null)
        twice = {
            k: torch.cat([v, v]) if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == batch else v
            for k, v in kwargs.items()
        }
        out = self.model(_map(lambda v: torch.cat([v, v]), x), torch.cat([t, t]), cond=both, **twice)
        return _map(lambda o: o[batch:] + self.scale * (o[:batch] - o[batch:]), out)


def drop_condition(
    cond: Cond, p: float, generator: torch.Generator | None = None, null_cond: Any = 0
) -> Cond:
    """Replace each sample's condition by ``null_cond`` with probability ``p`` (the same draw for all keys)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"drop probability must lie in [0, 1], got {p}")
    ref = _leaf(cond)
    drop = torch.rand(ref.shape[0], generator=generator, device=ref.device) < p

    def one(c: Tensor, null: Any) -> Tensor:
        d = drop.reshape(-1, *([1] * (c.dim() - 1)))
        return torch.where(d, _null_like(c, null), c)

    return _map(one, cond, null_cond)


class GradientGuidance:
    """``score(x, t) + scale * grad_x log N(target; regressor(x, t), noise_std^2)``.

    ``regressor(x, t, **kwargs)`` returns ``(B,)`` or ``(B, P)`` predictions; ``noise_std`` is a float or a
    function of ``t`` returning ``(B,)``. Gradients are enabled locally, so it works inside ``no_grad`` samplers.
    """

    def __init__(
        self,
        score_fn: Callable[..., State],
        regressor: Callable[..., Tensor],
        target: Tensor | float,
        scale: float = 1.0,
        noise_std: float | Callable[[Tensor], Tensor] = 1.0,
    ):
        self.score_fn, self.regressor, self.target = score_fn, regressor, target
        self.scale, self.noise_std = float(scale), noise_std

    def _target_like(self, pred: Tensor) -> Tensor:
        """The target as ``(1, P)`` (one for all samples) or ``(B, P)`` (one per sample), matching ``pred``."""
        target = torch.as_tensor(self.target, device=pred.device, dtype=pred.dtype)
        if target.dim() >= 1 and target.shape[0] == pred.shape[0] and target.numel() == pred.numel():
            return target.reshape(pred.shape)
        if target.numel() in (1, pred.shape[1]):
            return target.reshape(1, -1)
        raise ValueError(f"target of shape {tuple(target.shape)} does not fit predictions {tuple(pred.shape)}")

    def log_likelihood_grad(self, x: State, t: Tensor, **kwargs: Any) -> State:
        """``grad_x log N(target; regressor(x, t), noise_std^2)`` (tensor or dict like ``x``)."""
        with torch.enable_grad():
            xr = _map(lambda v: v.detach().requires_grad_(True), x)
            pred = self.regressor(xr, t, **kwargs)
            pred = pred.reshape(pred.shape[0], -1)
            std = self.noise_std(t) if callable(self.noise_std) else self.noise_std
            std = torch.as_tensor(std, device=pred.device, dtype=pred.dtype)
            std = std.reshape(-1, 1) if std.dim() == 1 else std
            logp = -0.5 * ((pred - self._target_like(pred)) / std) ** 2
            leaves = list(xr.values()) if isinstance(xr, Mapping) else [xr]
            grads = torch.autograd.grad(logp.sum(), leaves, allow_unused=True)
        grads = [torch.zeros_like(v) if g is None else g for v, g in zip(leaves, grads)]
        return dict(zip(xr.keys(), grads)) if isinstance(xr, Mapping) else grads[0]

    def __call__(self, x: State, t: Tensor, **kwargs: Any) -> State:
        score = self.score_fn(x, t, **kwargs)
        grad = self.log_likelihood_grad(x, t, **kwargs)
        return _map(lambda s, g: s + self.scale * g, score, grad)
