"""Forward SDEs: closed-form marginals against simulation, priors, discrete (score_sde / GDSS) quantities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from shared.sde import SDE, VESDE, VPSDE, SubVPSDE, expand_like

SDES = {
    "vp": VPSDE(),
    "subvp": SubVPSDE(),
    "ve": VESDE(),
    "vp_gdss_x": VPSDE(beta_min=0.1, beta_max=1.0),
    "ve_gdss_adj": VESDE(sigma_min=0.2, sigma_max=1.0),
}


def _t(value: float, n: int = 1, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.full((n,), value, dtype=dtype)


@pytest.mark.parametrize("name", list(SDES))
def test_marginal_matches_simulated_forward_sde(name: str) -> None:
    """Euler–Maruyama paths from a fixed x0 have the closed-form mean m(t) x0 and std std(t).

    The paths start at m(0) x0 + std(0) z (std(0) = sigma_min for VE, 0 otherwise), so this checks drift,
    diffusion and marginal for consistency. Tolerance: 5 standard errors of the Monte-Carlo estimates
    (n = 20000 paths) plus 1% for the O(dt) bias of 1000 Euler steps.
    """
    sde: SDE = SDES[name]
    n, steps, x0 = 20000, 1000, 1.5
    gen = torch.Generator().manual_seed(0)
    t0 = _t(0.0, n)
    x = sde.marginal_mean_coeff(t0) * x0 + sde.marginal_std(t0) * torch.randn(n, generator=gen, dtype=torch.float64)
    checkpoints = {300: 0.3, 1000: 1.0}
    dt = 1.0 / steps
    for i in range(steps):
        f, g = sde.discretize(x, _t(i * dt, n), dt)
        x = x + f + g * torch.randn(n, generator=gen, dtype=torch.float64)
        if i + 1 in checkpoints:
            t = _t(checkpoints[i + 1])
            mean, std = sde.marginal(torch.full((1,), x0, dtype=torch.float64), t)
            std = std.item()
            se_mean, se_std = std / math.sqrt(n), std / math.sqrt(2 * n)
            assert abs(x.mean().item() - mean.item()) < 5 * se_mean + 0.01 * (abs(mean.item()) + std)
            assert abs(x.std().item() - std) < 5 * se_std + 0.01 * std


@pytest.mark.parametrize("name", list(SDES))
def test_prior_logp_matches_scipy_and_prior_sample_has_prior_std(name: str) -> None:
    sde = SDES[name]
    gen = torch.Generator().manual_seed(1)
    z = sde.prior_sample((4000, 3, 2), generator=gen, dtype=torch.float64)
    assert z.shape == (4000, 3, 2) and z.dtype == torch.float64
    # std of 24000 Gaussian draws: relative standard error 1/sqrt(2 * 24000) ~ 0.5%, 5 SE allowed
    assert z.std().item() == pytest.approx(sde.prior_std, rel=0.025)
    expected = stats.norm.logpdf(z.numpy(), scale=sde.prior_std).reshape(4000, -1).sum(-1)
    np.testing.assert_allclose(sde.prior_logp(z).numpy(), expected, rtol=1e-12)


def test_ve_sigma_endpoints_and_gdss_parameters() -> None:
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    for lo, hi in [(0.01, 50.0), (0.2, 1.0)]:
        sde = VESDE(sigma_min=lo, sigma_max=hi)
        np.testing.assert_allclose(sde.marginal_std(t).numpy(), [lo, math.sqrt(lo * hi), hi], rtol=1e-12)
        assert sde.prior_std == hi
        # g^2 = d sigma^2 / dt (the VE marginal variance grows exactly by the integrated g^2)
        h = 1e-6
        tt = torch.tensor([0.3], dtype=torch.float64)
        dvar = (sde.marginal_std(tt + h) ** 2 - sde.marginal_std(tt - h) ** 2) / (2 * h)
        assert sde.diffusion(tt).item() ** 2 == pytest.approx(dvar.item(), rel=1e-6)
    vp = VPSDE(beta_min=0.1, beta_max=1.0)
    # m(1) = exp(-(0.1 + 1.0) / 4) for a linear beta schedule: int_0^1 beta = 0.55
    assert vp.marginal_mean_coeff(_t(1.0)).item() == pytest.approx(math.exp(-0.275), rel=1e-12)


def test_vp_and_subvp_closed_forms_by_hand() -> None:
    vp, sub = VPSDE(), SubVPSDE()
    t = _t(0.5)
    integral = 0.1 * 0.5 + 0.5 * 19.9 * 0.5**2  # int_0^0.5 beta(s) ds = beta_0 t + (beta_1 - beta_0) t^2 / 2
    assert vp.marginal_mean_coeff(t).item() == pytest.approx(math.exp(-0.5 * integral), rel=1e-12)
    assert vp.marginal_std(t).item() == pytest.approx(math.sqrt(1 - math.exp(-integral)), rel=1e-12)
    assert sub.marginal_std(t).item() == pytest.approx(1 - math.exp(-integral), rel=1e-12)
    beta = 0.1 + 0.5 * 19.9
    assert vp.diffusion(t).item() == pytest.approx(math.sqrt(beta), rel=1e-12)
    assert sub.diffusion(t).item() == pytest.approx(math.sqrt(beta * (1 - math.exp(-2 * integral))), rel=1e-12)
    x = torch.ones(1, 2, dtype=torch.float64)
    torch.testing.assert_close(vp.drift(x, t), -0.5 * beta * x)


def test_vp_discrete_chain_matches_score_sde_tables() -> None:
    """Discrete betas equal score_sde's linspace(beta_min/N, beta_max/N, N) at floor(t (N - 1) / T)."""
    N = 50
    sde = VPSDE(N=N)
    table = torch.linspace(0.1 / N, 20.0 / N, N, dtype=torch.float64)
    t = torch.linspace(1.0, 1e-3, N, dtype=torch.float64)
    idx = (t * (N - 1)).long()
    assert idx.tolist() == list(range(N - 1, -1, -1))
    torch.testing.assert_close(sde.discrete_beta(t), table[idx])
    torch.testing.assert_close(sde.langevin_alpha(t), 1 - table[idx])
    x = torch.randn(N, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    f, G = sde.ancestral_discretize(x, t)
    torch.testing.assert_close(f, (torch.sqrt(1 - table[idx]) - 1)[:, None] * x)
    torch.testing.assert_close(G, table[idx].sqrt())
    # reverse-diffusion mean with score s: (2 - sqrt(1 - beta)) x + beta s (score_sde's predictor)
    s = torch.randn(N, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x_mean, _ = sde.reverse_ancestral(x, t, s)
    torch.testing.assert_close(x_mean, (2 - torch.sqrt(1 - table[idx]))[:, None] * x + table[idx][:, None] * s)
    # the chain's total contraction prod(1 - beta_i) approaches exp(-int beta) = m(1)^2 as N grows (O(1/N))
    big = VPSDE(N=4000)
    levels = torch.linspace(1.0, 0.0, 4000, dtype=torch.float64)
    log_prod = torch.log1p(-big.discrete_beta(levels)).sum().item()
    assert log_prod == pytest.approx(2 * math.log(big.marginal_mean_coeff(_t(1.0)).item()), rel=5e-3)


def test_ve_discrete_chain_matches_score_sde_tables() -> None:
    N = 40
    sde = VESDE(N=N)
    sigmas = np.exp(np.linspace(np.log(0.01), np.log(50.0), N))
    t = torch.linspace(1.0, 1e-5, N, dtype=torch.float64)
    x = torch.randn(N, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    f, G = sde.ancestral_discretize(x, t)
    idx = np.arange(N - 1, -1, -1)
    prev = np.where(idx > 0, sigmas[np.maximum(idx - 1, 0)], 0.0)
    assert torch.count_nonzero(f) == 0
    np.testing.assert_allclose(G.numpy(), np.sqrt(sigmas[idx] ** 2 - prev**2), rtol=1e-10)
    assert G[-1].item() == pytest.approx(0.01)  # the last level jumps from sigma_min to 0
    torch.testing.assert_close(sde.langevin_alpha(t), torch.ones_like(t))


def test_subvp_reverse_diffusion_is_euler_maruyama_with_dt_T_over_N() -> None:
    sde = SubVPSDE(N=100)
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.9, 0.5, 0.1, 0.01], dtype=torch.float64)
    f, G = sde.ancestral_discretize(x, t)
    torch.testing.assert_close(f, sde.drift(x, t) / 100)
    torch.testing.assert_close(G, sde.diffusion(t) / 10)


@pytest.mark.parametrize("name", list(SDES))
def test_transition_composes_marginals(name: str) -> None:
    """Forward kernels compose: N(m_s x0, std_s^2) stepped s -> t gives N(m_t x0, std_t^2)."""
    sde = SDES[name]
    s, dt = _t(0.3, 3), 0.25
    x0 = torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    mean_s, std_s = sde.marginal(x0, s)
    mean_t, std_tr = sde.transition(mean_s, s, dt)
    target_mean, target_std = sde.marginal(x0, s + dt)
    torch.testing.assert_close(mean_t, target_mean)
    ratio = sde.marginal_mean_coeff(s + dt) / sde.marginal_mean_coeff(s)
    torch.testing.assert_close(ratio**2 * std_s**2 + std_tr**2, target_std**2)


def test_transition_matches_gdss_closed_forms_backwards() -> None:
    """GDSS's S4 half step (negative dt): VP mean exp(-c) x, std sqrt(1 - exp(2c)),
    c = dt (2 beta_0 + (2t + dt)(beta_1 - beta_0)) / 4; VE mean x, std sqrt(sigma(t)^2 - sigma(t + dt)^2)."""
    t = torch.tensor([1.0, 0.5, 1e-3], dtype=torch.float64)
    dt = -0.5 / 1000
    x = torch.tensor([[1.0], [2.0], [-3.0]], dtype=torch.float64)
    vp = VPSDE()
    c = 0.25 * dt * (2 * 0.1 + (2 * t + dt) * 19.9)
    mean, std = vp.transition(x, t, dt)
    torch.testing.assert_close(mean, torch.exp(-c)[:, None] * x)
    torch.testing.assert_close(std, torch.sqrt(1 - torch.exp(2 * c)))
    ve = VESDE()
    mean, std = ve.transition(x, t, dt)
    torch.testing.assert_close(mean, x)
    torch.testing.assert_close(std, torch.sqrt(ve.sigma(t) ** 2 - ve.sigma(t + dt) ** 2))


@pytest.mark.parametrize("probability_flow", [False, True])
def test_reverse_sde_drift_diffusion_and_discretisation(probability_flow: bool) -> None:
    sde = VPSDE()
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0.1, 0.9, 5, dtype=torch.float64)

    def score_fn(y: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        return -y / expand_like(sde.marginal_std(tt) ** 2, y)

    rev = sde.reverse(score_fn, probability_flow=probability_flow)
    w = 0.5 if probability_flow else 1.0
    g2 = sde.diffusion(t)[:, None] ** 2
    torch.testing.assert_close(rev.drift(x, t), sde.drift(x, t) - w * g2 * score_fn(x, t))
    expected_g = torch.zeros(5, dtype=torch.float64) if probability_flow else sde.diffusion(t)
    torch.testing.assert_close(rev.diffusion(t), expected_g)
    f, G = rev.discretize(x, t, -0.01)
    torch.testing.assert_close(f, -0.01 * rev.drift(x, t))
    torch.testing.assert_close(G, expected_g * 0.1)
    rf, rG = rev.ancestral_discretize(x, t)
    f0, G0 = sde.ancestral_discretize(x, t)
    torch.testing.assert_close(rf, f0 - w * G0[:, None] ** 2 * score_fn(x, t))
    torch.testing.assert_close(rG, torch.zeros_like(G0) if probability_flow else G0)


def test_expand_like_and_bad_input() -> None:
    x = torch.zeros(3, 4, 5)
    assert expand_like(torch.ones(3), x).shape == (3, 1, 1)
    with pytest.raises(ValueError, match=r"\(B,\) tensor"):
        expand_like(torch.ones(2), x)
    with pytest.raises(ValueError, match="1-D"):
        VPSDE().diffusion(torch.tensor(0.5))
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        VESDE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="beta_min <= beta_max"):
        VPSDE(beta_min=2.0, beta_max=1.0)
    with pytest.raises(ValueError, match="positive int"):
        VPSDE(N=0)


def test_float32_and_device_agnostic_creation() -> None:
    sde = VESDE()
    z = sde.prior_sample((2, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    t = torch.full((2,), 0.5)
    assert z.dtype == torch.float32
    assert sde.ancestral_discretize(z, t)[1].dtype == torch.float32
    assert VPSDE().ancestral_discretize(z, t)[1].dtype == torch.float32


def test_discretize_is_euler_maruyama_with_scalar_or_per_sample_steps() -> None:
    sde = VPSDE()
    x = torch.randn(3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    f, G = sde.discretize(x, t, 0.01)
    torch.testing.assert_close(f, 0.01 * sde.drift(x, t))
    torch.testing.assert_close(G, 0.1 * sde.diffusion(t))
    dt = torch.tensor([0.01, 0.04, 0.09], dtype=torch.float64)
    f, G = sde.discretize(x, t, dt)
    torch.testing.assert_close(f, dt[:, None, None] * sde.drift(x, t))
    torch.testing.assert_close(G, dt.sqrt() * sde.diffusion(t))
