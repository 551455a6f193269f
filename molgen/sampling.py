"""Generate 3D molecules from a trained generator: atom counts, conditions, guidance, batching, SDF output.

``generate(generator, n, condition={"gap": 6.5}, guidance_scale=1.0, steps=100, seed=0)`` returns a
:class:`Generated` (a ``MolBatch`` plus per-molecule targets, NFE, time); ``write_sdf`` writes it with 3D
coordinates, bonds, formal charges and the targeted properties as SDF fields, atomically.

Conditions are in molgen's units (alpha Bohr^3, energies eV, mu D, Cv cal/(mol K)). A target outside the training
half's range is a warning; one further out than the OOD task's margin (99th minus 50th percentile of the training
values, beyond the extreme) is an error. Guidance wraps the model: classifier-free (``guidance_scale`` w:
``u + w (c - u)``, w = 1 is the plain conditional model) and regressor guidance on positions through shipped
property regressors (``regressor_scale``).

``relax="mmff"`` or ``"xtb"`` relaxes every molecule after sampling (``molgen.relax``): the coordinates become the
relaxed ones, each molecule keeps a ``RelaxResult`` (relaxation energy, heavy-atom RMSD, whether its bonding
survived) that ``write_sdf`` writes into its record, and ``drop_unsound=True`` drops the molecules that could not
be relaxed or whose bonding changed. Atoms, bonds and charges are never rewritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from shared.conditions import check_target_range

from molgen.checkpoint import Generator, load_generator
from molgen.conditioning import make_condition
from molgen.flow import SamplerConfig, sample_molecules
from molgen.representation import ATOMIC_NUMBERS, CHARGE_VALUES, MolBatch
from shared.guidance import ClassifierFreeGuidance, GradientGuidance
from shared.seeding import make_generator

__all__ = ["Generated", "check_condition", "generate", "load_default_generator", "write_sdf",
           "regressor_position_guidance", "relax_generated", "resolve_screen", "select_molecules"]

# case-insensitive spellings users type -> molgen's property names
_ALIASES = {"alpha": "alpha", "gap": "gap", "homo": "homo", "lumo": "lumo", "mu": "mu", "cv": "Cv"}


@dataclass
class Generated:
    batch: MolBatch
    targets: dict[str, Tensor] = field(default_factory=dict)  # property -> (B,) raw-unit targets
    nfe: int = 0
    seconds: float = 0.0
    nonfinite: int = 0  # molecules dropped because their integration produced NaN/inf
    settings: dict[str, Any] = field(default_factory=dict)
    relax: list = field(default_factory=list)  # molgen.relax.RelaxResult per molecule when relaxed
    relax_seconds: float = 0.0
    dropped_unsound: int = 0  # molecules dropped by drop_unsound

    def __len__(self) -> int:
        return len(self.batch)

    def mols(self) -> list:
        return self.batch.to_mols(sanitize=False)

    @property
    def items(self) -> list:
        """The molecules as RDKit ``Mol`` objects (3D, unsanitised: nothing altered)."""
        return self.mols()

    def write(self, path: str | os.PathLike) -> Path:
        """SDF with targets (and relaxation fields when relaxed), atomically; see :func:`write_sdf`."""
        return write_sdf(self, path)


def load_default_generator(map_location="cpu") -> Generator:
    from molgen.pretrained import pretrained_generator_path

    return load_generator(pretrained_generator_path(), map_location)


def canonical_property(name: str) -> str:
    key = _ALIASES.get(name.strip().lower())
    if key is None:
        raise ValueError(f"unknown property {name!r}; choose from alpha, gap, homo, lumo, mu, Cv")
    return key


def check_condition(generator: Generator, condition: dict[str, Any]) -> dict[str, Any]:
    """Validate raw targets (a number, or one number per molecule) against the model: names, finiteness, training
    range. Returns them under canonical names (floats, or float64 tensors for per-molecule targets)."""
    out = {}
    ranges = generator.metadata.get("property_range", {})
    margins = generator.metadata.get("ood_margin", {})
    for name, value in condition.items():
        key = name if name in generator.properties else canonical_property(name)
        if key not in generator.properties:
            raise ValueError(f"this model is not conditioned on {key!r}; it knows {generator.properties or 'none'}")
        if key in out:
            raise ValueError(f"the condition names {key!r} twice (as {name!r} and another spelling); give it once")
        values = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
        if values.numel() == 0 or not bool(torch.isfinite(values).all()):
            raise ValueError(f"target {key}={value} is not a finite number")
        if key in ranges:
            check_target_range(key, values, *ranges[key], float(margins.get(key, 0.0)))
        out[key] = float(values[0]) if torch.as_tensor(value).dim() == 0 else values
    return out


def _atom_counts(generator: Generator, n: int, condition: dict[str, Any], rng: torch.Generator) -> Tensor:
    """Draws from p(n), or from p(n | c) with one draw per molecule when the targets are per molecule."""
    if not any(torch.is_tensor(v) for v in condition.values()):
        return generator.atom_counts.sample(n, condition or None, generator=rng)
    columns = {k: (v if torch.is_tensor(v) else torch.full((n,), float(v), dtype=torch.float64))
               for k, v in condition.items()}
    if any(c.shape[0] != n for c in columns.values()):
        raise ValueError(f"per-molecule targets must have one value for each of the {n} molecules")
    rows = torch.stack(list(columns.values()), 1)
    probs = torch.stack([generator.atom_counts.probabilities(dict(zip(columns, r.tolist()))) for r in rows])
    return torch.multinomial(probs, 1, generator=rng).squeeze(1)


def regressor_position_guidance(regressors: dict[str, Any], targets: dict[str, float], scale: float,
                                noise_std: dict[str, float], mask: Tensor):
    """Gradient guidance on positions: ``scale * t * grad_x log N(target; regressor(types, x), std^2)``.

    Atom types are the model's current argmax prediction (the state's tokens may still be masked); the regressors
    are the E(3)-invariant SchNet-style models of :mod:`molgen.regressor`, in raw property units.
    """
    props = list(targets)

    def guidance(positions: Tensor, t: Tensor, state: dict, out: dict) -> Tensor:
        types = out["atom_types"].argmax(-1)

        def predict(x: Tensor, t_: Tensor) -> Tensor:
            cols = [regressors[p](types, x.float(), mask) for p in props]
            return torch.stack([(c - torch.as_tensor(targets[p], device=c.device, dtype=c.dtype)) / noise_std[p]
                                for c, p in zip(cols, props)], 1)

        gg = GradientGuidance(lambda x, t_: torch.zeros_like(x), predict, target=0.0, scale=scale, noise_std=1.0)
        grad = gg(positions, t)
        return grad * t.reshape(-1, 1, 1) * mask.unsqueeze(-1)

    return guidance


def generate(generator: Generator, n: int, *, condition: dict[str, float] | None = None,
             guidance_scale: float = 1.0, steps: int | None = None, seed: int = 0, batch_size: int = 256,
             num_atoms: Tensor | None = None, sampler: SamplerConfig | None = None, device: str | torch.device = "cpu",
             regressors: dict[str, Any] | None = None, regressor_scale: float = 0.0, progress: bool = False,
             drop_nonfinite: bool = True, relax: str | None = None, drop_unsound: bool = False,
             relax_workers: int = 1, amp: bool = False, screen: int | None = None,
             surrogates: dict[str, Any] | None = None) -> Generated:
    """Sample ``n`` molecules; deterministic for a seed on CPU. ``num_atoms`` overrides p(n) / p(n | condition).

    ``relax``/``drop_unsound``/``relax_workers``: see the module docstring. ``amp``: the network in bf16 autocast
    (CPUs with avx512_bf16/AMX, CUDA); the integrator and the state stay in fp32. ``screen`` = k > 1 (with a
    condition): k candidates per molecule, the sound one whose surrogate-predicted property is closest to the target
    kept (``molgen.screening``; ``surrogates`` replaces the shipped ones); ``None``: the model file's
    ``conditional_screen`` with a condition, 1 without; 1: the network alone."""
    screen = resolve_screen(generator, condition, screen)
    if screen != 1:
        return _screened_generate(
            generator, n, screen, check_condition(generator, condition or {}), num_atoms=num_atoms,
            surrogates=surrogates, drop_nonfinite=drop_nonfinite, relax=relax, drop_unsound=drop_unsound,
            relax_workers=relax_workers, progress=progress, guidance_scale=guidance_scale, steps=steps, seed=seed,
            batch_size=batch_size, sampler=sampler, device=device, regressors=regressors,
            regressor_scale=regressor_scale, amp=amp)
    if relax is not None:
        from molgen.relax import RELAX_METHODS

        if relax not in RELAX_METHODS:
            raise ValueError(f"unknown relaxation method {relax!r}; choose from {', '.join(RELAX_METHODS)}")
    if drop_unsound and relax is None:
        raise ValueError("drop_unsound needs a relaxation method (relax='mmff' or 'xtb')")
    if n < 1:
        raise ValueError(f"number of molecules must be positive, got {n}")
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    condition = check_condition(generator, condition or {})
    if guidance_scale != 1.0 and not condition:
        raise ValueError("guidance needs a condition (--condition PROP=VALUE)")
    if regressor_scale and not regressors:
        raise ValueError("regressor guidance needs regressors for the targeted properties")
    cfg = sampler or generator.sampler
    if steps is not None:
        cfg = SamplerConfig(**{**cfg.__dict__, "steps": int(steps)})
    device = torch.device(device)
    model = generator.model.to(device).eval()
    rng = make_generator(seed)
    if num_atoms is None:
        num_atoms = _atom_counts(generator, n, condition, rng)
    num_atoms = torch.as_tensor(num_atoms).long().reshape(-1)
    if num_atoms.shape[0] != n or int(num_atoms.min()) < 1:
        raise ValueError(f"need {n} positive atom counts, got {num_atoms.tolist()[:10]}...")
    props = generator.properties
    net = model
    null = {"values": 0.0, "present": 0.0}
    if condition and guidance_scale != 1.0:
        net = ClassifierFreeGuidance(model, guidance_scale, null_cond=null)
    order = torch.argsort(num_atoms, descending=True, stable=True)  # similar sizes share a batch: less padding
    chunks, nfe, bad = [None] * n, 0, torch.zeros(n, dtype=torch.bool)
    start = time.perf_counter()
    batches = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="molgen sample", unit="batch")
    sample_gen = make_generator(seed + 1, device)
    for b0 in batches:
        idx = order[b0:b0 + batch_size]
        counts = num_atoms[idx].to(device)
        here = {k: (v[idx] if torch.is_tensor(v) else v) for k, v in condition.items()}
        cond = make_condition(here, props, len(idx), model.cond, device) if props else None
        guidance = None
        if regressor_scale and condition:
            mask = torch.arange(int(counts.max()), device=device) < counts.unsqueeze(1)
            stds = generator.metadata.get("property_std", {})
            guidance = regressor_position_guidance({k: regressors[k].to(device) for k in condition}, here,
                                                   regressor_scale, {k: float(stds.get(k, 1.0)) for k in condition},
                                                   mask)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        with autocast:
            out = sample_molecules(net, counts, generator.num_classes, cfg, generator.flow, cond=cond,
                                   generator=sample_gen, device=device, position_guidance=guidance)
        nfe = out.nfe * (2 if net is not model else 1)
        for k, i in enumerate(idx.tolist()):
            a = int(counts[k])
            chunks[i] = (out.positions[k, :a].cpu(), out.atom_types[k, :a].cpu(), out.charges[k, :a].cpu(),
                         out.bonds[k, :a, :a].cpu())
            bad[i] = bool(out.nonfinite[k])
    seconds = time.perf_counter() - start
    keep = [i for i in range(n) if not (drop_nonfinite and bad[i])]
    if not keep:
        raise FloatingPointError("every molecule's integration produced NaN or inf; the model file may be broken")
    if len(keep) < n:
        warnings.warn(f"{n - len(keep)} of {n} molecules produced NaN/inf during integration and were dropped",
                      stacklevel=2)
    batch = _to_batch([chunks[i] for i in keep])
    keep_t = torch.tensor(keep)
    targets = {k: (v[keep_t] if torch.is_tensor(v) else torch.full((len(keep),), v, dtype=torch.float64))
               for k, v in condition.items()}
    settings = {"steps": cfg.steps, "eta": cfg.eta, "temperature": cfg.temperature, "purity": cfg.purity,
                "guidance_scale": guidance_scale, "regressor_scale": regressor_scale, "seed": seed,
                "condition": {k: ("per-molecule" if torch.is_tensor(v) else v) for k, v in condition.items()},
                "relax": relax, "drop_unsound": drop_unsound}
    result = Generated(batch, targets, nfe, seconds, n - len(keep), settings)
    if relax is not None:
        result = relax_generated(result, relax, drop_unsound=drop_unsound, workers=relax_workers, progress=progress)
    return result


def relax_generated(generated: Generated, method: str, drop_unsound: bool = False, workers: int = 1,
                    progress: bool = False) -> Generated:
    """``generated`` with relaxed coordinates and a ``RelaxResult`` per molecule (see the module docstring)."""
    from molgen.relax import relax_molecules

    start = time.perf_counter()
    results = relax_molecules(generated.mols(), method, workers=workers, progress=progress)
    positions = generated.batch.positions.clone()
    for k, result in enumerate(results):
        if result.status == "ok":
            a = int(generated.batch.mask[k].sum())
            positions[k, :a] = torch.as_tensor(result.mol.GetConformer().GetPositions(), dtype=positions.dtype)
    b = generated.batch
    batch = MolBatch(b.numbers, b.charges, positions, b.bonds, b.mask)
    keep = [k for k, r in enumerate(results) if r.sound or not drop_unsound]
    if not keep:
        raise ValueError(f"none of the {len(results)} molecules relaxed with its bonding intact "
                         "(drop_unsound dropped them all)")
    idx = torch.tensor(keep)
    batch = MolBatch(batch.numbers[idx], batch.charges[idx], batch.positions[idx], batch.bonds[idx], batch.mask[idx])
    targets = {k: v[idx] for k, v in generated.targets.items()}
    return Generated(batch, targets, generated.nfe, generated.seconds, generated.nonfinite, generated.settings,
                     [results[k] for k in keep], time.perf_counter() - start, len(results) - len(keep))


def resolve_screen(generator: Generator, condition: dict | None, screen: int | None) -> int:
    """The screening width ``generate`` uses: ``screen`` if given, else the model's default for conditions."""
    if screen is None:
        return generator.conditional_screen if condition else 1
    if isinstance(screen, bool) or not isinstance(screen, (int, float)) or int(screen) != screen or screen < 1:
        raise ValueError(f"screen must be an integer >= 1 candidates per molecule, got {screen!r}")
    return int(screen)


