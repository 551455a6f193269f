"""The ``crysgen`` command line: ``crysgen COMMAND [options]``.

To add a command, write ``add_<name>_parser(subparsers)`` (create the subparser, call
``shared.cli_common.add_common_options`` for --device/--seed/--data-dir/--threads/--no-progress, and
``set_defaults(handler=...)`` with a handler ``fn(args) -> int | None``), then append it to ``SUBCOMMANDS``.
Handlers import heavy or optional libraries lazily so that ``crysgen --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from crysgen import __version__
from shared.cli_common import add_campaign_parser as _add_campaign_parser
from shared.cli_common import (UserError, add_common_options, add_strict_option, batch_exit_code, batch_summary,
                                build_parser, resolve_device, run_cli)
from shared.cli_common import add_version_parser as _add_version_parser
from shared.cli_common import nonnegative_float, positive_float, positive_int

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
    parser.set_defaults(handler=_train, output_lock="run_dir")
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
    from shared.training import distributed

    config = load_train_config(train_config_source(args.config), overrides)
    # a no-op without torchrun; with it, one process group for all ranks (gloo unless training on CUDA)
    distributed.init("nccl" if str(config.trainer.device).startswith("cuda") else "gloo")
    try:
        # rank 0 names the run directory (the date may differ between ranks at midnight)
        run_dir = Path(distributed.broadcast_object(str(args.run_dir or default_run_dir(config))))
        main = distributed.is_main()
        if main:
            print(f"run directory: {run_dir}")
        train(config, run_dir, args.data_dir, log=print if main else (lambda *a, **k: None))
    finally:
        distributed.cleanup()
    return 0


# --- sample -------------------------------------------------------------------------------------------------


def _guidance(items: list[str]) -> dict[str, float]:
    from shared.conditions import parse_targets

    return parse_targets(items, "--guidance")


def _elements(text: str | None):
    if text is None or text == "training":
        return text
    return [e.strip() for e in text.split(",") if e.strip()]


def add_sample_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("sample", help="generate crystals (CIFs + summary.csv)")
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="model.pt or run directory (default: the embedded perov-5 model)")
    parser.add_argument("-n", "--num", type=positive_int, default=100, help="number of crystals (default 100)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--steps", type=positive_int, default=None, help="sampler steps (default: the model's, 100)")
    # the same words as molgen (--condition, --guidance-scale); the older --guidance / --scale still work
    parser.add_argument("--condition", "--guidance", dest="guidance", action="append", default=[],
                        metavar="PROP=VALUE",
                        help="condition on a property value (raw units); repeat for several properties")
    parser.add_argument("--guidance-scale", "--scale", dest="scale", type=nonnegative_float, default=1.0,
                        help="classifier-free guidance scale (default 1)")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--symmetrize", type=_tolerance, default=None, metavar="TOL",
                        help="symmetrise each decoded crystal: pymatgen's refined structure within TOL A (e.g. "
                             "0.1); the decoded P1 cells go to OUT/unsymmetrized (default: off)")
    parser.add_argument("--churn", type=_churn, default=None, metavar="S",
                        help="EDM stochastic churn S_churn (0: deterministic Heun; default: the model's; see "
                             "benchmarks/results/crysgen_ablations.md for its effect on perov-5)")
    parser.add_argument("--elements", default=None, metavar="training|SYMBOLS",
                        help="elements the decoded crystals may contain: 'training' (the model's training set) or "
                             "symbols such as Ca,Ti,O (default: all 94, the paper's decoding)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                        help="the denoiser's precision: fp32 (default), bf16 autocast (the integrator stays fp32) "
                             "or auto (bf16 where the CPU/GPU has it natively)")
    add_common_options(parser, data_dir=False)
    parser.set_defaults(handler=_sample, output_lock="out")
    return parser


def _sample(args: argparse.Namespace) -> int:
    from crysgen.diffusion import SamplingError
    from crysgen.sampling import sample_crystals, write_samples

    if args.num < 1:
        raise UserError(f"-n must be >= 1, got {args.num}")
    try:
        result = sample_crystals(args.checkpoint, args.num, steps=args.steps, guidance=_guidance(args.guidance),
                                 guidance_scale=args.scale, seed=args.seed, batch_size=args.batch_size,
                                 device=resolve_device(args.device), progress=not args.no_progress,
                                 symmetrize=args.symmetrize, churn=args.churn,
                                 elements=_elements(args.elements), precision=args.precision)
    except SamplingError as err:
        raise UserError(str(err)) from err
    csv_path = write_samples(result, args.out)
    print(f"{result.n_decoded}/{args.num} decoded crystals in {result.seconds:.1f} s "
          f"({result.nfe} denoiser evaluations each) -> {csv_path.parent}")
    if result.symmetrized is not None:
        done = sum(result.symmetrized)
        print(f"symmetrised {done}/{result.n_decoded} within {args.symmetrize} A (decoded cells in "
              f"{csv_path.parent / 'unsymmetrized'})")
    return 0


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a tolerance in A, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the tolerance must be > 0 A, got {value}")
    return value


def _churn(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"churn must be a finite number >= 0, got {value}")
    return value


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
    parser.add_argument("--dataset", default=None,
                        help="the data to compare with: a benchmark name (perov_5, mp_20, carbon_24, or a folder "
                             "in <data-dir>/crystals), a directory of split CSVs, or a CDVAE CSV (default: the "
                             "dataset of the model, from SOURCE/sampling.json written by crysgen sample)")
    parser.add_argument("--reference", default="test", help="reference split for coverage/Wasserstein (test)")
    parser.add_argument("--train-split", default=None,
                        help="split for novelty (default: the split the model was trained on, from "
                             "sampling.json, else train; 'none' skips novelty)")
    parser.add_argument("--cov-cutoffs", type=positive_float, nargs=2, default=None, metavar=("STRUCT", "COMP"),
                        help="COV fingerprint-distance cut-offs (default: CDVAE's for its benchmarks; another "
                             "dataset gets no coverage without them)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="processes for fingerprints, checks and matching (default 1)")
    parser.add_argument("--out", default=None, help="write metrics JSON here (default SOURCE/metrics.json)")
    add_common_options(parser, device=False)
    parser.add_argument("--plots", default=None,
                        help="write figures (PNG) into this folder: density, volume per atom, element mix and space "
                             "groups of the samples against the reference split")
    parser.set_defaults(handler=_evaluate)
    return parser


def _evaluate(args: argparse.Namespace) -> int:
    from concurrent.futures import ProcessPoolExecutor

    from crysgen.evaluation import evaluate_crystals
    from crysgen.train import default_cache_dir
    from shared.io import atomic_write_json

    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    read = _read_source(args)
    choice = _evaluation_dataset(args)
    print(f"dataset: {choice['dataset']} ({choice['origin']})", file=sys.stderr)
    cache = default_cache_dir()
    reference, ref_path = _reference_split(args, choice["dataset"], args.reference, cache)
    train, train_path = None, None
    if choice["train_split"] is not None:
        train, train_path = _reference_split(args, choice["dataset"], choice["train_split"], cache)
    progress = not args.no_progress
    pool = ProcessPoolExecutor(args.workers) if args.workers > 1 else None
    try:
        report = evaluate_crystals(read.structures, reference=reference, train=train, dataset=choice["name"],
                                   executor=pool, seed=args.seed, reference_cache_dir=cache / "fingerprints",
                                   cov_cutoffs=tuple(args.cov_cutoffs) if args.cov_cutoffs else None,
                                   progress=progress)
    finally:
        if pool is not None:
            pool.shutdown()
    report["protocol"].update(dataset=choice["dataset"], dataset_from=choice["origin"],
                              reference_split=args.reference, reference_csv=ref_path,
                              train_split=choice["train_split"], train_csv=train_path)
    report["unreadable"] = [skipped.to_dict() for skipped in read.skipped]
    if args.plots:
        report["plots"] = [str(p) for p in _evaluation_plots(read.structures, reference, report, args.plots)]
    source = Path(args.source)
    out = Path(args.out) if args.out else (source if source.is_dir() else source.parent) / "metrics.json"
    atomic_write_json(out, report)
    for name, value in report["metrics"].items():
        print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    for name, reason in report["skipped"].items():
        print(f"skipped {name}: {reason}")
    for side in ("generated", "reference"):
        rows = report["space_groups"].get(side)
        if rows:
            shown = ", ".join(f"{r['symbol']} ({r['number']}) {r['fraction']:.1%}" for r in rows[:_SHOWN_GROUPS])
            more = f", and {len(rows) - _SHOWN_GROUPS} more" if len(rows) > _SHOWN_GROUPS else ""
            print(f"space groups, {side}: {shown}{more}")
    print(f"-> {out}")
    return 0


_SHOWN_GROUPS = 5


def _evaluation_plots(structures: list, reference, report: dict, folder: str) -> list:
    """Density, volume per atom, element mix and space groups of the generated crystals against the reference."""
    from shared.plots import bar_comparison, histogram_comparison

    sets = {"generated": [s for s in structures if s is not None]}
    if reference:
        sets["reference"] = [s for s in reference if s is not None]
    out = Path(folder)
    densities = {k: [float(s.density) for s in v] for k, v in sets.items()}
    volumes = {k: [s.volume / len(s) for s in v] for k, v in sets.items()}
    elements = {}
    for label, group in sets.items():
        counts: dict[str, float] = {}
        for s in group:
            for el, amount in s.composition.items():
                counts[el.symbol] = counts.get(el.symbol, 0.0) + float(amount)
        total = sum(counts.values()) or 1.0
        common = sorted(counts.items(), key=lambda kv: -kv[1])[:15]
        elements[label] = {k: v / total for k, v in common}
    groups = {side: {f"{r['symbol']}": r["fraction"] for r in rows[:12]}
              for side, rows in report.get("space_groups", {}).items() if isinstance(rows, list) and rows}
    figures = [histogram_comparison(densities, "density (g/cm^3)", out / "density.png"),
               histogram_comparison(volumes, "volume per atom (A^3)", out / "volume_per_atom.png"),
               bar_comparison(elements, "fraction of atoms", out / "elements.png", title="element mix (top 15)")]
    if groups:
        figures.append(bar_comparison(groups, "fraction of crystals", out / "space_groups.png",
                                      title="space groups (spglib, symprec 0.1)"))
    return figures


def _evaluation_dataset(args: argparse.Namespace) -> dict:
    """Which dataset to evaluate against (``--dataset``, else the model's from the samples' sampling.json) and
    which split holds the model's training data; a clear error when neither says."""
    from crysgen.data import resolve_dataset
    from crysgen.io import sample_metadata

    meta = sample_metadata(args.source)
    trained = (meta or {}).get("training_data") or {}
    wanted_train = None if args.train_split is None else (None if args.train_split.lower() == "none"
                                                          else args.train_split)
    if args.dataset:
        dataset, origin = args.dataset, "--dataset"
        same = bool(trained) and _same_source(args.dataset, trained, args.data_dir)
        model_split = trained.get("split") if same else None
    else:
        if not trained:
            where = f"{meta['path']} has no training_data" if meta else \
                f"{args.source} holds no sampling.json from crysgen sample"
            raise UserError(f"which dataset do these crystals belong to? {where}: pass --dataset NAME or PATH "
                            f"(a benchmark name such as perov_5 with --data-dir, a directory of split CSVs, "
                            f"or a CDVAE CSV)")
        dataset, problems = None, []
        for candidate in _trained_candidates(trained):
            try:
                resolve_dataset(candidate, args.reference, args.data_dir)
            except (FileNotFoundError, ValueError) as err:
                problems.append(str(err))
                continue
            dataset = candidate
            break
        if dataset is None:
            raise UserError(f"the model of these samples was trained on {trained.get('dataset')} "
                            f"({trained.get('source')}), whose {args.reference} split is not found here "
                            f"({problems[-1] if problems else 'no candidates'}); pass --dataset and/or --data-dir")
        origin = f"the model's training data, from {meta['path']}"
        model_split = trained.get("split")
    name = resolve_dataset(dataset, args.reference, args.data_dir).name
    if args.train_split is not None:
        train_split = wanted_train
    elif model_split is not None:
        train_split = model_split
    else:
        train_split = "train"
        try:
            resolve_dataset(dataset, train_split, args.data_dir)
        except (FileNotFoundError, ValueError):
            print(f"note: {dataset} has no train split: novelty is not computed (pass --train-split SPLIT)",
                  file=sys.stderr)
            train_split = None
    return {"dataset": dataset, "name": name, "origin": origin, "train_split": train_split}


