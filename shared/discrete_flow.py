"""Discrete flow matching over categorical variables (Campbell et al. 2024, Gat et al. 2024).

Every variable (atom type, charge, bond order, ...) is an integer in ``[0, K)``; the path from noise (t=0)
to data (t=1) is ``p_t(x | x1) = t delta_{x1}(x) + (1 - t) p_0(x)`` with ``p_0`` either a point mass on an extra
mask state (``MaskingDiscreteFlow``, absorbing) or uniform over the K classes (``UniformDiscreteFlow``).
A model predicts ``p(x1 | x_t)`` per variable; the CTMC rates below turn that into jumps, and their Euler
discretisation is the sampler. All functions act on whole ``(B, ...)`` integer tensors at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from shared.tensors import per_sample

__all__ = [
    "tempered_probs",
    "MaskingDiscreteFlow",
    "UniformDiscreteFlow",
    "DiscreteFlowResult",
    "discrete_flow_loss",
    "sample_categorical",
]



def sample_categorical(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One draw per row of ``probs`` (last dim; rows need not be normalised) by inverse-CDF sampling."""
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.shape[:-1], generator=generator, device=probs.device, dtype=probs.dtype)
    # "<=": a draw of exactly 0 must not pick a leading zero-probability class
    idx = (cdf <= u.unsqueeze(-1) * cdf[..., -1:]).sum(-1)
    return idx.clamp_max(probs.shape[-1] - 1)


def tempered_probs(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``softmax(logits / T)``, i.e. predicted probabilities raised to ``1 / T`` and renormalised."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return torch.softmax(logits.float() / temperature, dim=-1)


def discrete_flow_loss(logits: Tensor, x1: Tensor, mask: Tensor | None = None) -> Tensor:
    """Cross-entropy of the x1 prediction, averaged over the (valid) variables of each sample: ``(B,)``."""
    if logits.shape[:-1] != x1.shape:
        raise ValueError(f"logits {tuple(logits.shape)} must be x1's shape {tuple(x1.shape)} plus a class dim")
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x1.reshape(-1), reduction="none").view(x1.shape)
    if mask is None:
        return ce.flatten(1).mean(1)
    m = mask.reshape(*mask.shape, *([1] * (ce.dim() - mask.dim()))).to(ce.dtype).expand_as(ce)
    return (ce * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)


@dataclass
class DiscreteFlowResult:
    samples: Tensor
    nfe: int
    trajectory: list[Tensor] = field(default_factory=list)


