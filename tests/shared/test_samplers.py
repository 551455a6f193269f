"""Samplers with exact scores: mixture reproduction, faithfulness to score_sde / GDSS loops, ODE orders,
systems with masks, NFE counts, seeding and trajectories."""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch

from shared.samplers import SampleResult, _langevin, as_system_score, ode_sample, pc_sample, s4_sample, time_grid
from shared.sde import SDE, VESDE, VPSDE, SubVPSDE, expand_like
from shared.system import Component, SDESystem
from shared.testing import GaussianMixture, assert_mixture_matches, energy_distance

F64 = torch.float64
MIX1 = GaussianMixture([0.3, 0.7], [-3.0, 2.0], [0.5, 0.8])
MIX2 = GaussianMixture([0.2, 0.3, 0.5], [[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]], [0.5, 0.6, 0.7])
N_SAMPLES = 3000
SDES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE()}

# Stochastic samplers use 250 steps; Euler's first-order bias on the VE ODE (contraction by ~5000 over
# [eps, 1]) needs 500; Heun / RK4 at 60 / 25 steps are converged to well below the Monte-Carlo error.
SAMPLERS: dict[str, Callable[..., SampleResult]] = {
    "pc_em": lambda *a, **k: pc_sample(*a, 250, predictor="euler_maruyama", corrector=None, **k),
    "pc_em_langevin": lambda *a, **k: pc_sample(*a, 250, predictor="euler_maruyama", corrector="langevin", **k),
    "pc_rd": lambda *a, **k: pc_sample(*a, 250, predictor="reverse_diffusion", corrector=None, **k),
    "pc_rd_langevin": lambda *a, **k: pc_sample(*a, 250, predictor="reverse_diffusion", corrector="langevin", **k),
    "s4": lambda *a, **k: s4_sample(*a, 250, **k),
    "s4_time_power_2": lambda *a, **k: s4_sample(*a, 250, time_power=2.0, **k),
    "ode_euler": lambda *a, **k: ode_sample(*a, 500, method="euler", **k),
    "ode_heun": lambda *a, **k: ode_sample(*a, 60, method="heun", **k),
    "ode_rk4": lambda *a, **k: ode_sample(*a, 25, method="rk4", **k),
    "ode_adaptive": lambda *a, **k: ode_sample(*a, method="adaptive", rtol=1e-5, atol=1e-5, **k),
}


