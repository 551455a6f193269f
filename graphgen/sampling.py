"""Sample graphs or molecules from a GDSS model, decode them, write and read sample files.

As in GDSS: node masks come from the training set's node counts (drawn with replacement, GDSS ``init_flags``),
x and adj start from their priors (adj symmetric, zero diagonal), both masked; PC sampling (reverse-diffusion
or Euler predictor, Langevin corrector with batch-averaged norms) or S4 on ``linspace(T, eps, steps)``; the
last step returns the noise-free mean. Molecules: x thresholded at 0.5, adj quantised to bond orders
{0, 1, 2, 3} (no valence correction). Generic graphs: adj thresholded at 0.5, isolated nodes dropped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from graphgen.checkpoint import ModelBundle
from graphgen.diffusion import SamplerConfig, build_system, gdss_score_fn
from shared.numerics import flush_denormal_mode, resolve_precision
from shared.registry import Registry
from shared.samplers import ode_sample, pc_sample, s4_sample

__all__ = ["SampleOutput", "sample_graphs", "draw_node_flags", "write_samples", "read_samples"]

# the sample files moved to graphgen.io; these names stay importable from here
from graphgen.io import read_samples, write_samples  # noqa: E402


@dataclass
class SampleOutput:
    """Decoded ``items`` (RDKit mols or networkx graphs), total NFE, and raw tensors when requested."""

    items: list[Any]
    nfe: int
    x: Tensor | None = None
    adj: Tensor | None = None
    flags: Tensor | None = None
    is_molecule: bool = False


def draw_node_sizes(node_counts: Tensor, n: int, max_node_num: int, generator: torch.Generator) -> Tensor:
    """``(n,)`` node counts drawn from the histogram ``node_counts`` over 0..max_node_num (empty graphs, the
    histogram's entry 0, are never drawn: they would be empty samples)."""
    counts = torch.as_tensor(node_counts, dtype=torch.float64).clone()
    if counts.dim() != 1 or counts.numel() > max_node_num + 1 or not torch.isfinite(counts).all() \
            or (counts < 0).any():
        raise ValueError(f"node_counts must be a non-negative histogram over 0..{max_node_num}, got shape "
                         f"{tuple(counts.shape)}")
    if counts.numel():
        counts[0] = 0.0
    if counts.sum() <= 0:
        raise ValueError("the node-count histogram holds no graph with at least one node")
    return torch.multinomial(counts.to(generator.device), n, replacement=True, generator=generator)


def flags_of(sizes: Tensor, max_node_num: int) -> Tensor:
    """``(len(sizes), max_node_num)`` prefix masks."""
    return (torch.arange(max_node_num, device=sizes.device) < sizes[:, None]).float()


def draw_node_flags(node_counts: Tensor, n: int, max_node_num: int, generator: torch.Generator) -> Tensor:
    """``(n, max_node_num)`` prefix masks with node counts drawn from the histogram ``node_counts``."""
    return flags_of(draw_node_sizes(node_counts, n, max_node_num, generator), max_node_num)


_BYTES_PER_SAMPLE = 3000  # a decoded RDKit Mol / networkx graph of <= 40 nodes, with its SMILES: ~1-3 kB


def _check_memory(n: int) -> None:
    """Refuse a request whose samples cannot be held in this machine's memory, before any work."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return
    need = n * _BYTES_PER_SAMPLE
    if need > 0.5 * total:
        raise ValueError(f"-n {n} would hold ~{need / 2**30:.0f} GiB of samples in memory (this machine has "
                         f"{total / 2**30:.0f} GiB); sample in parts (-n N with a different --seed each)")


class _FiniteCheck:
    """Wraps a system score fn: raises FloatingPointError naming the sampling step at the first non-finite value."""

    def __init__(self, score_fn, T: float, eps: float, steps: int):
        self.score_fn, self.T, self.eps, self.steps = score_fn, T, eps, steps

    def _step(self, t: Tensor) -> int:
        frac = (self.T - float(t[0])) / max(self.T - self.eps, 1e-12)
        return int(round(frac * (self.steps - 1))) + 1

    def _check(self, what: str, tensors: dict[str, Tensor], t: Tensor) -> None:
        for key, value in tensors.items():
            if not torch.isfinite(value).all():
                raise FloatingPointError(
                    f"non-finite {what} of {key!r} at sampling step {self._step(t)}/{self.steps} "
                    f"(t={float(t[0]):.4g}); try more steps, a smaller snr or another checkpoint")

    def __call__(self, state: dict[str, Tensor], t: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        self._check("state", state, t)
        out = self.score_fn(state, t, mask)
        self._check("score", out, t)
        return out


def _sample_batch(bundle: ModelBundle, flags: Tensor, *, sampler: str, predictor: str, corrector: str | None,
                  steps: int, snr: float | dict[str, float], scale_eps: float, n_correct: int, eps: float,
                  time_power: float, precision: str, generator: torch.Generator,
                  progress: bool) -> tuple[dict[str, Tensor], int]:
    cfg = bundle.config
    system = build_system(cfg)
    score = _FiniteCheck(gdss_score_fn(bundle.model, system, precision), system.T, eps, steps)
    # crop the padding to the batch's largest graph: the GDSS networks' outputs on real nodes do not depend on
    # padded ones (tests/graphgen/test_models.py), so this only saves work (grid: 361 -> ~220 nodes, ~2.6x)
    full = flags.shape[1]
    n = max(int(flags.sum(-1).max().round()), 1)
    flags = flags[:, :n]
    b, f = flags.shape[0], cfg.data.max_feat_num
    shapes = {"x": (b, n, f), "adj": (b, n, n)}
    common = dict(mask=flags, generator=generator, eps=eps, device=flags.device, progress=progress)
    if time_power != 1.0 and sampler != "s4":
        raise ValueError(f"time_power applies to the s4 sampler only, got it with {sampler!r}")
    settings = dict(predictor=predictor, corrector=corrector, snr=snr, scale_eps=scale_eps, n_correct=n_correct,
                    time_power=time_power)
    result = SAMPLERS[sampler](score, system, shapes, steps, settings, common)
    for key, value in result.state.items():
        if not torch.isfinite(value).all():
            raise FloatingPointError(f"non-finite {key!r} in the final sample (step {steps}/{steps})")
    pad = full - n
    state = {"x": torch.nn.functional.pad(result.state["x"], (0, 0, 0, pad)),
             "adj": torch.nn.functional.pad(result.state["adj"], (0, pad, 0, pad))}
    return state, result.nfe


# The sampler registry: name -> fn(score, system, shapes, steps, settings, common) -> shared.samplers.SampleResult,
# with ``settings`` the resolved sampler options (predictor, corrector, snr, scale_eps, n_correct, time_power) and
# ``common`` the keyword arguments every shared sampler takes (mask, generator, eps, device, progress). To add a
# sampler: write it in shared/samplers.py (tested on analytic scores) and register it here; the CLI's --sampler
# choices, the API and the validation follow.
SAMPLERS: Registry[Callable[..., Any]] = Registry("graphgen sampler")


def register_sampler(name: str) -> Callable:
    """Decorator: ``@register_sampler("name")`` above ``fn(score, system, shapes, steps, settings, common)``."""
    return SAMPLERS.register(name)


@register_sampler("pc")  # predictor-corrector (GDSS's default, 2 NFE/step with Langevin)
def _pc(score, system, shapes, steps, settings, common):
    return pc_sample(score, system, shapes, steps, predictor=settings["predictor"], corrector=settings["corrector"],
                     snr=settings["snr"], scale_eps=settings["scale_eps"], n_correct=settings["n_correct"], **common)


@register_sampler("s4")  # GDSS's S4 solver (1 NFE/step)
def _s4(score, system, shapes, steps, settings, common):
    return s4_sample(score, system, shapes, steps, snr=settings["snr"], scale_eps=settings["scale_eps"],
                     time_power=settings["time_power"], **common)


def _probability_flow(method: str) -> Callable:
    def run(score, system, shapes, steps, settings, common):  # deterministic given the prior draw
        return ode_sample(score, system, shapes, steps, method=method, **common)

    return run


# the probability-flow ODE with Euler (1 NFE/step), Heun (2) or scipy's adaptive RK45 (steps ignored)
for _method in ("euler", "heun", "adaptive"):
    register_sampler(f"ode-{_method}")(_probability_flow(_method))

# Named sampler settings (``graphgen sample --preset``); explicit options win over a preset.
# "gdss": the model's own sampler (GDSS's settings). "fast": GDSS's S4 solver at 60 steps (60 NFE instead of PC's
# 2,000) with the corrector's noise at 6/7 of the model's scale_eps (0.7 -> 0.6 on QM9: with 60 long steps the full
# noise cost ~0.5 point of validity), the networks in bf16 where the hardware has it natively. On the published QM9
# checkpoint it matched 1,000-step PC in validity and FCD at under a third of the CPU time of GDSS's own S4-200
# (benchmarks/results/graphgen_throughput*.md, benchmarks/GRAPHGEN.md). On community-small S4 lost clustering
# quality, so the CLI warns for models of other datasets.
PRESETS: dict[str, dict[str, Any]] = {
    "gdss": {},
    "fast": {"sampler": "s4", "steps": 60, "precision": "auto", "scale_eps_factor": 6 / 7},
}


def resolve_preset(bundle: ModelBundle, name: str, **explicit: Any) -> dict[str, Any]:
    """The :func:`sample_graphs` options of preset ``name`` for this model; ``explicit`` options (None = unset)
    win over the preset's."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    options = {k: v for k, v in PRESETS[name].items() if k != "scale_eps_factor"}
    if "scale_eps_factor" in PRESETS[name]:
        options["scale_eps"] = bundle.config.sampler.scale_eps * PRESETS[name]["scale_eps_factor"]
    options.update({k: v for k, v in explicit.items() if v is not None})
    return options


def resolve_snr(sc: SamplerConfig, snr: float | None = None, snr_x: float | None = None) -> float | dict[str, float]:
    """The Langevin snr to sample with: one float for both components, or ``{"x": ..., "adj": ...}``.

    Unset values follow the model's sampler settings; an explicit ``snr`` without ``snr_x`` means both
    components, as in GDSS (it then overrides the model's own ``snr_x`` too)."""
    if snr_x is None and snr is None:
        snr_x = sc.snr_x
    snr = sc.snr if snr is None else snr
    return snr if snr_x is None else {"x": snr_x, "adj": snr}


def sample_graphs(bundle: ModelBundle, n: int, *, sampler: str | None = None,
                  steps: int | None = None, snr: float | None = None, snr_x: float | None = None,
                  scale_eps: float | None = None,
                  predictor: Literal["reverse_diffusion", "euler_maruyama"] | None = None,
                  corrector: Literal["langevin", "none"] | None = None, batch_size: int = 1000, seed: int = 0,
                  device: str | torch.device = "cpu", progress: bool = False, return_tensors: bool = False,
                  node_counts: Tensor | None = None, precision: str = "fp32",
                  time_power: float = 1.0) -> SampleOutput:
    """Draw ``n`` graphs (molecules for QM9/ZINC250k) in batches of at most ``batch_size``.

    Unset options follow ``bundle.config.sampler`` (the GDSS settings of the model). ``snr_x`` gives the
    node-feature corrector its own signal-to-noise ratio (``snr`` then applies to the adjacency); an explicit
    ``snr`` without ``snr_x`` applies to both, as in GDSS. ``node_counts`` overrides
    the bundle's node-count histogram (needed for imported GDSS models without one). ``precision``: "fp32",
    "bf16" (the networks under bf16 autocast, the integrator in fp32) or "auto" (bf16 where the hardware has it
    natively). ``time_power`` > 1 makes S4's time grid finer near the data. Same seed, same output.
    """
    if n < 1 or batch_size < 1 or (steps is not None and steps < 1):
        raise ValueError(f"n, batch_size and steps must be >= 1, got n={n}, batch_size={batch_size}, steps={steps}")
    cfg, sc = bundle.config, bundle.config.sampler
    counts = node_counts if node_counts is not None else bundle.node_counts
    if counts is None:
        raise ValueError("this model stores no node-count statistics: pass node_counts (on the command line "
                         "--node-counts FILE: SMILES or SDF of the training set, or a JSON histogram) or --data-dir")
    sampler = sampler or ("s4" if sc.predictor == "s4" else "pc")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    predictor = predictor or (sc.predictor if sc.predictor != "s4" else "reverse_diffusion")
    corrector = corrector or sc.corrector
    snr = resolve_snr(sc, snr, snr_x)
    options = dict(sampler=sampler, predictor=predictor, corrector=None if corrector == "none" else corrector,
                   steps=sc.steps if steps is None else steps, snr=snr,
                   scale_eps=sc.scale_eps if scale_eps is None else scale_eps, n_correct=sc.n_correct, eps=sc.eps,
                   time_power=float(time_power))
    device = torch.device(device)
    options["precision"] = resolve_precision(precision, device)
    _check_memory(n)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    bundle.model.to(device).eval()
    max_nodes = cfg.data.max_node_num
    sizes = draw_node_sizes(counts, n, max_nodes, generator)  # n integers: the masks are built per batch
    # several batches: group graphs of similar size so that each batch's padding crop saves the most work;
    # the samples are exchangeable, so the order is restored afterwards without changing the distribution
    order = torch.argsort(sizes, stable=True) if n > batch_size else torch.arange(n)
    atom_types = cfg.atom_types
    items: list[Any] = [None] * n
    xs, adjs, nfe = [], [], 0
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        with torch.inference_mode(), flush_denormal_mode(device.type == "cpu"):
            state, used = _sample_batch(bundle, flags_of(sizes[idx], max_nodes), generator=generator,
                                        progress=progress, **options)
        x, adj = state["x"].cpu(), state["adj"].cpu()
        decoded = _decode(x, adj, atom_types)  # per batch: only the decoded items outlive the batch
        for k, i in enumerate(idx.tolist()):
            items[i] = decoded[k]
        if return_tensors:
            xs.append(x)
            adjs.append(adj)
        nfe += used
    if not return_tensors:
        return SampleOutput(items, nfe, None, None, None, atom_types is not None)
    inverse = torch.argsort(order).cpu()
    return SampleOutput(items, nfe, torch.cat(xs)[inverse], torch.cat(adjs)[inverse],
                        flags_of(sizes, max_nodes).cpu(), atom_types is not None)


def _decode(x: Tensor, adj: Tensor, atom_types) -> list[Any]:
    if atom_types is not None:
        from graphgen.representation import decode_molecules

        return decode_molecules(x, adj, atom_types)
    from graphgen.representation import adjacency_to_graphs

    return adjacency_to_graphs(adj, threshold=0.5)
