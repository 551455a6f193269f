"""The ``molgen`` command line: ``molgen COMMAND [options]``.

To add a command, write ``add_<name>_parser(subparsers)`` (create the subparser, call
``shared.cli_common.add_common_options`` for --device/--seed/--data-dir/--threads/--no-progress, and
``set_defaults(handler=...)`` with a handler ``fn(args) -> int | None``), then append it to ``SUBCOMMANDS``.
Handlers import heavy or optional libraries lazily so that ``molgen --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from molgen import __version__
from shared.cli_common import add_campaign_parser as _add_campaign_parser
from shared.cli_common import add_version_parser as _add_version_parser
from shared.cli_common import nonnegative_float, nonnegative_int, positive_float, positive_int
from shared.cli_common import (UserError, add_common_options, add_strict_option, batch_exit_code, batch_summary,
                                build_parser, run_cli)

PROG = "molgen"
DESCRIPTION = "SE(3)-equivariant flow matching for 3D molecules: train, sample, evaluate, DFT."


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
    parser.add_argument("--strain", choices=("mmff", "xtb", "none"), default="mmff",
                        help="relax every valid, connected, closed-shell molecule and report its strain (relaxation "
                             "energy, heavy-atom RMSD, whether the bonding survives): mmff (MMFF94, ~20 ms per "
                             "molecule; the default), xtb (GFN2-xTB, seconds per molecule) or none")
    parser.add_argument("--workers", type=positive_int, default=1, help="processes for --strain xtb (default 1)")
    _add_skip_unreadable(parser)
    add_common_options(parser, device=False, seed=False, data_dir=False)
    parser.add_argument("--plots", default=None,
                        help="write figures (PNG) into this folder: atoms per molecule, element mix, bond lengths "
                             "(against QM9 test molecules when --reference is a prepared QM9 .pt)")
    parser.set_defaults(handler=_evaluate)
    return parser


def _add_skip_unreadable(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="skip molecules/frames that cannot be read (each reported with its record and line "
                             "number, counted from 1) and go on with the rest; without it the first one stops the "
                             "command with exit code 2")


def _read_input(args: argparse.Namespace, **kwargs):
    """The molecules of ``args.file``, honouring --skip-unreadable; skipped records are reported on stderr."""
    from molgen.io import read_molecules
    from shared.io import UnreadableRecord

    try:
        read = read_molecules(args.file, on_error="skip" if args.skip_unreadable else "raise", **kwargs)
    except UnreadableRecord as err:
        raise UserError(f"{err} (pass --skip-unreadable to skip it and read the rest)") from err
    if read.skipped:
        shown = "; ".join(str(record) for record in read.skipped[:_SHOWN_SKIPPED])
        more = f"; and {len(read.skipped) - _SHOWN_SKIPPED} more" if len(read.skipped) > _SHOWN_SKIPPED else ""
        print(f"warning: {read.path}: skipped {len(read.skipped)} unreadable {read.kind}(s): {shown}{more}",
              file=sys.stderr)
    return read


_SHOWN_SKIPPED = 5


def _evaluate(args: argparse.Namespace) -> int:
    from molgen.io import molecules_to_batch
    from molgen.metrics import evaluate_molecules
    from shared.io import atomic_write_json

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    read = _read_input(args)
    context = {"train_smiles": _reference_smiles(args.reference) if args.reference else None,
               "strain_method": None if args.strain == "none" else args.strain, "strain_workers": args.workers,
               "progress": not args.no_progress}
    report = evaluate_molecules(molecules_to_batch(read.mols), context)
    out = Path(args.out) if args.out else read.path.with_suffix(".metrics.json")
    record = {"file": str(read.path), "n_molecules": len(read), "n_skipped": len(read.skipped),
              "skipped_records": [skipped.to_dict() for skipped in read.skipped],  # "skipped": evaluators
              "xyz_bond_orders_not_perceived": int(sum(not ok for ok in read.bonds_perceived)),
              **report.to_dict()}
    if args.plots:
        record["plots"] = [str(p) for p in _evaluation_plots(read.mols, args)]
    atomic_write_json(out, record)
    width = max(len(name) for name in report.metrics) if report.metrics else 10
    print(f"{len(read)} molecules from {read.path}" + (f" ({len(read.skipped)} skipped)" if read.skipped else ""))
    for name, value in report.metrics.items():
        print(f"{name:<{width}}  {value:.4f}")
    for name, why in report.skipped.items():
        print(f"{name:<{width}}  skipped: {why}")
    print(f"wrote {out}")
    return 0


def _evaluation_plots(mols: list, args: argparse.Namespace) -> list:
    """Atoms per molecule, element mix and bonded distances; against QM9 molecules when --reference is a .pt."""
    import numpy as np

    from shared.plots import bar_comparison, histogram_comparison

    sets = {f"{Path(args.file).name}": mols}
    if args.reference and args.reference.endswith(".pt"):
        from molgen.data import QM9Dataset

        reference = QM9Dataset(args.reference, "test")
        picks = np.random.default_rng(0).choice(len(reference), size=min(2000, len(reference)), replace=False)
        sets["QM9 test (2,000)"] = [reference.to_mol(int(i)) for i in picks]
    sizes, elements, lengths = {}, {}, {}
    for label, group in sets.items():
        sizes[label] = [m.GetNumAtoms() for m in group]
        symbols = [a.GetSymbol() for m in group for a in m.GetAtoms()]
        elements[label] = {e: symbols.count(e) / max(len(symbols), 1) for e in sorted(set(symbols))}
        lengths[label] = [float(np.linalg.norm(pos[b.GetBeginAtomIdx()] - pos[b.GetEndAtomIdx()]))
                          for m in group if m.GetNumConformers()
                          for pos in [m.GetConformer().GetPositions()] for b in m.GetBonds()]
    out = Path(args.plots)
    return [histogram_comparison(sizes, "atoms per molecule (with H)", out / "atoms.png", discrete=True),
            bar_comparison(elements, "fraction of atoms", out / "elements.png", title="element mix"),
            histogram_comparison(lengths, "bond length (Angstrom)", out / "bond_lengths.png", bins=60)]


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
    from molgen.hooks import QM_HOOKS

    parser = subparsers.add_parser("dft", help="xTB or B3LYP single points for the molecules of an SDF/XYZ file")
    parser.add_argument("file", help="SDF/MOL or (multi-)XYZ file")
    parser.add_argument("--method", choices=tuple(QM_HOOKS), default="xtb",
                        help="xtb: GFN2-xTB (tblite); b3lyp: B3LYP/6-31G(2df,p) with PySCF (slow)")
    parser.add_argument("--workers", type=positive_int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--cache", default=None,
                        help="result cache (default: FILE's folder/.molgen-dft-cache); reruns resume from it")
    parser.add_argument("--out", default=None,
                        help="output prefix (default: FILE without suffix + .METHOD); writes PREFIX.csv/.json with "
                             "one entry per record of FILE (ok, failed, or skipped as unreadable)")
    parser.add_argument("--retry-failed", action="store_true", help="recompute cached failures")
    _add_skip_unreadable(parser)
    add_common_options(parser, device=False, seed=False, data_dir=False)
    add_strict_option(parser)
    parser.set_defaults(handler=_dft)
    return parser


def _dft(args: argparse.Namespace) -> int:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from molgen.hooks import QM_HOOKS, MoleculeRecord, dft_input_problem
    from shared.hooks import HookResult, run_hook
    from shared.io import atomic_write_json, atomic_write_text

    read = _read_input(args, elements=None)
    problems = [dft_input_problem(mol) for mol in read.mols]  # no open shell or broken geometry reaches the hook
    todo = [k for k, problem in enumerate(problems) if problem is None]
    records = [MoleculeRecord.from_mol(read.mols[k]) for k in todo]
    hook = QM_HOOKS[args.method]()
    cache = Path(args.cache) if args.cache else read.path.parent / ".molgen-dft-cache"
    executor = None
    if args.workers > 1:
        executor = ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"))
    try:
        computed = run_hook(hook, records, executor=executor, cache_dir=cache, retry_failed=args.retry_failed,
                            progress=not args.no_progress)
    finally:
        if executor is not None:
            executor.shutdown()
    by_index = dict(zip(todo, computed))
    results = [by_index.get(k) or HookResult("", "failed", {}, problem, 0.0, False)
               for k, problem in enumerate(problems)]
    rows = _dft_rows(read, results)
    prefix = Path(args.out) if args.out else read.path.with_suffix(f".{args.method}")
    atomic_write_text(prefix.with_name(prefix.name + ".csv"), _csv(rows))
    atomic_write_json(prefix.with_name(prefix.name + ".json"),
                      {"file": str(read.path), "method": args.method, "hook": hook.name,
                       "results": [{"record": read.record_index[k] + 1, "name": n, "status": r.status,
                                    "reason": r.reason, "values": r.values}
                                   for k, (n, r) in enumerate(zip(read.names, results))],
                       "skipped": [record.to_dict() for record in read.skipped]})
    print(batch_summary(results, len(read.skipped)) + f"; wrote {prefix}.csv/.json")
    return batch_exit_code(results, args.strict)


def _dft_rows(read, results) -> list[dict]:
    """One CSV row per record of the input file, in file order: computed ones and skipped unreadable ones."""
    rows = []
    for k, (name, result) in enumerate(zip(read.names, results)):
        row = {"record": read.record_index[k] + 1, "name": name, "status": result.status,
               "reason": result.reason or "", "cached": result.cached, "elapsed_s": round(result.elapsed_s, 3)}
        rows.append(row | {column: result.values.get(column, "") for column in _DFT_COLUMNS})
    for record in read.skipped:
        rows.append({"record": record.number, "name": "", "status": "skipped", "reason": str(record),
                     "cached": False, "elapsed_s": 0.0} | {column: "" for column in _DFT_COLUMNS})
    return sorted(rows, key=lambda row: row["record"])


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
    parser.set_defaults(handler=_train_regressor, output_lock="run_dir")
    return parser


def _train_regressor(args: argparse.Namespace) -> int:
    from molgen.train_regressor import RegressorTrainConfig, evaluate_regressor, train_regressor
    from shared.cli_common import resolve_device
    from shared.config import load_config

    device = resolve_device(args.device)
    overrides = [f"property={args.property}", f"data={args.qm9}", f"trainer.seed={args.seed}",
                 f"trainer.device={device}", *(["trainer.progress=false"] if args.no_progress else []),
                 *args.overrides]
    config = load_config(RegressorTrainConfig, args.config, overrides)
    summary = train_regressor(config, args.run_dir, resume=args.resume)
    test = evaluate_regressor(Path(args.run_dir) / "best.pt", config.data, config.property)
    print(f"{config.property}: {summary['steps']} steps ({summary['stop_reason']}), best valid MAE "
          f"{summary['best_valid_mae']:.4g} {summary['unit']}, test MAE {test['mae']:.4g} {test['unit']}")
    return 0


# --- train (the generator) ------------------------------------------------------------------------------------


def _config_path(name: str) -> Path:
    """A config file path, or the name of a packaged config (qm9_cpu, qm9_propmolflow)."""
    from shared.cli_common import packaged_config

    return packaged_config(name, Path(__file__).parent / "configs")


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="train the 3D generator on QM9 (resumes an existing --run-dir)")
    parser.add_argument("config", help="YAML config or packaged config name (qm9_cpu, qm9_propmolflow)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.max_steps=1000 batch_size=32")
    parser.add_argument("--qm9", default=None,
                        help="prepared QM9 file (default: config's data, else ~/.cache/scoregen/qm9, prepared once)")
    parser.add_argument("--run-dir", default=None, help="run directory (default: runs/<date>-molgen-<config>-<hash>)")
    parser.add_argument("--steps", type=nonnegative_int, default=None,
                        help="stop after this many more steps (resumable)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and parameter count only")
    add_common_options(parser, data_dir=False)
    parser.set_defaults(handler=_train, seed=None, output_lock="run_dir")
    return parser


def _train(args: argparse.Namespace) -> int:
    import hashlib
    import time

    from molgen.train import GeneratorTrainConfig, build_generator, train_generator
    from shared.cli_common import resolve_device
    from shared.config import TRAINER_SECTION_ALIASES, config_to_dict, load_config
    from shared.training import distributed

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"trainer.seed={args.seed}")
    if args.qm9:
        overrides.append(f"data={args.qm9}")
    overrides += [f"trainer.device={resolve_device(args.device)}"] + (
        ["trainer.progress=false"] if args.no_progress else [])
    config = load_config(GeneratorTrainConfig, _config_path(args.config), overrides=overrides,
                         aliases=TRAINER_SECTION_ALIASES)
    if args.dry_run:
        import yaml

        print(yaml.safe_dump(config_to_dict(config), sort_keys=False).rstrip())
        print(f"parameters: {build_generator(config.model).num_parameters():,}")
        return 0
    # a no-op without torchrun; with it, one process group for all ranks (gloo unless training on CUDA)
    distributed.init("nccl" if config.trainer.device.startswith("cuda") else "gloo")
    try:
        run_dir = args.run_dir
        if run_dir is None:  # rank 0 names it (the date may differ between ranks at midnight)
            digest = hashlib.sha256(repr(config_to_dict(config)).encode()).hexdigest()[:8]
            run_dir = Path("runs") / f"{time.strftime('%Y%m%d')}-molgen-{Path(args.config).stem}-{digest}"
        run_dir = distributed.broadcast_object(str(run_dir))
        path = train_generator(config, run_dir, steps=args.steps)
        main_rank = distributed.is_main()
    finally:
        distributed.cleanup()
    if main_rank:
        print(f"model written to {path}")
    return 0


# --- sample -----------------------------------------------------------------------------------------------------


def add_sample_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("sample", help="generate 3D molecules (SDF) from a generator checkpoint")
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="model.pt written by 'molgen train' or a run directory (default: the embedded model)")
    parser.add_argument("-n", "--num", type=positive_int, default=100, help="number of molecules (default 100)")
    parser.add_argument("--out", required=True, help="output SDF file")
    parser.add_argument("--condition", action="append", default=[], metavar="PROP=VALUE",
                        help="property target in molgen units (alpha Bohr^3, gap/homo/lumo eV, mu D, Cv cal/(mol K)); "
                             "repeat for several")
    parser.add_argument("--guidance-scale", type=nonnegative_float, default=1.0,
                        help="classifier-free guidance scale w (1 = plain conditional model; 2 NFE per step if != 1)")
    parser.add_argument("--regressor-guidance", type=nonnegative_float, default=0.0,
                        help="scale of gradient guidance through the shipped property regressors (0 = off)")
    parser.add_argument("--screen", type=positive_int, default=None, metavar="K",
                        help="with --condition: draw K candidates per molecule and keep the sound one whose property, "
                             "predicted by a graph surrogate fitted on the generator's half of QM9, is closest to the "
                             "target (K times the sampling; default: the model file's choice, 8 for the embedded "
                             "model; 1: the network alone)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="integration steps (default: the model's, 100)")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="molecules per batch (default 256)")
    parser.add_argument("--eta", type=nonnegative_float, default=None, help="CTMC stochasticity (default: the model's)")
    parser.add_argument("--temperature", type=positive_float, default=None,
                        help="temperature on predicted probabilities")
    parser.add_argument("--purity", action="store_true", help="purity sampling (most confident tokens first)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                        help="the network's precision: fp32 (default), bf16 autocast (the integrator stays fp32) or "
                             "auto (bf16 where the CPU/GPU has it natively)")
    parser.add_argument("--relax", choices=("mmff", "xtb"), default=None,
                        help="relax each valid, connected, closed-shell molecule (MMFF94 or GFN2-xTB); its SDF record "
                             "gets relax_status, relax_energy_eV, relax_heavy_rmsd_A and relax_bonding_changed")
    parser.add_argument("--drop-unsound", action="store_true",
                        help="with --relax: leave out molecules that could not be relaxed or whose bonding changed")
    parser.add_argument("--workers", type=positive_int, default=1, help="processes for --relax (default 1)")
    add_common_options(parser, data_dir=False)
    parser.set_defaults(handler=_sample, output_lock="out")
    return parser


def _parse_conditions(items: list[str]) -> dict[str, float]:
    from shared.conditions import parse_targets

    return parse_targets(items, "--condition")


def _sample(args: argparse.Namespace) -> int:
    from molgen.api import generator_path, load_model, sample
    from molgen.sampling import canonical_property, write_sdf
    from shared.cli_common import resolve_device

    out = Path(args.out)
    if out.suffix.lower() != ".sdf":
        raise ValueError(f"--out {out}: molgen sample writes SDF; use a .sdf file name")
    if args.num < 1:
        raise ValueError(f"-n must be positive, got {args.num}")
    if args.drop_unsound and not args.relax:
        raise ValueError("--drop-unsound needs --relax mmff or --relax xtb")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    device = resolve_device(args.device)
    generator = load_model(args.checkpoint, device=device)
    source = "embedded default" if args.checkpoint is None else str(generator_path(args.checkpoint))
    condition = {canonical_property(k): v for k, v in _parse_conditions(args.condition).items()}
    regressors = None
    if args.regressor_guidance:
        from molgen.pretrained import load_pretrained

        regressors = {k: load_pretrained(k) for k in condition}
    result = sample(generator, args.num, condition=condition, guidance_scale=args.guidance_scale,
                    steps=args.steps, seed=args.seed, eta=args.eta, temperature=args.temperature,
                    purity=True if args.purity else None, precision=args.precision, batch_size=args.batch_size,
                    device=device,
                    regressors=regressors, regressor_scale=args.regressor_guidance,
                    progress=not args.no_progress, relax=args.relax, drop_unsound=args.drop_unsound,
                    relax_workers=args.workers, screen=args.screen)
    write_sdf(result, out)
    target = ", ".join(f"{k}={v:g}" for k, v in condition.items()) or "unconditional"
    dropped = f", {result.nonfinite} dropped (NaN)" if result.nonfinite else ""
    print(f"{len(result)} molecules ({target}; {source}) -> {out}; NFE {result.nfe}, {result.seconds:.1f} s "
          f"({(len(result) + result.dropped_unsound) / max(result.seconds, 1e-9):.2f} mol/s){dropped}")
    if result.settings.get("screen", 1) > 1:
        stats = result.settings["screen_statistics"]
        print(f"screened: {result.settings['screen']} candidates per molecule ({stats['candidates']} in all, "
              f"{stats['sound_candidates']:.0%} sound), the sound one a surrogate puts closest to the target kept "
              "(--screen 1: the network alone)")
    if args.relax:
        print(_relax_summary(result))
    return 0


def _relax_summary(result) -> str:
    from collections import Counter

    counts = Counter(r.status for r in result.relax)
    changed = sum(r.status == "ok" and not r.bonding_survives for r in result.relax)
    total = len(result.relax) + result.dropped_unsound
    per_mol = result.relax_seconds / max(total, 1)
    energies = sorted(r.relax_energy_eV for r in result.relax if r.status == "ok")
    median = f"; median relaxation energy {energies[len(energies) // 2]:.2f} eV" if energies else ""
    dropped = f"; {result.dropped_unsound} dropped (--drop-unsound)" if result.dropped_unsound else ""
    return (f"relax ({result.settings['relax']}): {counts.get('ok', 0)} relaxed in the file ({changed} with changed "
            f"bonding, flagged), {counts.get('skipped', 0)} skipped, {counts.get('failed', 0)} failed{dropped}"
            f"{median}; {per_mol * 1000:.0f} ms per molecule")


# --- campaign -------------------------------------------------------------------------------------------------


def add_campaign_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = _add_campaign_parser(subparsers, PROG, "property-guided campaign: generate -> filter -> verify -> rank "
                                  "(resumable)", _campaign)
    parser.add_argument("--qm9", default=None,
                        help="prepared QM9 file for filters.novel (default: ~/.cache/scoregen/qm9 when prepared)")
    return parser


def _campaign(args: argparse.Namespace, spec):
    from molgen.campaign import MolgenCampaign
    from shared.campaign import run_campaign

    qm9 = args.qm9
    if qm9 is None:
        from shared.paths import cache_dir

        cached = sorted(cache_dir("qm9").glob("qm9_*.pt"))
        qm9 = str(cached[-1]) if cached else None
    return run_campaign(MolgenCampaign(qm9=qm9), spec, args.out, progress=not args.no_progress), "top_k.sdf"


SUBCOMMANDS = [add_version_parser, add_train_parser, add_sample_parser, add_evaluate_parser, add_dft_parser,
               add_train_regressor_parser, add_campaign_parser]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``molgen`` console script; returns the exit code."""
    return run_cli(build_parser(PROG, DESCRIPTION, SUBCOMMANDS), argv)


if __name__ == "__main__":
    sys.exit(main())
