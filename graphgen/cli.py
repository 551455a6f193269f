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
    from shared.config import config_to_dict, load_config
    from shared.training import distributed

    overrides = list(args.overrides) + ([f"train.seed={args.seed}"] if args.seed is not None else [])
    config = load_config(GraphGenConfig, _config_path(args.config), overrides=overrides)
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


def _default_model() -> Path:
    from graphgen.checkpoint import default_model_path

    try:
        return default_model_path()
    except FileNotFoundError as err:
        raise UserError(str(err)) from None


def _sample(args: argparse.Namespace) -> int:
    from graphgen.checkpoint import load_model
    from graphgen.sampling import sample_graphs, write_samples

    device = resolve_device(args.device)
    bundle = load_model(args.checkpoint or _default_model(), use_ema=args.ema)
    counts = None
    if args.node_counts is not None:
        from graphgen.data import node_counts_from_file

        counts = node_counts_from_file(args.node_counts, bundle.config.data.max_node_num)
    elif bundle.node_counts is None:
        if args.data_dir is None and _data_dir_unset():
            raise UserError(NO_NODE_COUNTS)
        from graphgen.train import load_training_data, node_count_histogram

        try:
            counts = node_count_histogram(load_training_data(bundle.config.data, args.data_dir),
                                          bundle.config.data.max_node_num)
        except FileNotFoundError as err:
            raise UserError(f"{NO_NODE_COUNTS} ({err})") from None
    from graphgen.sampling import resolve_preset

    if args.preset == "fast" and bundle.config.data.name != "QM9":
        print(f"warning: --preset fast was validated on QM9 only; on community-small it raised the clustering MMD "
              f"from 0.076 to 0.134 (benchmarks/GRAPHGEN.md); this model is {bundle.config.data.name}",
              file=sys.stderr)
    options = resolve_preset(bundle, args.preset, sampler=args.sampler, steps=args.steps, scale_eps=args.scale_eps,
                             precision=args.precision)
    try:
        out = sample_graphs(bundle, args.num, snr=args.snr, snr_x=args.snr_x, batch_size=args.batch_size,
                            seed=args.seed, device=device, progress=not args.no_progress, node_counts=counts,
                            **options)
    except FloatingPointError as err:
        raise UserError(str(err)) from err
    write_samples(args.out, out.items)
    kind = "molecules" if out.is_molecule else "graphs"
    print(f"wrote {len(out.items)} {kind} to {args.out} (NFE {out.nfe})")
    return 0


NO_NODE_COUNTS = ("this model stores no node-count statistics: pass --node-counts FILE (SMILES or SDF of the "
                  "training set, or a JSON histogram) or --data-dir with the training data")


def _data_dir_unset() -> bool:
    return resolve_data_dir(None) is None