def _tolerances(gmm: GaussianMixture, n: int) -> dict[str, float]:
    """Five Monte-Carlo standard errors of each statistic for the smallest component, plus a discretisation
    allowance (3% of a std for means, 5% for variances) for finite-step samplers.

    weights: SE <= sqrt(1/4n); means: SE = s_k / sqrt(n w_k); variances (pooled over D coordinates):
    relative SE = sqrt(2 / (n w_k D)).
    """
    n_min = n * float(gmm.weights.min())
    return {
        "weight_tol": 5 * math.sqrt(0.25 / n),
        "mean_tol": 5 / math.sqrt(n_min) + 0.03,
        "var_rtol": 5 * math.sqrt(2 / (n_min * gmm.dim)) + 0.05,
    }


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_sampler_reproduces_1d_and_2d_mixtures(sampler: str, sde_name: str) -> None:
    """Both mixtures are sampled in one run as two independent components of a system (exact scores)."""
    sde = SDES[sde_name]
    system = SDESystem({"one_d": sde, "two_d": sde})

    def score_fn(state: dict, t: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        return {"one_d": MIX1.score(state["one_d"], t, sde), "two_d": MIX2.score(state["two_d"], t, sde)}

    shapes = {"one_d": (N_SAMPLES, 1), "two_d": (N_SAMPLES, 2)}
    result = SAMPLERS[sampler](score_fn, system, shapes, generator=torch.Generator().manual_seed(0), dtype=F64)
    for key, gmm in (("one_d", MIX1), ("two_d", MIX2)):
        assert_mixture_matches(result.state[key], gmm, **_tolerances(gmm, N_SAMPLES))


def _gaussian_score(mu: float, s: float, sde: SDE) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Exact score of N(mu, s^2) data diffused by ``sde``."""

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m, sig = expand_like(sde.marginal_mean_coeff(t), x), expand_like(sde.marginal_std(t), x)
        return -(x - m * mu) / (m**2 * s**2 + sig**2)

    return score


def _score_sde_pc_loop(sde: SDE, score, shape, N, snr, scale_eps, seed):
    """Hand-written score_sde / GDSS pc_sampler (ReverseDiffusionPredictor + LangevinCorrector), tables and all."""
    gen = torch.Generator().manual_seed(seed)
    x = sde.prior_std * torch.randn(shape, generator=gen, dtype=F64)
    B = shape[0]
    if isinstance(sde, VPSDE):
        betas = torch.linspace(sde.beta_min / N, sde.beta_max / N, N, dtype=F64)
        alphas = 1.0 - betas
    else:
        sigmas = torch.exp(torch.linspace(math.log(sde.sigma_min), math.log(sde.sigma_max), N, dtype=F64))
    for time in torch.linspace(1.0, sde.eps, N, dtype=F64):
        t = torch.ones(B, dtype=F64) * time
        idx = (t * (N - 1) / 1.0).long()
        alpha = alphas[idx] if isinstance(sde, VPSDE) else torch.ones_like(t)
        grad = score(x, t)
        noise = torch.randn(shape, generator=gen, dtype=F64)
        grad_norm = torch.norm(grad.reshape(B, -1), dim=-1).mean()
        noise_norm = torch.norm(noise.reshape(B, -1), dim=-1).mean()
        step = (snr * noise_norm / grad_norm) ** 2 * 2 * alpha
        x = x + step[:, None] * grad + torch.sqrt(step * 2)[:, None] * noise * scale_eps
        grad = score(x, t)
        noise = torch.randn(shape, generator=gen, dtype=F64)
        if isinstance(sde, VPSDE):
            f, G = torch.sqrt(alphas[idx])[:, None] * x - x, torch.sqrt(betas[idx])
        else:
            adjacent = torch.where(idx == 0, torch.zeros_like(t), sigmas[(idx - 1).clamp_min(0)])
            f, G = torch.zeros_like(x), torch.sqrt(sigmas[idx] ** 2 - adjacent**2)
        x_mean = x - (f - G[:, None] ** 2 * grad)
        x = x_mean + G[:, None] * noise
    return x_mean


@pytest.mark.parametrize("sde", [VPSDE(beta_min=0.1, beta_max=1.0, N=30), VESDE(0.2, 1.0, N=30)], ids=["vp", "ve"])
def test_pc_sampler_matches_reference_score_sde_loop(sde: SDE) -> None:
    """Same draws, same conventions: GDSS's parameters (VP beta 0.1..1 for X, VE sigma 0.2..1 for A)."""
    score = _gaussian_score(0.5, 0.3, sde)
    ref = _score_sde_pc_loop(sde, score, (7, 3), 30, snr=0.2, scale_eps=0.7, seed=4)
    out = pc_sample(score, sde, (7, 3), 30, snr=0.2, scale_eps=0.7, generator=torch.Generator().manual_seed(4),
                    dtype=F64)
    torch.testing.assert_close(out.state, ref, rtol=1e-10, atol=1e-12)
    assert out.nfe == 60


def test_s4_matches_reference_gdss_loop() -> None:
    """A hand-written GDSS S4 step (VP closed forms for the half steps) reproduces s4_sample.

    eps = 1/N makes the last step end exactly at t = 0, as GDSS's N = 1000, eps = 1e-3 does."""
    sde, N, snr, scale_eps, shape = VPSDE(N=40), 40, 0.15, 0.9, (6, 4)
    score = _gaussian_score(-0.4, 0.6, sde)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=gen, dtype=F64)
    alphas = 1.0 - torch.linspace(0.1 / N, 20.0 / N, N, dtype=F64)
    dt = -1.0 / N

    def half_step(y: torch.Tensor, t: torch.Tensor, h: float) -> tuple[torch.Tensor, torch.Tensor]:
        c = 0.25 * h * (2 * 0.1 + (2 * t + h) * 19.9)
        return torch.exp(-c)[:, None] * y, torch.sqrt(1.0 - torch.exp(2.0 * c))

    for time in torch.linspace(1.0, 1.0 / N, N, dtype=F64):
        t = torch.ones(shape[0], dtype=F64) * time
        s = score(x, t)
        z_corr, z1, z2 = (torch.randn(shape, generator=gen, dtype=F64) for _ in range(3))
        score_drift = -sde.diffusion(t)[:, None] ** 2 * s
        step = (snr * z_corr.norm(dim=-1).mean() / s.norm(dim=-1).mean()) ** 2 * 2 * alphas[(t * (N - 1)).long()]
        x = x + step[:, None] * s + torch.sqrt(2 * step)[:, None] * z_corr * scale_eps
        mu, std = half_step(x, t, dt / 2)
        x = mu + std[:, None] * z1 + score_drift * dt
        mu, std = half_step(x, t + dt / 2, dt / 2)
        x = mu + std[:, None] * z2
    out = s4_sample(score, sde, shape, N, snr=snr, scale_eps=scale_eps, eps=1.0 / N,
                    generator=torch.Generator().manual_seed(5), dtype=F64)
    torch.testing.assert_close(out.state, mu, rtol=1e-10, atol=1e-12)
    assert out.nfe == N


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_ode_solvers_converge_at_their_order_to_the_exact_flow(sde: SDE) -> None:
    """For N(mu, s^2) data the probability-flow map is affine: x_eps - m_eps mu = (x_T - m_T mu) sqrt(v_eps / v_T),
    v_t = m_t^2 s^2 + std_t^2. Halving the step must cut the error by ~2 (Euler), ~4 (Heun), ~16 (RK4)."""
    mu, s = 0.7, 0.4
    score = _gaussian_score(mu, s, sde)

    def error(method: str, steps: int | None, **kw) -> float:
        res = ode_sample(score, sde, (64, 2), steps, method=method, return_trajectory=True,
                         generator=torch.Generator().manual_seed(0), dtype=F64, **kw)
        x_T = res.trajectory[0]
        ends = torch.tensor([sde.T, sde.eps], dtype=F64)
        m, sig = sde.marginal_mean_coeff(ends), sde.marginal_std(ends)
        v = m**2 * s**2 + sig**2
        exact = m[1] * mu + (x_T - m[0] * mu) * torch.sqrt(v[1] / v[0])
        return (res.state - exact).abs().max().item()

    for method, (n1, lo, hi) in {"euler": (200, 0.8, 1.3), "heun": (40, 1.6, 2.6), "rk4": (20, 3.3, 5.0)}.items():
        e1, e2 = error(method, n1), error(method, 2 * n1)
        assert lo < math.log2(e1 / e2) < hi, (method, e1, e2)
    assert error("adaptive", None, rtol=1e-8, atol=1e-8) < 1e-5


