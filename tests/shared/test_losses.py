"""DSM: the irreducible constant for Gaussian data (VP and VE), optimum at the exact score, systems and masks."""

from __future__ import annotations

import pytest
import torch
from scipy.integrate import quad

from shared.losses import dsm_loss, dsm_weight, system_dsm_loss
from shared.sde import VESDE, VPSDE
from shared.system import Component, SDESystem

DTYPE = torch.float64
M, S0 = 0.7, 0.5  # data x0 ~ N(M, S0^2 I)
SDES = [VPSDE(), VESDE(sigma_min=0.01, sigma_max=5.0)]
IDS = ["VP", "VE"]


def exact_score(sde):
    """Score of p_t = N(a M, (a^2 S0^2 + std^2) I)."""

    def score(x, t):
        a, std = sde.marginal_mean_coeff(t)[:, None], sde.marginal_std(t)[:, None]
        return -(x - a * M) / (a**2 * S0**2 + std**2)

    return score


def dsm_constant(sde, t: torch.Tensor, weighting: str) -> torch.Tensor:
    """``E lambda |s* + z / std|^2`` per dim = ``lambda (1 / std^2 - 1 / (a^2 S0^2 + std^2))``."""
    a, std = sde.marginal_mean_coeff(t), sde.marginal_std(t)
    return dsm_weight(sde, t, weighting) * (1 / std**2 - 1 / (a**2 * S0**2 + std**2))


def gaussian_data(n: int, dim: int, seed: int) -> torch.Tensor:
    return M + S0 * torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
@pytest.mark.parametrize("weighting", ["sigma2", "likelihood", "none"])
def test_loss_at_exact_score_equals_the_dsm_constant_at_fixed_times(sde, weighting):
    x0 = gaussian_data(20_000, 4, seed=0)
    for t_val in (0.05, 0.3, 0.8):
        t = torch.full((x0.shape[0],), t_val, dtype=DTYPE)
        loss = dsm_loss(exact_score(sde), x0, sde, t=t, weighting=weighting,
                        generator=torch.Generator().manual_seed(1))
        expected = dsm_constant(sde, t[:1], weighting).item()
        assert loss.mean().item() == pytest.approx(expected, rel=0.03), (t_val, expected)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_expected_loss_over_time_matches_the_integrated_constant(sde):
    x0 = gaussian_data(100_000, 2, seed=2)
    loss = dsm_loss(exact_score(sde), x0, sde, weighting="sigma2", generator=torch.Generator().manual_seed(3))

    def integrand(tv: float) -> float:
        return dsm_constant(sde, torch.tensor([tv], dtype=DTYPE), "sigma2").item()

    expected = quad(integrand, sde.eps, sde.T)[0] / (sde.T - sde.eps)
    assert loss.mean().item() == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_exact_score_beats_perturbed_scores(sde):
    x0 = gaussian_data(20_000, 3, seed=4)
    score = exact_score(sde)

    def mean_loss(fn, t=None):
        return dsm_loss(fn, x0, sde, t=t, generator=torch.Generator().manual_seed(5)).mean().item()

    best = mean_loss(score)
    assert mean_loss(lambda x, t: score(x, t) + 0.05) > best
    assert mean_loss(lambda x, t: 1.05 * score(x, t)) > best
    assert mean_loss(lambda x, t: 0.95 * score(x, t)) > best
    # at fixed t the excess of s* + c is exactly std^2 c^2 (sigma2 weighting): the cross term vanishes in
    # expectation (t = 0.8 keeps std ~ 1 so that its Monte Carlo noise stays small against std^2 c^2)
    t = torch.full((x0.shape[0],), 0.8, dtype=DTYPE)
    c = 0.2
    gap = mean_loss(lambda x, tt: score(x, tt) + c, t) - mean_loss(score, t)
    assert gap == pytest.approx(sde.marginal_std(t[:1]).item() ** 2 * c**2, rel=0.05)


def test_mask_excludes_padded_entries_and_sum_reduction():
    sde = VPSDE()
    x0 = gaussian_data(8, 6, seed=6).reshape(8, 3, 2)
    mask = torch.ones(8, 3, dtype=torch.bool)
    mask[:, 2] = False
    x0 = x0 * mask[..., None]
    seen = {}

    def score(x, t, mask=None):
        seen["x"], seen["mask"] = x, mask
        return torch.where(mask[..., None], -x, 1e9)

    t = torch.full((8,), 0.5, dtype=DTYPE)
    mean_l = dsm_loss(score, x0, sde, t=t, mask=mask, generator=torch.Generator().manual_seed(7))
    assert torch.all(seen["x"][:, 2] == 0) and seen["mask"] is mask and torch.isfinite(mean_l).all()
    sum_l = dsm_loss(score, x0, sde, t=t, mask=mask, reduce_mean=False, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(sum_l, 4 * mean_l)  # 4 valid entries per sample
    with pytest.raises(ValueError, match="weighting"):
        dsm_loss(score, x0, sde, weighting="snr")


def test_system_loss_symmetric_component_matches_analytic_constant():
    """Node features (VP) and a symmetric adjacency (VE) of Gaussian entries, with padded nodes.

    Off-diagonal adjacency entries are i.i.d. N(M, S0^2) mirrored; the diagonal is 0 and gets no noise, so the
    exact per-entry minimiser is the 1-D Gaussian score off the diagonal and 0 on it.
    """
    vp, ve = VPSDE(), VESDE(sigma_min=0.01, sigma_max=5.0)
    system = SDESystem({"x": Component(vp), "adj": Component(ve, symmetric=True)})
    b, n, n_valid = 4000, 5, 4
    g = torch.Generator().manual_seed(8)
    mask = torch.zeros(b, n, dtype=DTYPE)
    mask[:, :n_valid] = 1
    x0 = (M + S0 * torch.randn(b, n, 2, generator=g, dtype=DTYPE)) * mask[..., None]
    upper = (M + S0 * torch.randn(b, n, n, generator=g, dtype=DTYPE)).triu(1)
    adj0 = (upper + upper.transpose(1, 2)) * mask[:, :, None] * mask[:, None, :]
    sx, sa = exact_score(vp), exact_score(ve)

    def score_fn(state, t, mask=None):
        x, adj = state["x"], state["adj"]
        off_diag = 1 - torch.eye(n, dtype=DTYPE)
        s_adj = sa(adj.reshape(b, -1), t).reshape(b, n, n) * off_diag
        s_x = sx(x.reshape(b, -1), t).reshape(b, n, 2)
        assert torch.equal(adj, adj.transpose(1, 2))
        # garbage on padded nodes must not count
        pad = mask[:, :, None] == 0
        return {"x": torch.where(pad, 1e9, s_x), "adj": torch.where(pad | pad.transpose(1, 2), 1e9, s_adj)}

    t = torch.full((b,), 0.3, dtype=DTYPE)
    losses = system_dsm_loss(score_fn, {"x": x0, "adj": adj0}, system, t=t, mask=mask,
                             generator=torch.Generator().manual_seed(9))
    assert set(losses) == {"x", "adj"} and all(v.shape == (b,) for v in losses.values())
    assert losses["x"].mean().item() == pytest.approx(dsm_constant(vp, t[:1], "sigma2").item(), rel=0.03)
    off_fraction = (n_valid - 1) / n_valid  # zero-loss diagonal among n_valid^2 valid entries
    expected_adj = off_fraction * dsm_constant(ve, t[:1], "sigma2").item()
    assert losses["adj"].mean().item() == pytest.approx(expected_adj, rel=0.03)
