"""The ``graphgen`` command line: ``graphgen COMMAND [options]``.

To add a command, write ``add_<name>_parser(subparsers)`` (create the subparser, call
``shared.cli_common.add_common_options`` if it needs --device/--seed/--data-dir, and
``set_defaults(handler=...)`` with a handler ``fn(args) -> int | None``), then append it to ``SUBCOMMANDS``.
Handlers import heavy or optional libraries lazily so that ``graphgen --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pathlib import Path

from graphgen import __version__
from shared.cli_common import add_campaign_parser as _add_campaign_parser
from shared.cli_common import (UserError, add_common_options, add_strict_option, batch_exit_code, batch_summary,
                                build_parser, resolve_device, run_cli)
from shared.paths import resolve_data_dir
from shared.cli_common import add_version_parser as _add_version_parser
from shared.cli_common import nonnegative_float, positive_float, positive_int

PROG = "graphgen"
DESCRIPTION = "Score-based and flow-matching generative models for graphs."


def add_version_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return _add_version_parser(subparsers, PROG, __version__)


def _train(args: argparse.Namespace) -> int:
    import hashlib
    import time

    from graphgen.diffusion import GraphGenConfig
    from graphgen.train import train
    from shared.config import TRAINER_SECTION_ALIASES, config_to_dict, load_config
    from shared.training import distributed

    overrides = list(args.overrides) + ([f"train.seed={args.seed}"] if args.seed is not None else [])
    # the shared spellings (trainer.*, batch_size) name GDSS's train.* and data.batch_size here
    aliases = {canonical: alias for alias, canonical in TRAINER_SECTION_ALIASES.items()}
    config = load_config(GraphGenConfig, _config_path(args.config), overrides=overrides, aliases=aliases)
    device = resolve_device(args.device)
    # a no-op without torchrun; with it, one process group for all ranks (gloo unless training on CUDA)
    distributed.init("nccl" if device.type == "cuda" else "gloo")
    try:
        run_dir = args.run_dir
        if run_dir is None:
            digest = hashlib.sha256(repr(config_to_dict(config)).encode()).hexdigest()[:8]
            run_dir = str(Path("runs") / f"{time.strftime('%Y%m%d')}-graphgen-{Path(args.config).stem}-{digest}")
        run_dir = distributed.broadcast_object(run_dir)  # rank 0's date decides, even across midnight
        path = train(config, run_dir, args.data_dir, device=str(device), progress=not args.no_progress)
        main_rank = distributed.is_main()
    finally:
        distributed.cleanup()
    if main_rank:
        print(f"model written to {path}")
    return 0


def _config_path(name: str) -> Path:
    """A config file path, or the name of a packaged config (community_small, qm9, ...)."""
    from shared.cli_common import packaged_config

    return packaged_config(name, Path(__file__).parent / "configs")


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="train a GDSS model (resumes an existing --run-dir)")
    parser.add_argument("config", help="YAML config file or packaged config name (e.g. community_small, qm9)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=100")
    parser.add_argument("--run-dir", default=None, help="run directory (default: runs/<date>-graphgen-<config>-<hash>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_options(parser)
    parser.set_defaults(handler=_train, seed=None, output_lock="run_dir")
    return parser


def _sample(args: argparse.Namespace) -> int:
    from graphgen.api import load_model, sample
    from graphgen.datasets import sampling_node_counts

    bundle = load_model(args.checkpoint, use_ema=args.ema)
    counts = sampling_node_counts(bundle, args.node_counts, args.data_dir)
    if args.preset == "fast" and bundle.config.data.name != "QM9":
        print(f"warning: --preset fast was validated on QM9 only; on community-small it raised the clustering MMD "
              f"from 0.076 to 0.134 (benchmarks/GRAPHGEN.md); this model is {bundle.config.data.name}",
              file=sys.stderr)
    try:
        out = sample(bundle, args.num, seed=args.seed, steps=args.steps, precision=args.precision, preset=args.preset,
                     sampler=args.sampler, batch_size=args.batch_size, device=resolve_device(args.device),
                     progress=not args.no_progress, snr=args.snr, snr_x=args.snr_x, scale_eps=args.scale_eps,
                     node_counts=counts)
    except FloatingPointError as err:
        raise UserError(str(err)) from err
    out.write(args.out)
    kind = "molecules" if out.is_molecule else "graphs"
    print(f"wrote {len(out.items)} {kind} to {args.out} (NFE {out.nfe})")
    return 0


def add_sample_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("sample", help="sample graphs/molecules from a model file or run directory")
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="model file (.pt) or run directory (default: the embedded QM9 model)")
    parser.add_argument("-n", "--num", type=positive_int, default=100, help="number of samples (default 100)")
    parser.add_argument("--out", required=True, help="output file: .smi/.txt/.sdf (molecules), .json/.graphml")
    from graphgen.sampling import SAMPLERS  # graphgen's package import has loaded it already

    parser.add_argument("--sampler", choices=tuple(SAMPLERS), default=None,
                        help="pc (predictor-corrector), s4 (GDSS's S4 solver) or the probability-flow ODE "
                             "(default: the model's own)")
    parser.add_argument("--preset", choices=("gdss", "fast"), default="gdss",
                        help="gdss: the model's own sampler (GDSS's settings, default); fast: S4 at 60 steps, bf16 "
                             "where native, QM9-measured equal quality at under a third of GDSS's S4-200 CPU time "
                             "(benchmarks/results/graphgen_throughput.md)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"), default=None,
                        help="the networks' precision: fp32 (default), bf16 autocast (state and integrator stay "
                             "fp32) or auto (bf16 where the CPU/GPU has it natively; the fast preset's choice)")
    parser.add_argument("--steps", type=positive_int, default=None, help="diffusion steps (default: the model's, 1000)")
    parser.add_argument("--snr", type=positive_float, default=None,
                        help="Langevin signal-to-noise ratio (alone: of both node features and adjacency, as GDSS)")
    parser.add_argument("--snr-x", type=nonnegative_float, default=None,
                        help="the node features' own Langevin snr (default: the model's; 0 = no correction of them)")
    parser.add_argument("--scale-eps", type=nonnegative_float, default=None, help="Langevin noise scale")
    parser.add_argument("--batch-size", type=positive_int, default=1000, help="samples per batch (default 1000)")
    parser.add_argument("--node-counts", default=None,
                        help="graph sizes to draw from: SMILES/SDF of the training set or a JSON histogram "
                             "(default: the model's own; imported GDSS models may have none)")
    ema = parser.add_mutually_exclusive_group()
    ema.add_argument("--ema", dest="ema", action="store_true", default=None, help="sample with EMA weights")
    ema.add_argument("--no-ema", dest="ema", action="store_false", help="sample with the raw weights")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_options(parser)
    parser.set_defaults(handler=_sample, output_lock="out")
    return parser


def dataset_name(text: str) -> str:
    """argparse type: a benchmark dataset's name in any case ('qm9', 'zinc250k', 'Community-Small'), returned as
    spelled in the benchmark; an unknown name lists the known ones."""
    from graphgen.datasets import DATASETS

    known = list(DATASETS)
    folded = {name.lower().replace("-", "_"): name for name in known}
    name = folded.get(text.strip().lower().replace("-", "_"))
    if name is None:
        raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; choose from {', '.join(known)}")
    return name


def _evaluate(args: argparse.Namespace) -> int:
    from graphgen.evaluation import evaluate_against, load_reference
    from graphgen.io import read_samples
    from shared.io import atomic_write_json

    items, is_molecule = read_samples(args.samples)
    try:
        reference, train_smiles, skipped = load_reference(is_molecule, args.dataset, args.data_dir)
    except ValueError as err:
        raise UserError(f"{args.samples}: {err}") from None
    if skipped:
        # validity, uniqueness, fragments and atom statistics need no reference data; novelty and FCD do
        print(f"note: novelty and FCD skipped (they need the {args.dataset} splits): {skipped}", file=sys.stderr)
    metrics = evaluate_against(items, is_molecule, reference, train_smiles, fcd=not args.no_fcd,
                               device=str(resolve_device(args.device)))
    if args.dft is not None:
        if not is_molecule:
            raise UserError("--dft needs molecules; the samples are graphs")
        from graphgen.dft_runs import dft_metrics

        metrics.update(dft_metrics(items, args.dft, dataset="QM9" if args.dataset == "QM9" else None,
                                   reference=args.dft_reference, data_dir=args.data_dir,
                                   cache_dir=Path(args.samples).parent / ".graphgen-dft-cache",
                                   workers=args.workers, plots=args.plots, progress=not args.no_progress))
    if args.plots:
        from graphgen.evaluation import evaluation_plots

        plots = evaluation_plots(items, reference, is_molecule, args.plots,
                                 label=f"samples ({Path(args.samples).name})", reference_label=f"{args.dataset} test")
        metrics["plots"] = [str(p) for p in plots]
    metrics = {"dataset": args.dataset, "samples": str(args.samples), "num_samples": len(items), **metrics}
    for key, value in metrics.items():
        print(f"{key}: {value}")
    if args.out:
        atomic_write_json(args.out, metrics)
    return 0


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("evaluate", help="GDSS metrics of a sample file against a dataset's test split")
    parser.add_argument("samples", help="sample file written by 'graphgen sample'")
    parser.add_argument("--dataset", required=True, type=dataset_name,
                        help="community_small, ego_small, grid, ENZYMES, QM9, ZINC250k (any case)")
    parser.add_argument("--out", default=None, help="also write the metrics as JSON")
    parser.add_argument("--no-fcd", action="store_true", help="molecules: skip FCD")
    parser.add_argument("--dft", choices=("xtb", "b3lyp"), default=None,
                        help="molecules: embed the valid samples in 3D and add their xTB/B3LYP property "
                             "distributions (vs QM9's labels for QM9); cached next to the samples")
    parser.add_argument("--dft-reference", default=None,
                        help="--dft: compare with a JSON from 'graphgen dft' (same method) instead of QM9's labels")
    parser.add_argument("--workers", type=positive_int, default=1, help="--dft: parallel processes (default 1)")
    parser.add_argument("--plots", default=None,
                        help="write figures (PNG) into this folder: sizes and elements (molecules) or degrees and "
                             "clustering (graphs) against the test split; with --dft, property histograms too")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_options(parser, seed=False)
    parser.set_defaults(handler=_evaluate)
    return parser


def _import_gdss(args: argparse.Namespace) -> int:
    from graphgen.checkpoint import import_gdss, save_model

    config, model, ema, counts = import_gdss(args.file)
    note = ""
    if args.node_counts:
        from graphgen.data import node_counts_from_file

        counts = node_counts_from_file(args.node_counts, config.data.max_node_num)
    elif resolve_data_dir(args.data_dir) is not None:
        from graphgen.datasets import load_training_data, node_count_histogram

        try:  # the training split of the data directory, when it has this dataset
            counts = node_count_histogram(load_training_data(config.data, args.data_dir), config.data.max_node_num)
        except FileNotFoundError as err:
            note = f"; the data directory has no {config.data.name} training data ({err})"
    path = save_model(args.out, config, model, ema_state=ema, node_counts=counts, source=str(args.file))
    if counts is None:
        note = (" (no node-count statistics: sampling will need --node-counts FILE or --data-dir with the "
                f"training data{note})")
    print(f"imported {args.file} -> {path}{note}")
    return 0


def add_import_gdss_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("import-gdss", help="convert a published GDSS checkpoint (.pth) to a model file")
    parser.add_argument("file", help="GDSS checkpoint, e.g. gdss_qm9.pth")
    parser.add_argument("out", help="output model file (.pt)")
    parser.add_argument("--node-counts", default=None,
                        help="store graph sizes from SMILES/SDF of the training set or a JSON histogram "
                             "(default: from the training split in --data-dir, when given)")
    add_common_options(parser, device=False, seed=False)
    parser.set_defaults(handler=_import_gdss)
    return parser


# --- dft --------------------------------------------------------------------------------------------------

def _print_distributions(summary: dict, label: str) -> None:
    print(f"{'property':<10} {'n':>6} {'mean':>9} {'std':>8}   vs {label}: {'mean':>9} {'std':>8} {'W1':>8}")
    for name, row in summary.items():
        ref = (f"{row['reference_mean']:9.3f} {row['reference_std']:8.3f} "
               f"{row['wasserstein'] if row['wasserstein'] is not None else float('nan'):8.3f}"
               if "reference_mean" in row else "")
        mean = row["mean"] if row["mean"] is not None else float("nan")
        std = row["std"] if row["std"] is not None else float("nan")
        print(f"{name:<10} {row['n']:>6} {mean:9.3f} {std:8.3f}   {' ' * (len(label) + 5)}{ref}")


def _dft(args: argparse.Namespace) -> int:
    from graphgen.dft import plot_property_histograms, property_values, readable
    from graphgen.dft_runs import dft_reference, dft_table, make_dft_hook, run_dft, write_dft_table
    from graphgen.io import read_samples

    items, is_molecule = read_samples(args.file, warn=lambda message: None)  # bad records are reported below
    if not is_molecule:
        raise UserError(f"{args.file} holds graphs, not molecules: dft needs a .smi/.txt/.sdf file")
    path = Path(args.file)
    where = "line" if path.suffix.lower() in (".smi", ".txt") else "record"
    bad = [k for k, s in enumerate(items) if not readable(s)]
    if bad and not args.skip_unreadable:
        shown = ", ".join(f"{where} {k + 1}: {items[k][:40]!r}" for k in bad[:5])
        raise UserError(f"{path}: {len(bad)} unreadable {where}(s) ({shown}{', ...' if len(bad) > 5 else ''}); "
                        "pass --skip-unreadable to compute the others")
    if bad:
        shown = "; ".join(f"{where} {k + 1}: {items[k][:40]!r}" for k in bad[:5])
        print(f"warning: {path}: skipped {len(bad)} unreadable {where}(s): {shown}{'; ...' if len(bad) > 5 else ''}",
              file=sys.stderr)
    reference = dft_reference(args.dataset, args.reference, args.data_dir, args.method)  # errors before hours of work
    hook = make_dft_hook(args.method, optimize=args.optimize, conformers=args.conformers,
                         force_field=args.force_field, seed=args.seed)
    todo = [k for k in range(len(items)) if k not in set(bad)]
    cache = Path(args.cache) if args.cache else path.parent / ".graphgen-dft-cache"
    computed = run_dft(hook, [items[k] for k in todo], cache, workers=args.workers, retry_failed=args.retry_failed,
                       progress=not args.no_progress)
    table = dft_table(items, computed, todo, where, reference)
    prefix = Path(args.out) if args.out else path.with_suffix(f".{args.method}")
    write_dft_table(prefix, table, file=str(path), method=args.method, hook=repr(hook), optimize=args.optimize,
                    reference=reference[1] if reference else None)
    if args.plots:
        plot_property_histograms(property_values(computed), reference[0] if reference else {}, args.plots,
                                 label=f"{path.name} ({args.method})",
                                 **({"reference_label": reference[1]} if reference else {}), prefix=args.method)
    _print_distributions(table.summary, reference[1] if reference else "no reference")
    print(batch_summary(computed, len(bad)) + f"; wrote {prefix}.csv/.json/.sdf")
    return batch_exit_code(computed, args.strict)


def add_dft_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "dft", help="embed molecules (SMILES/SDF) in 3D and run xTB or B3LYP on them",
        description="Each molecule is embedded with explicit hydrogens (RDKit ETKDG v3, K conformers relaxed with "
                    "MMFF94, the lowest kept), optionally optimised with GFN2-xTB, then given a single point. "
                    "Writes PREFIX.csv/.json (per molecule: energy, HOMO, LUMO, gap, dipole, status, reason) and "
                    "PREFIX.sdf (3D geometries). Results are cached per molecule: a rerun resumes. Open shells and "
                    "molecules of several fragments are reported, not computed. Exit code 0 once the batch ran "
                    "(failures and their reasons are in the outputs), 1 when none succeeded or, with --strict, "
                    "any failed, 2 for bad input.")
    parser.add_argument("file", help="SMILES (.smi/.txt, one per line) or SDF file, e.g. from 'graphgen sample'")
    parser.add_argument("--method", choices=("xtb", "b3lyp"), default="xtb",
                        help="xtb: GFN2-xTB (tblite); b3lyp: B3LYP/6-31G(2df,p), QM9's level, with PySCF (slow)")
    parser.add_argument("--optimize", action="store_true",
                        help="GFN2-xTB geometry optimisation of the embedded conformer before the single point")
    parser.add_argument("--conformers", type=positive_int, default=3, help="ETKDG conformers per molecule (default 3)")
    parser.add_argument("--force-field", choices=("mmff", "uff", "none"), default="mmff",
                        help="relaxation of the embedded conformers (default mmff; uff where MMFF lacks parameters)")
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="compute the readable records and report the others, instead of stopping")
    parser.add_argument("--dataset", default=None,
                        help="compare the property distributions with this dataset's labels (QM9: B3LYP labels)")
    parser.add_argument("--reference", default=None,
                        help="compare with a JSON from an earlier 'graphgen dft' run (same method: like with like)")
    parser.add_argument("--plots", default=None, help="write property histograms (PNG) into this folder")
    parser.add_argument("--workers", type=positive_int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--cache", default=None, help="result cache (default: FILE's folder/.graphgen-dft-cache)")
    parser.add_argument("--out", default=None, help="output prefix (default: FILE without suffix + .METHOD)")
    parser.add_argument("--retry-failed", action="store_true", help="recompute cached failures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_options(parser, device=False)
    add_strict_option(parser)
    parser.set_defaults(handler=_dft)
    return parser


# --- campaign -------------------------------------------------------------------------------------------------


def add_campaign_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    # graphgen models are unconditional: a campaign's target only sets what rank_by measures distances to
    return _add_campaign_parser(subparsers, PROG, "campaign: generate molecules -> filter -> xTB/B3LYP -> rank "
                                "(resumable)", _campaign, data_dir=True)


def _campaign(args: argparse.Namespace, spec):
    from graphgen.campaign import GraphgenCampaign
    from shared.campaign import run_campaign

    from graphgen.dft_runs import make_dft_hook

    verifiers = {method: make_dft_hook(method, seed=spec.seed) for method in ("xtb", "b3lyp")}
    domain = GraphgenCampaign(verifiers, data_dir=str(resolve_data_dir(args.data_dir) or "") or None)
    return run_campaign(domain, spec, args.out, progress=not args.no_progress), "top_k.smi/.sdf"


SUBCOMMANDS = [add_version_parser, add_train_parser, add_sample_parser, add_evaluate_parser, add_import_gdss_parser,
               add_dft_parser, add_campaign_parser]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``graphgen`` console script; returns the exit code."""
    return run_cli(build_parser(PROG, DESCRIPTION, SUBCOMMANDS), argv)


if __name__ == "__main__":
    sys.exit(main())
