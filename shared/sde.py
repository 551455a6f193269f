"""Forward SDEs dx = f(x, t) dt + g(t) dw of score-based generative models (Song et al., 2021).

Time ``t`` is a ``(B,)`` tensor (one time per sample); :func:`expand_like` broadcasts it to the data shape.
Besides the continuous-time quantities every SDE exposes the discrete ("ancestral") quantities of the
score_sde / GDSS reference code: ``N`` noise levels indexed by ``floor(t (N - 1) / T)``, the reverse-diffusion
step built from them, and the Langevin step-size factor ``alpha`` (``1 - beta_i`` for VP / sub-VP, 1 for VE).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Callable, Sequence

import torch
from torch import Tensor

from shared.tensors import per_sample

__all__ = ["expand_like", "SDE", "VPSDE", "SubVPSDE", "VESDE", "ReverseSDE"]

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def expand_like(v: Tensor, x: Tensor) -> Tensor:
    """View a ``(B,)`` tensor as ``(B, 1, ..., 1)`` so it broadcasts against ``x`` of shape ``(B, ...)``."""
    if v.dim() != 1 or v.shape[0] != x.shape[0]:
        raise ValueError(f"expected a (B,) tensor with B={x.shape[0]}, got shape {tuple(v.shape)}")
    return per_sample(v, x)


def _check_t(t: Tensor) -> Tensor:
    if not torch.is_tensor(t) or t.dim() != 1:
        raise ValueError(f"time t must be a 1-D (B,) tensor, got {type(t).__name__} {getattr(t, 'shape', '')}")
    return t


def _step_per_sample(dt: Tensor, x: Tensor) -> Tensor:
    # a scalar step broadcasts as is, a (B,) step per sample
    return expand_like(dt, x) if dt.dim() == 1 else dt


def _check_steps(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"number of discretisation steps N must be a positive int, got {n!r}")
    return n


class SDE(ABC):
    """Linear-in-x forward SDE with Gaussian transition kernel p_t(x | x0) = N(m(t) x0, std(t)^2 I)."""

    T: float = 1.0
    eps: float = 1e-3

    def __init__(self, N: int = 1000):
        self.N = _check_steps(N)

    # ---- continuous-time quantities -------------------------------------------------------------------
    @abstractmethod
    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """f(x, t)."""

    @abstractmethod
    def diffusion(self, t: Tensor) -> Tensor:
        """g(t), shape (B,)."""

    @abstractmethod
    def marginal_mean_coeff(self, t: Tensor) -> Tensor:
        """m(t) with E[x_t | x0] = m(t) x0, shape (B,)."""

    @abstractmethod
    def marginal_std(self, t: Tensor) -> Tensor:
        """std(t) of p_t(x | x0), shape (B,)."""

    @property
    @abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the isotropic zero-mean Gaussian prior at t = T."""

    def marginal(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, std) of p_t(x | x0); std has shape (B,) (broadcast with :func:`expand_like`)."""
        _check_t(t)
        return expand_like(self.marginal_mean_coeff(t), x0) * x0, self.marginal_std(t)

    def prior_sample(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Draw from the prior N(0, prior_std^2 I)."""
        if device is None and generator is not None:
            device = generator.device
        return self.prior_std * torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)

    def prior_logp(self, z: Tensor) -> Tensor:
        """log N(z; 0, prior_std^2 I) summed over all but the batch dimension, shape (B,)."""
        d = z[0].numel()
        var = self.prior_std**2
        sq = z.reshape(z.shape[0], -1).pow(2).sum(-1)
        return -0.5 * d * math.log(2 * math.pi * var) - 0.5 * sq / var

    def discretize(self, x: Tensor, t: Tensor, dt: float | Tensor) -> tuple[Tensor, Tensor]:
        """Euler–Maruyama increments over ``dt`` (scalar or (B,)): x_{t+dt} = x + f + expand_like(G, x) * z."""
        _check_t(t)
        dt_t = torch.as_tensor(dt, dtype=x.dtype, device=x.device)
        return self.drift(x, t) * _step_per_sample(dt_t, x), self.diffusion(t) * dt_t.abs().sqrt()

    def transition(self, x: Tensor, t: Tensor, dt: float | Tensor) -> tuple[Tensor, Tensor]:
        """Exact step of the linear (score-free) part from ``t`` to ``t + dt`` as used by GDSS's S4 solver.

        The mean follows the drift ODE exactly, x * m(t + dt) / m(t); the std is that of the forward kernel
        between the two times, sqrt(std(hi)^2 - (m(hi)/m(lo))^2 std(lo)^2). For VP this is GDSS's
        ``sqrt(1 - exp(2 * log_mean_coeff))``, for VE ``sqrt(sigma(t)^2 - sigma(t + dt)^2)``.
        """
        _check_t(t)
        t_to = t + torch.as_tensor(dt, dtype=t.dtype, device=t.device)
        m_from, m_to = self.marginal_mean_coeff(t), self.marginal_mean_coeff(t_to)
        lo, hi = torch.minimum(t, t_to), torch.maximum(t, t_to)
        ratio = self.marginal_mean_coeff(hi) / self.marginal_mean_coeff(lo)
        var = self._raw_var(hi) - ratio**2 * self._raw_var(lo)
        return expand_like(m_to / m_from, x) * x, var.clamp_min(0.0).sqrt()

    def _raw_var(self, t: Tensor) -> Tensor:
        # the closed-form variance without clamping, so transition() stays exact for t slightly below 0
        return self.marginal_std(t) ** 2

    # ---- discrete (score_sde / GDSS) quantities ----------------------------------------------------------
    def timestep_index(self, t: Tensor, N: int | None = None) -> Tensor:
        """Index i = floor(t (N - 1) / T) of the discrete noise level at time t (score_sde convention)."""
        N = self.N if N is None else _check_steps(N)
        return (_check_t(t) * (N - 1) / self.T).long().clamp(0, N - 1)

    def ancestral_discretize(self, x: Tensor, t: Tensor, N: int | None = None) -> tuple[Tensor, Tensor]:
        """Forward increments (f, G) of the discrete chain with N levels; default: Euler–Maruyama, dt = T/N.

        This is what score_sde / GDSS use for SDEs without a dedicated discrete chain (sub-VP).
        """
        N = self.N if N is None else _check_steps(N)
        return self.discretize(x, t, self.T / N)

    def langevin_alpha(self, t: Tensor, N: int | None = None) -> Tensor:
        """Langevin corrector step factor alpha_i, shape (B,): 1 unless the SDE has discrete betas."""
        return torch.ones_like(_check_t(t))

    # ---- reverse time --------------------------------------------------------------------------------
    def reverse_drift(self, x: Tensor, t: Tensor, score: Tensor, probability_flow: bool = False) -> Tensor:
        """Drift of the reverse-time SDE, f - g^2 s (or the probability-flow ODE, f - g^2 s / 2)."""
        g2 = expand_like(self.diffusion(t) ** 2, x)
        return self.drift(x, t) - g2 * score * (0.5 if probability_flow else 1.0)

    def reverse_ancestral(self, x: Tensor, t: Tensor, score: Tensor, N: int | None = None) -> tuple[Tensor, Tensor]:
        """Reverse-diffusion (ancestral) step: x_mean = x - f + G^2 s, x_next = x_mean + G z; returns (x_mean, G)."""
        f, G = self.ancestral_discretize(x, t, N)
        return x - f + expand_like(G**2, x) * score, G

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseSDE":
        """The reverse-time SDE (or probability-flow ODE) driven by ``score_fn(x, t)``."""
        return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
    """dx = [f - g^2 s] dt + g dw_bar (integrate with negative dt); the ODE f - g^2 s / 2 with g = 0 if PF."""

    def __init__(self, sde: SDE, score_fn: ScoreFn, probability_flow: bool = False):
        self.sde, self.score_fn, self.probability_flow = sde, score_fn, probability_flow
        self.T, self.eps, self.N = sde.T, sde.eps, sde.N

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return self.sde.reverse_drift(x, t, self.score_fn(x, t), self.probability_flow)

    def diffusion(self, t: Tensor) -> Tensor:
        g = self.sde.diffusion(t)
        return torch.zeros_like(g) if self.probability_flow else g

    def discretize(self, x: Tensor, t: Tensor, dt: float | Tensor) -> tuple[Tensor, Tensor]:
        """Euler–Maruyama increments of the reverse process for a (negative) step ``dt``."""
        dt_t = torch.as_tensor(dt, dtype=x.dtype, device=x.device)
        return self.drift(x, t) * _step_per_sample(dt_t, x), self.diffusion(t) * dt_t.abs().sqrt()

    def ancestral_discretize(self, x: Tensor, t: Tensor, N: int | None = None) -> tuple[Tensor, Tensor]:
        """score_sde's reverse discretisation: rev_f = f - G^2 s (halved and G = 0 for the PF ODE)."""
        f, G = self.sde.ancestral_discretize(x, t, N)
        rev_f = f - expand_like(G**2, x) * self.score_fn(x, t) * (0.5 if self.probability_flow else 1.0)
        return rev_f, torch.zeros_like(G) if self.probability_flow else G


