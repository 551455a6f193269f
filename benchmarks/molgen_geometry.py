"""Honest geometry of 3D molecules: generated sample files against QM9 test molecules through one pipeline.

Per set of molecules (an SDF file, or QM9 test molecules as the ceiling row):

* ``stable`` (strict closed-shell valences), ``valid`` (RDKit), ``connected``, ``bond_windows`` (every bond in its
  QM9-derived (element pair, bond order) window, ``molgen.metrics.windows``) and ``sound``, all four together;
  ``bond_length_fraction`` (share of bonds in window), ``pair_windows`` (bond order ignored), ``angles``,
  ``no_clash``, ``posebusters_valid`` (PoseBusters "mol" checks);
* ``chemist_windows``: a check this suite did not tune, the element-pair windows used when the suite was tried as
  a new user would (C-C 1.15-1.65, C-N 1.10-1.60, C-O 1.15-1.50, X-H 0.90-1.20 A; this benchmark adds C-F
  1.25-1.45, N-N 1.10-1.55, N-O 1.15-1.50 and O-O 1.20-1.55 for the pairs that list left out): every bond inside;
* strain: MMFF94 relaxation energy (median, eV per molecule) and heavy-atom RMSD of the molecules MMFF relaxes
  (valid, connected, closed shell), the fraction whose bonding survives, and the same with GFN2-xTB on the first
  ``--xtb-n`` molecules of each set;
* bond-length statistics of four classes (median and standard deviation): C-H, C-C single, C=C, C#C.

    python -m benchmarks.molgen_geometry --sdf default300=runs/geom/default300.sdf --qm9-n 300 --xtb-n 60
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import write_results

CHEMIST_WINDOWS = {(6, 6): (1.15, 1.65), (6, 7): (1.10, 1.60), (6, 8): (1.15, 1.50), (1, 6): (0.90, 1.20),
                   (1, 7): (0.90, 1.20), (1, 8): (0.90, 1.20), (6, 9): (1.25, 1.45), (7, 7): (1.10, 1.55),
                   (7, 8): (1.15, 1.50), (8, 8): (1.20, 1.55)}
BOND_CLASSES = {"C-H": (1, 6, 1), "C-C": (6, 6, 1), "C=C": (6, 6, 2), "C#C": (6, 6, 3)}


def chemist_windows(batch) -> torch.Tensor:
    """(B,) every bond inside the untuned element-pair windows above (unknown pairs fail)."""
    from molgen.metrics.windows import bond_records

    za, zb, _, length = bond_records(batch)
    b = torch.triu((batch.bonds > 0) & batch.mask.unsqueeze(-1) & batch.mask.unsqueeze(-2), 1).nonzero()[:, 0]
    lo = torch.tensor([CHEMIST_WINDOWS.get((int(a), int(c)), (np.nan, np.nan))[0] for a, c in zip(za, zb)])
    hi = torch.tensor([CHEMIST_WINDOWS.get((int(a), int(c)), (np.nan, np.nan))[1] for a, c in zip(za, zb)])
    bad = ~((length >= lo) & (length <= hi))
    ok = torch.ones(len(batch), dtype=torch.bool)
    ok[b[bad]] = False
    return ok


def bond_statistics(batch) -> dict:
    from molgen.metrics.windows import bond_records

    za, zb, cat, length = bond_records(batch)
    out = {}
    for name, (a, c, order) in BOND_CLASSES.items():
        x = length[(za == a) & (zb == c) & (cat == order)]
        if len(x) >= 2:
            out[f"{name} median"] = round(float(x.median()), 3)
            out[f"{name} std"] = round(float(x.std()), 3)
    return out


def _strain(mols, method: str, workers: int) -> dict:
    from molgen.relax import relax_molecules

    start = time.perf_counter()
    results = relax_molecules(mols, method, workers=workers)
    seconds = time.perf_counter() - start
    ok = [r for r in results if r.status == "ok"]
    out = {f"{method}_relaxed": len(ok) / len(results),
           f"{method}_bonding_survives": sum(bool(r.bonding_survives) for r in ok) / len(results),
           f"{method}_s_per_mol": seconds / len(results)}
    if ok:
        out[f"{method}_strain_median_eV"] = statistics.median(r.relax_energy_eV for r in ok)
        out[f"{method}_rmsd_median_A"] = statistics.median(r.heavy_rmsd_A for r in ok)
    return out


def evaluate_set(label: str, mols: list, xtb_n: int, workers: int) -> dict:
    from molgen.io import molecules_to_batch
    from molgen.metrics.geometry import geometry_checks
    from molgen.metrics.soundness import molecule_soundness, posebusters_checks

    batch = molecules_to_batch(mols)
    sound = molecule_soundness(batch)
    geometry = geometry_checks(batch)
    row = {"set": label, "n": len(mols)}
    for name in ("stable", "valid", "connected", "bond_windows", "sound"):
        row[name] = float(sound[name].double().mean())
    row["bond_length_fraction"] = float(geometry["n_bonds_in_window"].sum() / geometry["n_bonds"].sum())
    row["pair_windows"] = float(geometry["bond_lengths_in_pair_windows"].double().mean())
    row["angles"] = float(geometry["bond_angles_ok"].double().mean())
    row["no_clash"] = float(geometry["no_clash"].double().mean())
    row["chemist_windows"] = float(chemist_windows(batch).double().mean())
    row["posebusters_valid"] = float(np.mean(posebusters_checks(mols)["posebusters_valid"]))
    row["heavy_atoms_gt_9"] = float(((batch.numbers > 1) & batch.mask).sum(-1).gt(9).double().mean())
    row.update(_strain(mols, "mmff", 1))
    if xtb_n:
        row.update({f"{k} (first {min(xtb_n, len(mols))})": v for k, v in
                    _strain(mols[:xtb_n], "xtb", workers).items()})
    row.update(bond_statistics(batch))
    print(f"{label}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
          file=sys.stderr)
    return row


def qm9_test_mols(n: int, seed: int = 0) -> list:
    from molgen.data import QM9Dataset, prepare_qm9

    path = prepare_qm9(Path.home() / ".cache" / "scoregen" / "qm9")
    test = QM9Dataset(path, "test")
    picks = np.random.default_rng(seed).choice(len(test), size=min(n, len(test)), replace=False)
    return [test.to_mol(int(i)) for i in sorted(picks)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdf", nargs="*", default=[], metavar="LABEL=FILE", help="sample files to judge")
    parser.add_argument("--qm9-n", type=int, default=300, help="QM9 test molecules for the ceiling row (0: none)")
    parser.add_argument("--xtb-n", type=int, default=60, help="molecules per set relaxed with GFN2-xTB (0: none)")
    parser.add_argument("--workers", type=int, default=1, help="processes for the xTB relaxations")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="molgen_geometry")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from rdkit import RDLogger

    from molgen.io import read_molecules

    RDLogger.DisableLog("rdApp.*")
    rows = []
    for item in args.sdf:
        label, _, path = item.partition("=")
        rows.append(evaluate_set(label, read_molecules(path).mols, args.xtb_n, args.workers))
    if args.qm9_n:
        rows.append(evaluate_set(f"QM9 test ({args.qm9_n}, ceiling)", qm9_test_mols(args.qm9_n), args.xtb_n,
                                 args.workers))
    protocol = {
        "sets": "each --sdf file as written by molgen sample (raw generated geometry unless the file says relax); "
                "QM9 test molecules (random, seed 0) at their own B3LYP geometries as the ceiling row",
        "windows": "molgen.metrics.windows: QM9 train_generator 0.01-99.99 % quantiles per (pair, bond order) "
                   "+- 0.05 A; angles per (centre, degree, small ring) +- 5 degrees",
        "sound": "strict valence stability, RDKit validity, one fragment and every bond in its QM9 window",
        "chemist_windows": "untuned element-pair windows, see the module docstring",
        "strain": "relaxation energy E(start) - E(relaxed) per molecule (eV) and heavy-atom RMSD, for the molecules "
                  "the relaxer accepts (valid, connected, closed shell); bonding_survives: fraction of all "
                  "molecules relaxed whose RDKit-perceived connectivity still equals their bond graph",
    }
    command = "python -m benchmarks.molgen_geometry " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results(args.name, {"rows": rows}, protocol, command, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
