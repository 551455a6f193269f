"""Generate crystals from a crysgen checkpoint: EDM sampling -> unscale -> decode -> (symmetrise) -> CIFs + CSV.

``sampling.json`` records the settings and ``training_data`` (the dataset, split and CSV the model was trained
on, from the checkpoint), so that ``crysgen evaluate`` knows what to compare the samples with. Symmetrisation
(``symmetrize=TOL``, off by default) replaces each decoded P1 cell by its refined structure at that tolerance
(``crysgen.symmetry``); the decoded cells are then kept in ``unsymmetrized/``.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import io
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from crysgen.checkpoint import CrystalModel, load_model
from crysgen.diffusion import sample_matrices
from crysgen.io import UNFINISHED_MARKER
from crysgen.representation import write_cifs
from shared.io import atomic_write_json, atomic_write_text
from shared.numerics import resolve_precision

__all__ = ["SampleResult", "sample_crystals", "sampler_settings", "summary_rows", "write_samples"]


@dataclass
class SampleResult:
    structures: list  # pymatgen Structures; None where the matrix decodes to no valid crystal
    matrices: np.ndarray  # unscaled (n, rows, width)
    nfe: int  # denoiser evaluations per sample
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    unsymmetrized: list | None = None  # the decoded structures, when ``structures`` are symmetrised
    symmetrized: list[bool] | None = None  # per sample: symmetrised (False: kept as decoded)

    @property
    def n_decoded(self) -> int:
        return sum(s is not None for s in self.structures)

    @property
    def items(self) -> list:
        """The crystals as pymatgen ``Structure`` objects (None where a matrix decoded to no crystal)."""
        return self.structures

    def __len__(self) -> int:
        return len(self.structures)

    def write(self, path: str | os.PathLike) -> Path:
        """CIFs, ``summary.csv`` and ``sampling.json`` in the folder ``path``; see :func:`write_samples`."""
        return write_samples(self, path)


def sample_crystals(checkpoint: str | os.PathLike | CrystalModel | None = None, n: int = 100, *,
                    steps: int | None = None, guidance: dict[str, float] | None = None,
                    guidance_scale: float = 1.0, seed: int = 0, batch_size: int = 256,
                    device: str | torch.device = "cpu", progress: bool = False,
                    symmetrize: float | None = None, churn: float | None = None,
                    elements: Sequence[str] | str | None = None, precision: str = "fp32") -> SampleResult:
    """``n`` crystals from ``checkpoint`` (default: the embedded perov-5 model).

    ``guidance={"heat_ref": -0.5}`` conditions on raw property values (normalised with the checkpoint's
    statistics) using classifier-free guidance with ``guidance_scale`` (1: conditional model, 0: unconditional).
    ``symmetrize``: tolerance in A for symmetrising the decoded crystals (None, the default: no symmetrisation).
    ``churn``: EDM's stochastic ``S_churn`` (0: deterministic Heun; None: the model's configured value).
    ``elements``: the elements a crystal may contain: None (the paper's decoding: argmax over all 94 element rows),
    ``"training"`` (the model's training elements, ``config.data.elements``) or a list of symbols. The argmax of
    each element slot is then taken over those rows only; the generated matrices themselves are unchanged.
    ``precision``: "fp32", "bf16" (the denoiser under bf16 autocast, the integrator in fp32) or "auto" (bf16
    where the hardware has it natively).
    """
    if symmetrize is not None and symmetrize <= 0:
        raise ValueError(f"symmetrize must be a tolerance > 0 A, got {symmetrize}")
    model = checkpoint if isinstance(checkpoint, CrystalModel) else load_model(checkpoint, device)
    diffusion = sampler_settings(model, steps=steps, churn=churn)
    allowed = allowed_elements(model, elements)
    device = next(model.denoiser.parameters()).device
    cond = model.normalise_condition(guidance) if guidance else None
    generator = torch.Generator(device=device).manual_seed(int(seed))
    start = time.perf_counter()
    out = sample_matrices(model.denoiser, n, model.encoder.shape, diffusion, cond=cond,
                          guidance_scale=guidance_scale, generator=generator, batch_size=batch_size,
                          device=device, progress=progress, precision=precision)
    matrices = model.scaler.inverse_transform(out.samples.double().cpu()).numpy()
    structures = model.encoder.decode_many(_restrict_elements(matrices, allowed, model.encoder.n_elements))
    unsymmetrized = done = None
    if symmetrize is not None:
        from crysgen.symmetry import symmetrize_structures

        unsymmetrized = structures
        structures, done = symmetrize_structures(structures, symmetrize)
    seconds = time.perf_counter() - start
    settings = {"checkpoint": str(model.path), "n": n, "steps": diffusion.steps,
                "guidance": guidance or {}, "guidance_scale": guidance_scale if guidance else None, "seed": seed,
                "batch_size": batch_size, "device": str(device), "nfe": out.nfe, "seconds": seconds,
                "symmetrize": symmetrize, "S_churn": diffusion.S_churn, "training_data": training_data(model),
                "elements": allowed, "precision": resolve_precision(precision, device)}
    return SampleResult(structures, matrices, out.nfe, seconds, settings, unsymmetrized, done)


def sampler_settings(model: CrystalModel, *, steps: int | None = None, churn: float | None = None):
    """The sampler settings a call uses, resolved in this one place: the model file's, replaced key by key by its
    ``NAME.sampler.yaml`` sidecar (read by :func:`crysgen.checkpoint.load_model`), then by the call's ``steps`` and
    ``churn`` (EDM's ``S_churn``) where given. Returns the model's ``DiffusionConfig`` with those replaced."""
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 1):
        raise ValueError(f"steps must be an integer >= 1 (None: the model's), got {steps}")
    if churn is not None and not (math.isfinite(churn) and churn >= 0):
        raise ValueError(f"churn must be a finite number >= 0, got {churn}")
    changes = {k: v for k, v in (("steps", None if steps is None else int(steps)),
                                 ("S_churn", None if churn is None else float(churn))) if v is not None}
    return dataclasses.replace(model.config.diffusion, **changes)


def allowed_elements(model: CrystalModel, elements: Sequence[str] | str | None) -> list[str] | None:
    """The element symbols decoding may choose from (None: all 94), checked."""
    from pymatgen.core import Element

    if elements is None:
        return None
    if isinstance(elements, str):
        if elements != "training":
            raise ValueError(f"elements must be 'training', a list of element symbols or None, got {elements!r}")
        recorded = model.config.data.elements
        if not recorded:
            raise ValueError(f"{model.path} records no training elements; pass the symbols instead")
        return list(recorded)
    symbols = list(elements)
    unknown = [e for e in symbols if not Element.is_valid_symbol(e) or Element(e).Z > 94]
    if unknown or not symbols:
        raise ValueError(f"elements: not element symbols with Z <= 94: {unknown or 'none given'}")
    return symbols


def _restrict_elements(matrices: np.ndarray, allowed: list[str] | None, n_elements: int) -> np.ndarray:
    """Element rows outside ``allowed`` set to -inf in the element block, so each slot's argmax skips them."""
    if allowed is None:
        return matrices
    from pymatgen.core import Element

    keep = np.zeros(94, dtype=bool)
    keep[[Element(e).Z - 1 for e in allowed]] = True
    out = matrices.copy()
    out[:, :94, :n_elements][:, ~keep, :] = -np.inf
    return out


def training_data(model: CrystalModel) -> dict[str, Any]:
    """What the model was trained on: ``dataset`` (as configured: a name or a path), ``name``, ``split`` and
    ``source`` (the CSV's absolute path when it was trained), from the checkpoint's metadata."""
    data = dict(model.meta.get("data") or {})
    out = {"dataset": data.get("dataset", model.config.data.dataset),
           "split": data.get("split", model.config.data.split), "source": data.get("source")}
    if data.get("name"):
        out["name"] = data["name"]
    return out


def summary_rows(structures: list, validity: bool = True, symmetrized: list[bool] | None = None
                 ) -> list[dict[str, Any]]:
    """One row per sample: formula, n_sites, volume, density, space group (spglib, symprec 0.1), whether it
    was symmetrised (when ``symmetrized`` is given) and (optionally) CDVAE validity flags."""
    from crysgen.symmetry import space_group_number

    if validity:
        from crysgen.evaluation import composition_validity, structure_validity
    rows = []
    for index, s in enumerate(structures):
        row: dict[str, Any] = {"index": index, "decoded": s is not None}
        if s is not None:
            row.update(formula=s.composition.reduced_formula, n_sites=len(s), volume=round(s.volume, 4),
                       density=round(float(s.density), 4), space_group=space_group_number(s))
            if symmetrized is not None:
                row["symmetrized"] = symmetrized[index]
            if validity:
                row.update(struct_valid=structure_validity(s), comp_valid=composition_validity(s.composition))
        rows.append(row)
    return rows


def write_samples(result: SampleResult, out_dir: str | os.PathLike, validity: bool = True) -> Path:
    """CIFs (``sample_00000.cif``...), ``summary.csv`` and ``sampling.json`` in ``out_dir`` (and the decoded
    cells in ``unsymmetrized/`` when the samples were symmetrised); returns the CSV.

    The new set is written completely into a staging folder inside ``out_dir`` first, so a failure while writing
    (disk full, Ctrl-C) leaves an earlier set untouched. Then it is moved into place by renames, which need no
    space; a marker (``UNFINISHED_MARKER``) covers those few renames, so that readers never take a mixture for a
    finished set. CIFs of an earlier set that this one does not replace are removed (one set per directory); other
    files in ``out_dir`` (metrics, plots) are left alone."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "crysgen sample writes a folder, and this is a file", str(out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob(".incoming-*"):  # staging left by a killed writer (writers hold the output's lock)
        shutil.rmtree(old, ignore_errors=True)
    staging = out_dir / f".incoming-{os.getpid()}"
    try:
        staging.mkdir()
        written = [p.name for p in write_cifs(result.structures, staging)]
        if result.unsymmetrized is not None:
            written += [f"unsymmetrized/{p.name}" for p in write_cifs(result.unsymmetrized, staging / "unsymmetrized")]
        rows = summary_rows(result.structures, validity, result.symmetrized)
        columns = ["index", "decoded", "formula", "n_sites", "volume", "density", "space_group"]
        columns += ["symmetrized"] if result.symmetrized is not None else []
        columns += ["struct_valid", "comp_valid"] if validity else []
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_json(staging / "sampling.json", {**result.settings, "n_decoded": result.n_decoded})
        atomic_write_text(staging / "summary.csv", buffer.getvalue())
        marker = atomic_write_text(out_dir / UNFINISHED_MARKER,
                                   "crysgen sample was stopped while writing this directory: sample again\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # from here on only renames and deletions: nothing can fail for lack of space
    for stale in [*out_dir.glob("sample_*.cif"), *out_dir.glob("unsymmetrized/sample_*.cif"),
                  out_dir / "summary.csv", out_dir / "sampling.json"]:
        if str(stale.relative_to(out_dir)) not in written:
            stale.unlink(missing_ok=True)
    if result.unsymmetrized is not None:
        (out_dir / "unsymmetrized").mkdir(exist_ok=True)
    for name in [*written, "sampling.json", "summary.csv"]:  # the summary last: it says "finished"
        os.replace(staging / name, out_dir / name)
    shutil.rmtree(staging, ignore_errors=True)
    marker.unlink()
    return out_dir / "summary.csv"
