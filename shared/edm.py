"""EDM (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models").

Names follow the paper's Table 1 and Algorithm 2: ``sigma`` is the noise level of ``x = y + sigma * n``,
``D(x; sigma)`` the denoiser, ``F`` the raw network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from shared.integrators import heun_step
from shared.tensors import per_sample

__all__ = [
    "EDMCoefficients",
    "EDMPrecond",
    "EDMLoss",
    "EDMSampleResult",
    "edm_sigma_steps",
    "edm_sampler",
    "score_from_denoiser",
    "DenoiserScore",
]

Denoiser = Callable[..., Tensor]



def _as_batch_sigma(sigma: Tensor | float, x: Tensor) -> Tensor:
    sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
    if sigma.dim() == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or have shape ({x.shape[0]},), got {tuple(sigma.shape)}")
    return sigma


def _call(fn: Denoiser, x: Tensor, sigma: Tensor, cond: Any, **kwargs: Any) -> Tensor:
    # plain callables without a cond argument stay usable when nothing is conditioned on
    return fn(x, sigma, **kwargs) if cond is None else fn(x, sigma, cond, **kwargs)


class EDMCoefficients(NamedTuple):
    c_skip: Tensor
    c_out: Tensor
    c_in: Tensor
    c_noise: Tensor


class EDMPrecond(nn.Module):
    """``D(x; sigma) = c_skip x + c_out F(c_in x, c_noise, cond)`` with EDM's preconditioning (Table 1)."""

    def __init__(self, net: nn.Module | Callable[..., Tensor], sigma_data: float = 0.5):
        super().__init__()
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        self.net = net
        self.sigma_data = float(sigma_data)

    def coefficients(self, sigma: Tensor) -> EDMCoefficients:
        sd2 = self.sigma_data**2
        denom = (sigma**2 + sd2).sqrt()
        return EDMCoefficients(
            c_skip=sd2 / (sigma**2 + sd2),
            c_out=sigma * self.sigma_data / denom,
            c_in=1.0 / denom,
            c_noise=sigma.log() / 4.0,
        )

    def forward(self, x: Tensor, sigma: Tensor | float, cond: Any = None, **kwargs: Any) -> Tensor:
        sigma = _as_batch_sigma(sigma, x)
        c = self.coefficients(sigma)
        f = self.net(per_sample(c.c_in, x) * x, c.c_noise, cond=cond, **kwargs)
        return per_sample(c.c_skip, x) * x + per_sample(c.c_out, x) * f.to(x.dtype)


def _broadcast_mask(mask: Tensor, x: Tensor) -> Tensor:
    """Append trailing singleton dims so a ``(B, N)``-style mask broadcasts against ``x``."""
    if mask.dim() > x.dim() or mask.shape[0] != x.shape[0]:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast against x {tuple(x.shape)}")
    mask = mask.reshape(*mask.shape, *([1] * (x.dim() - mask.dim())))
    return mask.to(x.dtype).expand_as(x)


class EDMLoss:
    """EDM training loss: ``ln sigma ~ N(P_mean, P_std^2)``, weight ``(sigma^2 + sd^2) / (sigma sd)^2``.

    ``__call__`` returns one loss per sample: the weighted squared error averaged over valid entries. The
    denoiser is called as ``denoiser(x, sigma[, cond][, mask=mask])`` (cond / mask only when given).
    """

    def __init__(self, P_mean: float = -1.2, P_std: float = 1.2, sigma_data: float = 0.5):
        if P_std <= 0 or sigma_data <= 0:
            raise ValueError(f"P_std and sigma_data must be positive, got {P_std}, {sigma_data}")
        self.P_mean = float(P_mean)
        self.P_std = float(P_std)
        self.sigma_data = float(sigma_data)

    def sample_sigma(
        self, batch: int, generator: torch.Generator | None = None, device=None, dtype=None
    ) -> Tensor:
        z = torch.randn(batch, generator=generator, device=device, dtype=dtype)
        return (self.P_mean + self.P_std * z).exp()

    def weight(self, sigma: Tensor) -> Tensor:
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2

    def __call__(
        self,
        denoiser: Denoiser,
        y: Tensor,
        cond: Any = None,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        sigma: Tensor | None = None,
    ) -> Tensor:
        if sigma is None:
            sigma = self.sample_sigma(y.shape[0], generator, y.device, y.dtype)
        sigma = _as_batch_sigma(sigma, y)
        noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        m = None if mask is None else _broadcast_mask(mask, y)
        if m is not None:
            noise = noise * m  # padded entries stay exactly zero, as in the data
        kwargs = {} if mask is None else {"mask": mask}
        d = _call(denoiser, y + per_sample(sigma, y) * noise, sigma, cond, **kwargs)
        sq = (d - y) ** 2
        if m is None:
            loss = sq.flatten(1).mean(1)
        else:
            loss = (sq * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)
        return self.weight(sigma) * loss