def add_sample_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("sample", help="sample graphs/molecules from a model file or run directory")
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="model file (.pt) or run directory (default: the embedded QM9 model)")
    parser.add_argument("-n", "--num", type=positive_int, default=100, help="number of samples (default 100)")
    parser.add_argument("--out", required=True, help="output file: .smi/.txt/.sdf (molecules), .json/.graphml")
    parser.add_argument("--sampler", choices=("pc", "s4", "ode-euler", "ode-heun", "ode-adaptive"), default=None,
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
    from graphgen.data import GRAPH_DATASETS
    from graphgen.datasets import SYNTHETIC
    from graphgen.diffusion import MOLECULE_DATASETS

    known = [*GRAPH_DATASETS, *MOLECULE_DATASETS, *SYNTHETIC]
    folded = {name.lower().replace("-", "_"): name for name in known}
    name = folded.get(text.strip().lower().replace("-", "_"))
    if name is None:
        raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; choose from {', '.join(known)}")
    return name


def _evaluate(args: argparse.Namespace) -> int:
    from graphgen.evaluation import evaluate_against, load_reference
    from graphgen.sampling import read_samples
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
        metrics.update(_dft_metrics(items, args))
    if args.plots:
        metrics["plots"] = [str(p) for p in _evaluation_plots(items, reference, is_molecule, args)]
    metrics = {"dataset": args.dataset, "samples": str(args.samples), "num_samples": len(items), **metrics}
    for key, value in metrics.items():
        print(f"{key}: {value}")
    if args.out:
        atomic_write_json(args.out, metrics)
    return 0


def _evaluation_plots(items: list, reference: list | None, is_molecule: bool, args: argparse.Namespace) -> list:
    """Samples against the reference: heavy atoms and elements (molecules), degrees and clustering (graphs)."""
    from shared.plots import bar_comparison, histogram_comparison

    out = Path(args.plots)
    label, ref_label = f"samples ({Path(args.samples).name})", f"{args.dataset} test"
    if is_molecule:
        from rdkit import Chem, RDLogger

        from graphgen.metrics import canonical_smiles

        RDLogger.DisableLog("rdApp.*")
        sets = {label: items, **({ref_label: reference} if reference is not None else {})}
        mols = {k: [m for m in (Chem.MolFromSmiles(c) for c in (canonical_smiles(s) if s else None for s in v) if c)
                    if m is not None] for k, v in sets.items()}
        RDLogger.EnableLog("rdApp.*")
        sizes = {k: [m.GetNumAtoms() for m in v] for k, v in mols.items()}
        elements = {}
        for k, v in mols.items():
            symbols = [a.GetSymbol() for m in v for a in m.GetAtoms()]
            elements[k] = {e: symbols.count(e) / max(len(symbols), 1) for e in sorted(set(symbols))}
        return [histogram_comparison(sizes, "heavy atoms per valid molecule", out / "heavy_atoms.png", discrete=True),
                bar_comparison(elements, "fraction of heavy atoms", out / "elements.png", title="element mix")]
    import networkx as nx

    sets = {label: items, **({ref_label: reference} if reference is not None else {})}
    degrees = {k: [d for g in v for _, d in g.degree()] for k, v in sets.items()}
    clustering = {k: [c for g in v for c in nx.clustering(g).values()] for k, v in sets.items()}
    return [histogram_comparison(degrees, "node degree", out / "degree.png", discrete=True),
            histogram_comparison(clustering, "clustering coefficient", out / "clustering.png", bins=20)]


def _dft_metrics(smiles: list[str], args: argparse.Namespace) -> dict:
    """xTB/B3LYP property distributions of the valid samples, against QM9's labels where the dataset is QM9."""
    from graphgen.dft import compare_distributions, plot_property_histograms, property_values
    from graphgen.metrics import canonical_smiles

    valid = [c for c in (canonical_smiles(s) if s else None for s in smiles) if c]
    if not valid:
        return {f"dft_{args.dft}_ok_fraction": 0.0}
    labels = "QM9" if args.dataset == "QM9" else None
    reference = _dft_reference(labels, args.dft_reference, args.data_dir, args.dft)
    hook = _dft_hook(args.dft, False, 3, "mmff", 0)  # the dft command's defaults
    cache = Path(args.samples).parent / ".graphgen-dft-cache"
    results = _run_dft(hook, valid, cache, args.workers, False, not args.no_progress)
    values = property_values(results)
    summary = compare_distributions(values, reference[0] if reference else {})
    out = {f"dft_{args.dft}_ok_fraction": sum(r.ok for r in results) / len(results)}
    for name, row in summary.items():
        out[f"dft_{args.dft}_{name}_mean"] = row["mean"]
        out[f"dft_{args.dft}_{name}_std"] = row["std"]
        if "wasserstein" in row:
            out[f"dft_{args.dft}_{name}_w1"] = row["wasserstein"]
    if reference is not None:
        out[f"dft_{args.dft}_reference"] = reference[1]
    if args.plots:
        plot_property_histograms(values, reference[0] if reference else {}, args.plots,
                                 label=f"valid samples ({args.dft})",
                                 reference_label=reference[1] if reference else "reference", prefix=args.dft)
    return out


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

_DFT_COLUMNS = ("energy_eV", "homo_eV", "lumo_eV", "gap_eV", "dipole_D", "force_field", "conformers_embedded")


def _dft_hook(method: str, optimize: bool, conformers: int, force_field: str, seed: int):
    """The embedding hook around molgen's backend (the CLI layer may import molgen.hooks; graphgen's library not)."""
    from graphgen.dft import EmbeddingSettings, GraphDFTHook
    from molgen.hooks import MoleculeRecord, PySCFHook, XTBHook, dft_input_problem

    backend = XTBHook() if method == "xtb" else PySCFHook()
    optimizer = XTBHook(optimize=True) if optimize else None
    embedding = EmbeddingSettings(conformers=conformers, force_field=force_field, seed=seed)
    return GraphDFTHook(backend, MoleculeRecord.from_mol, embedding, optimizer, check=dft_input_problem)


def _run_dft(hook, smiles: list[str], cache: Path, workers: int, retry_failed: bool, progress: bool):
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from shared.hooks import run_hook

    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    executor = ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 1 else None
    try:
        return run_hook(hook, smiles, executor=executor, cache_dir=cache, retry_failed=retry_failed,
                        progress=progress)
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)


