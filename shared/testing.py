"""Reusable test helpers: Gaussian mixtures with the exact score of their diffused marginals, sample checks.

Diffusing x0 ~ sum_k w_k N(mu_k, s_k^2 I) with p_t(x | x0) = N(a_t x0, sigma_t^2 I) gives the mixture
sum_k w_k N(a_t mu_k, (a_t^2 s_k^2 + sigma_t^2) I), whose score and log-density are closed-form, so samplers
can be tested against a known target with no network in the loop.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from shared.sde import SDE

__all__ = ["GaussianMixture", "assert_mixture_matches", "mixture_statistics", "energy_distance"]


class GaussianMixture:
    """Mixture of isotropic Gaussians in D dims; data are (B, D) tensors (D = 1 for a 1-D mixture).

    ``means`` is (K,) for a 1-D mixture or (K, D); ``stds`` (K,) are per-component isotropic stds.
    """

    def __init__(self, weights: Sequence[float] | Tensor, means: Sequence | Tensor, stds: Sequence[float] | Tensor):
        w = torch.as_tensor(weights, dtype=torch.float64)
        mu = torch.as_tensor(means, dtype=torch.float64)
        s = torch.as_tensor(stds, dtype=torch.float64)
        if mu.dim() == 1:
            mu = mu[:, None]
        k = w.shape[0]
        if w.dim() != 1 or mu.dim() != 2 or mu.shape[0] != k or s.shape != (k,):
            raise ValueError(
                f"need weights (K,), means (K,) or (K, D), stds (K,); got {w.shape}, {mu.shape}, {s.shape}"
            )
        if (w < 0).any() or not math.isclose(float(w.sum()), 1.0, rel_tol=1e-9) or (s <= 0).any():
            raise ValueError("weights must be non-negative and sum to 1; stds must be positive")
        self.weights, self.means, self.stds = w, mu, s

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """n samples of shape (n, D) and their component labels are drawn from ``generator``."""
        return self.sample_with_labels(n, generator, dtype)[0]

    def sample_with_labels(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
    ) -> tuple[Tensor, Tensor]:
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[labels] + self.stds[labels, None] * z
        return x.to(dtype), labels

    def _diffused(self, x: Tensor, t: Tensor | None, sde: SDE | None) -> tuple[Tensor, Tensor]:
        """Per-sample component means (B, K, D) and variances (B, K) of p_t (of the data if t is None)."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        mu, var = self.means.to(x), (self.stds**2).to(x)
        if t is None:
            return mu.expand(x.shape[0], -1, -1), var.expand(x.shape[0], -1)
        if sde is None:
            raise ValueError("a time t needs the sde that diffuses the mixture")
        a, sig = sde.marginal_mean_coeff(t).to(x), sde.marginal_std(t).to(x)
        return a[:, None, None] * mu, a[:, None] ** 2 * var + sig[:, None] ** 2

    def _component_logpdf(self, x: Tensor, t: Tensor | None, sde: SDE | None) -> tuple[Tensor, Tensor, Tensor]:
        """log(w_k N(x; c_k, v_k I)) (B, K), component centres c_k (B, K, D) and variances v_k (B, K)."""
        mu, var = self._diffused(x, t, sde)
        # |x - c|^2 expanded into matmuls: reductions over a tiny last dim are slow in torch
        sq = (x * x) @ torch.ones(self.dim, 1, dtype=x.dtype, device=x.device)
        cross = torch.bmm(mu, x[:, :, None])[..., 0]
        dist2 = sq - 2 * cross + mu.pow(2) @ torch.ones(self.dim, dtype=x.dtype, device=x.device)
        logn = -0.5 * dist2 / var - 0.5 * self.dim * torch.log(2 * math.pi * var)
        return logn + torch.log(self.weights.to(x)), mu, var

    def log_prob(self, x: Tensor, t: Tensor | None = None, sde: SDE | None = None) -> Tensor:
        """log p_t(x), shape (B,); the data density when ``t`` is None."""
        return torch.logsumexp(self._component_logpdf(x, t, sde)[0], dim=-1)

    def score(self, x: Tensor, t: Tensor | None = None, sde: SDE | None = None) -> Tensor:
        """Exact grad_x log p_t(x) = sum_k r_k(x) (c_k - x) / v_k with posterior responsibilities r_k."""
        logp, mu, var = self._component_logpdf(x, t, sde)
        q = torch.softmax(logp, dim=-1) / var  # r_k / v_k, (B, K)
        total = q @ torch.ones(q.shape[1], 1, dtype=x.dtype, device=x.device)  # sum_k r_k / v_k, (B, 1)
        return torch.bmm(q[:, None, :], mu)[:, 0, :] - x * total

    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior component probabilities under the data distribution, (B, K)."""
        return torch.softmax(self._component_logpdf(x, None, None)[0], dim=-1)


def mixture_statistics(samples: Tensor, gmm: GaussianMixture) -> dict[str, Tensor]:
    """Assign each sample to its most probable component; per component: weight, mean (K, D), variance (K,).

    The variance is the per-coordinate variance averaged over coordinates (isotropic components).
    """
    x = samples.detach().to(torch.float64).reshape(samples.shape[0], -1)
    if not torch.isfinite(x).all():
        raise AssertionError("samples contain non-finite values")
    labels = gmm.responsibilities(x).argmax(-1)
    onehot = torch.nn.functional.one_hot(labels, gmm.n_components).to(x)
    counts = onehot.sum(0)
    safe = counts.clamp_min(1)
    means = onehot.T @ x / safe[:, None]
    sq = (onehot.T @ x.pow(2)) / safe[:, None] - means.pow(2)
    var = sq.mean(-1) * safe / (safe - 1).clamp_min(1)
    return {"weights": counts / x.shape[0], "means": means, "vars": var, "counts": counts}


def assert_mixture_matches(
    samples: Tensor,
    gmm: GaussianMixture,
    weight_tol: float = 0.03,
    mean_tol: float = 0.1,
    var_rtol: float = 0.15,
) -> dict[str, Tensor]:
    """Check samples against a well-separated mixture via nearest-component statistics.

    ``weight_tol``: absolute error of component fractions; ``mean_tol``: max abs error of component means in
    units of that component's std; ``var_rtol``: relative error of component variances. Returns the
    statistics; raises AssertionError with the numbers otherwise.
    """
    st = mixture_statistics(samples, gmm)
    w_err = (st["weights"] - gmm.weights).abs().max().item()
    m_err = ((st["means"] - gmm.means).abs().max(-1).values / gmm.stds).max().item()
    v_err = ((st["vars"] / gmm.stds**2) - 1).abs().max().item()
    if w_err > weight_tol or m_err > mean_tol or v_err > var_rtol:
        raise AssertionError(
            f"samples do not match the mixture: weight err {w_err:.4f} (tol {weight_tol}), mean err {m_err:.4f} "
            f"stds (tol {mean_tol}), var rel err {v_err:.4f} (tol {var_rtol}); "
            f"weights {st['weights'].tolist()}, means {st['means'].tolist()}, vars {st['vars'].tolist()}"
        )
    return st


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Squared energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| (V-statistic) between (n, D) and (m, D) samples."""
    x, y = x.reshape(x.shape[0], -1).double(), y.reshape(y.shape[0], -1).double()
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())