def _graph_system_problem():
    """Node features X (B, 5, 2) ~ N(-1, 0.5^2) per real entry (VP), adjacency A (B, 5, 5) symmetric with
    off-diagonal real entries N(1, 0.3^2) and zero diagonal (VE); exact entrywise scores."""
    sx, sa = VPSDE(), VESDE(0.01, 10.0)
    system = SDESystem({"x": Component(sx), "adj": Component(sa, symmetric=True)})
    n_nodes = torch.arange(600) % 5 + 1
    mask = torch.arange(5)[None, :] < n_nodes[:, None]
    pair = mask[:, :, None] & mask[:, None, :]
    off = pair & ~torch.eye(5, dtype=torch.bool)
    score_x, score_a = _gaussian_score(-1.0, 0.5, sx), _gaussian_score(1.0, 0.3, sa)

    def score_fn(state: dict, t: torch.Tensor, m: torch.Tensor | None = None) -> dict:
        assert m is not None and torch.equal(m.bool(), mask)
        assert torch.count_nonzero(state["x"][~mask]) == 0 and torch.count_nonzero(state["adj"][~pair]) == 0
        return {"x": score_x(state["x"], t), "adj": score_a(state["adj"], t) * off}

    return system, score_fn, {"x": (600, 5, 2), "adj": (600, 5, 5)}, mask, pair, off


