"""molgen's flow: which parts of a molecule flow how, the prior alignment, the training loss and the sampler.

A molecule of ``n`` atoms is the state ``positions`` (n, 3), ``atom_types`` (n,), ``charges`` (n,) and ``bonds``
(n, n) (upper triangle used). Batches are dense and padded with a node ``mask`` (B, N).

* Positions: linear interpolant ``x_t = t x1 + (1 - t) x0`` (``shared.flow.LinearInterpolant``) from a Gaussian
  prior with zero centre of mass, aligned to each molecule by a Hungarian assignment of prior points to atoms and
  a Kabsch rotation with the determinant correction (never a reflection). The network predicts the endpoint
  ``x1``; the velocity is ``(x1_hat - x_t) / (1 - t)``.
* Atom types, charges and bonds: masking CTMC flows (``shared.discrete_flow.MaskingDiscreteFlow``); the loss is the
  cross-entropy on masked tokens only, bonds on the upper triangle of real atom pairs.
* Loss weights per modality (PropMolFlow: positions 3.0, types 0.4, charges 1.0, bonds 2.0).

Sampler: Euler steps for positions, CTMC Euler steps for the categorical parts with stochasticity ``eta`` and a
temperature on the predicted probabilities (``p ** (1 / T)``), optional purity sampling (unmask the most
confident tokens first, values still drawn from the predictions), classifier-free guidance by wrapping the
model (``shared.guidance``). The fields and the integration loop are ``shared.joint_flow.JointFlow``; this module
adds what is molecular: the centred prior and its alignment, the noise recipes, the time distribution and grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from shared.discrete_flow import MaskingDiscreteFlow
from shared.flow import LinearInterpolant
from shared.joint_flow import ContinuousField, DiscreteField, JointFlow, JointSampler

__all__ = ["FlowConfig", "CATEGORICAL", "kabsch_rotation", "align_prior", "centred_prior", "remove_com",
           "noisy_state", "flow_loss", "SamplerConfig", "time_grid", "sample_molecules", "SampleOutput"]

CATEGORICAL = ("atom_types", "charges", "bonds")


@dataclass
class FlowConfig:
    loss_weights: dict[str, float] = field(default_factory=lambda: {
        "positions": 3.0, "atom_types": 0.4, "charges": 1.0, "bonds": 2.0})
    prior_std: float = 1.0  # Angstrom
    align_prior: bool = True  # Hungarian + Kabsch alignment of the prior to each molecule
    t_min: float = 0.0
    t_max: float = 1.0
    # Training time distribution on [t_min, t_max]: "uniform", or "beta" with time_beta = (a, b); SemlaFlow's
    # Beta(2, 1) puts two thirds of the steps in the data half, where fine geometry is decided.
    time_distribution: str = "uniform"
    time_beta: tuple[float, float] = (2.0, 1.0)
    # Gaussian noise (Angstrom, std) added to every interpolated position x_t (SemlaFlow 0.2 A): the network sees
    # slightly wrong geometries near t = 1 and must correct them, as it must along its own sampled path.
    position_noise: float = 0.0
    # Geometry distortion (FlowMol3): this fraction of training molecules gets a further displacement of std
    # distortion_std (Angstrom) on x_t, scaled by t, so that late-time inputs include clearly broken geometries.
    distortion_prob: float = 0.0
    distortion_std: float = 0.5

    def __post_init__(self) -> None:
        if set(self.loss_weights) != {"positions", *CATEGORICAL}:
            raise ValueError(f"flow.loss_weights needs exactly positions, {', '.join(CATEGORICAL)}; "
                             f"got {sorted(self.loss_weights)}")
        if self.prior_std <= 0 or not 0.0 <= self.t_min < self.t_max <= 1.0:
            raise ValueError("flow.prior_std must be positive and 0 <= t_min < t_max <= 1")
        if self.time_distribution not in ("uniform", "beta"):
            raise ValueError(f"flow.time_distribution must be 'uniform' or 'beta', got {self.time_distribution!r}")
        self.time_beta = tuple(float(x) for x in self.time_beta)
        if len(self.time_beta) != 2 or not all(np.isfinite(x) and x > 0 for x in self.time_beta):
            raise ValueError(f"flow.time_beta needs two positive numbers (a, b), got {self.time_beta}")
        for name in ("position_noise", "distortion_std"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"flow.{name} must be a finite number >= 0, got {value}")
        if not 0.0 <= self.distortion_prob <= 1.0:
            raise ValueError(f"flow.distortion_prob must be in [0, 1], got {self.distortion_prob}")

    def sample_time(self, bsz: int, generator: torch.Generator | None = None, device=None,
                    dtype=torch.float32) -> Tensor:
        """Training times (bsz,) from the configured distribution on [t_min, t_max]."""
        u = torch.rand(bsz, generator=generator, device=device, dtype=dtype)
        if self.time_distribution == "beta":
            # inverse CDF of the seeded uniforms (torch's Beta sampler takes no generator); bsz numbers, on the CPU
            from scipy.special import betaincinv

            a, b = self.time_beta
            u = torch.as_tensor(betaincinv(a, b, u.cpu().double().numpy()), dtype=dtype, device=device)
        return self.t_min + (self.t_max - self.t_min) * u


def _expand_mask(mask: Tensor, like: Tensor) -> Tensor:
    return mask.reshape(*mask.shape, *([1] * (like.dim() - mask.dim()))).to(like.dtype)


def remove_com(x: Tensor, mask: Tensor) -> Tensor:
    """Subtract each molecule's centre of mass (unweighted, real atoms only); padding stays zero."""
    m = _expand_mask(mask, x)
    com = (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1.0)
    return (x - com) * m


