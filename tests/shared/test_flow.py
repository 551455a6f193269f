"""Flow matching: analytic marginal velocities of a Gaussian mixture, CFM loss optimum, ODE integration."""

from __future__ import annotations

import math

import pytest
import torch

from shared.flow import (
    CosineInterpolant,
    FlowMatchingLoss,
    Interpolant,
    LinearInterpolant,
    cfm_target,
    integrate_flow,
    velocity_from_x1_prediction,
)

DTYPE = torch.float64
W = torch.tensor([0.2, 0.5, 0.3], dtype=DTYPE)
MU = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]], dtype=DTYPE)
S = torch.tensor([0.3, 0.5, 0.4], dtype=DTYPE)


def sample_mixture(n: int, generator: torch.Generator) -> torch.Tensor:
    k = torch.multinomial(W, n, replacement=True, generator=generator)
    return MU[k] + S[k, None] * torch.randn(n, 2, generator=generator, dtype=DTYPE)


def posterior(interp: Interpolant, x: torch.Tensor, t: torch.Tensor):
    """``E[x1 | x_t]`` and ``E[x0 | x_t]`` for ``x1 ~ mixture``, ``x0 ~ N(0, I)``, ``x_t = a x1 + b x0``.

    Given component k, ``x_t ~ N(a mu_k, V_k I)`` with ``V_k = a^2 s_k^2 + b^2``; both posteriors are linear.
    """
    a, b = interp.alpha(t)[:, None], interp.sigma(t)[:, None]
    var = a**2 * S**2 + b**2  # (B, K)
    resid = x[:, None, :] - a[..., None] * MU  # (B, K, D)
    logr = W.log() - 0.5 * (resid**2).sum(-1) / var - var.log()  # D = 2: normaliser var^(D/2) = var
    r = torch.softmax(logr, dim=1)[..., None]
    e_x1 = (r * (MU + (a * S**2 / var)[..., None] * resid)).sum(1)
    e_x0 = (r * ((b / var)[..., None] * resid)).sum(1)
    return e_x1, e_x0


def exact_velocity(interp: Interpolant):
    def v(x, t):
        e_x1, e_x0 = posterior(interp, x, t)
        return interp.d_alpha(t)[:, None] * e_x1 + interp.d_sigma(t)[:, None] * e_x0

    return v


def assign(y: torch.Tensor) -> torch.Tensor:
    logr = W.log() - 0.5 * ((y[:, None, :] - MU) ** 2).sum(-1) / S**2 - 2 * S.log()
    return logr.argmax(1)


