"""Per-molecule soundness: what a chemist checks before trusting a generated 3D molecule.

* ``molecule_soundness``: strict valence stability, RDKit validity, a single fragment and every bond inside its
  QM9 window, each per molecule, and ``sound``, all four together (the headline number of the molgen tables);
* ``posebusters_checks``: the PoseBusters "mol" checks (sanitisation, connectivity, bond lengths and angles against
  distance geometry bounds, internal steric clash, flat aromatic rings and double bonds, internal energy against an
  ETKDG ensemble); ``posebusters_valid`` is a molecule passing all of them. Two deviations from the packaged
  config, for time: the internal-energy ensemble has 10 conformers instead of 50 (0.26 s per QM9-sized molecule
  instead of ~2 s; a molecule fails only at 100x the ensemble's mean UFF energy, so the mean need not be
  precise), and the energy module runs once (posebusters 0.6's ``mol.yml`` lists it twice), on one thread (a
  deterministic ensemble);
* ``strain_records``: relaxation (``molgen.relax``, MMFF94 or GFN2-xTB) of every molecule: relaxation energy,
  heavy-atom RMSD and whether the bonding survives.
"""

from __future__ import annotations

import statistics
from typing import Sequence

import torch

from molgen.metrics.geometry import geometry_checks
from molgen.metrics.stability import STRICT_VALENCES, atom_stability
from molgen.representation import MolBatch

__all__ = ["molecule_soundness", "soundness_metrics", "posebusters_checks", "posebusters_metrics",
           "strain_metrics"]


def molecule_soundness(batch: MolBatch, checks: Sequence | None = None) -> dict[str, torch.Tensor]:
    """(B,) bool tensors ``stable``, ``valid``, ``connected``, ``bond_windows`` and ``sound`` (all four).

    ``checks``: ``molgen.metrics.chemistry.MoleculeCheck`` per molecule when already computed."""
    if checks is None:
        from rdkit import RDLogger

        from molgen.metrics.chemistry import check_molecule

        RDLogger.DisableLog("rdApp.*")  # an invalid molecule is a result here, not a warning
        try:
            checks = [check_molecule(m) for m in batch.to_mols(sanitize=False)]
        finally:
            RDLogger.EnableLog("rdApp.*")
    stable = (atom_stability(batch, STRICT_VALENCES) | ~batch.mask).all(-1)
    valid = torch.tensor([c.valid for c in checks], dtype=torch.bool)
    connected = torch.tensor([c.connected for c in checks], dtype=torch.bool)
    windows = geometry_checks(batch)["bond_lengths_ok"]
    return {"stable": stable, "valid": valid, "connected": connected, "bond_windows": windows,
            "sound": stable & valid & connected & windows}


def soundness_metrics(batch: MolBatch, checks: Sequence | None = None) -> dict[str, float]:
    """``sound``: the fraction of molecules that are stable, valid, connected and inside the bond windows."""
    return {"sound": float(molecule_soundness(batch, checks)["sound"].double().mean())}


_POSEBUSTERS_COLUMNS = ("sanitization", "all_atoms_connected", "bond_lengths", "bond_angles", "internal_steric_clash",
                        "aromatic_ring_flatness", "double_bond_flatness", "internal_energy")


def posebusters_checks(mols: Sequence) -> dict[str, list[bool]]:
    """PoseBusters' "mol" checks per molecule (a check that cannot run on a molecule counts as failed) and
    ``posebusters_valid``, all of them passed."""
    from shared.evaluation import require_package

    require_package("posebusters", extra="chem")
    import logging

    from posebusters import PoseBusters
    from rdkit import Chem, RDLogger

    # posebusters points RDKit's log handler at devnull and back at the sys.stderr of that moment; if that stream
    # has since been closed (a replaced stderr: a notebook cell's, a test's capture), its next setStream flushes
    # the closed stream and every InChI check fails. Point the handler at today's stderr first.
    import sys

    import rdkit

    handler = getattr(rdkit, "log_handler", None)
    if handler is not None and getattr(handler, "stream", None) is not sys.stderr:
        handler.stream = sys.stderr
    # posebusters sends RDKit's messages to Python's "rdkit" logger: a failed check is a result, not a warning
    loggers = {name: logging.getLogger(name) for name in ("posebusters", "rdkit")}
    levels = {name: logger.level for name, logger in loggers.items()}
    RDLogger.DisableLog("rdApp.*")
    for logger in loggers.values():
        logger.setLevel(logging.CRITICAL)
    try:
        frame = PoseBusters(config=_posebusters_config()).bust([Chem.Mol(m) for m in mols], None, None,
                                                               full_report=False)
    finally:
        RDLogger.EnableLog("rdApp.*")
        for name, logger in loggers.items():
            logger.setLevel(levels[name])
    out = {}
    for column in frame.columns:
        out[column] = [bool(v) if v == v and v is not None else False for v in frame[column].tolist()]
    out["posebusters_valid"] = [all(row) for row in zip(*(out[c] for c in frame.columns))]
    return out


ENSEMBLE_CONFORMERS = 10


def _posebusters_config() -> dict:
    """PoseBusters' "mol" config with one energy module of ``ENSEMBLE_CONFORMERS`` conformers."""
    import copy
    from pathlib import Path

    import posebusters
    import yaml

    config = yaml.safe_load((Path(posebusters.__file__).parent / "config" / "mol.yml").read_text())
    modules, energy = [], None
    for module in config["modules"]:
        if module.get("function") == "energy_ratio":
            energy = energy or copy.deepcopy(module)
            energy.update({k: v for k, v in module.items() if k not in energy})
            continue
        modules.append(module)
    if energy is not None:
        energy.setdefault("parameters", {})["ensemble_number_conformations"] = ENSEMBLE_CONFORMERS
        energy["parameters"]["num_threads"] = 1  # all threads made the ensemble depend on the machine's load
        energy.setdefault("chosen_binary_test_output", ["energy_ratio_passes"])
        energy.setdefault("rename_outputs", {"energy_ratio_passes": "Internal energy"})
        modules.append(energy)
    config["modules"] = modules
    return config


def posebusters_metrics(mols: Sequence) -> dict[str, float]:
    """Fraction passing ``posebusters_valid`` and each of the geometric checks (``pb_<check>``)."""
    checks = posebusters_checks(mols)
    n = len(mols)
    out = {"posebusters_valid": sum(checks["posebusters_valid"]) / n}
    for column in _POSEBUSTERS_COLUMNS:
        if column in checks:
            out[f"pb_{column}"] = sum(checks[column]) / n
    return out


def strain_metrics(results: Sequence, prefix: str = "strain_") -> dict[str, float]:
    """Summary of ``molgen.relax.RelaxResult``s: the fraction relaxed, median and 90th-percentile relaxation energy
    (eV per molecule) and heavy-atom RMSD (A) of the relaxed ones, and the fraction of all molecules relaxed with
    their bonding intact."""
    n = len(results)
    if n == 0:
        raise ValueError("strain_metrics: no relaxation results")
    ok = [r for r in results if r.status == "ok"]
    energies = sorted(r.relax_energy_eV for r in ok)
    rmsd = [r.heavy_rmsd_A for r in ok]
    out = {f"{prefix}relaxed": len(ok) / n,
           f"{prefix}bonding_survives": sum(bool(r.bonding_survives) for r in ok) / n}
    if ok:
        out[f"{prefix}median_eV"] = statistics.median(energies)
        out[f"{prefix}p90_eV"] = energies[min(len(energies) - 1, int(0.9 * len(energies)))]
        out[f"{prefix}rmsd_median_A"] = statistics.median(rmsd)
    return out