class _DiscreteFlow:
    """Shared machinery; subclasses define the noise state(s) and the CTMC rates."""

    num_states: int

    def __init__(self, num_classes: int, eta: float = 0.0, min_gap: float = 1e-6):
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if eta < 0:
            raise ValueError(f"eta (stochasticity) must be non-negative, got {eta}")
        self.num_classes = int(num_classes)
        self.eta = float(eta)
        self.min_gap = min_gap  # rates ~ 1 / (1 - t): keep them finite at t = 1

    def _noise_like(self, x1: Tensor, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def rates(self, x_t: Tensor, probs: Tensor, t: Tensor) -> Tensor:
        raise NotImplementedError

    def _check(self, x1: Tensor) -> None:
        if x1.dtype in (torch.float16, torch.float32, torch.float64, torch.bfloat16):
            raise ValueError("categorical states must be integer tensors")
        if x1.numel() and (x1.min() < 0 or x1.max() >= self.num_classes):
            raise ValueError(f"x1 classes must lie in [0, {self.num_classes}), got [{x1.min()}, {x1.max()}]")

    def sample_prior(self, shape: Sequence[int], generator: torch.Generator | None = None, device=None) -> Tensor:
        return self._noise_like(torch.zeros(tuple(shape), dtype=torch.long, device=device), generator)

    def sample_xt(self, x1: Tensor, t: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``x_t ~ p_t(. | x1)``: keep each variable with probability t, otherwise replace it by noise."""
        self._check(x1)
        keep = torch.rand(x1.shape, generator=generator, device=x1.device) < per_sample(t, x1).to(x1.device)
        return torch.where(keep, x1, self._noise_like(x1, generator))

    def step(
        self, x_t: Tensor, probs: Tensor, t: Tensor, dt: float | Tensor, generator: torch.Generator | None = None,
        method: str = "euler",
    ) -> Tensor:
        """One step of the CTMC with the rates frozen over the step.

        ``euler``: jump to ``j`` with probability ``dt * R(x_t -> j)`` (a too-large step jumps surely, split by the
        rates). ``exponential``: leave with probability ``1 - exp(-dt * sum_j R)``, split by the rates: the exact
        law of the frozen-rate chain, which stays sensible when ``dt * R`` is not small (few steps, large eta).
        """
        if method not in ("euler", "exponential"):
            raise ValueError(f"method must be 'euler' or 'exponential', got {method!r}")
        rates = self.rates(x_t, probs, t)
        dt = torch.as_tensor(dt, device=rates.device, dtype=rates.dtype)
        jump = rates * (per_sample(dt, x_t).unsqueeze(-1) if dt.dim() else dt)
        total = jump.sum(-1, keepdim=True)
        if method == "euler":
            jump = jump / total.clamp_min(1.0)
        else:
            jump = jump * (-torch.expm1(-total) / total.clamp_min(1e-12))
        stay = 1.0 - jump.sum(-1, keepdim=True)
        trans = jump.scatter_add(-1, x_t.unsqueeze(-1), stay)
        return sample_categorical(trans, generator)

    def finalize(self, x_t: Tensor, probs: Tensor, generator: torch.Generator | None = None,
                 argmax: bool = False) -> Tensor:
        """The last step into t = 1: every noised variable takes a class drawn from (or the mode of) ``probs``."""
        return probs.argmax(-1) if argmax else sample_categorical(probs, generator)

    def sample(
        self,
        logits_fn: Callable[..., Tensor],
        shape: Sequence[int],
        steps: int = 100,
        generator: torch.Generator | None = None,
        final: str = "sample",
        return_trajectory: bool = False,
        progress: bool = False,
        device=None,
        dtype=torch.float32,
        **model_kwargs: Any,
    ) -> DiscreteFlowResult:
        """Simulate from t=0 to 1 on a uniform grid; ``logits_fn(x_t, t, **model_kwargs)`` gives x1 logits.

        Euler steps of the CTMC up to the last grid time, then :meth:`finalize` (sample or argmax of p(x1 | x_t)).
        One model call per step (``nfe = steps``); runs under ``no_grad``.
        """
        if final not in ("sample", "argmax"):
            raise ValueError(f"final must be 'sample' or 'argmax', got {final!r}")
        if steps < 1:
            raise ValueError(f"steps must be positive, got {steps}")
        x = self.sample_prior(shape, generator, device)
        grid = torch.linspace(0.0, 1.0, steps + 1, device=x.device, dtype=dtype)
        trajectory = [x] if return_trajectory else []
        indices = range(steps)
        if progress:
            from tqdm.auto import tqdm

            indices = tqdm(indices, desc="discrete_flow")
        with torch.no_grad():
            for i in indices:
                t = grid[i].expand(x.shape[0])
                probs = torch.softmax(logits_fn(x, t, **model_kwargs).to(dtype), dim=-1)
                if i < steps - 1:
                    x = self.step(x, probs, t, grid[i + 1] - grid[i], generator)
                else:
                    x = self.finalize(x, probs, generator, argmax=final == "argmax")
                if return_trajectory:
                    trajectory.append(x)
        return DiscreteFlowResult(samples=x, nfe=steps, trajectory=trajectory)


class MaskingDiscreteFlow(_DiscreteFlow):
    """Absorbing-state flow: noise is the extra state ``mask_index = K``; states live in ``[0, K]``.

    Rates: a masked variable unmasks to ``j`` at ``p(x1=j | x_t) (1 + eta t) / (1 - t)``; with ``eta > 0`` an
    unmasked one re-masks at rate ``eta`` (the detailed-balance term, which leaves the marginals unchanged).
    """

    @property
    def mask_index(self) -> int:
        return self.num_classes

    @property
    def num_states(self) -> int:
        return self.num_classes + 1

    def _noise_like(self, x1: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.full_like(x1, self.mask_index)

    def rates(self, x_t: Tensor, probs: Tensor, t: Tensor) -> Tensor:
        if probs.shape != (*x_t.shape, self.num_classes):
            raise ValueError(f"probs must have shape {(*x_t.shape, self.num_classes)}, got {tuple(probs.shape)}")
        tt = per_sample(t, x_t).to(probs.dtype)
        masked = (x_t == self.mask_index).unsqueeze(-1)
        unmask = probs * ((1 + self.eta * tt) / (1 - tt).clamp_min(self.min_gap)).unsqueeze(-1)
        remask = torch.full_like(probs[..., :1], self.eta)
        return torch.where(
            masked,
            torch.cat([unmask, torch.zeros_like(remask)], -1),
            torch.cat([torch.zeros_like(unmask), remask], -1),
        )

    def step(
        self, x_t: Tensor, probs: Tensor, t: Tensor, dt: float | Tensor, generator: torch.Generator | None = None,
        method: str = "euler",
    ) -> Tensor:
        """``euler`` as in the base class; ``exponential`` is the exact transition of the frozen-rate chain.

        With the rates frozen over the step, "masked or not" is a two-state chain (unmask at ``A = (1 + eta t) /
        (1 - t)``, re-mask at ``b = eta``) and every unmasking draws its class from ``probs``, so the step's matrix
        exponential is closed-form: from the mask, unmasked with probability ``A / s (1 - e^{-s dt})`` (s = A + b);
        from class j, still j without ever leaving with ``e^{-b dt}``, unmasked at the end with
        ``(A + b e^{-s dt}) / s``, the difference drawn from ``probs``.
        """
        if method != "exponential":
            return super().step(x_t, probs, t, dt, generator, method)
        if probs.shape != (*x_t.shape, self.num_classes):
            raise ValueError(f"probs must have shape {(*x_t.shape, self.num_classes)}, got {tuple(probs.shape)}")
        tt = per_sample(t, x_t).to(probs.dtype)
        dt = torch.as_tensor(dt, device=probs.device, dtype=probs.dtype)
        dt = per_sample(dt, x_t) if dt.dim() else dt
        a = (1 + self.eta * tt) / (1 - tt).clamp_min(self.min_gap)
        b = torch.full_like(a, self.eta)
        s = a + b
        e_s, e_b = torch.exp(-s * dt), torch.exp(-b * dt)
        from_mask = (a / s * (1 - e_s)).unsqueeze(-1)
        unmasked_end = ((a + b * e_s) / s).unsqueeze(-1)
        masked = (x_t == self.mask_index).unsqueeze(-1)
        keep = torch.nn.functional.one_hot(x_t.clamp_max(self.num_classes - 1), self.num_classes).to(probs.dtype)
        classes = torch.where(masked, probs * from_mask, probs * (unmasked_end - e_b.unsqueeze(-1)) +
                              keep * e_b.unsqueeze(-1))
        to_mask = torch.where(masked, 1 - from_mask, 1 - unmasked_end).clamp_min(0.0)
        return sample_categorical(torch.cat([classes.clamp_min(0.0), to_mask], -1), generator)

    def finalize(self, x_t: Tensor, probs: Tensor, generator: torch.Generator | None = None,
                 argmax: bool = False) -> Tensor:
        drawn = super().finalize(x_t, probs, generator, argmax)
        return torch.where(x_t == self.mask_index, drawn, x_t)

    def purity_step(self, x_t: Tensor, probs: Tensor, t: Tensor, dt: float, valid: Tensor | None = None,
                    generator: torch.Generator | None = None) -> Tensor:
        """Purity sampling (Tang et al. 2022 / MultiFlow): per sample, unmask the expected number of masked tokens
        (``dt`` times the unmasking rate, stochastically rounded), choosing those whose prediction is most confident;
        their values are drawn from ``probs``. Then unmasked tokens re-mask at rate ``eta``. ``valid`` (like
        ``x_t``) marks the tokens that take part; the others are returned unchanged.
        """
        valid = torch.ones_like(x_t, dtype=torch.bool) if valid is None else valid
        masked = (x_t == self.mask_index) & valid
        tt = per_sample(t, x_t).to(probs.dtype)
        p_unmask = -torch.expm1(-dt * (1 + self.eta * tt) / (1 - tt).clamp_min(self.min_gap))
        flat = masked.flatten(1)
        expected = flat.sum(1).to(probs.dtype) * p_unmask.flatten()
        u = torch.rand(expected.shape, generator=generator, device=x_t.device, dtype=probs.dtype)
        k = torch.floor(expected + u).long()
        confidence = probs.max(-1).values
        choice = sample_categorical(probs, generator)
        score = torch.where(masked, confidence, torch.full_like(confidence, -1.0)).flatten(1)
        rank = score.argsort(1, descending=True).argsort(1)
        unmask = ((rank < k.unsqueeze(1)) & flat).view_as(x_t)
        out = torch.where(unmask, choice, x_t)
        if self.eta > 0:
            p_remask = -math.expm1(-self.eta * dt)  # exact for the frozen rate, < 1 for any step
            remask = ~masked & valid & (torch.rand(x_t.shape, generator=generator, device=x_t.device) < p_remask)
            out = torch.where(remask, torch.full_like(out, self.mask_index), out)
        return out


class UniformDiscreteFlow(_DiscreteFlow):
    """Uniform-noise flow ``p_t(x | x1) = t delta_{x1} + (1 - t) / K``.

    Rates for ``j != x``: ``p(x1=j | x_t) (1 + eta (1 + (K - 1) t)) / (1 - t) + eta p(x1=x | x_t)``; at
    ``eta = 0`` this is the minimal (Campbell et al.) rate matrix of the linear path, the eta terms satisfy
    detailed balance with ``p_t(. | x1)``.
    """

    @property
    def num_states(self) -> int:
        return self.num_classes

    def _noise_like(self, x1: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.randint(0, self.num_classes, x1.shape, generator=generator, device=x1.device)

    def rates(self, x_t: Tensor, probs: Tensor, t: Tensor) -> Tensor:
        if probs.shape != (*x_t.shape, self.num_classes):
            raise ValueError(f"probs must have shape {(*x_t.shape, self.num_classes)}, got {tuple(probs.shape)}")
        tt = per_sample(t, x_t).to(probs.dtype).unsqueeze(-1)
        k = self.num_classes
        p_here = probs.gather(-1, x_t.unsqueeze(-1))
        r = probs * (1 + self.eta * (1 + (k - 1) * tt)) / (1 - tt).clamp_min(self.min_gap) + self.eta * p_here
        return r.scatter(-1, x_t.unsqueeze(-1), 0.0)
