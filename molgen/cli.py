"""The ``molgen`` command line: ``molgen COMMAND [options]``.

To add a command, write ``add_<name>_parser(subparsers)`` (create the subparser, call
``shared.cli_common.add_common_options`` if it needs --device/--seed/--data-dir, and
``set_defaults(handler=...)`` with a handler ``fn(args) -> int | None``), then append it to ``SUBCOMMANDS``.
Handlers import heavy or optional libraries lazily so that ``molgen --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from molgen import __version__
from shared.cli_common import add_version_parser as _add_version_parser
from shared.cli_common import add_common_options, build_parser, run_cli

PROG = "molgen"
DESCRIPTION = "Score-based and flow-matching generative models for molecules."


def add_version_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return _add_version_parser(subparsers, PROG, __version__)


# --- evaluate -------------------------------------------------------------------------------------------------


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("evaluate", help="metric table of the molecules in an SDF or XYZ file")
    parser.add_argument("file", help="SDF/MOL or (multi-)XYZ file of 3D molecules with explicit hydrogens")
    parser.add_argument("--out", default=None, help="JSON output (default: FILE with suffix .metrics.json)")
    parser.add_argument("--reference", default=None,
                        help="training molecules for novelty: a SMILES file (one per line) or a prepared QM9 .pt "
                             "(its train split)")
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="skip unreadable molecules (counted in the output) instead of stopping")
    parser.set_defaults(handler=_evaluate)
    return parser


def _evaluate(args: argparse.Namespace) -> int:
    from molgen.io import molecules_to_batch, read_molecules
    from molgen.metrics import evaluate_molecules
    from shared.io import atomic_write_json

    read = read_molecules(args.file, on_error="skip" if args.skip_unreadable else "raise")
    context = {"train_smiles": _reference_smiles(args.reference) if args.reference else None}
    report = evaluate_molecules(molecules_to_batch(read.mols), context)
    out = Path(args.out) if args.out else read.path.with_suffix(".metrics.json")
    record = {"file": str(read.path), "n_molecules": len(read), "n_skipped": len(read.skipped),
              "skipped": [{"record": k, "reason": r} for k, r in read.skipped],
              "xyz_bond_orders_not_perceived": int(sum(not ok for ok in read.bonds_perceived)),
              **report.to_dict()}
    atomic_write_json(out, record)
    width = max(len(name) for name in report.metrics) if report.metrics else 10
    print(f"{len(read)} molecules from {read.path}" + (f" ({len(read.skipped)} skipped)" if read.skipped else ""))
    for name, value in report.metrics.items():
        print(f"{name:<{width}}  {value:.4f}")
    for name, why in report.skipped.items():
        print(f"{name:<{width}}  skipped: {why}")
    print(f"wrote {out}")
    return 0


def _reference_smiles(source: str) -> list[str]:
    from shared.paths import require_file

    path = require_file(source, "reference molecules")
    if path.suffix == ".pt":
        from molgen.data import QM9Dataset

        return QM9Dataset(path, "train").smiles()
    smiles = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not smiles:
        raise ValueError(f"{path}: no SMILES found")
    return smiles


# --- dft ------------------------------------------------------------------------------------------------------

_DFT_COLUMNS = ("energy_eV", "homo_eV", "lumo_eV", "gap_eV", "dipole_D")


def add_dft_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("dft", help="xTB or B3LYP single points for the molecules of an SDF/XYZ file")
    parser.add_argument("file", help="SDF/MOL or (multi-)XYZ file")
    parser.add_argument("--method", choices=("xtb", "b3lyp"), default="xtb",
                        help="xtb: GFN2-xTB (tblite); b3lyp: B3LYP/6-31G(2df,p) with PySCF (slow)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--cache", default=None,
                        help="result cache (default: FILE's folder/.molgen-dft-cache); reruns resume from it")
    parser.add_argument("--out", default=None,
                        help="output prefix (default: FILE without suffix + .METHOD); writes PREFIX.csv/.json")
    parser.add_argument("--retry-failed", action="store_true", help="recompute cached failures")
    parser.set_defaults(handler=_dft)
    return parser


def _dft(args: argparse.Namespace) -> int:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from molgen.hooks import MoleculeRecord, PySCFHook, XTBHook
    from molgen.io import read_molecules
    from shared.hooks import run_hook
    from shared.io import atomic_write_json, atomic_write_text

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    read = read_molecules(args.file, elements=None)
    records = [MoleculeRecord.from_mol(mol) for mol in read.mols]
    hook = XTBHook() if args.method == "xtb" else PySCFHook()
    cache = Path(args.cache) if args.cache else read.path.parent / ".molgen-dft-cache"
    executor = None
    if args.workers > 1:
        executor = ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"))
    try:
        results = run_hook(hook, records, executor=executor, cache_dir=cache, retry_failed=args.retry_failed)
    finally:
        if executor is not None:
            executor.shutdown()
    rows = []
    for k, (name, result) in enumerate(zip(read.names, results)):
        row = {"index": k, "name": name, "status": result.status, "reason": result.reason or "",
               "cached": result.cached, "elapsed_s": round(result.elapsed_s, 3)}
        row.update({column: result.values.get(column, "") for column in _DFT_COLUMNS})
        rows.append(row)
    prefix = Path(args.out) if args.out else read.path.with_suffix(f".{args.method}")
    atomic_write_text(prefix.with_name(prefix.name + ".csv"), _csv(rows))
    atomic_write_json(prefix.with_name(prefix.name + ".json"),
                      {"file": str(read.path), "method": args.method, "hook": hook.name,
                       "results": [{"index": k, "name": n, "status": r.status, "reason": r.reason,
                                    "values": r.values} for k, (n, r) in enumerate(zip(read.names, results))]})
    n_ok = sum(r.ok for r in results)
    print(f"{n_ok}/{len(results)} ok ({sum(r.cached for r in results)} from cache); wrote {prefix}.csv/.json")
    return 0 if n_ok == len(results) else 1


def _csv(rows: list[dict]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# --- train-regressor ------------------------------------------------------------------------------------------


def add_train_regressor_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train-regressor",
                                   help="train a QM9 property regressor (train_regressor half, early stopping)")
    parser.add_argument("--property", required=True, help="alpha, gap, homo, lumo, mu or Cv")
    parser.add_argument("--qm9", required=True, help="prepared QM9 file (molgen.data.prepare_qm9)")
    parser.add_argument("--run-dir", required=True, help="output folder (best.pt, config.yaml, logs, summary)")
    parser.add_argument("--config", default=None, help="YAML RegressorTrainConfig")
    parser.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. trainer.max_steps=5000")
    add_common_options(parser, data_dir=False)
    parser.set_defaults(handler=_train_regressor)
    return parser


def _train_regressor(args: argparse.Namespace) -> int:
    from molgen.train_regressor import RegressorTrainConfig, evaluate_regressor, train_regressor
    from shared.cli_common import resolve_device
    from shared.config import load_config

    device = resolve_device(args.device)
    overrides = [f"property={args.property}", f"data={args.qm9}", f"trainer.seed={args.seed}",
                 f"trainer.device={device}", *args.overrides]
    config = load_config(RegressorTrainConfig, args.config, overrides)
    summary = train_regressor(config, args.run_dir, resume=args.resume)
    test = evaluate_regressor(Path(args.run_dir) / "best.pt", config.data, config.property)
    print(f"{config.property}: {summary['steps']} steps ({summary['stop_reason']}), best valid MAE "
          f"{summary['best_valid_mae']:.4g} {summary['unit']}, test MAE {test['mae']:.4g} {test['unit']}")
    return 0


SUBCOMMANDS = [add_version_parser, add_evaluate_parser, add_dft_parser, add_train_regressor_parser]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``molgen`` console script; returns the exit code."""
    return run_cli(build_parser(PROG, DESCRIPTION, SUBCOMMANDS), argv)


if __name__ == "__main__":
    sys.exit(main())
