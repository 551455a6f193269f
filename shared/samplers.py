"""Samplers for SDE systems: predictor–corrector, GDSS's S4 solver and probability-flow ODE solvers.

Conventions (shared by all samplers):
- ``score_fn(state: dict, t: Tensor (B,), mask) -> dict`` with the same keys and shapes; one call is one NFE.
  A plain SDE instead of a system makes a one-component system ``{"x": ...}``; ``score_fn(x, t)`` is then
  adapted and the result's state is a tensor.
- Sampling runs under ``torch.no_grad()``: a score that needs gradients (regressor guidance) enables them itself.
- Stochastic samplers follow score_sde / GDSS: scores are evaluated at ``linspace(T, eps, steps)`` and every
  predictor step has length T / steps; the discrete (ancestral) chains use ``steps`` levels. The ODE solvers
  integrate exactly from T to eps.
- Randomness only from ``generator`` (it must live on the sampling device); same seed, same output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from shared.integrators import heun_step
from shared.sde import SDE, expand_like
from shared.system import Component, SDESystem

__all__ = ["SampleResult", "as_system_score", "pc_sample", "sample", "s4_sample", "ode_sample", "time_grid"]

State = dict[str, Tensor]
SystemScoreFn = Callable[[State, Tensor, "Tensor | None"], State]


@dataclass
class SampleResult:
    """Final ``state`` (a dict, or a tensor for a plain SDE), score evaluations ``nfe``, optional ``trajectory``.

    ``trajectory[0]`` is the prior draw and ``trajectory[-1]`` the returned state.
    """

    state: Any
    nfe: int
    trajectory: list[Any] | None = None


def as_system_score(score_fn: Callable[[Tensor, Tensor], Tensor], key: str = "x") -> SystemScoreFn:
    """Adapt ``score_fn(x, t)`` of a single tensor to the system signature ``(state, t, mask) -> dict``."""

    def system_score(state: State, t: Tensor, mask: Tensor | None = None) -> State:
        return {key: score_fn(state[key], t)}

    return system_score


class _CountedScore:
    """Calls the system score, checks its output and counts NFEs; masks the score like the state."""

    def __init__(self, score_fn: SystemScoreFn, system: SDESystem, mask: Tensor | None):
        self.score_fn, self.system, self.mask, self.nfe = score_fn, system, mask, 0

    def __call__(self, state: State, t: Tensor) -> State:
        out = self.score_fn(state, t, self.mask)
        self.nfe += 1
        if not isinstance(out, Mapping) or set(out) != set(state):
            got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
            raise ValueError(f"score_fn must return a dict with keys {sorted(state)}, got {got}")
        for k, v in out.items():
            if v.shape != state[k].shape:
                raise ValueError(f"score_fn output {k!r} has shape {tuple(v.shape)}, expected {tuple(state[k].shape)}")
        return self.system.apply_mask(out, self.mask)


@dataclass
class _Setup:
    system: SDESystem
    shapes: dict[str, tuple[int, ...]]
    score: _CountedScore
    single: bool
    device: torch.device
    dtype: torch.dtype
    batch: int
    eps: float


def _setup(
    score_fn: Callable,
    system: SDESystem | SDE,
    shapes: Mapping[str, Sequence[int]] | Sequence[int],
    mask: Tensor | None,
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
    eps: float | None,
) -> _Setup:
    single = isinstance(system, SDE)
    if single:
        system = SDESystem({"x": Component(system, masked=mask is not None)})
        shapes = {"x": tuple(shapes)}  # type: ignore[arg-type]
        score_fn = as_system_score(score_fn)
    if not isinstance(system, SDESystem):
        raise ValueError(f"system must be an SDESystem or an SDE, got {type(system).__name__}")
    if not isinstance(shapes, Mapping) or set(shapes) != set(system):
        raise ValueError(f"shapes must be a dict with keys {sorted(system)}, got {shapes!r}")
    shapes = {k: tuple(int(d) for d in s) for k, s in shapes.items()}
    batch = {s[0] for s in shapes.values() if len(s) > 0}
    if len(batch) != 1 or any(len(s) == 0 for s in shapes.values()):
        raise ValueError(f"all shapes need the same batch size in dim 0, got {shapes}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    device = torch.device(device)
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"generator lives on {generator.device}, sampling runs on {device}")
    eps = system.eps if eps is None else float(eps)
    if not 0 <= eps < system.T:
        raise ValueError(f"eps must lie in [0, T={system.T}), got {eps}")
    if mask is not None:
        mask = mask.to(device)
    return _Setup(
        system, shapes, _CountedScore(score_fn, system, mask), single, device,
        dtype or torch.get_default_dtype(), batch.pop(), eps,
    )


def time_grid(T: float, eps: float, steps: int, power: float = 1.0, *, device=None,
              dtype: torch.dtype | None = None) -> Tensor:
    """``steps`` times from T down to eps: uniform for ``power`` 1 (score_sde / GDSS), else
    t_i = eps + (T - eps) (1 - i / (steps - 1))^power (p > 1: finer near the data)."""
    if power == 1.0 or steps == 1:
        return torch.linspace(T, eps, steps, device=device, dtype=dtype)
    u = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)  # on the CPU: not every device has float64
    return (eps + (T - eps) * (1.0 - u) ** power).to(device=device, dtype=dtype or torch.get_default_dtype())


def _check_steps(steps: int, name: str = "steps") -> int:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"{name} must be a positive int, got {steps!r}")
    return steps


def _progress(it: Iterable, enabled: bool, desc: str) -> Iterable:
    if not enabled:
        return it
    from tqdm.auto import tqdm  # only imported on request: shared/ otherwise needs torch/numpy/scipy only

    return tqdm(it, desc=desc, leave=False)


def _finish(setup: _Setup, state: State, nfe: int, trajectory: list[State] | None) -> SampleResult:
    if setup.single:
        state = state["x"]
        trajectory = None if trajectory is None else [s["x"] for s in trajectory]
    return SampleResult(state, nfe, trajectory)


def _langevin(
    comp: Component,
    x: Tensor,
    score: Tensor,
    t: Tensor,
    noise: Tensor,
    snr: float,
    scale_eps: float,
    levels: int,
    norm: str,
) -> tuple[Tensor, Tensor]:
    """One Langevin correction: step = 2 alpha (snr ||z|| / ||s||)^2; returns (x_new, x_mean).

    Norms are per sample over all entries; with ``norm="batch"`` they are then averaged over the batch
    (score_sde / GDSS), with ``"sample"`` each sample keeps its own step. A per-sample step depends on the
    sample's own ||s|| and so biases low-dimensional data (a 16-D Gaussian came out with +31% variance, a
    256-D one with +4%); "batch" is the default. A zero score means no step.
    """
    b = x.shape[0]
    g = torch.linalg.vector_norm(score.reshape(b, -1), dim=-1)
    z = torch.linalg.vector_norm(noise.reshape(b, -1), dim=-1)
    if norm == "batch":
        g, z = g.mean().expand(b), z.mean().expand(b)
    ratio = torch.where(g > 0, snr * z / torch.where(g > 0, g, torch.ones_like(g)), torch.zeros_like(g))
    step = 2.0 * comp.sde.langevin_alpha(t, levels).to(x.dtype) * ratio**2
    x_mean = x + expand_like(step, x) * score
    return x_mean + expand_like(torch.sqrt(2.0 * step), x) * noise * scale_eps, x_mean


def _check_langevin(snr: float | Mapping[str, float], scale_eps: float, norm: str) -> None:
    values = list(snr.values()) if isinstance(snr, Mapping) else [snr]
    if not all(math.isfinite(v) and v >= 0 for v in values) or not (math.isfinite(scale_eps) and scale_eps >= 0):
        raise ValueError(f"snr and scale_eps must be finite and >= 0, got {snr}, {scale_eps}")
    if norm not in ("batch", "sample"):
        raise ValueError(f"langevin_norm must be 'batch' or 'sample', got {norm!r}")


def _per_component(snr: float | Mapping[str, float], keys) -> dict[str, float]:
    """One Langevin snr per component: a float for all, or a mapping naming every component (a system of SDEs
    whose parts learn at different rates may need different corrector strengths, e.g. GDSS's node features)."""
    keys = list(keys)
    if not isinstance(snr, Mapping):
        return {k: float(snr) for k in keys}
    if set(snr) != set(keys):
        raise ValueError(f"snr per component must name exactly the components {keys}, got {sorted(snr)}")
    return {k: float(snr[k]) for k in keys}


def pc_sample(
    score_fn: Callable,
    system: SDESystem | SDE,
    shapes: Mapping[str, Sequence[int]] | Sequence[int],
    steps: int,
    *,
    predictor: Literal["reverse_diffusion", "euler_maruyama"] = "reverse_diffusion",
    corrector: Literal["langevin"] | None = "langevin",
    snr: float | Mapping[str, float] = 0.16,
    scale_eps: float = 1.0,
    n_correct: int = 1,
    langevin_norm: Literal["batch", "sample"] = "batch",
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    eps: float | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    denoise_last: bool = True,
    return_trajectory: bool = False,
    progress: bool = False,
) -> SampleResult:
    """Predictor–corrector sampling of a system (GDSS's ``pc_sampler`` / score_sde's ``pc_sampler``).

    At each time of ``linspace(T, eps, steps)``: ``n_correct`` Langevin corrections, then one predictor step
    (reverse diffusion = ancestral step of the ``steps``-level discrete chain; Euler–Maruyama = reverse SDE step
    of length T / steps). All components are updated from the same score call (one NFE per update), with
    masked (and, for symmetric components, symmetric) noise. With ``denoise_last`` the noise-free mean of the
    final predictor step is returned. NFE = steps * (1 + n_correct) with a corrector, else steps.
    """
    _check_steps(steps)
    if predictor not in ("reverse_diffusion", "euler_maruyama"):
        raise ValueError(f"predictor must be 'reverse_diffusion' or 'euler_maruyama', got {predictor!r}")
    if corrector not in ("langevin", None, "none"):
        raise ValueError(f"corrector must be 'langevin' or None, got {corrector!r}")
    n_correct = n_correct if corrector == "langevin" else 0
    if not isinstance(n_correct, int) or n_correct < 0:
        raise ValueError(f"n_correct must be a non-negative int, got {n_correct!r}")
    _check_langevin(snr, scale_eps, langevin_norm)
    su = _setup(score_fn, system, shapes, mask, generator, device, dtype, eps)
    sys_, score, m = su.system, su.score, su.score.mask
    snrs = _per_component(snr, sys_.keys())
    dt = sys_.T / steps

    with torch.no_grad():
        state = sys_.prior_sample(su.shapes, m, generator, su.device, su.dtype)
        trajectory = [state] if return_trajectory else None
        times = torch.linspace(sys_.T, su.eps, steps, device=su.device, dtype=su.dtype)
        mean = state
        for i in _progress(range(steps), progress, "PC sampling"):
            t = times[i].expand(su.batch)
            for _ in range(n_correct):
                s, z = score(state, t), sys_.noise_like(state, m, generator)
                state = {
                    k: _langevin(c, state[k], s[k], t, z[k], snrs[k], scale_eps, steps, langevin_norm)[0]
                    for k, c in sys_.items()
                }
            s, z = score(state, t), sys_.noise_like(state, m, generator)
            mean, new = {}, {}
            for k, c in sys_.items():
                x = state[k]
                if predictor == "reverse_diffusion":
                    mean[k], G = c.sde.reverse_ancestral(x, t, s[k], steps)
                else:
                    mean[k] = x - c.sde.reverse_drift(x, t, s[k]) * dt
                    G = c.sde.diffusion(t) * math.sqrt(dt)
                new[k] = mean[k] + expand_like(G, x) * z[k]
            state, mean = sys_.apply_mask(new, m), sys_.apply_mask(mean, m)
            if trajectory is not None and i < steps - 1:
                trajectory.append(state)
        final = mean if denoise_last else state
        if trajectory is not None:
            trajectory.append(final)
    return _finish(su, final, score.nfe, trajectory)


sample = pc_sample


def s4_sample(
    score_fn: Callable,
    system: SDESystem | SDE,
    shapes: Mapping[str, Sequence[int]] | Sequence[int],
    steps: int,
    *,
    snr: float | Mapping[str, float] = 0.1,
    scale_eps: float = 1.0,
    langevin_norm: Literal["batch", "sample"] = "batch",
    time_power: float = 1.0,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    eps: float | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    denoise_last: bool = True,
    return_trajectory: bool = False,
    progress: bool = False,
) -> SampleResult:
    """GDSS's S4 solver (Jo et al., 2022, Sec. 3.3 / App.): one score evaluation per step, symmetric splitting.

    The reverse SDE dx = [f - g^2 s] dt + g dw_bar is split into its linear part (f dt + g dw_bar, solvable
    exactly for these SDEs) and the score part (-g^2 s dt). At each time t of ``linspace(T, eps, steps)``,
    with dt = -T / steps (shortened to end at t = 0 where t < T / steps) and the score s computed once at
    (x, t):

    1. correction: a Langevin step with the same s (step 2 alpha (snr ||z|| / ||s||)^2, noise scaled by
       ``scale_eps``), as in the PC corrector;
    2. half step of the linear part t -> t + dt/2: x = x m(t + dt/2) / m(t) + std_kernel * z
       (see :meth:`SDE.transition`);
    3. full step of the score part with the score from before the correction: x += -g(t)^2 s dt;
    4. half step of the linear part t + dt/2 -> t + dt; its mean is the denoised output of the last step.

    NFE = steps (GDSS reports 0 for S4; one call here scores all components at once).

    ``time_power`` p != 1 (our addition, not in GDSS) places the times at t_i = eps + (T - eps)(1 - i/(steps-1))^p,
    finer near the data for p > 1; each step then runs from t_i to t_{i+1} (the last one to t = 0).
    """
    _check_steps(steps)
    _check_langevin(snr, scale_eps, langevin_norm)
    if not (math.isfinite(time_power) and time_power > 0):
        raise ValueError(f"time_power must be a finite number > 0, got {time_power}")
    su = _setup(score_fn, system, shapes, mask, generator, device, dtype, eps)
    sys_, score, m = su.system, su.score, su.score.mask
    snrs = _per_component(snr, sys_.keys())

    with torch.no_grad():
        state = sys_.prior_sample(su.shapes, m, generator, su.device, su.dtype)
        trajectory = [state] if return_trajectory else None
        times = time_grid(sys_.T, su.eps, steps, time_power, device=su.device, dtype=su.dtype)
        grid = times.tolist()
        mean = state
        for i in _progress(range(steps), progress, "S4 sampling"):
            t = times[i].expand(su.batch)
            if time_power == 1.0:  # GDSS: steps of T / steps
                dt = -min(sys_.T / steps, grid[i])  # never step past t = 0 (VP's beta(t) turns negative there)
            else:
                dt = (grid[i + 1] if i + 1 < steps else 0.0) - grid[i]
            t_half = t + 0.5 * dt
            s = score(state, t)
            z_corr, z_1, z_2 = (sys_.noise_like(state, m, generator) for _ in range(3))
            new, mean = {}, {}
            for k, c in sys_.items():
                x = state[k]
                score_drift = -expand_like(c.sde.diffusion(t) ** 2, x) * s[k]
                x, _ = _langevin(c, x, s[k], t, z_corr[k], snrs[k], scale_eps, steps, langevin_norm)
                mu, std = c.sde.transition(x, t, 0.5 * dt)
                x = mu + expand_like(std, x) * z_1[k] + score_drift * dt
                mean[k], std = c.sde.transition(x, t_half, 0.5 * dt)
                new[k] = mean[k] + expand_like(std, x) * z_2[k]
            state, mean = sys_.apply_mask(new, m), sys_.apply_mask(mean, m)
            if trajectory is not None and i < steps - 1:
                trajectory.append(state)
        final = mean if denoise_last else state
        if trajectory is not None:
            trajectory.append(final)
    return _finish(su, final, score.nfe, trajectory)


def ode_sample(
    score_fn: Callable,
    system: SDESystem | SDE,
    shapes: Mapping[str, Sequence[int]] | Sequence[int],
    steps: int | None = None,
    *,
    method: Literal["euler", "heun", "rk4", "adaptive"] = "rk4",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    scipy_method: str = "RK45",
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    eps: float | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
) -> SampleResult:
    """Integrate the probability-flow ODE dx/dt = f - g^2 s / 2 from T to eps, starting from the prior.

    Fixed-step ``euler`` (1 NFE/step), ``heun`` (2) and ``rk4`` (4) on ``linspace(T, eps, steps + 1)``;
    ``adaptive`` uses scipy's ``solve_ivp`` (``scipy_method``, ``rtol``/``atol``) on the flattened float64
    state (every right-hand-side call is one batched NFE; ``steps`` is ignored, the trajectory holds the
    accepted steps; ``progress`` has no effect).
    """
    if method not in ("euler", "heun", "rk4", "adaptive"):
        raise ValueError(f"method must be one of euler, heun, rk4, adaptive; got {method!r}")
    if method != "adaptive":
        _check_steps(steps)  # type: ignore[arg-type]
    su = _setup(score_fn, system, shapes, mask, generator, device, dtype, eps)
    sys_, score, m = su.system, su.score, su.score.mask

    def velocity(state: State, t: Tensor) -> State:
        tb = t.expand(su.batch)
        s = score(state, tb)
        return sys_.apply_mask(
            {k: c.sde.reverse_drift(state[k], tb, s[k], probability_flow=True) for k, c in sys_.items()}, m
        )

    def axpy(state: State, h: Tensor | float, *vs: tuple[float, State]) -> State:
        return {k: state[k] + h * sum(w * v[k] for w, v in vs) for k in state}

    with torch.no_grad():
        state = sys_.prior_sample(su.shapes, m, generator, su.device, su.dtype)
        if method == "adaptive":
            return _ode_adaptive(su, state, velocity, rtol, atol, scipy_method, return_trajectory)
        trajectory = [state] if return_trajectory else None
        times = torch.linspace(sys_.T, su.eps, steps + 1, device=su.device, dtype=su.dtype)  # type: ignore
        for i in _progress(range(steps), progress, f"ODE ({method})"):  # type: ignore[arg-type]
            t, h = times[i], times[i + 1] - times[i]
            if method in ("euler", "heun"):
                state, _ = heun_step(velocity, state, t, times[i + 1], heun=method == "heun")
            else:
                k1 = velocity(state, t)
                k2 = velocity(axpy(state, 0.5 * h, (1.0, k1)), t + 0.5 * h)
                k3 = velocity(axpy(state, 0.5 * h, (1.0, k2)), t + 0.5 * h)
                k4 = velocity(axpy(state, h, (1.0, k3)), t + h)
                state = axpy(state, h, (1 / 6, k1), (1 / 3, k2), (1 / 3, k3), (1 / 6, k4))
            if trajectory is not None:
                trajectory.append(state)
    return _finish(su, state, score.nfe, trajectory)


def _ode_adaptive(
    su: _Setup,
    state: State,
    velocity: Callable[[State, Tensor], State],
    rtol: float,
    atol: float,
    scipy_method: str,
    return_trajectory: bool,
) -> SampleResult:
    from scipy.integrate import solve_ivp

    keys = list(state)
    sizes = [state[k].numel() for k in keys]

    def unflatten(y: np.ndarray) -> State:
        parts = np.split(y, np.cumsum(sizes)[:-1])
        return {
            k: torch.as_tensor(p, dtype=su.dtype, device=su.device).reshape(su.shapes[k])
            for k, p in zip(keys, parts)
        }

    def flatten(s: State) -> np.ndarray:
        return np.concatenate([s[k].detach().reshape(-1).cpu().double().numpy() for k in keys])

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        return flatten(velocity(unflatten(y), torch.tensor(t, dtype=su.dtype, device=su.device)))

    sol = solve_ivp(rhs, (su.system.T, su.eps), flatten(state), method=scipy_method, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"adaptive probability-flow ODE solve failed: {sol.message}")
    trajectory = [unflatten(sol.y[:, j]) for j in range(sol.y.shape[1])] if return_trajectory else None
    return _finish(su, unflatten(sol.y[:, -1]), su.score.nfe, trajectory)
