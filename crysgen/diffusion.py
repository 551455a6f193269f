"""EDM diffusion on scaled crystal matrices: the preconditioned denoiser, the training loss, CFG sampling.

Padding entries of the matrix (``CrystalEncoder.padding_mask``: columns a block does not use) are constant
(-1 after scaling), so they get no noise and no loss in training, the network always sees -1 there, and the
sampler leaves them untouched. A missing condition is encoded as NaN (the network's learned null embedding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from crysgen.model import UNet1D
from shared.edm import EDMLoss, EDMPrecond, EDMSampleResult, edm_sampler
from shared.guidance import ClassifierFreeGuidance, drop_condition
from shared.numerics import network_autocast, resolve_precision

__all__ = ["CrystalDenoiser", "DiffusionConfig", "SamplingError", "make_loss_fn", "sample_matrices"]

NULL_COND = float("nan")


@dataclass
class DiffusionConfig:
    sigma_data: float = 0.5
    P_mean: float = -1.2
    P_std: float = 1.2
    cond_drop: float = 0.1  # probability of training a sample unconditionally (classifier-free guidance)
    steps: int = 100
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    S_churn: float = 0.0  # 0: deterministic Heun
    S_min: float = 0.0
    S_max: float | None = None  # None: no upper limit
    S_noise: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.cond_drop <= 1.0:
            raise ValueError(f"cond_drop must lie in [0, 1], got {self.cond_drop}")
        if self.steps < 2 or not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need steps >= 2 and 0 < sigma_min < sigma_max, got {self}")


class SamplingError(FloatingPointError):
    """The sampler produced NaN or infinite values."""


class CrystalDenoiser(nn.Module):
    """``D(x; sigma, cond)`` for ``(B, rows, width)`` scaled matrices: EDM preconditioning of a UNet1D.

    Input padding entries are set to the data value (-1); output padding entries equal the input, so the
    sampler's ODE does not move them.
    """

    def __init__(self, net: UNet1D, padding_mask: Tensor, sigma_data: float = 0.5):
        super().__init__()
        self.precond = EDMPrecond(net, sigma_data)  # owns the network (registered once in the state dict)
        self.register_buffer("padding_mask", torch.as_tensor(padding_mask, dtype=torch.bool), persistent=False)

    @property
    def net(self) -> UNet1D:
        return self.precond.net

    def forward(self, x: Tensor, sigma: Tensor | float, cond: Tensor | None = None,
                mask: Tensor | None = None) -> Tensor:
        # ``mask`` (the loss mask EDMLoss forwards) is implied by the fixed padding layout, so it is not needed
        pad = self.padding_mask
        denoised = self.precond(x.masked_fill(pad, -1.0), sigma, cond=cond)
        return torch.where(pad, x, denoised)


def make_loss_fn(config: DiffusionConfig, padding_mask: Tensor) -> Callable[[nn.Module, Any, torch.Generator], Any]:
    """The Trainer's ``loss_fn(model, batch, generator)``; ``batch`` is ``x`` or ``(x, cond)``."""
    edm_loss = EDMLoss(config.P_mean, config.P_std, config.sigma_data)
    keep = ~torch.as_tensor(padding_mask, dtype=torch.bool)

    def loss_fn(model: nn.Module, batch: Any, generator: torch.Generator):
        x, cond = (batch, None) if torch.is_tensor(batch) else (batch[0], batch[1])
        if cond is not None and cond.shape[1] > 0 and config.cond_drop > 0:
            cond = drop_condition(cond, config.cond_drop, generator, null_cond=NULL_COND)
        elif cond is not None and cond.shape[1] == 0:
            cond = None
        mask = keep.to(x.device).expand(x.shape[0], *keep.shape)
        per_sample = edm_loss(model, x, cond=cond, mask=mask, generator=generator)
        return per_sample.mean()

    return loss_fn


@torch.no_grad()
def _in_precision(fn: Callable[..., Tensor], precision: str) -> Callable[..., Tensor]:
    def call(x: Tensor, sigma: Tensor, *args, **kwargs) -> Tensor:
        with network_autocast(precision, x.device):
            return fn(x, sigma, *args, **kwargs).to(x.dtype)

    return call


def sample_matrices(denoiser: CrystalDenoiser, n: int, shape: tuple[int, int], config: DiffusionConfig, *,
                    cond: Tensor | None = None, guidance_scale: float = 1.0, steps: int | None = None,
                    generator: torch.Generator | None = None, batch_size: int = 256, device=None,
                    progress: bool = False, precision: str = "fp32") -> EDMSampleResult:
    """``n`` scaled matrices from EDM's Heun sampler (with churn as configured), in batches.

    ``precision`` "bf16" (or "auto" where the hardware has native bf16) runs the denoiser under bf16 autocast;
    its output returns to fp32, so the Heun integration stays in fp32.

    ``cond`` is one ``(P,)`` condition for all samples or ``(n, P)``; with it, classifier-free guidance
    ``D_u + scale (D_c - D_u)`` is used (scale 1: purely conditional, scale 0: unconditional).
    ``nfe`` of the result counts denoiser evaluations per sample (a guided evaluation counts once).
    """
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be >= 1, got n={n}, batch_size={batch_size}")
    device = torch.device(device) if device is not None else next(denoiser.parameters()).device
    if cond is not None:
        cond = torch.as_tensor(cond, dtype=torch.float32, device=device)
        cond = cond.expand(n, -1) if cond.dim() == 1 else cond
        if cond.shape[0] != n:
            raise ValueError(f"cond must have shape (P,) or ({n}, P), got {tuple(cond.shape)}")
    denoiser.eval()
    precision = resolve_precision(precision, device)  # once: "auto" becomes fp32 or bf16 here
    chunks, nfe = [], 0
    starts = range(0, n, batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="sampling", unit="crystal")
    try:
        for start in starts:
            count = min(batch_size, n - start)
            fn: Callable[..., Tensor] = denoiser
            if cond is not None:
                part = cond[start:start + count]
                fn = (lambda x, s, c=part: denoiser(x, s, c)) if guidance_scale == 1.0 else \
                    ClassifierFreeGuidance(denoiser, guidance_scale, NULL_COND, cond=part)
            if precision != "fp32":
                fn = _in_precision(fn, precision)
            checked = _nan_checked(fn)
            latents = torch.randn((count, *shape), generator=generator, device=device)
            num_steps = config.steps if steps is None else steps
            out = edm_sampler(checked, latents, num_steps=num_steps, sigma_min=config.sigma_min,
                              sigma_max=config.sigma_max, rho=config.rho, S_churn=config.S_churn, S_min=config.S_min,
                              S_max=float("inf") if config.S_max is None else config.S_max, S_noise=config.S_noise,
                              generator=generator)
            chunks.append(out.samples.masked_fill(denoiser.padding_mask, -1.0))
            nfe = out.nfe
            if bar is not None:
                bar.update(count)
    finally:  # also on Ctrl-C: the bar ends its line before the interrupt message
        if bar is not None:
            bar.close()
    return EDMSampleResult(samples=torch.cat(chunks), nfe=nfe)


def _nan_checked(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def checked(x: Tensor, sigma: Tensor) -> Tensor:
        out = fn(x, sigma)
        if not torch.isfinite(out).all():
            raise SamplingError(f"denoiser returned NaN/inf at sigma={float(sigma.reshape(-1)[0]):.4g}; the model "
                                f"weights may be corrupt or guidance scale too large")
        return out

    return checked
