"""DFT runs over molecular graphs: the backend hook, the cached batch run, the reference to compare with, the
per-molecule table (``graphgen dft``) and the property metrics of ``graphgen evaluate --dft``.

The QM backends belong to molgen (``molgen.hooks``). :func:`make_dft_hook` is the one place graphgen reaches them,
lazily inside the function (docs/architecture.md), so importing graphgen never loads molgen.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from graphgen.dft import (DFT_PROPERTIES, EmbeddingSettings, GraphDFTHook, compare_distributions, molblock,
                          plot_property_histograms, property_values)
from shared.hooks import run_hook
from shared.io import atomic_write_json, atomic_write_text

__all__ = ["DFT_COLUMNS", "DFTTable", "dft_metrics", "dft_reference", "dft_table", "make_dft_hook", "run_dft",
           "write_dft_table"]

DFT_COLUMNS = ("energy_eV", "homo_eV", "lumo_eV", "gap_eV", "dipole_D", "force_field", "conformers_embedded")
METHODS = ("xtb", "b3lyp")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def make_dft_hook(method: str = "xtb", *, optimize: bool = False, conformers: int = 3, force_field: str = "mmff",
                  seed: int = 0) -> GraphDFTHook:
    """SMILES -> 3D embedding (ETKDG + force field) -> optional GFN2-xTB optimisation -> ``method`` single point."""
    if method not in METHODS:
        raise ValueError(f"unknown DFT method {method!r}; choose from {', '.join(METHODS)}")
    from molgen.hooks import QM_HOOKS, XTBHook, MoleculeRecord, dft_input_problem

    backend = QM_HOOKS[method]()
    optimizer = XTBHook(optimize=True) if optimize else None
    embedding = EmbeddingSettings(conformers=conformers, force_field=force_field, seed=seed)
    return GraphDFTHook(backend, MoleculeRecord.from_mol, embedding, optimizer, check=dft_input_problem)


def run_dft(hook, smiles: Sequence[str], cache_dir: str | Path | None, *, workers: int = 1,
            retry_failed: bool = False, progress: bool = False) -> list:
    """``hook`` on every SMILES through ``shared.hooks.run_hook``: cached per molecule (a rerun resumes), in
    ``workers`` spawned processes; a failure is a result with its reason."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    executor = ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 1 else None
    try:
        return run_hook(hook, list(smiles), executor=executor, cache_dir=cache_dir, retry_failed=retry_failed,
                        progress=progress)
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)


def dft_reference(dataset: str | None, reference: str | Path | None, data_dir: str | Path | None, method: str,
                  warn: Callable[[str], None] = _stderr) -> tuple[dict, str] | None:
    """``(values per property, label)`` to compare with: an earlier ``graphgen dft`` JSON, QM9's labels, or None.

    Raises FileNotFoundError / ValueError for a missing or foreign reference file or a dataset without labels."""
    from shared.paths import require_file, resolve_data_dir

    if reference is not None:
        path = require_file(reference, "--reference (a JSON written by 'graphgen dft')")
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            values = [r["values"] for r in payload["results"] if r["status"] == "ok"]
            method = payload["method"]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"--reference {path}: not a JSON written by 'graphgen dft' ({err})") from None
        table = {name: [v[name] for v in values if v.get(name) is not None] for name in DFT_PROPERTIES}
        return table, f"{method} on {path.name}"
    if dataset is None:
        return None
    if dataset != "QM9":
        raise ValueError(f"--dataset {dataset}: property labels exist only for QM9; pass --reference with a "
                         "'graphgen dft' JSON of reference molecules instead")
    from graphgen.data import load_qm9, qm9_property_labels

    if method == "xtb":
        warn("note: QM9's labels are B3LYP; xTB's orbital energies differ systematically (HOMO by ~-4 eV): for a "
             "like-with-like comparison pass --reference with a 'graphgen dft' run on QM9 molecules")
    if resolve_data_dir(data_dir) is None:
        warn("note: no --data-dir / $SCOREGEN_DATA: comparing with all of QM9 (not the GDSS training split)")
        return qm9_property_labels(), "QM9 labels (all)"
    train, _ = load_qm9(data_dir)
    return qm9_property_labels(train.rows), "QM9 labels (GDSS train split)"