@pytest.mark.parametrize("interp", [LinearInterpolant(), CosineInterpolant()])
def test_schedules_endpoints_and_derivatives(interp):
    t = torch.linspace(0.01, 0.99, 50, dtype=DTYPE)
    h = 1e-6
    torch.testing.assert_close(interp.d_alpha(t), (interp.alpha(t + h) - interp.alpha(t - h)) / (2 * h))
    torch.testing.assert_close(interp.d_sigma(t), (interp.sigma(t + h) - interp.sigma(t - h)) / (2 * h))
    x0, x1 = torch.randn(2, 50, 3, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    torch.testing.assert_close(interp.interpolate(x0, x1, torch.zeros(50, dtype=DTYPE)), x0)
    torch.testing.assert_close(interp.interpolate(x0, x1, torch.ones(50, dtype=DTYPE)), x1)
    # the CFM target is the time derivative of the path
    fd = (interp.interpolate(x0, x1, t + h) - interp.interpolate(x0, x1, t - h)) / (2 * h)
    torch.testing.assert_close(cfm_target(interp, x0, x1, t), fd)


def test_interpolant_rejects_wrong_endpoints():
    with pytest.raises(ValueError, match="alpha"):
        Interpolant(lambda t: t, lambda t: t, torch.ones_like, torch.ones_like)


@pytest.mark.parametrize("interp", [LinearInterpolant(), CosineInterpolant()])
@pytest.mark.parametrize("method,steps", [("euler", 200), ("heun", 40)])
def test_integrating_exact_velocity_reproduces_mixture(interp, method, steps):
    res = integrate_flow(exact_velocity(interp), (20_000, 2), steps=steps, method=method,
                         generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    assert res.nfe == steps * (2 if method == "heun" else 1)
    y = res.samples
    k = assign(y)
    for j in range(3):
        yj = y[k == j]
        assert yj.shape[0] / y.shape[0] == pytest.approx(W[j].item(), abs=0.015)
        torch.testing.assert_close(yj.mean(0), MU[j], atol=0.03, rtol=0)
        torch.testing.assert_close(yj.var(0), S[j].expand(2) ** 2, rtol=0.08, atol=0)


def test_heun_is_second_order_and_euler_first_order():
    # single Gaussian target N(m, s^2): the linear-path flow map is x_1 = m + s x_0 (exact solution)
    m, s = 1.5, 0.4

    def v(x, t):
        tt = t[:, None]
        var = tt**2 * s**2 + (1 - tt) ** 2
        e_x1 = m + tt * s**2 / var * (x - tt * m)
        e_x0 = (1 - tt) / var * (x - tt * m)
        return e_x1 - e_x0

    x0 = torch.randn(100, 1, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    exact = m + s * x0

    def err(method, steps):
        return (integrate_flow(v, x0, steps=steps, method=method).samples - exact).abs().max().item()

    assert err("euler", 20) / err("euler", 40) == pytest.approx(2.0, rel=0.15)
    assert err("heun", 20) / err("heun", 40) == pytest.approx(4.0, rel=0.15)


def test_cfm_loss_is_minimised_by_exact_velocity():
    interp = LinearInterpolant()
    x1 = sample_mixture(40_000, torch.Generator().manual_seed(3))
    loss = FlowMatchingLoss(interp, t_max=0.99)
    v = exact_velocity(interp)

    def mean_loss(model):
        return loss(model, x1, generator=torch.Generator().manual_seed(4)).mean().item()

    exact = mean_loss(v)
    c = 0.1
    gap = mean_loss(lambda x, t: v(x, t) + c) - exact
    assert gap == pytest.approx(c**2, rel=0.05)  # orthogonality: E[(v* - u) | x_t] = 0
    assert mean_loss(lambda x, t: 1.05 * v(x, t)) > exact
    assert mean_loss(lambda x, t: v(x, torch.clamp(t + 0.05, max=1.0))) > exact


@pytest.mark.parametrize("interp", [LinearInterpolant(), CosineInterpolant()])
def test_x1_prediction_gives_the_exact_velocity(interp):
    g = torch.Generator().manual_seed(5)
    x = 2 * torch.randn(64, 2, generator=g, dtype=DTYPE)
    t = 0.98 * torch.rand(64, generator=g, dtype=DTYPE)
    e_x1, _ = posterior(interp, x, t)
    converted = velocity_from_x1_prediction(e_x1, x, t, interpolant=interp)
    torch.testing.assert_close(converted, exact_velocity(interp)(x, t))
    # the loss with prediction="x1" at E[x1 | x_t] equals the velocity loss at the exact velocity
    x1 = sample_mixture(64, g)
    loss_v = FlowMatchingLoss(interp, t_max=0.98)(
        exact_velocity(interp), x1, generator=torch.Generator().manual_seed(6)
    )
    loss_x1 = FlowMatchingLoss(interp, t_max=0.98, prediction="x1")(
        lambda xt, tt: posterior(interp, xt, tt)[0], x1, generator=torch.Generator().manual_seed(6)
    )
    torch.testing.assert_close(loss_v, loss_x1)


def test_dict_states_mask_and_model_kwargs():
    g = torch.Generator().manual_seed(7)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[:, 3:] = False
    x1 = {"pos": torch.randn(4, 5, 3, generator=g, dtype=DTYPE) * mask[..., None],
          "h": torch.randn(4, 5, 2, generator=g, dtype=DTYPE) * mask[..., None]}
    seen = {}

    def model(x, t, cond=None, mask=None):
        seen["cond"], seen["mask"], seen["x"] = cond, mask, x
        return {k: torch.where(mask[..., None], 0.5 * v, 1e6) for k, v in x.items()}

    loss = FlowMatchingLoss()
    out = loss(model, x1, cond="c", mask=mask, generator=torch.Generator().manual_seed(8))
    assert set(out) == {"pos", "h"} and seen["cond"] == "c" and seen["mask"] is mask
    assert all(torch.all(v[:, 3:] == 0) for v in seen["x"].values())  # no source noise on padded nodes
    assert all(torch.isfinite(v).all() and v.shape == (4,) for v in out.values())

    # a dict loss equals the tensor loss of each component with the same t and x0
    t = torch.rand(4, generator=g, dtype=DTYPE)
    x0 = {k: torch.randn(v.shape, generator=g, dtype=DTYPE) for k, v in x1.items()}
    as_dict = loss(lambda x, tt: {k: 0.5 * v for k, v in x.items()}, x1, t=t, x0=x0)
    for k in x1:
        torch.testing.assert_close(as_dict[k], loss(lambda x, tt: 0.5 * x, x1[k], t=t, x0=x0[k]))

    # integration of a dict state: each component follows its own ODE dx/dt = -x  ->  x(1) ~ e^-1 x(0)
    res = integrate_flow(lambda x, t: {k: -v for k, v in x.items()}, x0, steps=200, method="heun")
    for k in x0:
        torch.testing.assert_close(res.samples[k], math.exp(-1) * x0[k], rtol=1e-5, atol=1e-6)


def test_time_sampling_distributions():
    g = torch.Generator().manual_seed(9)
    uni = FlowMatchingLoss(t_min=0.1, t_max=0.9).sample_time(100_000, g, dtype=DTYPE)
    assert uni.min() >= 0.1 and uni.max() <= 0.9 and uni.mean().item() == pytest.approx(0.5, abs=0.005)
    ln = FlowMatchingLoss(time_sampling="logit_normal", logit_mean=0.5, logit_std=1.0).sample_time(100_000, g,
                                                                                                 dtype=DTYPE)
    logit = torch.log(ln / (1 - ln))
    assert logit.mean().item() == pytest.approx(0.5, abs=0.01)
    assert logit.std().item() == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError, match="time_sampling"):
        FlowMatchingLoss(time_sampling="beta")


def test_integrate_flow_trajectory_and_determinism():
    def run():
        return integrate_flow(lambda x, t: -x, (8, 2), steps=5, generator=torch.Generator().manual_seed(10),
                              return_trajectory=True, dtype=DTYPE)

    a, b = run(), run()
    torch.testing.assert_close(a.samples, b.samples, rtol=0, atol=0)
    assert len(a.trajectory) == 6 and a.trajectory[-1] is a.samples and a.nfe == 5
    with pytest.raises(ValueError, match="method"):
        integrate_flow(lambda x, t: x, (2, 2), method="rk5")