def _trained_candidates(trained: dict) -> list[str]:
    """Where the training dataset may be found: as configured (a name, or a path), then the folder of the CSV
    it was read from."""
    out = [str(trained["dataset"])] if trained.get("dataset") else []
    if trained.get("source"):
        out.append(str(Path(trained["source"]).parent))
    return out


def _same_source(dataset: str, trained: dict, data_dir) -> bool:
    from crysgen.data import resolve_dataset

    if not trained.get("source") or not trained.get("split"):
        return dataset == trained.get("dataset")
    if not Path(trained["source"]).is_file():  # read on another machine (the embedded model: <data_dir>/...)
        return dataset == trained.get("dataset")
    try:
        return resolve_dataset(dataset, trained["split"], data_dir).path == Path(trained["source"]).resolve()
    except (FileNotFoundError, ValueError):
        return False


def _reference_split(args: argparse.Namespace, dataset: str, split: str, cache: Path) -> tuple[list, str]:
    """A dataset split's structures and CSV; rows its CIFs could not be parsed from are left out, and said so."""
    from crysgen.data import load_dataset

    loaded = load_dataset(dataset, split, args.data_dir, cache_dir=cache)
    if loaded.errors:
        first = loaded.errors[0]
        print(f"note: {dataset} {split}: {len(loaded.errors)} row(s) could not be parsed and are left out "
              f"(first: row {first.row + 1} {first.material_id}: {first.reason[:120]})", file=sys.stderr)
    return loaded.structures, loaded.source


