"""Guidance: CFG limits and batching, condition dropout, and gradient guidance giving exact posterior scores."""

from __future__ import annotations

import pytest
import torch

from shared.edm import edm_sampler
from shared.guidance import ClassifierFreeGuidance, GradientGuidance, drop_condition
from shared.samplers import pc_sample
from shared.sde import VESDE

DTYPE = torch.float64


class CountingModel:
    """A conditional 'score' -(x - mu[c]) / (1 + t) for class labels c, recording the batch sizes it sees."""

    def __init__(self):
        self.mu = torch.tensor([[0.0, 0.0], [2.0, -1.0], [-3.0, 1.0]], dtype=DTYPE)  # class 0 = null
        self.batches = []

    def __call__(self, x, t, cond=None, mask=None):
        self.batches.append(x.shape[0])
        if mask is not None:
            assert mask.shape[0] == x.shape[0]
        return -(x - self.mu[cond]) / (1 + t[:, None])


def test_cfg_scale_zero_and_one_recover_uncond_and_cond_in_one_batched_call():
    model = CountingModel()
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(5, 2, generator=g, dtype=DTYPE), torch.rand(5, generator=g, dtype=DTYPE)
    cond = torch.tensor([1, 2, 1, 2, 2])
    uncond_out = model(x, t, torch.zeros(5, dtype=torch.long))
    cond_out = model(x, t, cond)
    model.batches.clear()
    torch.testing.assert_close(ClassifierFreeGuidance(model, 0.0, null_cond=0)(x, t, cond), uncond_out)
    torch.testing.assert_close(ClassifierFreeGuidance(model, 1.0, null_cond=0)(x, t, cond), cond_out)
    w = 2.5
    guided = ClassifierFreeGuidance(model, w, null_cond=0, cond=cond)(x, t, mask=torch.ones(5, 3))
    torch.testing.assert_close(guided, uncond_out + w * (cond_out - uncond_out))
    assert model.batches == [10, 10, 10]  # one forward of size 2B per call
    # for unit-variance Gaussians the guided score is that of N(w mu_c + (1 - w) mu_u, (1 + t) I)
    tilted = w * model.mu[cond] + (1 - w) * model.mu[0]
    torch.testing.assert_close(guided, -(x - tilted) / (1 + t[:, None]))


def test_cfg_dict_outputs_and_dict_conditions():
    def model(state, t, cond):
        return {"pos": state["pos"] * cond["a"][:, None], "h": state["h"] + cond["b"][:, None]}

    g = torch.Generator().manual_seed(1)
    state = {"pos": torch.randn(4, 3, generator=g), "h": torch.randn(4, 2, generator=g)}
    cond = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([0.5, 0.5, -1.0, 2.0])}
    out = ClassifierFreeGuidance(model, 3.0, null_cond={"a": 0.0, "b": 0.0})(state, torch.zeros(4), cond)
    torch.testing.assert_close(out["pos"], 3.0 * state["pos"] * cond["a"][:, None])
    torch.testing.assert_close(out["h"], state["h"] + 3.0 * cond["b"][:, None])
    with pytest.raises(ValueError, match="condition"):
        ClassifierFreeGuidance(model, 1.0, null_cond=0)(state, torch.zeros(4))


def test_cfg_wraps_an_edm_denoiser_in_the_edm_sampler():
    model = CountingModel()

    def denoiser(x, sigma, cond):  # exact denoiser of N(mu[c], I): shrink towards the class mean
        return model.mu[cond] + (x - model.mu[cond]) / (1 + sigma[:, None] ** 2)

    cond = torch.tensor([1, 2] * 50)
    kwargs = dict(num_steps=10, generator=None, dtype=DTYPE)
    direct = edm_sampler(denoiser, torch.randn(100, 2, generator=torch.Generator().manual_seed(2), dtype=DTYPE),
                         cond=cond, **kwargs)
    guided = edm_sampler(ClassifierFreeGuidance(denoiser, 1.0, null_cond=0),
                         torch.randn(100, 2, generator=torch.Generator().manual_seed(2), dtype=DTYPE),
                         cond=cond, **kwargs)
    torch.testing.assert_close(guided.samples, direct.samples)
    assert guided.nfe == direct.nfe == 19