def edm_sigma_steps(
    num_steps: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    device=None,
    dtype=torch.float64,
) -> Tensor:
    """Noise levels ``sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min`` followed by ``sigma_N = 0``."""
    if num_steps < 2:
        raise ValueError(f"num_steps must be at least 2, got {num_steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    i = torch.arange(num_steps, device=device, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + i / (num_steps - 1) * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(dtype)


@dataclass
class EDMSampleResult:
    samples: Tensor
    nfe: int
    trajectory: list[Tensor] = field(default_factory=list)


def edm_sampler(
    denoiser: Denoiser,
    latents: Tensor | Sequence[int],
    num_steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    S_churn: float = 0.0,
    S_min: float = 0.0,
    S_max: float = float("inf"),
    S_noise: float = 1.0,
    generator: torch.Generator | None = None,
    cond: Any = None,
    solver: str = "heun",
    progress: bool = False,
    return_trajectory: bool = False,
    device=None,
    dtype=None,
    **model_kwargs: Any,
) -> EDMSampleResult:
    """Algorithm 2 of the EDM paper (``solver="heun"``) or its first-order variant (``solver="euler"``).

    ``latents`` is either a shape or a standard-normal tensor; it is scaled by ``sigma_max`` to start the chain.
    ``denoiser(x, sigma[, cond], **model_kwargs)`` gets ``sigma`` of shape ``(B,)``. Runs under ``no_grad``.
    NFE: ``2 num_steps - 1`` (Heun; the last step to sigma = 0 is Euler) or ``num_steps`` (Euler).
    """
    if solver not in ("heun", "euler"):
        raise ValueError(f"solver must be 'heun' or 'euler', got {solver!r}")
    if isinstance(latents, Tensor):
        z = latents
    else:
        z = torch.randn(tuple(latents), generator=generator, device=device, dtype=dtype or torch.float32)
    sigmas = edm_sigma_steps(num_steps, sigma_min, sigma_max, rho, device=z.device, dtype=z.dtype)
    batch = z.shape[0]
    gamma_max = min(S_churn / num_steps, math.sqrt(2.0) - 1.0)

    def d_of(x: Tensor, s: Tensor) -> Tensor:
        return _call(denoiser, x, s.expand(batch), cond, **model_kwargs)

    x = z * sigmas[0]
    trajectory = [x] if return_trajectory else []
    nfe = 0
    steps = range(num_steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="edm_sampler")
    with torch.no_grad():
        for i in steps:
            x, used = _edm_step(d_of, x, sigmas[i], sigmas[i + 1], gamma_max, S_min, S_max, S_noise, solver,
                                generator)
            nfe += used
            if return_trajectory:
                trajectory.append(x)
    return EDMSampleResult(samples=x, nfe=nfe, trajectory=trajectory)


def _edm_step(d_of, x, s_cur, s_next, gamma_max, S_min, S_max, S_noise, solver, generator) -> tuple[Tensor, int]:
    """One step of Algorithm 2 from ``s_cur`` to ``s_next``; returns the new x and the NFE it used."""
    # stochastic churn: raise the noise level to s_hat by adding fresh noise
    gamma = gamma_max if S_min <= float(s_cur) <= S_max else 0.0
    s_hat = s_cur + gamma * s_cur
    if gamma > 0:
        eps = S_noise * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_hat = x + (s_hat**2 - s_cur**2).sqrt() * eps
    else:
        x_hat = x
    # dx/dsigma = (x - D(x; sigma)) / sigma; the last step (to sigma 0) is Euler, as in EDM
    x_next, evaluations = heun_step(lambda y, s: (y - d_of(y, s)) / s, x_hat, s_hat, s_next,
                                    heun=solver != "euler" and s_next != 0)
    return x_next, evaluations


def score_from_denoiser(denoised: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
    """Tweedie: ``grad log p(x; sigma) = (D(x; sigma) - x) / sigma^2`` for ``x = y + sigma n``."""
    return (denoised - x) / per_sample(_as_batch_sigma(sigma, x), x) ** 2


class DenoiserScore:
    """Score function ``score_fn(x, t)`` of an EDM denoiser, for the SDE samplers.

    Without ``sde``, ``t`` is the EDM noise level itself (a VE process with ``std = t``). With an SDE whose
    marginal is ``x_t = s(t) (y + sigma(t) n)`` (``s = marginal_mean_coeff``, ``s sigma = marginal_std``)
    the score is ``(D(x / s; sigma) - x / s) / (s sigma^2)``.
    """

    def __init__(self, denoiser: Denoiser, sde: Any = None, cond: Any = None):
        self.denoiser = denoiser
        self.sde = sde
        self.cond = cond

    def __call__(self, x: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        cond = self.cond if cond is None else cond
        t = _as_batch_sigma(t, x)
        if self.sde is None:
            scale, sigma = torch.ones_like(t), t
        else:
            scale = torch.as_tensor(self.sde.marginal_mean_coeff(t), device=x.device, dtype=x.dtype)
            std = torch.as_tensor(self.sde.marginal_std(t), device=x.device, dtype=x.dtype)
            scale = scale.expand_as(t)
            sigma = std.expand_as(t) / scale
        y = x / per_sample(scale, x)
        return score_from_denoiser(_call(self.denoiser, y, sigma, cond), y, sigma) / per_sample(scale, x)