@pytest.mark.parametrize("sampler", ["pc_rd_langevin", "s4", "ode_rk4"])
def test_system_with_symmetric_component_and_mask(sampler: str) -> None:
    system, score_fn, shapes, mask, pair, off = _graph_system_problem()
    res = SAMPLERS[sampler](score_fn, system, shapes, mask=mask, generator=torch.Generator().manual_seed(1),
                            dtype=F64)
    x, adj = res.state["x"], res.state["adj"]
    assert torch.equal(adj, adj.transpose(-1, -2))
    assert torch.count_nonzero(torch.diagonal(adj, dim1=-2, dim2=-1)) == 0
    assert torch.count_nonzero(x[~mask]) == 0 and torch.count_nonzero(adj[~pair]) == 0
    # real entries: 1800 x-values and 2000 independent a-values (upper triangle); 5 SE + 5% for variances
    for values, mu, s in ((x[mask], -1.0, 0.5), (adj[off & torch.ones(5, 5, dtype=torch.bool).triu(1)], 1.0, 0.3)):
        n = values.numel()
        assert abs(values.mean().item() - mu) < 5 * s / math.sqrt(n)
        assert abs(values.var().item() / s**2 - 1) < 5 * math.sqrt(2 / n) + 0.05


@pytest.mark.parametrize(
    "run, expected_nfe",
    [
        (lambda *a, **k: pc_sample(*a, 25, corrector=None, **k), 25),
        (lambda *a, **k: pc_sample(*a, 25, corrector="langevin", n_correct=2, **k), 75),
        (lambda *a, **k: pc_sample(*a, 25, predictor="euler_maruyama", n_correct=1, **k), 50),
        (lambda *a, **k: s4_sample(*a, 25, **k), 25),
        (lambda *a, **k: ode_sample(*a, 25, method="euler", **k), 25),
        (lambda *a, **k: ode_sample(*a, 25, method="heun", **k), 50),
        (lambda *a, **k: ode_sample(*a, 25, method="rk4", **k), 100),
    ],
    ids=["pc", "pc_2corr", "em_corr", "s4", "euler", "heun", "rk4"],
)
def test_nfe_trajectory_and_seeding(run, expected_nfe: int) -> None:
    system, score_fn, shapes, mask, _, _ = _graph_system_problem()
    calls = []

    def counted(state, t, m=None):
        calls.append(t)
        return score_fn(state, t, m)

    kw = dict(mask=mask, dtype=F64, return_trajectory=True)
    a = run(counted, system, shapes, generator=torch.Generator().manual_seed(2), **kw)
    b = run(score_fn, system, shapes, generator=torch.Generator().manual_seed(2), **kw)
    c = run(score_fn, system, shapes, generator=torch.Generator().manual_seed(3), **kw)
    assert a.nfe == expected_nfe == len(calls)
    assert all(t.shape == (600,) for t in calls)
    assert len(a.trajectory) == 26
    assert all(torch.equal(a.state[k], a.trajectory[-1][k]) for k in shapes)
    assert all(torch.equal(a.state[k], b.state[k]) for k in shapes)
    assert not torch.equal(a.state["x"], c.state["x"])


