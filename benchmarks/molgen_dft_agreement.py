"""molgen's B3LYP hook against QM9's own labels: HOMO, LUMO, gap and dipole recomputed at QM9 geometries.

QM9 was computed with Gaussian 09 at B3LYP/6-31G(2df,p). Our ``PySCFHook`` default basis ``"qm9"`` rebuilds
Gaussian's definition of that basis (``molgen.qm_basis``); PySCF's built-in ``"6-31G(2df,p)"`` is run beside it
for comparison. Molecules: the first ``--first`` QM9 entries (methane, ammonia, water, acetylene, ...) plus the
first ``--fluorinated`` entries with fluorine and at most 8 atoms. Results are cached per molecule and basis
under ``--work``, so an interrupted run resumes.

Usage:
  python -m benchmarks.molgen_dft_agreement --first 12 --fluorinated 4 --work runs/dft-agreement
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.harness import write_results

BASES = ("qm9", "6-31G(2df,p)")
TARGETS = (("homo", "homo_eV"), ("lumo", "lumo_eV"), ("gap", "gap_eV"), ("mu", "dipole_D"))


def select_molecules(first: int, fluorinated: int, scan: int = 3000):
    """Rows of the QM9 table: the first ``first`` molecules and the first small fluorinated ones."""
    from molgen.data import load_qm9_table

    table = load_qm9_table(limit=max(first, scan))
    rows = list(range(first))
    rows += [k for k in range(len(table)) if 9 in table.numbers[k] and len(table.numbers[k]) <= 8][:fluorinated]
    return table, rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=12)
    parser.add_argument("--fluorinated", type=int, default=4)
    parser.add_argument("--work", required=True, help="hook cache folder (resumable)")
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args(argv)

    from molgen.data import QM9_PROPERTIES
    from molgen.hooks import MoleculeRecord, PySCFHook
    from shared.hooks import run_hook

    table, rows = select_molecules(args.first, args.fluorinated)
    records = [MoleculeRecord.from_arrays(table.numbers[k], table.positions[k]) for k in rows]
    column = {name: QM9_PROPERTIES.index(name) for name, _ in TARGETS}
    per_molecule, summary = [], {}
    for basis in BASES:
        start = time.perf_counter()
        results = run_hook(PySCFHook(basis=basis), records, cache_dir=f"{args.work}/{basis}", progress=True)
        seconds = time.perf_counter() - start
        errors = {name: [] for name, _ in TARGETS}
        for k, result in zip(rows, results):
            if result.status != "ok":
                raise RuntimeError(f"QM9 index {int(table.index[k])} failed with basis {basis}: {result.reason}")
            row = {"basis": basis, "qm9_index": int(table.index[k]), "smiles": table.smiles[k]}
            for name, key in TARGETS:
                diff = result.values[key] - float(table.properties[k][column[name]])
                errors[name].append(diff)
                row[f"d_{name}" + ("_D" if name == "mu" else "_meV")] = round(diff * (1 if name == "mu" else 1000), 1
                                                                              if name != "mu" else 4)
            per_molecule.append(row)
        for name, _ in TARGETS:
            e = np.abs(errors[name])
            summary[f"{basis}/{name}_mae"] = float(e.mean())
            summary[f"{basis}/{name}_max"] = float(e.max())
        summary[f"{basis}/within_0.03eV_0.05D"] = int(sum(
            all(abs(errors[n][i]) <= (0.05 if n == "mu" else 0.03) for n in ("homo", "lumo", "gap", "mu"))
            for i in range(len(rows))))
        summary[f"{basis}/seconds"] = seconds
    summary["molecules"] = len(rows)
    protocol = {
        "level": "B3LYP (PySCF xc='b3lypg', VWN-RPA as in Gaussian), RKS, grid level 3, conv_tol 1e-9",
        "geometries": "QM9's own (qm9pack XYZ), no re-optimisation",
        "reference": "QM9 labels: HOMO, LUMO, gap (Hartree -> eV), dipole (Debye)",
        "bases": "'qm9' = Gaussian's 6-31G(2df,p): d exponents 2x/0.5x the 6-31G* 0.8, 6 Cartesian d, 7 pure f "
                 "(molgen.qm_basis); '6-31G(2df,p)' = PySCF's built-in (BSE) definition, spherical",
        "units": "HOMO/LUMO/gap differences in meV, dipole in Debye; MAE/max in eV and Debye",
        "threads": "wall times on this 2-core machine, 1 process, other jobs running",
    }
    command = "python -m benchmarks.molgen_dft_agreement " + " ".join(argv if argv is not None else sys.argv[1:])
    paths = write_results("molgen_dft_agreement", summary, protocol, command, per_molecule,
                          results_dir=args.results_dir)
    for key, value in summary.items():
        print(f"{key:>36}: {value:.4g}" if isinstance(value, float) else f"{key:>36}: {value}")
    print("wrote", *paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