def _dft_reference(dataset: str | None, reference: str | None, data_dir: str | None,
                   method: str) -> tuple[dict, str] | None:
    """``(values per property, label)`` to compare with: a previous dft JSON, or a dataset's labels."""
    import json

    from shared.paths import require_file

    if reference is not None:
        path = require_file(reference, "--reference (a JSON written by 'graphgen dft')")
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            values = [r["values"] for r in payload["results"] if r["status"] == "ok"]
            method = payload["method"]
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"--reference {path}: not a JSON written by 'graphgen dft' ({err})") from None
        from graphgen.dft import DFT_PROPERTIES

        table = {name: [v[name] for v in values if v.get(name) is not None] for name in DFT_PROPERTIES}
        return table, f"{method} on {path.name}"
    if dataset is None:
        return None
    if dataset != "QM9":
        raise UserError(f"--dataset {dataset}: property labels exist only for QM9; pass --reference with a "
                        "'graphgen dft' JSON of reference molecules instead")
    from graphgen.data import load_qm9, qm9_property_labels

    if method == "xtb":
        print("note: QM9's labels are B3LYP; xTB's orbital energies differ systematically (HOMO by ~-4 eV): for a "
              "like-with-like comparison pass --reference with a 'graphgen dft' run on QM9 molecules",
              file=sys.stderr)
    if resolve_data_dir(data_dir) is None:
        print("note: no --data-dir / $SCOREGEN_DATA: comparing with all of QM9 (not the GDSS training split)",
              file=sys.stderr)
        return qm9_property_labels(), "QM9 labels (all)"
    train, _ = load_qm9(data_dir)
    return qm9_property_labels(train.rows), "QM9 labels (GDSS train split)"


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
    from graphgen.dft import compare_distributions, molblock, plot_property_histograms, property_values, readable
    from graphgen.sampling import read_samples
    from shared.io import atomic_write_json, atomic_write_text

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
    reference = _dft_reference(args.dataset, args.reference, args.data_dir, args.method)  # errors before hours of work
    hook = _dft_hook(args.method, args.optimize, args.conformers, args.force_field, args.seed)
    todo = [k for k in range(len(items)) if k not in set(bad)]
    cache = Path(args.cache) if args.cache else path.parent / ".graphgen-dft-cache"
    computed = _run_dft(hook, [items[k] for k in todo], cache, args.workers, args.retry_failed,
                        not args.no_progress)
    by_index = dict(zip(todo, computed))
    rows, records, blocks = [], [], []
    for k, smiles in enumerate(items):
        result = by_index.get(k)
        status = result.status if result is not None else "unreadable"
        reason = (result.reason or "") if result is not None else f"unreadable {where}"
        values = result.values if result is not None else {}
        row = {"index": k, where: k + 1, "smiles": smiles, "status": status, "reason": reason,
               "cached": bool(result and result.cached), "elapsed_s": round(result.elapsed_s, 3) if result else 0}
        row.update({column: values.get(column, "") for column in _DFT_COLUMNS})
        rows.append(row)
        records.append({"index": k, where: k + 1, "smiles": smiles, "status": status, "reason": reason or None,
                        "values": values})
        if status == "ok":
            props = "".join(f">  <{c}>\n{values[c]}\n\n" for c in ("smiles", *_DFT_COLUMNS[:5]))
            blocks.append(molblock(values) + props + "$$$$\n")
    summary = compare_distributions(property_values(computed), reference[0] if reference else {})
    prefix = Path(args.out) if args.out else path.with_suffix(f".{args.method}")
    atomic_write_text(prefix.with_name(prefix.name + ".csv"), _csv(rows))
    atomic_write_text(prefix.with_name(prefix.name + ".sdf"), "".join(blocks))
    atomic_write_json(prefix.with_name(prefix.name + ".json"), {
        "file": str(path), "method": args.method, "hook": repr(hook), "optimize": args.optimize,
        "reference": reference[1] if reference else None, "summary": summary, "results": records})
    if args.plots and reference is not None:
        plot_property_histograms(property_values(computed), reference[0], args.plots,
                                 label=f"{path.name} ({args.method})", reference_label=reference[1],
                                 prefix=args.method)
    elif args.plots:
        plot_property_histograms(property_values(computed), {}, args.plots, label=f"{path.name} ({args.method})",
                                 prefix=args.method)
    _print_distributions(summary, reference[1] if reference else "no reference")
    print(batch_summary(computed, len(bad)) + f"; wrote {prefix}.csv/.json/.sdf")
    return batch_exit_code(computed, args.strict)


def _csv(rows: list[dict]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["index"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


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

    verifiers = {method: _dft_hook(method, False, 3, "mmff", spec.seed) for method in ("xtb", "b3lyp")}
    domain = GraphgenCampaign(verifiers, data_dir=str(resolve_data_dir(args.data_dir) or "") or None)
    return run_campaign(domain, spec, args.out, progress=not args.no_progress), "top_k.smi/.sdf"


SUBCOMMANDS = [add_version_parser, add_train_parser, add_sample_parser, add_evaluate_parser, add_import_gdss_parser,
               add_dft_parser, add_campaign_parser]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``graphgen`` console script; returns the exit code."""
    return run_cli(build_parser(PROG, DESCRIPTION, SUBCOMMANDS), argv)


if __name__ == "__main__":
    sys.exit(main())
