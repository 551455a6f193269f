"""The ``crysgen`` command line: ``crysgen COMMAND [options]``.

To add a command, write ``add_<name>_parser(subparsers)`` (create the subparser, call
``shared.cli_common.add_common_options`` for --device/--seed/--data-dir/--threads/--no-progress, and
``set_defaults(handler=...)`` with a handler ``fn(args) -> int | None``), then append it to ``SUBCOMMANDS``.
Handlers import heavy or optional libraries lazily so that ``crysgen --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from crysgen import __version__
from shared.cli_common import UserError, add_common_options, build_parser, resolve_device, run_cli
from shared.cli_common import add_version_parser as _add_version_parser

PROG = "crysgen"
DESCRIPTION = "Score-based and flow-matching generative models for crystal structures."


def add_version_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return _add_version_parser(subparsers, PROG, __version__)


# --- train --------------------------------------------------------------------------------------------------


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="train (or resume) a crystal-matrix EDM model")
    parser.add_argument("config", help="a packaged config name (" + ", ".join(_packaged_configs()) + "), a YAML "
                                       "config file, or a CDVAE CSV / directory of split CSVs to train on with "
                                       "the default settings")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. trainer.max_steps=1000")
    parser.add_argument("--split", default=None,
                        help="split to train on (train, val, test or another CSV of the dataset's folder); "
                             "replaces data.split")
    parser.add_argument("--run-dir", default=None, help="run directory (default runs/<date>-crysgen-<name>-<hash>)")
    add_common_options(parser, seed=False)
    parser.set_defaults(handler=_train)
    return parser


CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def _packaged_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def train_config_source(name: str) -> str | dict:
    """What ``crysgen train NAME`` reads: a YAML file, a packaged config of that name, or, for a CSV file or a
    directory, a config of default settings on that dataset (``{"data": {"dataset": NAME}}``)."""
    from shared.cli_common import packaged_config

    path = Path(name).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix.lower() == ".csv"):
        return {"data": {"dataset": str(path)}}
    return str(packaged_config(name, CONFIG_DIR))


def _train(args: argparse.Namespace) -> int:
    from crysgen.train import default_run_dir, load_train_config, train

    overrides = list(args.overrides)
    if args.split is not None:
        overrides.append(f"data.split={args.split}")
    if args.device != "auto":
        overrides.append(f"trainer.device={resolve_device(args.device)}")
    if args.no_progress:
        overrides.append("trainer.progress=false")
    config = load_train_config(train_config_source(args.config), overrides)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(config)
    print(f"run directory: {run_dir}")
    train(config, run_dir, args.data_dir)
    return 0


# --- sample -------------------------------------------------------------------------------------------------


def _guidance(items: list[str]) -> dict[str, float]:
    values = {}
    for item in items:
        name, sep, raw = item.partition("=")
        try:
            values[name.strip()] = float(raw)
        except ValueError:
            raise UserError(f"--guidance expects property=value with a number, got {item!r}") from None
        if not sep or not name.strip():
            raise UserError(f"--guidance expects property=value, got {item!r}")
    return values


def add_sample_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("sample", help="generate crystals (CIFs + summary.csv)")
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="model.pt or run directory (default: the embedded perov-5 model)")
    parser.add_argument("-n", "--num", type=int, default=100, help="number of crystals (default 100)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's, 100)")
    parser.add_argument("--guidance", action="append", default=[], metavar="PROP=VALUE",
                        help="condition on a property value (raw units); repeat for several properties")
    parser.add_argument("--scale", type=float, default=1.0, help="classifier-free guidance scale (default 1)")
    parser.add_argument("--batch-size", type=int, default=256)
    add_common_options(parser, data_dir=False)
    parser.set_defaults(handler=_sample)
    return parser


def _sample(args: argparse.Namespace) -> int:
    from crysgen.diffusion import SamplingError
    from crysgen.sample import sample_crystals, write_samples

    if args.num < 1:
        raise UserError(f"-n must be >= 1, got {args.num}")
    try:
        result = sample_crystals(args.checkpoint, args.num, steps=args.steps, guidance=_guidance(args.guidance),
                                 guidance_scale=args.scale, seed=args.seed, batch_size=args.batch_size,
                                 device=resolve_device(args.device), progress=not args.no_progress)
    except SamplingError as err:
        raise UserError(str(err)) from err
    csv_path = write_samples(result, args.out)
    print(f"{result.n_decoded}/{args.num} decoded crystals in {result.seconds:.1f} s "
          f"({result.nfe} denoiser evaluations each) -> {csv_path.parent}")
    return 0


# --- evaluate -----------------------------------------------------------------------------------------------


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="sample directory (CIFs + summary.csv), folder of CIFs, or CSV with a cif "
                                       "column")
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="skip structures that cannot be read (each reported by file name or CSV row, counted "
                             "from 1, with the reason) and go on with the rest; without it the first one stops the "
                             "command with exit code 2")


_SHOWN_SKIPPED = 5


def _read_source(args: argparse.Namespace):
    """The structures of ``args.source`` (a ``crysgen.io.StructureSet``), honouring --skip-unreadable; skipped
    ones are reported on stderr."""
    from crysgen.io import read_structures
    from shared.io import UnreadableRecord

    try:
        read = read_structures(args.source, on_error="skip" if args.skip_unreadable else "raise")
    except UnreadableRecord as err:
        raise UserError(f"{err} (pass --skip-unreadable to skip it and read the rest)") from err
    if read.skipped:
        shown = "; ".join(str(s) for s in read.skipped[:_SHOWN_SKIPPED])
        more = f"; and {len(read.skipped) - _SHOWN_SKIPPED} more" if len(read.skipped) > _SHOWN_SKIPPED else ""
        print(f"warning: {read.path}: skipped {len(read.skipped)} unreadable structure(s): {shown}{more}",
              file=sys.stderr)
    return read


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("evaluate", help="CDVAE metrics of generated crystals against a dataset split")
    _add_source_options(parser)
    parser.add_argument("--dataset", default="perov_5", help="benchmark (default perov_5)")
    parser.add_argument("--reference", default="test", help="reference split for coverage/Wasserstein (test)")
    parser.add_argument("--train-split", default="val",
                        help="split the model was trained on, for novelty (default val: perov-5 here trains on val)")
    parser.add_argument("--workers", type=int, default=1, help="processes for fingerprints (default 1)")
    parser.add_argument("--out", default=None, help="write metrics JSON here (default SOURCE/metrics.json)")
    add_common_options(parser, device=False)
    parser.set_defaults(handler=_evaluate)
    return parser


def _evaluate(args: argparse.Namespace) -> int:
    from concurrent.futures import ProcessPoolExecutor

    from crysgen.evaluate import evaluate_crystals
    from crysgen.train import default_cache_dir
    from shared.io import atomic_write_json

    read = _read_source(args)
    cache = default_cache_dir()
    reference = _reference_split(args, args.reference, cache)
    train = _reference_split(args, args.train_split, cache) if args.train_split else None
    pool = ProcessPoolExecutor(args.workers) if args.workers > 1 else None
    try:
        report = evaluate_crystals(read.structures, reference=reference, train=train, dataset=args.dataset,
                                   executor=pool, seed=args.seed, reference_cache_dir=cache / "fingerprints")
    finally:
        if pool is not None:
            pool.shutdown()
    report["protocol"].update(reference_split=args.reference, train_split=args.train_split)
    report["unreadable"] = [skipped.to_dict() for skipped in read.skipped]
    source = Path(args.source)
    out = Path(args.out) if args.out else (source if source.is_dir() else source.parent) / "metrics.json"
    atomic_write_json(out, report)
    for name, value in report["metrics"].items():
        print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    print(f"-> {out}")
    return 0


def _reference_split(args: argparse.Namespace, split: str, cache: Path) -> list:
    """A benchmark split's structures; rows its CIFs could not be parsed from are left out, and said so."""
    from crysgen.data import load_dataset

    dataset = load_dataset(args.dataset, split, args.data_dir, cache_dir=cache)
    if dataset.errors:
        first = dataset.errors[0]
        print(f"note: {args.dataset} {split}: {len(dataset.errors)} row(s) could not be parsed and are left out "
              f"(first: row {first.row + 1} {first.material_id}: {first.reason[:120]})", file=sys.stderr)
    return dataset.structures


