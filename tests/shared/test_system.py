"""Systems of SDEs: symmetric noise, node masks, priors and marginal samples of dict states."""

from __future__ import annotations

import math

import pytest
import torch

from shared.sde import VESDE, VPSDE
from shared.system import Component, SDESystem, mask_nodes, mask_symmetric, sym_randn, sym_randn_like

MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)


def _system() -> SDESystem:
    # GDSS's parameters: VP beta 0.1..1 for node features, VE sigma 0.2..1 for the adjacency
    x_sde, adj_sde = VPSDE(beta_min=0.1, beta_max=1.0), VESDE(sigma_min=0.2, sigma_max=1.0)
    return SDESystem({"x": Component(x_sde), "adj": Component(adj_sde, symmetric=True)})


def test_sym_noise_is_symmetric_zero_diagonal_unit_variance() -> None:
    z = sym_randn((2000, 6, 6), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(z, z.transpose(-1, -2), rtol=0, atol=0)
    assert torch.count_nonzero(torch.diagonal(z, dim1=-2, dim2=-1)) == 0
    iu = torch.triu_indices(6, 6, 1)
    upper = z[:, iu[0], iu[1]]  # (2000, 15) independent entries
    n = upper.numel()
    # mean and variance of 30000 N(0, 1) draws: standard errors 1/sqrt(n) and sqrt(2/n); 5 SE allowed
    assert abs(upper.mean().item()) < 5 / math.sqrt(n)
    assert abs(upper.var().item() - 1) < 5 * math.sqrt(2 / n)
    # distinct upper entries are uncorrelated (|corr| < 5 / sqrt(2000) for every pair)
    corr = torch.corrcoef(upper.T) - torch.eye(15, dtype=torch.float64)
    assert corr.abs().max().item() < 5 / math.sqrt(2000)
    like = sym_randn_like(torch.zeros(3, 2, 4, 4, dtype=torch.float32), torch.Generator().manual_seed(1))
    assert like.shape == (3, 2, 4, 4) and like.dtype == torch.float32
    with pytest.raises(ValueError, match="square"):
        sym_randn((2, 3, 4))


def test_masks_zero_padded_rows_and_columns() -> None:
    x = torch.ones(3, 5, 2)
    a = torch.ones(3, 5, 5)
    mx, ma = mask_nodes(x, MASK), mask_symmetric(a, MASK)
    m = MASK.float()
    torch.testing.assert_close(mx, m[:, :, None].expand(3, 5, 2))
    torch.testing.assert_close(ma, m[:, :, None] * m[:, None, :])
    # extra leading channel dims of a symmetric component, e.g. (B, C, N, N)
    ma4 = mask_symmetric(torch.ones(3, 2, 5, 5), MASK)
    torch.testing.assert_close(ma4, (m[:, :, None] * m[:, None, :])[:, None].expand(3, 2, 5, 5))
    assert mask_nodes(x, None) is x
    with pytest.raises(ValueError, match="does not fit component 'feat'"):
        mask_nodes(torch.ones(3, 4, 2), MASK, "feat")
    with pytest.raises(ValueError, match="does not fit"):
        mask_symmetric(torch.ones(2, 5, 5), MASK)


def test_component_noise_is_masked_and_symmetric() -> None:
    comp = Component(VESDE(), symmetric=True)
    z = comp.noise((3, 5, 5), MASK, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, z.transpose(-1, -2), rtol=0, atol=0)
    pair = MASK[:, :, None] & MASK[:, None, :]
    off_diag = pair & ~torch.eye(5, dtype=torch.bool)
    assert torch.count_nonzero(z[~pair]) == 0
    assert torch.count_nonzero(z[off_diag]) == off_diag.sum()
    unmasked = Component(VPSDE(), masked=False).noise((3, 7), MASK, torch.Generator().manual_seed(0))
    assert torch.count_nonzero(unmasked) == 21  # masked=False: the node mask does not apply


def test_prior_sample_shapes_scale_mask_and_seed() -> None:
    system = SDESystem({"x": Component(VPSDE()), "adj": Component(VESDE(sigma_max=5.0), symmetric=True)})
    shapes = {"x": (400, 5, 3), "adj": (400, 5, 5)}
    mask = MASK.repeat(134, 1)[:400]
    s1 = system.prior_sample(shapes, mask, torch.Generator().manual_seed(3), dtype=torch.float64)
    s2 = system.prior_sample(shapes, mask, torch.Generator().manual_seed(3), dtype=torch.float64)
    assert all(torch.equal(s1[k], s2[k]) for k in shapes)
    x, adj = s1["x"], s1["adj"]
    torch.testing.assert_close(adj, adj.transpose(-1, -2), rtol=0, atol=0)
    real_x = x[mask]  # (n_real, 3)
    real_pairs = adj[(mask[:, :, None] & mask[:, None, :]) & ~torch.eye(5, dtype=torch.bool)]
    assert torch.count_nonzero(x[~mask]) == 0
    # prior stds 1 (VP) and sigma_max = 5 (VE off-diagonal entries); 5 relative standard errors allowed
    assert real_x.std().item() == pytest.approx(1.0, rel=5 * math.sqrt(0.5 / real_x.numel()))
    assert real_pairs.std().item() == pytest.approx(5.0, rel=5 * math.sqrt(0.5 / real_pairs.numel()))
    with pytest.raises(ValueError, match="keys"):
        system.prior_sample({"x": (2, 5, 3)})


def test_marginal_sample_is_mean_plus_std_noise() -> None:
    system = _system()
    gen = torch.Generator().manual_seed(0)
    x0 = mask_nodes(torch.randn(3, 5, 4, generator=gen, dtype=torch.float64), MASK)
    a0 = torch.bernoulli(torch.full((3, 5, 5), 0.5, dtype=torch.float64), generator=gen).triu(1)
    a0 = mask_symmetric(a0 + a0.transpose(-1, -2), MASK)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    state_t, noise = system.marginal_sample({"x": x0, "adj": a0}, t, MASK, gen)
    for k, v0 in {"x": x0, "adj": a0}.items():
        sde = system[k].sde
        m, s = sde.marginal_mean_coeff(t), sde.marginal_std(t)
        shape = (3,) + (1,) * (v0.dim() - 1)
        torch.testing.assert_close(state_t[k], m.reshape(shape) * v0 + s.reshape(shape) * noise[k])
    adj_t = state_t["adj"]
    torch.testing.assert_close(adj_t, adj_t.transpose(-1, -2), rtol=0, atol=0)
    assert torch.count_nonzero(torch.diagonal(noise["adj"], dim1=-2, dim2=-1)) == 0
    assert torch.count_nonzero(state_t["x"][~MASK]) == 0
    assert torch.count_nonzero(adj_t[~(MASK[:, :, None] & MASK[:, None, :])]) == 0


def test_system_construction_and_validation() -> None:
    system = SDESystem({"x": VPSDE(), "h": VESDE()})  # bare SDEs become default Components
    assert isinstance(system["x"], Component) and list(system) == ["x", "h"] and len(system) == 2
    assert system.eps == max(VPSDE.eps, VESDE.eps) and system.T == 1.0
    other_T = VPSDE()
    other_T.T = 2.0
    with pytest.raises(ValueError, match="share T"):
        SDESystem({"x": VPSDE(), "y": other_T})
    with pytest.raises(ValueError, match="at least one"):
        SDESystem({})
    with pytest.raises(ValueError, match="needs an SDE"):
        Component("vp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch"):
        system.check_state({"x": torch.zeros(2, 3), "h": torch.zeros(3, 3)})
