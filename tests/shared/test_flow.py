"""Flow-matching paths: analytic marginal velocities of a Gaussian mixture; integrating the exact x1 predictor
through the joint flow reproduces the mixture (linear and cosine paths)."""

from __future__ import annotations


import pytest
import torch

from shared.flow import CosineInterpolant, Interpolant, LinearInterpolant
from shared.joint_flow import ContinuousField, JointFlow

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
    # the conditional velocity (the CFM target) is the time derivative of the path
    fd = (interp.interpolate(x0, x1, t + h) - interp.interpolate(x0, x1, t - h)) / (2 * h)
    torch.testing.assert_close(interp.velocity(x0, x1, t), fd)


def test_interpolant_rejects_wrong_endpoints():
    with pytest.raises(ValueError, match="alpha"):
        Interpolant(lambda t: t, lambda t: t, torch.ones_like, torch.ones_like)


def integrate_x1_predictor(interp: Interpolant, steps: int, n: int = 20_000, seed: int = 1) -> torch.Tensor:
    """Euler through :class:`JointFlow` (continuous only) with the exact posterior mean as the x1 prediction."""
    flow = JointFlow(continuous={"x": ContinuousField(interp)}, discrete={})
    g = torch.Generator().manual_seed(seed)
    state = {"x": torch.randn(n, 1, 2, generator=g, dtype=DTYPE), "mask": torch.ones(n, 1, dtype=torch.bool)}

    def model(s, t):
        return {"x": posterior(interp, s["x"][:, 0], t.to(DTYPE))[0][:, None]}

    res = flow.integrate(model, state, torch.linspace(0, 1, steps + 1, dtype=DTYPE), generator=g)
    assert res.nfe == steps
    return res.state["x"][:, 0]


@pytest.mark.parametrize("interp", [LinearInterpolant(), CosineInterpolant()])
def test_integrating_the_exact_x1_prediction_reproduces_the_mixture(interp):
    y = integrate_x1_predictor(interp, 200)
    k = assign(y)
    for j in range(3):
        yj = y[k == j]
        assert yj.shape[0] / y.shape[0] == pytest.approx(W[j].item(), abs=0.015)
        torch.testing.assert_close(yj.mean(0), MU[j], atol=0.03, rtol=0)
        torch.testing.assert_close(yj.var(0), S[j].expand(2) ** 2, rtol=0.08, atol=0)


def test_euler_on_the_x1_prediction_is_first_order():
    # single Gaussian target N(m, s^2): the linear-path flow map is x_1 = m + s x_0 (exact solution); the last step
    # takes the predicted endpoint, so the error comes from the Euler steps before it
    m, s = 1.5, 0.4
    flow = JointFlow(continuous={"x": ContinuousField()}, discrete={})
    x0 = torch.randn(100, 1, 1, generator=torch.Generator().manual_seed(2), dtype=DTYPE)

    def model(state, t):
        tt = t[:, None, None]
        var = tt**2 * s**2 + (1 - tt) ** 2
        return {"x": m + tt * s**2 / var * (state["x"] - tt * m)}

    def err(steps):
        state = {"x": x0, "mask": torch.ones(100, 1, dtype=torch.bool)}
        out = flow.integrate(model, state, torch.linspace(0, 1, steps + 1, dtype=DTYPE)).state["x"]
        return (out - (m + s * x0)).abs().max().item()

    assert err(20) / err(40) == pytest.approx(2.0, rel=0.2)


@pytest.mark.parametrize("interp", [LinearInterpolant(), CosineInterpolant()])
def test_x1_prediction_gives_the_exact_velocity(interp):
    g = torch.Generator().manual_seed(5)
    x = 2 * torch.randn(64, 2, generator=g, dtype=DTYPE)
    t = 0.98 * torch.rand(64, generator=g, dtype=DTYPE)
    e_x1, _ = posterior(interp, x, t)
    torch.testing.assert_close(interp.velocity_from_x1(e_x1, x, t), exact_velocity(interp)(x, t))


def test_linear_closed_form_equals_the_general_formula():
    g = torch.Generator().manual_seed(6)
    x1h, xt = torch.randn(2, 32, 3, generator=g, dtype=DTYPE)
    t = torch.rand(32, generator=g, dtype=DTYPE) * 0.99
    general = Interpolant.velocity_from_x1(LinearInterpolant(), x1h, xt, t)
    torch.testing.assert_close(LinearInterpolant().velocity_from_x1(x1h, xt, t), general)
    as_dict = LinearInterpolant().velocity_from_x1({"a": x1h}, {"a": xt}, t)
    torch.testing.assert_close(as_dict["a"], general)