# --- relax --------------------------------------------------------------------------------------------------


def add_relax_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("relax", help="relax generated crystals with CHGNet or EMT (ASE)")
    _add_source_options(parser)
    parser.add_argument("--calculator", choices=["chgnet", "emt"], default="chgnet")
    parser.add_argument("--fmax", type=float, default=0.1, help="force threshold in eV/A (default 0.1)")
    parser.add_argument("--steps", type=int, default=500, help="max optimiser steps (default 500)")
    parser.add_argument("--limit", type=int, default=None, help="relax only the first N crystals")
    parser.add_argument("--out", default=None, help="output directory (default SOURCE/relaxed)")
    parser.add_argument("--cache-dir", default=None, help="hook result cache (default: the output directory)")
    add_common_options(parser, device=False, seed=False, data_dir=False)
    parser.set_defaults(handler=_relax)
    return parser


def _relax(args: argparse.Namespace) -> int:
    from pymatgen.core import Structure

    from crysgen.hooks import ASECalculatorHook, CHGNetHook
    from crysgen.representation import write_cifs
    from shared.hooks import run_hook
    from shared.io import atomic_write_json

    read = _read_source(args)
    structures = [s for s in read.structures if s is not None][: args.limit]
    if args.calculator == "chgnet":
        hook = CHGNetHook(fmax=args.fmax, steps=args.steps)
    else:
        from ase.calculators.emt import EMT

        hook = ASECalculatorHook(EMT, fmax=args.fmax, steps=args.steps, relax_cell=True)
    source = Path(args.source)
    out = Path(args.out) if args.out else (source if source.is_dir() else source.parent) / "relaxed"
    results = run_hook(hook, [s.as_dict() for s in structures], cache_dir=args.cache_dir or out / "cache",
                       progress=not args.no_progress)
    relaxed = [Structure.from_dict(r.values["structure"]) if r.ok else None for r in results]
    write_cifs(relaxed, out, prefix="relaxed")
    records = [{"index": i, "status": r.status, "reason": r.reason,
                **{k: v for k, v in r.values.items() if k != "structure"}} for i, r in enumerate(results)]
    atomic_write_json(out / "energies.json", {"calculator": args.calculator, "results": records,
                                              "unreadable": [skipped.to_dict() for skipped in read.skipped]})
    n_ok = sum(r.ok for r in results)
    print(f"relaxed {n_ok}/{len(results)} crystals with {args.calculator} -> {out}")
    return 0


SUBCOMMANDS = [add_version_parser, add_train_parser, add_sample_parser, add_evaluate_parser, add_relax_parser]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crysgen`` console script; returns the exit code."""
    return run_cli(build_parser(PROG, DESCRIPTION, SUBCOMMANDS), argv)


if __name__ == "__main__":
    sys.exit(main())