def test_adaptive_ode_counts_every_rhs_call_and_records_accepted_steps() -> None:
    sde = VESDE()
    calls = []

    def score(x, t):
        calls.append(1)
        return _gaussian_score(0.0, 1.0, sde)(x, t)

    res = ode_sample(score, sde, (10, 3), method="adaptive", return_trajectory=True,
                     generator=torch.Generator().manual_seed(0), dtype=F64)
    assert res.nfe == len(calls) > 0
    assert len(res.trajectory) >= 2 and torch.equal(res.trajectory[-1], res.state)
    assert res.state.shape == (10, 3)


def test_denoise_last_returns_the_noise_free_mean() -> None:
    """For VE reverse diffusion the last level jumps from sigma_min to 0: the noisy and the denoised outputs of
    the same run differ by sigma_min * z exactly."""
    sde = VESDE(sigma_min=0.01, sigma_max=50.0)
    score = _gaussian_score(0.0, 1.0, sde)
    kw = dict(corrector=None, dtype=F64)
    mean = pc_sample(score, sde, (2000, 2), 50, generator=torch.Generator().manual_seed(0), **kw).state
    noisy = pc_sample(score, sde, (2000, 2), 50, generator=torch.Generator().manual_seed(0), denoise_last=False,
                      **kw).state
    z = (noisy - mean) / 0.01
    # std of 4000 N(0, 1) draws: 5 standard errors sqrt(1 / 8000)
    assert abs(z.std().item() - 1) < 5 * math.sqrt(1 / 8000)


def test_langevin_step_formula() -> None:
    """step = 2 alpha (snr ||z|| / ||s||)^2: per sample with norm='sample', batch-averaged norms with 'batch'."""
    sde = VPSDE(beta_max=5.0, N=10)
    comp = Component(sde)
    x = torch.zeros(2, 2, dtype=F64)
    score = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=F64)  # norms 5 and 1
    noise = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)  # norms 1 and 2
    t = torch.tensor([0.0, 0.0], dtype=F64)
    alpha = 1 - 0.1 / 10  # 1 - beta_0 of the 10-level chain
    new, mean = _langevin(comp, x, score, t, noise, snr=0.5, scale_eps=1.0, levels=10, norm="sample")
    step = 2 * alpha * torch.tensor([(0.5 * 1 / 5) ** 2, (0.5 * 2 / 1) ** 2], dtype=F64)
    torch.testing.assert_close(mean, step[:, None] * score)
    _, mean_b = _langevin(comp, x, score, t, noise, snr=0.5, scale_eps=1.0, levels=10, norm="batch")
    torch.testing.assert_close(mean_b, 2 * alpha * (0.5 * 1.5 / 3) ** 2 * score)
    # a zero score takes no step (instead of dividing by zero)
    zero, _ = _langevin(comp, x, torch.zeros_like(score), t, noise, 0.5, 1.0, 10, "sample")
    assert torch.count_nonzero(zero) == 0
    del new


def test_per_sample_langevin_norm_in_high_dimension() -> None:
    """Per-sample step sizes depend on the sample's own ||s||, which breaks the corrector's invariance unless
    ||x - mean||^2 concentrates: measured variance bias +31% at D = 16 but +4% at D = 256 (VE, 200 steps).
    Here N(1, 0.5^2 I) in 256 dims must come out with 5 SE + 6% on the variance."""
    sde = VESDE()
    res = pc_sample(_gaussian_score(1.0, 0.5, sde), sde, (64, 256), 200, langevin_norm="sample",
                    generator=torch.Generator().manual_seed(0), dtype=F64)
    n = res.state.numel()
    assert abs(res.state.mean().item() - 1.0) < 5 * 0.5 / math.sqrt(n)
    assert abs(res.state.var().item() / 0.25 - 1) < 5 * math.sqrt(2 / n) + 0.06