def _screened_generate(generator, n: int, k: int, condition: dict[str, Any], *, num_atoms=None,
                      surrogates: dict | None = None, drop_nonfinite: bool = True, relax: str | None = None,
                      drop_unsound: bool = False, relax_workers: int = 1, progress: bool = False, **options):
    """``generate`` with ``k`` candidates per molecule, screened (``molgen.screening``); ``options`` go to generate."""
    from molgen.screening import screen_candidates
    from molgen.surrogates import load_surrogates

    if k < 1:
        raise ValueError(f"screen must be >= 1 candidates per molecule, got {k}")
    if not condition:
        raise ValueError("screening needs a condition (--condition PROP=VALUE)")
    surrogates = surrogates if surrogates is not None else load_surrogates()[0]
    expanded = {p: (v.repeat_interleave(k) if torch.is_tensor(v) and v.ndim else v) for p, v in condition.items()}
    counts = torch.as_tensor(num_atoms).reshape(-1).repeat_interleave(k) if num_atoms is not None else None
    candidates = generate(generator, n * k, condition=expanded, num_atoms=counts, drop_nonfinite=False,
                          progress=progress, screen=1, **options)
    stds = generator.metadata.get("property_std", {})
    picks, stats = screen_candidates(candidates, n, k, surrogates, stds)
    kept = select_molecules(candidates, picks)
    finite = torch.isfinite(kept.batch.positions).flatten(1).all(1)
    nonfinite = int((~finite).sum())
    if drop_nonfinite and nonfinite:
        if nonfinite == n:
            raise FloatingPointError("every molecule's integration produced NaN or inf; the model file may be broken")
        kept = select_molecules(kept, np.flatnonzero(finite.numpy()))
    result = Generated(kept.batch, kept.targets, candidates.nfe, candidates.seconds, nonfinite,
                       {**candidates.settings, "screen": k, "screen_statistics": stats,
                        "screened_by": "molgen.surrogates (gradient-boosted trees on graph features and a charge "
                                       "dipole, QM9 train_generator half)"})
    if relax is not None:
        result = relax_generated(result, relax, drop_unsound=drop_unsound, workers=relax_workers, progress=progress)
    return result


