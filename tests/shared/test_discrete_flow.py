"""Discrete flows: Kolmogorov equations of the rates, exact-posterior sampling of a correlated target, CE loss."""

from __future__ import annotations

import itertools

import pytest
import torch

from shared.discrete_flow import MaskingDiscreteFlow, UniformDiscreteFlow, discrete_flow_loss, sample_categorical

DTYPE = torch.float64
K = 3
# a correlated (non-factorised) target over two variables with K=3 classes each
JOINT = torch.tensor([[0.30, 0.02, 0.08], [0.05, 0.25, 0.02], [0.03, 0.05, 0.20]], dtype=DTYPE)
JOINT = JOINT / JOINT.sum()
STATES = torch.tensor(list(itertools.product(range(K), repeat=2)))  # (9, 2) joint states, row-major


def conditional(flow, x: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``p_t(x | x1)`` elementwise (broadcasting)."""
    same = (x == x1).to(DTYPE)
    if isinstance(flow, MaskingDiscreteFlow):
        return t * same + (1 - t) * (x == flow.mask_index).to(DTYPE)
    return t * same + (1 - t) / K


def exact_posterior(flow, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``p(x1_d | x_t)`` for every variable d by enumerating the joint target: ``(B, 2, K)``."""
    lik = conditional(flow, x_t[:, None, :], STATES[None], t[:, None, None]).prod(-1)  # (B, 9)
    post = JOINT.flatten() * lik
    post = post / post.sum(1, keepdim=True)
    onehot = torch.nn.functional.one_hot(STATES, K).to(DTYPE)  # (9, 2, K)
    return torch.einsum("bs,sdk->bdk", post, onehot)


# eta > 0 raises the rates near t = 1 and with them the Euler error: kept moderate for the 100-step sampling test
FLOWS = [
    MaskingDiscreteFlow(K), MaskingDiscreteFlow(K, eta=1.0), UniformDiscreteFlow(K), UniformDiscreteFlow(K, eta=0.2)
]
IDS = ["mask", "mask-eta", "uniform", "uniform-eta"]


def _rate_matrix(flow, probs_per_state: torch.Tensor, t: float) -> torch.Tensor:
    """Full ``S x S`` generator of a single variable (rows: from-state; diagonal = minus the exit rate)."""
    states = torch.arange(flow.num_states)
    q = flow.rates(states[:, None], probs_per_state[:, None, :], torch.full((flow.num_states,), t, dtype=DTYPE))[:, 0]
    return q - torch.diag(q.sum(1))


@pytest.mark.parametrize("flow", FLOWS, ids=IDS)
def test_rates_solve_the_kolmogorov_forward_equation(flow):
    """``d/dt p_t = p_t Q_t`` for the marginal path of a one-variable target, with the exact posterior."""
    target = torch.tensor([0.6, 0.3, 0.1], dtype=DTYPE)
    states = torch.arange(flow.num_states)
    for t in (0.1, 0.45, 0.8):
        cond = conditional(flow, states[:, None], torch.arange(K)[None], torch.tensor(t, dtype=DTYPE))  # (S, K)
        p_t = cond @ target
        post = cond * target / p_t[:, None].clamp_min(1e-300)  # p(x1 | x_t = s)
        post[p_t == 0] = 1.0 / K  # unreachable states: any valid distribution
        h = 1e-6
        dp = ((conditional(flow, states[:, None], torch.arange(K)[None], torch.tensor(t + h, dtype=DTYPE))
               - conditional(flow, states[:, None], torch.arange(K)[None], torch.tensor(t - h, dtype=DTYPE)))
              / (2 * h)) @ target
        torch.testing.assert_close(p_t @ _rate_matrix(flow, post, t), dp, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("flow", FLOWS, ids=IDS)
def test_sampling_with_exact_posterior_reproduces_correlated_target(flow):
    n = 20_000
    res = flow.sample(lambda x, t: exact_posterior(flow, x, t).clamp_min(1e-30).log(), (n, 2), steps=100,
                      generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    assert res.nfe == 100
    x = res.samples
    assert x.min() >= 0 and x.max() < K
    freq = torch.bincount(x[:, 0] * K + x[:, 1], minlength=K * K).to(DTYPE) / n
    tv = 0.5 * (freq - JOINT.flatten()).abs().sum().item()
    # sampling noise alone gives TV ~ 0.007 at n = 20k; the Euler bias is O(1/steps) (measured with 200k samples:
    # TV 0.008 -> 0.003 (masking), 0.011 -> 0.002 (uniform) from 50 to 200 steps)
    assert tv < 0.025, (tv, freq.view(K, K), JOINT)
    # the correlation is reproduced, not just the per-variable marginals
    assert freq.view(K, K).diagonal().sum().item() == pytest.approx(JOINT.diagonal().sum().item(), abs=0.02)


def test_masking_states_only_unmask_and_final_argmax():
    flow = MaskingDiscreteFlow(K)
    res = flow.sample(lambda x, t: exact_posterior(flow, x, t).clamp_min(1e-30).log(), (500, 2), steps=20,
                      generator=torch.Generator().manual_seed(1), dtype=DTYPE, return_trajectory=True, final="argmax")
    traj = torch.stack(res.trajectory)  # (21, 500, 2)
    assert torch.all(traj[0] == flow.mask_index) and torch.all(traj[-1] != flow.mask_index)
    was_unmasked = traj[:-1] != flow.mask_index
    assert torch.all(traj[1:][was_unmasked] == traj[:-1][was_unmasked])  # an unmasked variable never changes


def test_sample_xt_marginals():
    g = torch.Generator().manual_seed(2)
    x1 = torch.randint(0, K, (200_000,), generator=g)
    t = torch.full((200_000,), 0.3, dtype=DTYPE)
    xm = MaskingDiscreteFlow(K).sample_xt(x1, t, g)
    assert (xm == K).double().mean().item() == pytest.approx(0.7, abs=0.005)
    assert torch.all((xm == x1) | (xm == K))
    xu = UniformDiscreteFlow(K).sample_xt(x1, t, g)
    assert (xu == x1).double().mean().item() == pytest.approx(0.3 + 0.7 / K, abs=0.005)
    with pytest.raises(ValueError, match="classes"):
        UniformDiscreteFlow(K).sample_xt(torch.tensor([0, K]), torch.ones(2), g)


def test_step_transition_probabilities_match_rates():
    flow = UniformDiscreteFlow(K)
    n = 200_000
    x = torch.zeros(n, dtype=torch.long)
    probs = torch.tensor([0.2, 0.5, 0.3], dtype=DTYPE).expand(n, K)
    t, dt = torch.full((n,), 0.5, dtype=DTYPE), 0.2
    nxt = flow.step(x, probs, t, dt, torch.Generator().manual_seed(3))
    freq = torch.bincount(nxt, minlength=K).to(DTYPE) / n
    jump = dt * probs[0] / (1 - 0.5)  # R(0 -> j) = p1(j) / (1 - t)
    expected = torch.cat([1 - jump[1:].sum().unsqueeze(0), jump[1:]])
    torch.testing.assert_close(freq, expected, atol=0.004, rtol=0)


@pytest.mark.parametrize("flow", FLOWS[::2], ids=IDS[::2])
def test_cross_entropy_is_minimised_by_the_true_posterior(flow):
    g = torch.Generator().manual_seed(4)
    n = 50_000
    x1 = STATES[sample_categorical(JOINT.flatten().expand(n, -1), g)]
    t = torch.rand(n, generator=g, dtype=DTYPE)
    x_t = flow.sample_xt(x1, t, g)
    post = exact_posterior(flow, x_t, t)
    best = discrete_flow_loss(post.clamp_min(1e-30).log(), x1).mean()
    uniform_mix = discrete_flow_loss((0.9 * post + 0.1 / K).log(), x1).mean()
    sharpened = discrete_flow_loss(2 * post.clamp_min(1e-30).log(), x1).mean()
    factorised_prior = discrete_flow_loss(torch.stack([JOINT.sum(1), JOINT.sum(0)]).log().expand(n, 2, K), x1).mean()
    assert best < uniform_mix and best < sharpened and best < factorised_prior


def test_loss_mask_and_shape_checks():
    logits = torch.randn(2, 4, K, generator=torch.Generator().manual_seed(5), dtype=DTYPE)
    x1 = torch.randint(0, K, (2, 4), generator=torch.Generator().manual_seed(6))
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    brute = torch.stack([
        torch.nn.functional.cross_entropy(logits[b][mask[b]], x1[b][mask[b]]) for b in range(2)
    ])
    torch.testing.assert_close(discrete_flow_loss(logits, x1, mask), brute)
    with pytest.raises(ValueError, match="class dim"):
        discrete_flow_loss(logits, x1[:, :3])


def test_tempered_probs_are_powers_of_the_probabilities():
    from shared.discrete_flow import tempered_probs

    p = torch.tensor([[0.6, 0.3, 0.1]])
    sharp = tempered_probs(p.log(), 0.5)
    torch.testing.assert_close(sharp, p ** 2 / (p ** 2).sum(-1, keepdim=True))
    torch.testing.assert_close(tempered_probs(p.log(), 1.0), p)
    with pytest.raises(ValueError, match="temperature"):
        tempered_probs(p.log(), 0.0)


@pytest.mark.parametrize("eta", [0.0, 3.0])
def test_purity_sampling_unmasks_everything_and_keeps_the_marginals(eta):
    """With a model that ignores its input, which tokens go first cannot change the values they take."""
    from shared.discrete_flow import MaskingDiscreteFlow

    p = torch.tensor([0.5, 0.3, 0.2])
    flow = MaskingDiscreteFlow(3, eta=eta)
    g = torch.Generator().manual_seed(0)
    x = torch.full((400, 10), flow.mask_index)
    valid = torch.ones_like(x, dtype=torch.bool)
    valid[:, -2:] = False  # padding takes no part
    steps = 25
    grid = torch.linspace(0, 1, steps + 1)
    probs = p.expand(400, 10, 3)
    for i in range(steps - 1):
        x = flow.purity_step(x, probs, grid[i].expand(400), float(grid[i + 1] - grid[i]), valid, g)
    x = torch.where(valid, flow.finalize(x, probs, g), x)
    assert (x[:, -2:] == flow.mask_index).all() and (x[valid] < 3).all()
    freq = torch.bincount(x[valid], minlength=3).double() / valid.sum()
    sigma = torch.sqrt(p * (1 - p) / valid.sum())
    assert ((freq - p).abs() < 4 * sigma).all(), freq


@pytest.mark.parametrize("eta", [0.0, 2.0, 10.0])
def test_masking_exponential_step_is_the_matrix_exponential_of_the_frozen_generator(eta):
    """Row-by-row against ``expm(dt Q)`` of the rate matrix, for a masked and each unmasked start state."""
    flow = MaskingDiscreteFlow(3, eta=eta)
    probs = torch.tensor([0.5, 0.3, 0.2], dtype=DTYPE)
    t, dt = torch.tensor([0.4], dtype=DTYPE), 0.15
    starts = torch.arange(4)  # classes 0..2 and the mask (3)
    q = flow.rates(starts.unsqueeze(0), probs.expand(1, 4, 3), t.expand(1))[0]  # (4, 4) off-diagonal rates
    q = q - torch.diag(q.sum(-1))
    expected = torch.linalg.matrix_exp(dt * q)
    g = torch.Generator().manual_seed(0)
    n = 40000
    x = starts.repeat(n, 1)  # (n, 4)
    out = flow.step(x, probs.expand(n, 4, 3), t.expand(n), dt, g, method="exponential")
    for k in range(4):
        freq = torch.bincount(out[:, k], minlength=4).double() / n
        p = expected[k].clamp(0.0, 1.0)
        sigma = torch.sqrt(p * (1 - p) / n) + 1e-9
        assert ((freq - expected[k]).abs() < 4.5 * sigma + 1e-12).all(), (k, freq, expected[k])


def test_exponential_steps_keep_the_masking_marginal_at_few_steps():
    """A perfect model: the fraction still masked at t should be 1 - t; frozen-rate Euler with eta = 10 and
    20 steps leaves ~34 % masked at t = 0.95, the exact step ~9 %."""
    flow = MaskingDiscreteFlow(3, eta=10.0)
    g = torch.Generator().manual_seed(1)
    steps, n = 20, 20000
    grid = torch.linspace(0, 1, steps + 1)
    probs = torch.tensor([0.6, 0.4, 0.0]).expand(n, 1, 3)
    masked = {}
    for method in ("euler", "exponential"):
        x = torch.full((n, 1), flow.mask_index)
        for i in range(steps - 1):
            x = flow.step(x, probs, grid[i].expand(n), float(grid[i + 1] - grid[i]), g, method=method)
        masked[method] = float((x == flow.mask_index).float().mean())
        unmasked = x[x < 3]
        share = float((unmasked == 0).float().mean())
        assert abs(share - 0.6) < 0.02 and not (x == 2).any()
    assert masked["exponential"] < 0.12 < 0.3 < masked["euler"]
