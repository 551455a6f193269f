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
from shared.cli_common import UserError, add_common_options, build_parser, resolve_device, run_cli
from shared.paths import resolve_data_dir
from shared.cli_common import add_version_parser as _add_version_parser

PROG = "graphgen"
DESCRIPTION = "Score-based and flow-matching generative models for graphs."


def add_version_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return _add_version_parser(subparsers, PROG, __version__)


def _train(args: argparse.Namespace) -> int:
    import hashlib
    import time

    from graphgen.diffusion import GraphGenConfig
    from graphgen.train import train
    from shared.config import config_to_dict, load_config

    overrides = list(args.overrides) + ([f"train.seed={args.seed}"] if args.seed is not None else [])
    config = load_config(GraphGenConfig, _config_path(args.config), overrides=overrides)
    run_dir = args.run_dir
    if run_dir is None:
        digest = hashlib.sha256(repr(config_to_dict(config)).encode()).hexdigest()[:8]
        run_dir = Path("runs") / f"{time.strftime('%Y%m%d')}-graphgen-{Path(args.config).stem}-{digest}"
    path = train(config, run_dir, args.data_dir, device=str(resolve_device(args.device)),
                 progress=not args.no_progress)
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
    parser.set_defaults(handler=_train, seed=None)
    return parser


PRETRAINED_DIR = Path(__file__).parent / "pretrained"  # the embedded default model (QM9) and its manifest


def _default_model() -> Path:
    manifest = PRETRAINED_DIR / "manifest.json"
    if not manifest.is_file():
        raise UserError(f"no CHECKPOINT given and no embedded default model yet ({manifest} is missing): pass a "
                        "model file, a run directory or an imported GDSS model")
    import json

    path = manifest.parent / json.loads(manifest.read_text())["file"]
    if not path.is_file():
        raise UserError(f"the embedded default model {path} named in {manifest} is missing: reinstall scoregen "
                        "or pass a CHECKPOINT")
    return path


def _sample(args: argparse.Namespace) -> int:
    from graphgen.checkpoint import load_model
    from graphgen.sample import sample_graphs, write_samples

    device = resolve_device(args.device)
    bundle = load_model(args.checkpoint or _default_model(), use_ema=args.ema)
    counts = None
    if bundle.node_counts is None:
        if args.data_dir is None and _data_dir_unset():
            raise UserError("this model stores no node-count statistics: pass --data-dir so node masks can be "
                            "drawn from the training set")
        from graphgen.train import load_training_data, node_count_histogram

        counts = node_count_histogram(load_training_data(bundle.config.data, args.data_dir),
                                      bundle.config.data.max_node_num)
    try:
        out = sample_graphs(bundle, args.num, sampler=args.sampler, steps=args.steps, snr=args.snr,
                            scale_eps=args.scale_eps, batch_size=args.batch_size, seed=args.seed, device=device,
                            progress=not args.no_progress, node_counts=counts)
    except FloatingPointError as err:
        raise UserError(str(err)) from err
    write_samples(args.out, out.items)
    kind = "molecules" if out.is_molecule else "graphs"
    print(f"wrote {len(out.items)} {kind} to {args.out} (NFE {out.nfe})")
    return 0


def _data_dir_unset() -> bool:
    return resolve_data_dir(None) is None


def add_sample_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("sample", help="sample graphs/molecules from a model file or run directory")
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="model file (.pt) or run directory (default: the embedded QM9 model)")
    parser.add_argument("-n", "--num", type=int, required=True, help="number of samples")
    parser.add_argument("--out", required=True, help="output file: .smi/.txt/.sdf (molecules), .json/.graphml")
    parser.add_argument("--sampler", choices=("pc", "s4"), default=None, help="default: the model's own")
    parser.add_argument("--steps", type=int, default=None, help="diffusion steps (default: the model's, 1000)")
    parser.add_argument("--snr", type=float, default=None, help="Langevin signal-to-noise ratio")
    parser.add_argument("--scale-eps", type=float, default=None, help="Langevin noise scale")
    parser.add_argument("--batch-size", type=int, default=1000, help="samples per batch (default 1000)")
    ema = parser.add_mutually_exclusive_group()
    ema.add_argument("--ema", dest="ema", action="store_true", default=None, help="sample with EMA weights")
    ema.add_argument("--no-ema", dest="ema", action="store_false", help="sample with the raw weights")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_options(parser)
    parser.set_defaults(handler=_sample)
    return parser


