"""Denoising score matching (Song et al. 2021, score_sde's continuous-time loss) for tensors and SDE systems.

With ``x_t = m(t) x0 + std(t) z`` the regression target of the score is ``-z / std``; the loss per entry is
``lambda(t) (s(x_t, t) + z / std)^2`` with ``lambda = std^2`` ("sigma2", score_sde's default),
``g(t)^2`` ("likelihood", the weighting that bounds the negative log-likelihood) or 1 ("none").
Losses are returned per sample, shape ``(B,)``; average them over the batch yourself.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from shared.sde import SDE, expand_like
from shared.system import SDESystem

__all__ = ["WEIGHTINGS", "dsm_weight", "dsm_loss", "system_dsm_loss"]

WEIGHTINGS = ("sigma2", "likelihood", "none")


def dsm_weight(sde: SDE, t: Tensor, weighting: str) -> Tensor:
    """``lambda(t)`` of shape ``(B,)`` for the named weighting."""
    if weighting == "sigma2":
        return sde.marginal_std(t) ** 2
    if weighting == "likelihood":
        return sde.diffusion(t) ** 2
    if weighting == "none":
        return torch.ones_like(t)
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def _sample_t(batch: int, T: float, eps: float, generator, ref: Tensor) -> Tensor:
    if not 0 <= eps < T:
        raise ValueError(f"need 0 <= eps < T, got eps={eps}, T={T}")
    u = torch.rand(batch, generator=generator, device=ref.device, dtype=ref.dtype)
    return eps + (T - eps) * u


def _reduce(sq: Tensor, valid: Tensor | None, reduce_mean: bool) -> Tensor:
    """Mean (or sum) of ``sq`` over the valid entries of each sample; ``valid`` broadcasts to ``sq``."""
    if valid is not None:
        sq = sq * valid
    total = sq.flatten(1).sum(1)
    if not reduce_mean:
        return total
    count = sq[0].numel() if valid is None else valid.expand_as(sq).flatten(1).sum(1).clamp_min(1.0)
    return total / count


def _weighted_residual(score: Tensor, z: Tensor, std: Tensor, weight: Tensor) -> Tensor:
    # (score * std + z)^2 = std^2 (score + z / std)^2 stays finite for tiny std
    res = (score * expand_like(std, score) + z) ** 2
    return res * expand_like(weight / std**2, res)


def dsm_loss(
    score_fn: Callable[..., Tensor],
    x0: Tensor,
    sde: SDE,
    t: Tensor | None = None,
    weighting: str = "sigma2",
    mask: Tensor | None = None,
    reduce_mean: bool = True,
    generator: torch.Generator | None = None,
    eps: float | None = None,
    cond: Any = None,
) -> Tensor:
    """Per-sample DSM loss of ``score_fn(x_t, t)`` on data ``x0``; ``t ~ U(eps, T)`` unless given.

    ``mask`` (``(B, ...)``, broadcast over trailing dims) marks valid entries: padded ones get no noise and do
    not count. ``score_fn`` receives ``cond=`` / ``mask=`` keywords only when they are given.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if t is None:
        t = _sample_t(x0.shape[0], sde.T, sde.eps if eps is None else eps, generator, x0)
    valid = None
    if mask is not None:
        if mask.dim() > x0.dim() or mask.shape[0] != x0.shape[0]:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast against x0 {tuple(x0.shape)}")
        valid = mask.reshape(*mask.shape, *([1] * (x0.dim() - mask.dim()))).to(x0.dtype)
    z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    if valid is not None:
        z = z * valid
    mean, std = sde.marginal(x0, t)
    x_t = mean + expand_like(std, mean) * z
    kwargs = {k: v for k, v in (("cond", cond), ("mask", mask)) if v is not None}
    score = score_fn(x_t, t, **kwargs)
    return _reduce(_weighted_residual(score, z, std, dsm_weight(sde, t, weighting)), valid, reduce_mean)


def system_dsm_loss(
    score_fn: Callable[..., Mapping[str, Tensor]],
    state0: Mapping[str, Tensor],
    system: SDESystem,
    t: Tensor | None = None,
    weighting: str = "sigma2",
    mask: Tensor | None = None,
    reduce_mean: bool = True,
    generator: torch.Generator | None = None,
    eps: float | None = None,
) -> dict[str, Tensor]:
    """One per-sample DSM loss per component of an :class:`SDESystem` state (e.g. GDSS's X and A losses).

    Noise comes from ``system.marginal_sample`` (symmetric with zero diagonal for symmetric components,
    zero on padded nodes); ``score_fn(state_t, t, mask=mask)``. Each component is weighted with its own SDE and
    averaged over its valid entries (rows, or rows x columns, of real nodes).
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    system.check_state(state0, "state0")
    ref = next(iter(state0.values()))
    if t is None:
        t = _sample_t(ref.shape[0], system.T, system.eps if eps is None else eps, generator, ref)
    x_t, noise = system.marginal_sample(state0, t, mask, generator)
    score = score_fn(x_t, t, mask=mask)
    if set(score) != set(state0):
        raise ValueError(f"score_fn returned keys {sorted(score)}, the state has {sorted(state0)}")
    losses = {}
    for key, comp in system.components.items():
        std = comp.sde.marginal_std(t)
        sq = _weighted_residual(score[key], noise[key], std, dsm_weight(comp.sde, t, weighting))
        valid = None if mask is None else comp.apply_mask(torch.ones_like(sq), mask, key)
        losses[key] = _reduce(sq, valid, reduce_mean)
    return losses