def test_plain_tensor_adapter_progress_and_float32() -> None:
    sde = VPSDE()
    score = _gaussian_score(0.0, 1.0, sde)
    system_score = as_system_score(score, key="h")
    x, t = torch.ones(3, 2), torch.full((3,), 0.5)
    torch.testing.assert_close(system_score({"h": x}, t, None)["h"], score(x, t))
    res = pc_sample(score, sde, (4, 3), 30, generator=torch.Generator().manual_seed(0), progress=True,
                    return_trajectory=True)
    assert isinstance(res.state, torch.Tensor) and res.state.dtype == torch.float32 and res.state.shape == (4, 3)
    assert len(res.trajectory) == 31 and all(isinstance(s, torch.Tensor) for s in res.trajectory)


def test_bad_arguments_raise_clear_errors() -> None:
    sde = VPSDE()
    score = _gaussian_score(0.0, 1.0, sde)
    with pytest.raises(ValueError, match="predictor"):
        pc_sample(score, sde, (2, 2), 3, predictor="ddim")
    with pytest.raises(ValueError, match="corrector"):
        pc_sample(score, sde, (2, 2), 3, corrector="ald")
    with pytest.raises(ValueError, match="steps"):
        s4_sample(score, sde, (2, 2), 0)
    with pytest.raises(ValueError, match="method"):
        ode_sample(score, sde, (2, 2), 3, method="rk45")
    with pytest.raises(ValueError, match="langevin_norm"):
        pc_sample(score, sde, (2, 2), 3, langevin_norm="global")
    with pytest.raises(ValueError, match="shape"):
        pc_sample(lambda x, t: x[:, :1], sde, (2, 2), 3)
    system = SDESystem({"x": sde, "y": sde})
    with pytest.raises(ValueError, match="keys"):
        pc_sample(lambda s, t, m: {"x": s["x"]}, system, {"x": (2, 2), "y": (2, 2)}, 3)
    with pytest.raises(ValueError, match="shapes"):
        pc_sample(lambda s, t, m: s, system, {"x": (2, 2)}, 3)
    with pytest.raises(ValueError, match="batch"):
        pc_sample(lambda s, t, m: s, system, {"x": (2, 2), "y": (3, 2)}, 3)
    with pytest.raises(ValueError, match="eps"):
        ode_sample(score, sde, (2, 2), 3, eps=1.5)
    with pytest.raises(ValueError, match="N > beta_max"):
        pc_sample(score, sde, (2, 2), 10)  # score_sde's VP chain: beta_i = beta(t) / N must stay below 1


# ---- shared.testing: the exact mixture scores the sampler tests rely on ----------------------------------


@pytest.mark.parametrize("gmm", [MIX1, MIX2], ids=["1d", "2d"])
@pytest.mark.parametrize("sde_name", list(SDES))
def test_mixture_score_is_the_gradient_of_log_prob(gmm: GaussianMixture, sde_name: str) -> None:
    sde = SDES[sde_name]
    gen = torch.Generator().manual_seed(0)
    x = (4 * torch.randn(64, gmm.dim, generator=gen, dtype=F64)).requires_grad_(True)
    t = torch.rand(64, generator=gen, dtype=F64) * (1 - sde.eps) + sde.eps
    (grad,) = torch.autograd.grad(gmm.log_prob(x, t, sde).sum(), x)
    torch.testing.assert_close(gmm.score(x.detach(), t, sde), grad, rtol=1e-10, atol=1e-12)


def test_mixture_log_prob_matches_scipy_for_data_and_diffused_marginal() -> None:
    from scipy import special, stats

    sde = VPSDE()
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(1), dtype=F64) * 3
    t = torch.full((20,), 0.3, dtype=F64)
    a, s = sde.marginal_mean_coeff(t[:1]).item(), sde.marginal_std(t[:1]).item()
    for tt, scale, extra in ((None, 1.0, 0.0), (t, a, s**2)):
        logs = [
            math.log(float(w)) + stats.norm.logpdf(x.numpy(), scale * mu.numpy(), math.sqrt(scale**2 * sd**2 + extra))
            .sum(-1)
            for w, mu, sd in zip(MIX2.weights, MIX2.means, MIX2.stds.tolist())
        ]
        expected = torch.as_tensor(special.logsumexp(logs, axis=0))
        torch.testing.assert_close(MIX2.log_prob(x, tt, sde), expected, rtol=1e-10, atol=0)