def centred_prior(mask: Tensor, std: float = 1.0, generator: torch.Generator | None = None,
                  dtype=torch.float32) -> Tensor:
    z = torch.randn(*mask.shape, 3, generator=generator, device=mask.device, dtype=dtype) * std
    return remove_com(z, mask)


def kabsch_rotation(source: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Proper rotations ``R`` (B, 3, 3) minimising ``sum_i |R source_i - target_i|^2`` over real atoms.

    Both point sets must be centred. The determinant correction flips the singular direction of smallest weight
    when the optimal orthogonal map would be a reflection, so ``det R = +1`` always.
    """
    m = _expand_mask(mask, source)
    h = (source * m).transpose(1, 2) @ (target * m)  # (B, 3, 3) cross-covariance
    u, _, vt = torch.linalg.svd(h.double())
    d = torch.sign(torch.linalg.det(vt.transpose(1, 2) @ u.transpose(1, 2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    correction = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    rot = vt.transpose(1, 2) @ correction @ u.transpose(1, 2)
    return rot.to(source.dtype)


def align_prior(x0: Tensor, x1: Tensor, mask: Tensor) -> Tensor:
    """Permute prior points onto atoms (Hungarian on squared distances), then rotate them (Kabsch, det +1).

    ``x0`` and ``x1`` are centred (B, N, 3). The assignment runs per molecule with scipy (cheap next to the
    network: QM9 molecules have <= 29 atoms); the rotation is batched.
    """
    x0_np, x1_np = x0.detach().cpu().double().numpy(), x1.detach().cpu().double().numpy()
    counts = mask.sum(1).tolist()
    perm = torch.arange(x0.shape[1], device=x0.device).repeat(x0.shape[0], 1)
    for b, n in enumerate(counts):
        if n < 2:
            continue
        diff = x1_np[b, :n, None, :] - x0_np[b, None, :n, :]
        _, cols = linear_sum_assignment((diff * diff).sum(-1))
        perm[b, :n] = torch.as_tensor(np.asarray(cols), device=x0.device)
    permuted = torch.gather(x0, 1, perm.unsqueeze(-1).expand_as(x0))
    rot = kabsch_rotation(permuted, x1, mask)
    return (permuted @ rot.transpose(1, 2)) * _expand_mask(mask, x0)


def _system(num_classes: dict[str, int], eta: float = 0.0) -> JointFlow:
    """molgen's joint flow: centred positions on the linear path, masking flows for the categorical parts."""
    return JointFlow(
        continuous={"positions": ContinuousField(LinearInterpolant(), project=remove_com)},
        discrete={key: DiscreteField(MaskingDiscreteFlow(num_classes[key], eta=eta), pairwise=key == "bonds")
                  for key in CATEGORICAL})


def noisy_state(batch: dict[str, Tensor], t: Tensor, num_classes: dict[str, int], config: FlowConfig,
                generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor]:
    """Draw ``x_t`` for a clean batch; returns (state incl. ``mask``, aligned prior positions ``x0``)."""
    mask = batch["mask"]
    x1 = batch["positions"]
    x0 = centred_prior(mask, config.prior_std, generator, x1.dtype)
    if config.align_prior:
        x0 = align_prior(x0, x1, mask)
    xt = LinearInterpolant().interpolate(x0, x1, t)
    if config.position_noise > 0:
        xt = xt + config.position_noise * centred_prior(mask, 1.0, generator, x1.dtype)
    if config.distortion_prob > 0:
        chosen = torch.rand(mask.shape[0], generator=generator, device=mask.device) < config.distortion_prob
        scale = config.distortion_std * t.to(x1.dtype) * chosen.to(x1.dtype)
        xt = xt + scale.view(-1, 1, 1) * centred_prior(mask, 1.0, generator, x1.dtype)
    state = {"positions": xt * _expand_mask(mask, x1), "mask": mask}
    state.update(_system(num_classes).sample_discrete_xt(batch, t, generator))
    return state, x0


def flow_loss(model: Callable[..., dict[str, Tensor]], batch: dict[str, Tensor], num_classes: dict[str, int],
              config: FlowConfig, generator: torch.Generator | None = None, cond: Any = None,
              t: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of the per-modality losses, averaged over molecules; also returns each term."""
    mask = batch["mask"]
    bsz = mask.shape[0]
    if t is None:
        t = config.sample_time(bsz, generator, mask.device, batch["positions"].dtype)
    state, _ = noisy_state(batch, t, num_classes, config, generator)
    out = model(state, t, cond=cond) if cond is not None else model(state, t)
    # squared distance to the true position per real atom; cross-entropy on the masked tokens (bonds: i < j)
    terms = _system(num_classes).loss_terms(out, batch, state, mask)
    total = sum(config.loss_weights[k] * v.mean() for k, v in terms.items())
    return total, {k: v.mean().detach() for k, v in terms.items()}


# --- sampling ----------------------------------------------------------------------------------------------------


@dataclass
class SamplerConfig:
    steps: int = 100  # Euler steps = network evaluations (x2 with classifier-free guidance)
    eta: float = 10.0  # CTMC stochasticity (re-masking rate)
    temperature: float = 1.0  # on predicted probabilities: p ** (1 / T), renormalised
    purity: bool = False  # unmask the most confident tokens first
    final: str = "argmax"  # last step into t = 1: "argmax" or "sample" of p(x1 | x_t)
    # CTMC step with the rates frozen: "exponential" (exact leave probability 1 - exp(-R dt), sane at few steps
    # with large eta) or "euler" (probability R dt, capped at 1: at 20 steps and eta 10 half the tokens re-mask)
    ctmc_step: str = "exponential"
    # time grid t_i = 1 - (1 - i / steps) ** time_power: 1 is uniform, > 1 spends more steps near the data
    time_power: float = 1.0

    def __post_init__(self) -> None:
        for name in ("steps", "eta", "temperature", "time_power"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ValueError(f"sampler.{name} must be a finite number, got {value!r}")
        if self.steps < 1 or self.steps != int(self.steps) or self.eta < 0 or self.temperature <= 0 \
                or self.time_power <= 0:
            raise ValueError(f"sampler needs an integer steps >= 1, eta >= 0, temperature > 0 and time_power > 0; "
                             f"got {self}")
        self.steps = int(self.steps)
        if self.final not in ("argmax", "sample"):
            raise ValueError(f"sampler.final must be 'argmax' or 'sample', got {self.final!r}")
        if self.ctmc_step not in ("exponential", "euler"):
            raise ValueError(f"sampler.ctmc_step must be 'exponential' or 'euler', got {self.ctmc_step!r}")


def time_grid(steps: int, power: float = 1.0, device=None) -> Tensor:
    """``steps + 1`` times from 0 to 1, ``t_i = 1 - (1 - i / steps) ** power`` (uniform at power 1)."""
    s = torch.linspace(0.0, 1.0, steps + 1, device=device, dtype=torch.float64)
    return (1.0 - (1.0 - s) ** power).float()


@dataclass
class SampleOutput:
    positions: Tensor
    atom_types: Tensor
    charges: Tensor
    bonds: Tensor
    mask: Tensor
    nfe: int
    nonfinite: Tensor  # (B,) bool: molecules whose integration produced NaN/inf (their outputs are garbage)


def sample_molecules(model: Callable[..., dict[str, Tensor]], num_atoms: Tensor, num_classes: dict[str, int],
                     config: SamplerConfig, flow_config: FlowConfig | None = None, cond: Any = None,
                     generator: torch.Generator | None = None, progress: bool = False, device=None,
                     position_guidance: Callable[[Tensor, Tensor, dict, dict], Tensor] | None = None) -> SampleOutput:
    """Integrate the joint flow from the prior (t = 0) to molecules (t = 1) for ``num_atoms`` (B,) atoms each.

    ``model(state, t[, cond=])`` returns x1 positions and logits (wrap it in ``ClassifierFreeGuidance`` to guide).
    ``position_guidance(positions, t, state, out) -> (B, N, 3)`` (``out``: the model's predictions) is added to
    the position velocity (regressor guidance).
    """
    flow_config = flow_config or FlowConfig()
    device = device or num_atoms.device
    num_atoms = num_atoms.to(device)
    n = int(num_atoms.max())
    mask = torch.arange(n, device=device).unsqueeze(0) < num_atoms.unsqueeze(1)
    system = _system(num_classes, eta=config.eta)
    state = {"positions": centred_prior(mask, flow_config.prior_std, generator), "mask": mask}
    state.update(system.discrete_prior(mask, generator))
    correction = None
    if position_guidance is not None:
        def correction(key, x, t, state, out):
            return position_guidance(x, t, state, out)
    sampler = JointSampler(temperature=config.temperature, purity=config.purity, final=config.final,
                           ctmc_step=config.ctmc_step)
    result = system.integrate(model, state, time_grid(config.steps, config.time_power, device), sampler, cond=cond,
                              generator=generator, progress=progress, velocity_correction=correction,
                              desc="molgen sample")
    s = result.state
    return SampleOutput(positions=s["positions"], atom_types=s["atom_types"], charges=s["charges"],
                        bonds=s["bonds"], mask=mask, nfe=result.nfe, nonfinite=result.nonfinite)
