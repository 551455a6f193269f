"""A joint flow over continuous and categorical fields that share one time, as one system (MultiFlow, FlowMol,
PropMolFlow; MatterGen's multi-corruption for diffusion): positions next to atom types, charges and bonds.

Each field of the state is either

* :class:`ContinuousField`: an interpolant path from a prior to the data (``shared.flow``); the model predicts the
  endpoint ``x1`` and the sampler steps along the interpolant's marginal velocity (Euler), optionally projected
  after each step (e.g. onto zero centre of mass) and corrected by a guidance term; or
* :class:`DiscreteField`: a CTMC flow (``shared.discrete_flow``: masking or uniform noise) over integer tokens;
  the model gives ``p(x1 | x_t)`` logits and the sampler takes CTMC steps. ``pairwise`` fields are symmetric
  ``(B, N, N)`` matrices of which only the strict upper triangle of real node pairs is drawn (bonds).

A node mask ``(B, N)`` marks the real nodes; padded tokens never move. :meth:`JointFlow.integrate` is the one
loop: every step evaluates the model once on the whole state, then moves every field by its own rule, in the
field order given (which fixes the order of random draws, so a seed reproduces its samples).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from shared.discrete_flow import MaskingDiscreteFlow, _DiscreteFlow, discrete_flow_loss, tempered_probs
from shared.flow import Interpolant, LinearInterpolant

__all__ = ["ContinuousField", "DiscreteField", "JointFlow", "JointSampler", "JointResult"]

State = dict[str, Tensor]


@dataclass(frozen=True)
class ContinuousField:
    """A real-valued node field ``(B, N, D)``: its interpolant and an optional projection ``(x, mask) -> x``
    applied after every step (for positions: remove the centre of mass, which keeps the flow translation-free)."""

    interpolant: Interpolant = field(default_factory=LinearInterpolant)
    project: Callable[[Tensor, Tensor], Tensor] | None = None


@dataclass(frozen=True)
class DiscreteField:
    """A categorical field: node tokens ``(B, N)`` or, with ``pairwise``, a symmetric ``(B, N, N)`` matrix."""

    flow: _DiscreteFlow
    pairwise: bool = False


@dataclass(frozen=True)
class JointSampler:
    """How the categorical fields step (shared by all of them): ``temperature`` on the predicted probabilities,
    ``purity`` (masking flows: unmask the most confident tokens first), ``final`` (the last step into t = 1:
    ``argmax`` or ``sample`` of p(x1 | x_t)), ``ctmc_step`` (``exponential`` or ``euler``)."""

    temperature: float = 1.0
    purity: bool = False
    final: str = "argmax"
    ctmc_step: str = "exponential"

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.final not in ("argmax", "sample"):
            raise ValueError(f"final must be 'argmax' or 'sample', got {self.final!r}")
        if self.ctmc_step not in ("exponential", "euler"):
            raise ValueError(f"ctmc_step must be 'exponential' or 'euler', got {self.ctmc_step!r}")


@dataclass
class JointResult:
    state: State
    nfe: int
    nonfinite: Tensor  # (B,) bool: samples whose model output was NaN/inf at some step (their values are garbage)


def upper_pairs(mask: Tensor) -> Tensor:
    """(B, N, N) bool: real node pairs with i < j."""
    pair = mask.unsqueeze(-1) & mask.unsqueeze(-2)
    return torch.triu(pair, diagonal=1)


def symmetrise(upper: Tensor) -> Tensor:
    """Copy the strict upper triangle of (B, N, N) into the lower one (the diagonal is kept)."""
    triu = torch.triu(upper, diagonal=1)
    return triu + triu.transpose(1, 2) + torch.diagonal(upper, dim1=1, dim2=2).diag_embed()


def _node_weights(mask: Tensor, like: Tensor) -> Tensor:
    return mask.reshape(*mask.shape, *([1] * (like.dim() - mask.dim()))).to(like.dtype)


class JointFlow:
    """The system: ``continuous`` and ``discrete`` fields by name (insertion order is the stepping order)."""

    def __init__(self, continuous: Mapping[str, ContinuousField], discrete: Mapping[str, DiscreteField]):
        overlap = set(continuous) & set(discrete)
        if overlap or "mask" in continuous or "mask" in discrete:
            raise ValueError(f"field names must be distinct and not 'mask'; repeated: {sorted(overlap)}")
        if not continuous and not discrete:
            raise ValueError("a joint flow needs at least one field")
        self.continuous = dict(continuous)
        self.discrete = dict(discrete)

    def valid(self, key: str, mask: Tensor) -> Tensor:
        """Where field ``key``'s tokens take part: real nodes, or real node pairs i < j for pairwise fields."""
        return upper_pairs(mask) if self.discrete[key].pairwise else mask

    # --- training ------------------------------------------------------------------------------------------------

    def sample_discrete_xt(self, x1: State, t: Tensor, generator: torch.Generator | None = None) -> State:
        """``x_t ~ p_t(. | x1)`` for every categorical field (pairwise ones drawn on the upper triangle, mirrored)."""
        out = {}
        for key, spec in self.discrete.items():
            xt = spec.flow.sample_xt(x1[key], t, generator)
            out[key] = symmetrise(xt) if spec.pairwise else xt
        return out

    def loss_terms(self, out: State, x1: State, x_t: State, mask: Tensor) -> State:
        """Per-sample ``(B,)`` losses: squared error of the predicted endpoint summed over the feature dim and
        averaged over real nodes (continuous); cross-entropy averaged over the noised tokens (masking flows) or all
        tokens (uniform flows) of the valid nodes / pairs (categorical)."""
        terms = {}
        for key in self.continuous:
            m = _node_weights(mask, x1[key])
            terms[key] = ((out[key] - x1[key]) ** 2 * m).sum((1, 2)) / m.sum((1, 2)).clamp_min(1.0)
        for key, spec in self.discrete.items():
            weight = self.valid(key, mask)
            if isinstance(spec.flow, MaskingDiscreteFlow):
                weight = weight & (x_t[key] == spec.flow.mask_index)
            terms[key] = discrete_flow_loss(out[key], x1[key], weight)
        return terms

    # --- sampling ------------------------------------------------------------------------------------------------

    def discrete_prior(self, mask: Tensor, generator: torch.Generator | None = None) -> State:
        """Noise tokens for every categorical field (the mask state, or uniform classes), padded nodes included."""
        bsz, n = mask.shape
        out = {}
        for key, spec in self.discrete.items():
            shape = (bsz, n, n) if spec.pairwise else (bsz, n)
            if isinstance(spec.flow, MaskingDiscreteFlow):
                out[key] = torch.full(shape, spec.flow.mask_index, dtype=torch.long, device=mask.device)
            else:
                x = spec.flow.sample_prior(shape, generator, mask.device)
                out[key] = symmetrise(x) if spec.pairwise else x
        return out

    def step(self, state: State, out: State, t: Tensor, t_now: Tensor, t_next: Tensor, sampler: JointSampler,
             last: bool, generator: torch.Generator | None = None,
             velocity_correction: Callable[[str, Tensor, Tensor, State, State], Tensor] | None = None) -> State:
        """Move every field from ``t_now`` to ``t_next`` given the model's predictions ``out`` at ``state``.

        ``t`` is ``t_now`` per sample (B,). On the ``last`` step the continuous fields take the predicted endpoint
        and the categorical ones are finalised. ``velocity_correction(key, x, t, state, out)`` is added to a
        continuous field's velocity (gradient guidance).
        """
        mask = state["mask"]
        dt = float(t_next - t_now)
        new = {"mask": mask}
        for key, spec in self.continuous.items():
            x1_hat = torch.nan_to_num(out[key], nan=0.0, posinf=0.0, neginf=0.0)
            if last:
                x = x1_hat
            else:
                v = spec.interpolant.velocity_from_x1(x1_hat, state[key], t, min_sigma=1e-12)
                if velocity_correction is not None:
                    v = v + velocity_correction(key, state[key], t, state, out)
                x = state[key] + dt * v
            new[key] = spec.project(x, mask) if spec.project is not None else x
        for key, spec in self.discrete.items():
            probs = tempered_probs(torch.nan_to_num(out[key], nan=0.0), sampler.temperature)
            valid = self.valid(key, mask)
            cur = state[key]
            if last:
                nxt = spec.flow.finalize(cur, probs, generator, argmax=sampler.final == "argmax")
            elif sampler.purity:
                if not isinstance(spec.flow, MaskingDiscreteFlow):
                    raise ValueError(f"purity sampling needs a masking flow; field {key!r} has "
                                     f"{type(spec.flow).__name__}")
                nxt = spec.flow.purity_step(cur, probs, t, dt, valid, generator)
            else:
                nxt = spec.flow.step(cur, probs, t, dt, generator, method=sampler.ctmc_step)
            nxt = torch.where(valid, nxt, cur)
            new[key] = symmetrise(nxt) if spec.pairwise else nxt
        return new

    def integrate(self, model: Callable[..., State], state: State, grid: Tensor, sampler: JointSampler | None = None,
                  *, cond: Any = None, generator: torch.Generator | None = None, progress: bool = False,
                  velocity_correction: Callable[[str, Tensor, Tensor, State, State], Tensor] | None = None,
                  desc: str = "joint flow") -> JointResult:
        """Integrate from ``grid[0]`` (the prior ``state``, with its ``mask``) to ``grid[-1] = 1``: one model call
        ``model(state, t[, cond=])`` per interval. Runs under ``no_grad``; NaN/inf predictions are zeroed and the
        samples they hit are flagged in ``nonfinite``. Returns the final state with padded tokens zeroed."""
        sampler = sampler or JointSampler()
        mask = state["mask"]
        bsz, steps = mask.shape[0], len(grid) - 1
        if steps < 1:
            raise ValueError("the time grid needs at least two points")
        nonfinite = torch.zeros(bsz, dtype=torch.bool, device=mask.device)
        indices = range(steps)
        if progress:
            from tqdm.auto import tqdm

            indices = tqdm(indices, desc=desc, leave=False)
        with torch.no_grad():
            for i in indices:
                t = grid[i].expand(bsz)
                out = model(state, t, cond=cond) if cond is not None else model(state, t)
                for key in (*self.continuous, *self.discrete):
                    nonfinite |= ~torch.isfinite(out[key]).flatten(1).all(1)
                state = self.step(state, out, t, grid[i], grid[i + 1], sampler, last=i == steps - 1,
                                  generator=generator, velocity_correction=velocity_correction)
        final = {"mask": mask}
        for key in self.continuous:
            final[key] = state[key]
        for key in self.discrete:
            valid = self.valid(key, mask)
            if self.discrete[key].pairwise:
                valid = valid | valid.transpose(1, 2)
            final[key] = torch.where(valid, state[key], torch.zeros_like(state[key]))
        return JointResult(state=final, nfe=steps, nonfinite=nonfinite)