# --- relax --------------------------------------------------------------------------------------------------


def add_relax_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from crysgen.hooks import CALCULATORS

    parser = subparsers.add_parser("relax", help="relax generated crystals with CHGNet or EMT (ASE)")
    _add_source_options(parser)
    parser.add_argument("--calculator", choices=tuple(CALCULATORS), default="chgnet")
    parser.add_argument("--fmax", type=positive_float, default=0.1, help="force threshold in eV/A (default 0.1)")
    parser.add_argument("--steps", type=positive_int, default=500, help="max optimiser steps (default 500)")
    parser.add_argument("--limit", type=positive_int, default=None, help="relax only the first N crystals")
    parser.add_argument("--out", default=None, help="output directory (default SOURCE/relaxed)")
    parser.add_argument("--cache", "--cache-dir", dest="cache_dir", default=None,
                        help="hook result cache (default: OUT/cache); the same word as molgen/graphgen dft")
    add_common_options(parser, device=False, seed=False, data_dir=False)
    add_strict_option(parser)
    parser.set_defaults(handler=_relax, output_lock="out")
    return parser


def _relax(args: argparse.Namespace) -> int:
    from pymatgen.core import Structure

    from crysgen.hooks import CALCULATORS
    from crysgen.representation import write_cifs
    from shared.hooks import run_hook
    from shared.io import atomic_write_json

    read = _read_source(args)
    structures = [s for s in read.structures if s is not None][: args.limit]
    hook = CALCULATORS[args.calculator](fmax=args.fmax, steps=args.steps)
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
    print(f"relaxed with {args.calculator}: " + batch_summary(results, len(read.skipped)) + f" -> {out}")
    return batch_exit_code(results, args.strict)


# --- campaign -------------------------------------------------------------------------------------------------


def add_campaign_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return _add_campaign_parser(subparsers, PROG, "property-guided campaign: generate -> filter -> CHGNet -> rank "
                                "(resumable)", _campaign)


def _campaign(args: argparse.Namespace, spec):
    from crysgen.campaign import CrysgenCampaign
    from shared.campaign import run_campaign

    return run_campaign(CrysgenCampaign(), spec, args.out, progress=not args.no_progress), "top_k/, top_k.md"


SUBCOMMANDS = [add_version_parser, add_train_parser, add_sample_parser, add_evaluate_parser, add_relax_parser,
               add_campaign_parser]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crysgen`` console script; returns the exit code."""
    return run_cli(build_parser(PROG, DESCRIPTION, SUBCOMMANDS), argv)


if __name__ == "__main__":
    sys.exit(main())