def test_mixture_checks_accept_exact_samples_and_reject_wrong_ones() -> None:
    """Negative control for assert_mixture_matches: exact draws pass, swapped weights or inflated stds fail."""
    gen = torch.Generator().manual_seed(0)
    exact = MIX2.sample(N_SAMPLES, gen)
    assert_mixture_matches(exact, MIX2, **_tolerances(MIX2, N_SAMPLES))
    swapped = GaussianMixture([0.5, 0.3, 0.2], MIX2.means, MIX2.stds).sample(N_SAMPLES, gen)
    wide = GaussianMixture(MIX2.weights, MIX2.means, 1.3 * MIX2.stds).sample(N_SAMPLES, gen)
    for bad in (swapped, wide):
        with pytest.raises(AssertionError, match="do not match"):
            assert_mixture_matches(bad, MIX2, **_tolerances(MIX2, N_SAMPLES))
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture([0.5, 0.6], [0.0, 1.0], [1.0, 1.0])


def test_energy_distance_known_values() -> None:
    # point masses at 0 and d: 2 E|X - Y| - E|X - X'| - E|Y - Y'| = 2 d
    assert energy_distance(torch.zeros(5, 1), torch.full((3, 1), 1.5)) == pytest.approx(3.0)
    x = MIX1.sample(500, torch.Generator().manual_seed(0))
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    same = energy_distance(x, MIX1.sample(500, torch.Generator().manual_seed(1)))
    shifted = energy_distance(x, MIX1.sample(500, torch.Generator().manual_seed(1)) + 1.0)
    assert same < 0.05 < shifted


@pytest.mark.parametrize("sampler", [pc_sample, s4_sample])
def test_snr_per_component_routes_each_value_to_its_component(sampler) -> None:
    # the noise stream is shared, so a component's trajectory depends only on its own snr: with {x: 0.16, adj: 0}
    # x follows the all-0.16 run and adj the all-0 run, bit for bit
    system, score_fn, shapes, mask, _, _ = _graph_system_problem()

    def run(snr):
        return sampler(score_fn, system, shapes, 30, snr=snr, mask=mask, dtype=F64,
                       generator=torch.Generator().manual_seed(3)).state

    both, none, split = run(0.16), run(0.0), run({"x": 0.16, "adj": 0.0})
    assert torch.equal(split["x"], both["x"]) and torch.equal(split["adj"], none["adj"])
    assert not torch.equal(both["adj"], none["adj"])  # the corrector did act on adj
    with pytest.raises(ValueError, match="name exactly the components"):
        run({"x": 0.1})
    with pytest.raises(ValueError, match="finite and >= 0"):
        run({"x": 0.1, "adj": float("nan")})


def test_time_grid_is_uniform_at_power_one_and_finer_near_the_data_above() -> None:
    assert torch.equal(time_grid(1.0, 1e-3, 5), torch.linspace(1.0, 1e-3, 5))
    grid = time_grid(1.0, 1e-3, 5, 2.0, dtype=F64)
    expected = 1e-3 + (1.0 - 1e-3) * torch.tensor([1.0, 0.5625, 0.25, 0.0625, 0.0], dtype=F64)
    assert torch.allclose(grid, expected)
    steps = grid[:-1] - grid[1:]
    assert bool((steps[1:] < steps[:-1]).all())  # each step shorter than the one before: finer near t = eps
    with pytest.raises(ValueError, match="time_power"):
        s4_sample(lambda x, t: -x, VPSDE(), (2, 2), 10, time_power=0.0)
