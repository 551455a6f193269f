"""The joint continuous + categorical flow: exact posteriors of a two-point data set, couplings, masks, seeds."""

import math

import pytest
import torch

from shared.discrete_flow import MaskingDiscreteFlow, UniformDiscreteFlow
from shared.flow import LinearInterpolant
from shared.joint_flow import ContinuousField, DiscreteField, JointFlow, JointSampler

# two data points: position A with token 0, position B with token 1 (equal weights); one node, D = 2
A, B = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 1.0])


def posterior_model(flow):
    """The exact x1 predictor of the two-point data: E[x1 | x_t] for positions, p(token | x_t) as logits.

    Both fields inform the posterior: p(x1 = k | x_t) ~ N(x_t; t x1_k, (1 - t)^2 I) p(token_t | x1_k)."""
    kind = flow.discrete["token"].flow

    def model(state, t):
        x, tok = state["x"][:, 0], state["token"][:, 0]
        tt = t.clamp_max(1 - 1e-6)[:, None]
        logw = []
        for k, centre in enumerate((A, B)):
            lg = -((x - tt * centre) ** 2).sum(-1) / (2 * (1 - tt[:, 0]) ** 2)
            if isinstance(kind, MaskingDiscreteFlow):
                p_tok = torch.where(tok == kind.mask_index, 1 - tt[:, 0], torch.where(tok == k, tt[:, 0], 0.0))
            else:
                p_tok = torch.where(tok == k, tt[:, 0], 0.0) + (1 - tt[:, 0]) / kind.num_classes
            logw.append(lg + torch.log(p_tok.clamp_min(1e-30)))
        w = torch.softmax(torch.stack(logw, 1), 1)  # (B, 2)
        x1 = w[:, :1] * A + w[:, 1:] * B
        logits = torch.log(torch.cat([w, torch.zeros(len(w), kind.num_classes - 2)], 1).clamp_min(1e-30))
        return {"x": x1[:, None], "token": logits[:, None]}

    return model


def two_point_system(discrete_flow):
    return JointFlow(continuous={"x": ContinuousField(LinearInterpolant())},
                     discrete={"token": DiscreteField(discrete_flow)})


@pytest.mark.parametrize("discrete_flow", [MaskingDiscreteFlow(2), MaskingDiscreteFlow(2, eta=2.0),
                                           UniformDiscreteFlow(3)])
def test_exact_posterior_reproduces_the_coupled_two_point_data(discrete_flow):
    flow = two_point_system(discrete_flow)
    n, g = 4000, torch.Generator().manual_seed(0)
    mask = torch.ones(n, 1, dtype=torch.bool)
    state = {"x": torch.randn(n, 1, 2, generator=g), "mask": mask, **flow.discrete_prior(mask, g)}
    grid = torch.linspace(0, 1, 201)
    res = flow.integrate(posterior_model(flow), state, grid, JointSampler(final="sample"), generator=g)
    x, tok = res.state["x"][:, 0], res.state["token"][:, 0]
    near_a = (x - A).norm(dim=-1) < 0.05
    near_b = (x - B).norm(dim=-1) < 0.05
    assert bool((near_a | near_b).all()), "every sample lands on a data point"
    # the two fields agree (A with token 0, B with token 1): the coupling lives only in the shared posterior
    assert float(((near_a & (tok == 0)) | (near_b & (tok == 1))).float().mean()) > 0.99
    frac_a = float(near_a.float().mean())
    assert abs(frac_a - 0.5) < 4 * math.sqrt(0.25 / n)
    assert res.nfe == 200 and not bool(res.nonfinite.any())


def test_pairwise_field_is_symmetric_and_padding_stays_zero():
    k = 4
    flow = JointFlow(continuous={"x": ContinuousField(LinearInterpolant(), project=lambda x, m: x * m[..., None])},
                     discrete={"node": DiscreteField(MaskingDiscreteFlow(3)),
                               "edge": DiscreteField(MaskingDiscreteFlow(k), pairwise=True)})
    g = torch.Generator().manual_seed(1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)

    def model(state, t):
        b, n = state["mask"].shape
        return {"x": torch.ones(b, n, 3), "node": torch.randn(b, n, 3, generator=g),
                "edge": torch.randn(b, n, n, k, generator=g)}

    state = {"x": torch.randn(2, 5, 3, generator=g) * mask[..., None], "mask": mask, **flow.discrete_prior(mask, g)}
    out = flow.integrate(model, state, torch.linspace(0, 1, 11), generator=g).state
    edge = out["edge"]
    assert torch.equal(edge, edge.transpose(1, 2))
    assert bool((torch.diagonal(edge, dim1=1, dim2=2) == 0).all())
    assert bool((edge[0, 3:] == 0).all() and (edge[0, :, 3:] == 0).all() and (out["node"][0, 3:] == 0).all())
    assert bool((out["edge"] < k).all() and (out["node"] < 3).all()), "no token is left masked at t = 1"
    torch.testing.assert_close(out["x"], torch.ones(2, 5, 3) * mask[..., None])