@dataclass
class DFTTable:
    """One row per input record (computed, failed or unreadable) and the summary against the reference."""

    rows: list[dict]  # flat, for CSV
    records: list[dict]  # with the values dict, for JSON
    sdf_blocks: list[str]  # the computed molecules' 3D geometries
    summary: dict
    results: list  # the hook results of the computed records


def dft_table(items: Sequence[str], results: Sequence[Any], computed: Sequence[int], where: str,
              reference: tuple[dict, str] | None) -> DFTTable:
    """Joins ``results`` (of the records ``computed``, by index into ``items``) back onto every record."""
    by_index = dict(zip(computed, results))
    rows, records, blocks = [], [], []
    for k, smiles in enumerate(items):
        result = by_index.get(k)
        status = result.status if result is not None else "unreadable"
        reason = (result.reason or "") if result is not None else f"unreadable {where}"
        values = result.values if result is not None else {}
        row = {"index": k, where: k + 1, "smiles": smiles, "status": status, "reason": reason,
               "cached": bool(result and result.cached), "elapsed_s": round(result.elapsed_s, 3) if result else 0}
        row.update({column: values.get(column, "") for column in DFT_COLUMNS})
        rows.append(row)
        records.append({"index": k, where: k + 1, "smiles": smiles, "status": status, "reason": reason or None,
                        "values": values})
        if status == "ok":
            props = "".join(f">  <{c}>\n{values[c]}\n\n" for c in ("smiles", *DFT_COLUMNS[:5]))
            blocks.append(molblock(values) + props + "$$$$\n")
    summary = compare_distributions(property_values(list(results)), reference[0] if reference else {})
    return DFTTable(rows, records, blocks, summary, list(results))


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["index"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_dft_table(prefix: str | Path, table: DFTTable, **header: Any) -> list[Path]:
    """PREFIX.csv, PREFIX.sdf and PREFIX.json (``header`` + summary + per-record results), each written atomically."""
    prefix = Path(prefix)
    paths = [prefix.with_name(prefix.name + suffix) for suffix in (".csv", ".sdf", ".json")]
    atomic_write_text(paths[0], _csv(table.rows))
    atomic_write_text(paths[1], "".join(table.sdf_blocks))
    atomic_write_json(paths[2], {**header, "summary": table.summary, "results": table.records})
    return paths


def dft_metrics(smiles: Sequence[str], method: str, *, dataset: str | None = None, reference: str | None = None,
                data_dir: str | Path | None = None, cache_dir: str | Path | None = None, workers: int = 1,
                plots: str | Path | None = None, progress: bool = False, hook=None) -> dict:
    """xTB/B3LYP property distributions of the valid molecules among ``smiles`` (flat ``dft_METHOD_*`` metrics),
    against QM9's labels (``dataset="QM9"``) or an earlier ``graphgen dft`` JSON (``reference``)."""
    from graphgen.metrics import canonical_smiles

    valid = [c for c in (canonical_smiles(s) if s else None for s in smiles) if c]
    if not valid:
        return {f"dft_{method}_ok_fraction": 0.0}
    ref = dft_reference(dataset, reference, data_dir, method)
    hook = hook or make_dft_hook(method)  # the dft command's defaults
    results = run_dft(hook, valid, cache_dir, workers=workers, progress=progress)
    values = property_values(results)
    summary = compare_distributions(values, ref[0] if ref else {})
    out = {f"dft_{method}_ok_fraction": sum(r.ok for r in results) / len(results)}
    for name, row in summary.items():
        out[f"dft_{method}_{name}_mean"] = row["mean"]
        out[f"dft_{method}_{name}_std"] = row["std"]
        if "wasserstein" in row:
            out[f"dft_{method}_{name}_w1"] = row["wasserstein"]
    if ref is not None:
        out[f"dft_{method}_reference"] = ref[1]
    if plots:
        plot_property_histograms(values, ref[0] if ref else {}, plots, label=f"valid samples ({method})",
                                 reference_label=ref[1] if ref else "reference", prefix=method)
    return out