def select_molecules(generated: Generated, index) -> Generated:
    """The molecules ``index`` (a sequence of positions) of ``generated``, with their targets and relax results."""
    idx = torch.as_tensor(np.asarray(index), dtype=torch.long).reshape(-1)
    b = generated.batch
    batch = MolBatch(b.numbers[idx], b.charges[idx], b.positions[idx], b.bonds[idx], b.mask[idx])
    targets = {k: v[idx] for k, v in generated.targets.items()}
    relax = [generated.relax[i] for i in idx.tolist()] if generated.relax else []
    return dataclasses.replace(generated, batch=batch, targets=targets, relax=relax)


def _to_batch(items: list[tuple[Tensor, Tensor, Tensor, Tensor]]) -> MolBatch:
    b, n = len(items), max(p.shape[0] for p, *_ in items)
    numbers = torch.zeros(b, n, dtype=torch.long)
    charges = torch.zeros(b, n, dtype=torch.long)
    positions = torch.zeros(b, n, 3)
    bonds = torch.zeros(b, n, n, dtype=torch.long)
    mask = torch.zeros(b, n, dtype=torch.bool)
    z = torch.tensor(ATOMIC_NUMBERS)
    q = torch.tensor(CHARGE_VALUES)
    for k, (pos, types, chg, bnd) in enumerate(items):
        a = pos.shape[0]
        numbers[k, :a], charges[k, :a], positions[k, :a] = z[types], q[chg], pos
        bonds[k, :a, :a], mask[k, :a] = bnd, True
    return MolBatch(numbers, charges, positions, bonds, mask)


def write_sdf(generated: Generated, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """One SDF record per molecule (3D, bonds, formal charges, explicit H; unsanitised so nothing is altered),
    with fields ``molgen_index``, ``target_<prop>``, the relaxation's ``relax_*`` fields when relaxed and
    ``extra`` values; written atomically."""
    from rdkit import Chem

    from molgen.relax import annotate_mol
    from shared.io import atomic_write_text

    blocks = []
    for k, mol in enumerate(generated.mols()):
        mol.SetProp("_Name", f"molgen_{k}")
        mol.SetIntProp("molgen_index", k)
        if generated.relax:
            annotate_mol(mol, generated.relax[k])
        for name, values in generated.targets.items():
            mol.SetDoubleProp(f"target_{name}", float(values[k]))
        for name, value in (extra or {}).items():
            mol.SetProp(name, str(value))
        block = Chem.MolToMolBlock(mol, kekulize=False)
        fields = "".join(f">  <{p}>\n{mol.GetProp(p)}\n\n" for p in mol.GetPropNames())
        blocks.append(block + fields + "$$$$\n")
    return atomic_write_text(path, "".join(blocks))