def test_same_seed_same_samples_and_nonfinite_flagged():
    flow = two_point_system(MaskingDiscreteFlow(2, eta=1.0))
    mask = torch.ones(6, 1, dtype=torch.bool)

    def run(seed, poison=False):
        g = torch.Generator().manual_seed(seed)
        state = {"x": torch.randn(6, 1, 2, generator=g), "mask": mask, **flow.discrete_prior(mask, g)}
        model = posterior_model(flow)

        def maybe_poisoned(s, t):
            out = model(s, t)
            if poison:
                out["x"][2] = float("nan")
            return out

        return flow.integrate(maybe_poisoned, state, torch.linspace(0, 1, 21), generator=g)

    a, b = run(3), run(3)
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    bad = run(3, poison=True)
    assert bad.nonfinite.tolist() == [False, False, True, False, False, False]
    assert bool(torch.isfinite(bad.state["x"]).all())


def test_velocity_correction_is_added_to_the_continuous_velocity():
    flow = JointFlow(continuous={"x": ContinuousField()}, discrete={})
    mask = torch.ones(1, 1, dtype=torch.bool)
    state = {"x": torch.zeros(1, 1, 2), "mask": mask}

    def still(s, t):  # predicts the current point: zero velocity
        return {"x": s["x"].clone()}

    grid = torch.linspace(0, 0.5, 6)  # never reaches t = 1, so no endpoint jump
    res = flow.integrate(still, state, torch.cat([grid, torch.tensor([1.0])]),
                         velocity_correction=lambda key, x, t, s, o: torch.ones_like(x))
    # the last step takes the prediction (the current point): 0.5 of drift at unit speed
    torch.testing.assert_close(res.state["x"], torch.full((1, 1, 2), 0.5))


def test_loss_terms_by_hand():
    flow = JointFlow(continuous={"x": ContinuousField()},
                     discrete={"tok": DiscreteField(MaskingDiscreteFlow(2)),
                               "u": DiscreteField(UniformDiscreteFlow(2))})
    mask = torch.tensor([[True, True, False]])
    x1 = {"x": torch.zeros(1, 3, 2), "tok": torch.tensor([[0, 1, 0]]), "u": torch.tensor([[1, 1, 0]])}
    x_t = {"x": None, "tok": torch.tensor([[2, 1, 2]]), "u": torch.tensor([[0, 1, 1]])}
    out = {"x": torch.tensor([[[1.0, 0.0], [0.0, 2.0], [9.0, 9.0]]]),
           "tok": torch.zeros(1, 3, 2), "u": torch.tensor([[[0.0, math.log(3)]] * 3])}
    terms = flow.loss_terms(out, x1, x_t, mask)
    torch.testing.assert_close(terms["x"], torch.tensor([(1.0 + 4.0) / 2]))
    torch.testing.assert_close(terms["tok"], torch.tensor([math.log(2)]))  # only the masked real token counts
    torch.testing.assert_close(terms["u"], torch.tensor([math.log(4 / 3)]))  # every real token counts


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        JointFlow(continuous={"a": ContinuousField()}, discrete={"a": DiscreteField(MaskingDiscreteFlow(2))})
    with pytest.raises(ValueError, match="at least one"):
        JointFlow({}, {})
    with pytest.raises(ValueError, match="final"):
        JointSampler(final="mode")
    flow = two_point_system(UniformDiscreteFlow(3))
    mask = torch.ones(2, 1, dtype=torch.bool)
    state = {"x": torch.zeros(2, 1, 2), "mask": mask, **flow.discrete_prior(mask)}
    with pytest.raises(ValueError, match="purity"):
        flow.integrate(posterior_model(flow), state, torch.linspace(0, 1, 4), JointSampler(purity=True))