def test_drop_condition_rate_and_consistency():
    cond = torch.arange(1, 100_001)
    dropped = drop_condition(cond, 0.2, torch.Generator().manual_seed(3), null_cond=0)
    assert (dropped == 0).double().mean().item() == pytest.approx(0.2, abs=0.005)
    assert torch.equal(dropped[dropped != 0], cond[dropped != 0])
    torch.testing.assert_close(drop_condition(cond, 0.2, torch.Generator().manual_seed(3)), dropped)
    assert torch.equal(drop_condition(cond, 0.0), cond) and torch.all(drop_condition(cond, 1.0, null_cond=-1) == -1)
    # dict conditions: one draw per sample shared by all keys; per-sample null embedding
    d = {"y": torch.ones(1000, 3), "z": torch.ones(1000)}
    out = drop_condition(d, 0.5, torch.Generator().manual_seed(4), null_cond={"y": torch.zeros(3), "z": 0.0})
    assert torch.equal(out["y"].sum(1) == 0, out["z"] == 0)
    with pytest.raises(ValueError, match="probability"):
        drop_condition(cond, 1.5)


def _gaussian_setup():
    g = torch.Generator().manual_seed(5)
    mu = torch.tensor([0.5, -1.0, 2.0], dtype=DTYPE)
    L = torch.randn(3, 3, generator=g, dtype=DTYPE)
    cov = L @ L.T + 0.5 * torch.eye(3, dtype=DTYPE)
    A = torch.randn(2, 3, generator=g, dtype=DTYPE)
    return g, mu, cov, A


def test_gradient_guidance_gives_the_exact_posterior_score_of_a_linear_gaussian_model():
    g, mu, cov, A = _gaussian_setup()
    prec = torch.linalg.inv(cov)
    y, s = torch.tensor([1.0, -0.5], dtype=DTYPE), 0.3

    def prior_score(x, t):
        return -(x - mu) @ prec

    guided = GradientGuidance(prior_score, lambda x, t: x @ A.T, target=y, scale=1.0, noise_std=s)
    # posterior N(m_post, C_post): C_post^-1 = C^-1 + A^T A / s^2, m_post = C_post (C^-1 mu + A^T y / s^2)
    post_prec = prec + A.T @ A / s**2
    m_post = torch.linalg.solve(post_prec, prec @ mu + A.T @ y / s**2)
    x = torch.randn(16, 3, generator=g, dtype=DTYPE)
    t = torch.rand(16, generator=g, dtype=DTYPE)
    with torch.no_grad():  # samplers run without grad: the wrapper enables it locally
        out = guided(x, t)
    torch.testing.assert_close(out, -(x - m_post) @ post_prec)
    # per-sample targets and a dict state give the same gradients
    dict_guided = GradientGuidance(lambda st, tt: {"x": prior_score(st["x"], tt)},
                                   lambda st, tt: st["x"] @ A.T, target=y.expand(16, 2), noise_std=s)
    torch.testing.assert_close(dict_guided({"x": x}, t)["x"], out)


def test_gradient_guided_sampler_draws_from_the_exact_posterior():
    """VE diffusion of x0 ~ N(0, 1) with y = x0 + N(0, s^2): p(y | x_t) is Gaussian and known in closed form,

    so guiding the exact prior score with it yields the exact posterior score and pc_sample returns samples of
    x0 | y ~ N(y / (1 + s^2), s^2 / (1 + s^2)).
    """
    sde = VESDE(sigma_min=0.01, sigma_max=20.0)
    y, s = 1.5, 0.5

    def prior_score(x, t):
        return -x / (1 + sde.marginal_std(t)[:, None] ** 2)

    def regressor(x, t):  # E[x0 | x_t]
        return x[:, 0] / (1 + sde.marginal_std(t) ** 2)

    def noise_std(t):  # std of y given x_t
        v = sde.marginal_std(t) ** 2
        return (s**2 + v / (1 + v)).sqrt()

    guided = GradientGuidance(prior_score, regressor, target=y, noise_std=noise_std)
    res = pc_sample(guided, sde, (20_000, 1), steps=500, snr=0.1, generator=torch.Generator().manual_seed(6),
                    dtype=DTYPE)
    x = res.state[:, 0]
    assert x.mean().item() == pytest.approx(y / (1 + s**2), abs=0.02)
    assert x.var().item() == pytest.approx(s**2 / (1 + s**2), rel=0.05)