def _evaluate(args: argparse.Namespace) -> int:
    from graphgen.diffusion import MOLECULE_DATASETS, DataConfig
    from graphgen.sample import read_samples
    from graphgen.train import load_test_data
    from shared.io import atomic_write_json

    items, is_molecule = read_samples(args.samples)
    if is_molecule != (args.dataset in MOLECULE_DATASETS):
        raise UserError(f"{args.samples} holds {'molecules' if is_molecule else 'graphs'} but dataset "
                        f"{args.dataset} is {'a molecule set' if args.dataset in MOLECULE_DATASETS else 'graphs'}")
    if is_molecule and resolve_data_dir(args.data_dir) is None:
        # validity and uniqueness need no reference data; novelty and FCD do, and say so
        print("note: no --data-dir / $SCOREGEN_DATA: novelty and FCD (need the QM9/ZINC splits) are skipped",
              file=sys.stderr)
        reference, train_smiles = None, None
    else:
        reference, train_smiles = load_test_data(DataConfig(name=args.dataset), args.data_dir)
    if is_molecule:
        metrics = _molecule_metrics(items, reference, train_smiles, args)
    else:
        from graphgen.metrics import eval_graph_list

        metrics = eval_graph_list(reference, items)
    metrics = {"dataset": args.dataset, "samples": str(args.samples), "num_samples": len(items), **metrics}
    for key, value in metrics.items():
        print(f"{key}: {value}")
    if args.out:
        atomic_write_json(args.out, metrics)
    return 0


def _molecule_metrics(smiles: list[str], test_smiles: list[str] | None, train_smiles: list[str] | None,
                      args: argparse.Namespace) -> dict:
    from graphgen.metrics import canonical_smiles, novelty, uniqueness

    valid = [s for s in (canonical_smiles(s) if s else None for s in smiles) if s]
    metrics = {"validity_wo_correction": len(valid) / max(len(smiles), 1),
               "uniqueness": uniqueness(valid) if valid else 0.0}
    if train_smiles is not None:
        metrics["novelty"] = novelty(valid, train_smiles) if valid else 0.0
    if valid and test_smiles is not None and not args.no_fcd:
        from graphgen.metrics import fcd_score

        metrics["fcd"] = fcd_score(valid, test_smiles, device=str(resolve_device(args.device)))
    return metrics


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("evaluate", help="GDSS metrics of a sample file against a dataset's test split")
    parser.add_argument("samples", help="sample file written by 'graphgen sample'")
    parser.add_argument("--dataset", required=True, help="community_small, ego_small, grid, ENZYMES, QM9, ZINC250k")
    parser.add_argument("--out", default=None, help="also write the metrics as JSON")
    parser.add_argument("--no-fcd", action="store_true", help="molecules: skip FCD")
    add_common_options(parser, seed=False)
    parser.set_defaults(handler=_evaluate)
    return parser


def _import_gdss(args: argparse.Namespace) -> int:
    from graphgen.checkpoint import import_gdss, save_model


    config, model, ema, counts = import_gdss(args.file, resolve_data_dir(args.data_dir))
    path = save_model(args.out, config, model, ema_state=ema, node_counts=counts, source=str(args.file))
    note = "" if counts is not None else " (no node-count statistics: sampling will need --data-dir)"
    print(f"imported {args.file} -> {path}{note}")
    return 0


def add_import_gdss_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("import-gdss", help="convert a published GDSS checkpoint (.pth) to a model file")
    parser.add_argument("file", help="GDSS checkpoint, e.g. gdss_qm9.pth")
    parser.add_argument("out", help="output model file (.pt)")
    add_common_options(parser, device=False, seed=False)
    parser.set_defaults(handler=_import_gdss)
    return parser


SUBCOMMANDS = [add_version_parser, add_train_parser, add_sample_parser, add_evaluate_parser, add_import_gdss_parser]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``graphgen`` console script; returns the exit code."""
    return run_cli(build_parser(PROG, DESCRIPTION, SUBCOMMANDS), argv)


if __name__ == "__main__":
    sys.exit(main())