class VPSDE(SDE):
    """Variance preserving: beta(t) = beta_min + t (beta_max - beta_min), f = -beta x / 2, g = sqrt(beta)."""

    eps = 1e-3

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        super().__init__(N)
        if not (0 <= beta_min <= beta_max and beta_max > 0):
            raise ValueError(f"VPSDE needs 0 <= beta_min <= beta_max, beta_max > 0; got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(beta_min={self.beta_min}, beta_max={self.beta_max}, N={self.N})"

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def _log_mean_coeff(self, t: Tensor) -> Tensor:
        # -1/2 of the integrated beta
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    @property
    def prior_std(self) -> float:
        return 1.0

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return -0.5 * expand_like(self.beta(_check_t(t)), x) * x

    def diffusion(self, t: Tensor) -> Tensor:
        return self.beta(_check_t(t)).sqrt()

    def marginal_mean_coeff(self, t: Tensor) -> Tensor:
        return self._log_mean_coeff(_check_t(t)).exp()

    def marginal_std(self, t: Tensor) -> Tensor:
        return self._raw_var(_check_t(t)).clamp_min(0.0).sqrt()

    def _raw_var(self, t: Tensor) -> Tensor:
        return -torch.expm1(2.0 * self._log_mean_coeff(t))

    def discrete_beta(self, t: Tensor, N: int | None = None) -> Tensor:
        """beta_i of score_sde's ``linspace(beta_min / N, beta_max / N, N)`` at the level of time t."""
        N = self.N if N is None else _check_steps(N)
        if self.beta_max / N >= 1:
            raise ValueError(f"the discrete VP chain needs N > beta_max = {self.beta_max} levels, got N = {N}")
        i = self.timestep_index(t, N).to(t.dtype)
        frac = i / max(N - 1, 1)
        return (self.beta_min + frac * (self.beta_max - self.beta_min)) / N

    def ancestral_discretize(self, x: Tensor, t: Tensor, N: int | None = None) -> tuple[Tensor, Tensor]:
        """DDPM chain x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z: f = (sqrt(alpha_i) - 1) x, G = sqrt(beta_i)."""
        beta = self.discrete_beta(t, N)
        return expand_like(torch.sqrt(1.0 - beta) - 1.0, x) * x, beta.sqrt()

    def langevin_alpha(self, t: Tensor, N: int | None = None) -> Tensor:
        return 1.0 - self.discrete_beta(t, N)


class SubVPSDE(VPSDE):
    """sub-VP: VP drift, g^2 = beta(t) (1 - exp(-2 int_0^t beta)), std(t) = 1 - exp(-int_0^t beta).

    It has no dedicated discrete chain: reverse diffusion is Euler–Maruyama with dt = T/N (as in score_sde),
    while the Langevin factor uses the VP discrete betas (as GDSS's LangevinCorrector does).
    """

    def diffusion(self, t: Tensor) -> Tensor:
        discount = -torch.expm1(4.0 * self._log_mean_coeff(_check_t(t)))
        return (self.beta(t) * discount).sqrt()

    def marginal_std(self, t: Tensor) -> Tensor:
        return -torch.expm1(2.0 * self._log_mean_coeff(_check_t(t)))

    def _raw_var(self, t: Tensor) -> Tensor:
        return torch.expm1(2.0 * self._log_mean_coeff(t)) ** 2

    def ancestral_discretize(self, x: Tensor, t: Tensor, N: int | None = None) -> tuple[Tensor, Tensor]:
        return SDE.ancestral_discretize(self, x, t, N)


class VESDE(SDE):
    """Variance exploding: sigma(t) = sigma_min (sigma_max / sigma_min)^t, f = 0, g = sigma(t) sqrt(2 log ratio).

    Following score_sde, the marginal std is sigma(t) itself (data are taken as smoothed by sigma_min at t = 0),
    so std(0) = sigma_min, std(1) = sigma_max and the prior is N(0, sigma_max^2).
    """

    eps = 1e-5

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        super().__init__(N)
        if not (0 < sigma_min < sigma_max):
            raise ValueError(f"VESDE needs 0 < sigma_min < sigma_max; got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def __repr__(self) -> str:
        return f"VESDE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, N={self.N})"

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        _check_t(t)
        return torch.zeros_like(x)

    def diffusion(self, t: Tensor) -> Tensor:
        return self.sigma(_check_t(t)) * math.sqrt(2.0 * self._log_ratio)

    def marginal_mean_coeff(self, t: Tensor) -> Tensor:
        return torch.ones_like(_check_t(t))

    def marginal_std(self, t: Tensor) -> Tensor:
        return self.sigma(_check_t(t))

    def discrete_sigma(self, index: Tensor, N: int | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """sigma_i of score_sde's geometric ``exp(linspace(log sigma_min, log sigma_max, N))``; 0 for i < 0."""
        N = self.N if N is None else _check_steps(N)
        frac = index.to(dtype or torch.get_default_dtype()) / max(N - 1, 1)
        sig = self.sigma_min * torch.exp(frac * self._log_ratio)
        return torch.where(index < 0, torch.zeros_like(sig), sig)

    def ancestral_discretize(self, x: Tensor, t: Tensor, N: int | None = None) -> tuple[Tensor, Tensor]:
        """SMLD chain: f = 0, G = sqrt(sigma_i^2 - sigma_{i-1}^2) with sigma_{-1} = 0."""
        i = self.timestep_index(t, N)
        sig, prev = self.discrete_sigma(i, N, x.dtype), self.discrete_sigma(i - 1, N, x.dtype)
        return torch.zeros_like(x), (sig**2 - prev**2).sqrt()
