"""perov-5 generation benchmark of a crysgen model (default: the embedded one), CDVAE protocol.

Samples N crystals, times the sampler (crystals/s, NFE), evaluates struct/comp validity (smact14), COV-R/P
(cut-offs 0.2 / 4), Wasserstein distances of density and element count against the perov-5 **test** split,
uniqueness, and novelty against the **val** split (the split the model was trained on: only val/test of
perov-5 are available here), optionally CHGNet energies of a subset. Writes benchmarks/results/<name>.{json,md}.

    OMP_NUM_THREADS=1 python -m benchmarks.crysgen_perov5 -n 1000 --data-dir /path/to/shared/data

``--ceiling``: no model; the first N *val* crystals, round-tripped through the model's matrix encoding and
scaler, are scored as if generated (the metric pipeline's ceiling on real data: COV should be near 100%).
``--throughput-only``: sample and time only (e.g. ``-n 10000`` for the sampling-throughput figure).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from benchmarks.harness import write_results


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--num", type=int, default=1000, help="crystals to sample (default 1000)")
    parser.add_argument("--checkpoint", default=None, help="model.pt (default: embedded perov-5 model)")
    parser.add_argument("--steps", type=int, default=100, help="Heun steps (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--workers", type=int, default=2, help="processes for fingerprints/validity")
    parser.add_argument("--chgnet", type=int, default=0,
                        help="CHGNet single-point energies of this many valid crystals")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples-dir", default=None, help="also write the CIFs + summary.csv here")
    parser.add_argument("--name", default=None, help="results file name (default depends on the mode)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--ceiling", action="store_true", help="score round-tripped val crystals instead of samples")
    mode.add_argument("--throughput-only", action="store_true", help="sample and time, no evaluation")
    return parser.parse_args(argv)


def chgnet_energies(structures: list, limit: int) -> dict:
    """Single-point CHGNet energies per atom (eV) of up to ``limit`` valid crystals (no relaxation)."""
    from crysgen.hooks import CHGNetHook
    from shared.hooks import run_hook

    chosen = structures[:limit]
    results = run_hook(CHGNetHook(relax=False), [s.as_dict() for s in chosen])
    values = np.array([r.values["energy_per_atom_eV"] for r in results if r.ok])
    if values.size == 0:
        return {"n": 0, "n_failed": len(results)}
    return {"n": int(values.size), "n_failed": len(results) - int(values.size), "mean_eV_atom": float(values.mean()),
            "median_eV_atom": float(np.median(values)), "std_eV_atom": float(values.std()),
            "q05_eV_atom": float(np.quantile(values, 0.05)), "q95_eV_atom": float(np.quantile(values, 0.95))}


def round_trip(model, structures: list) -> list:
    """Encode, scale, unscale and decode ``structures`` with ``model``'s encoder and scaler (+ the matrices)."""
    encoded = model.encoder.encode_many(structures)
    matrices = model.scaler.inverse_transform(model.scaler.transform(encoded.matrices))
    return model.encoder.decode_many(matrices), matrices


def throughput_only(args, model) -> int:
    from crysgen.sampling import sample_crystals

    start = time.perf_counter()
    result = sample_crystals(model, args.num, steps=args.steps, seed=args.seed, batch_size=args.batch_size,
                             progress=True)
    seconds = time.perf_counter() - start
    results = {"crystals": args.num, "decoded": result.n_decoded, "seconds": seconds,
               "crystals_per_s": args.num / seconds, "nfe_per_crystal": result.nfe}
    protocol = {"model": str(model.path), "model_steps": model.meta.get("step"), "seed": args.seed,
                "batch_size": args.batch_size, "sampler": f"EDM Heun, {args.steps} steps (2 NFE per step but the "
                "last)", "threads": torch.get_num_threads(), "device": args.device,
                "timed": "sampling + decoding to pymatgen Structures; no evaluation, no file writing"}
    command = "OMP_NUM_THREADS=1 python -m benchmarks.crysgen_perov5 " + shlex.join(argv_or_sys(args))
    json_path, _ = write_results(args.name or "crysgen_perov5_throughput", results, protocol, command)
    print(f"{args.num / seconds:.3f} crystals/s, NFE {result.nfe}; results -> {json_path}")
    return 0


def argv_or_sys(args) -> list[str]:
    return args.argv if args.argv is not None else sys.argv[1:]


def main(argv=None) -> int:
    args = parse_args(argv)
    args.argv = argv
    from crysgen.checkpoint import load_model
    from crysgen.data import load_dataset
    from crysgen.evaluation import evaluate_crystals
    from crysgen.sampling import SampleResult, sample_crystals, write_samples
    from crysgen.train import default_cache_dir

    model = load_model(args.checkpoint, args.device)
    if args.throughput_only:
        return throughput_only(args, model)
    cache = default_cache_dir()
    test = load_dataset("perov_5", "test", args.data_dir, cache_dir=cache).structures
    val = load_dataset("perov_5", "val", args.data_dir, cache_dir=cache).structures
    start = time.perf_counter()
    if args.ceiling:
        decoded, matrices = round_trip(model, val[:args.num])
        result = SampleResult(decoded, matrices, nfe=0, seconds=0.0, settings={"ceiling": True})
    else:
        result = sample_crystals(model, args.num, steps=args.steps, seed=args.seed, batch_size=args.batch_size,
                                 progress=True)
    sample_seconds = time.perf_counter() - start
    if args.samples_dir:
        write_samples(result, args.samples_dir)
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        report = evaluate_crystals(result.structures, reference=test, train=None if args.ceiling else val,
                                   dataset="perov_5", executor=pool if args.workers > 1 else None, seed=args.seed,
                                   reference_cache_dir=cache / "fingerprints")
    eval_seconds = time.perf_counter() - start
    metrics = dict(report["metrics"])
    results = {
        **metrics,
        "decoded_fraction": result.n_decoded / args.num,
        "sampling": {"crystals_per_s": args.num / sample_seconds, "nfe_per_crystal": result.nfe,
                     "seconds": sample_seconds, "steps": args.steps},
        "evaluation_seconds": eval_seconds,
    }
    if args.chgnet > 0:
        from crysgen.evaluation import composition_validity, structure_validity

        valid = [s for s in result.structures
                 if s is not None and structure_validity(s) and composition_validity(s.composition)]
        results["chgnet"] = chgnet_energies(valid, args.chgnet)
    protocol = {
        "model": str(model.path), "model_training": model.meta.get("data", {}),
        "model_steps": model.meta.get("step"),
        "train_split": "val (perov-5 train split not available here: TRAINED ON VAL)",
        "reference_split": "test (3,785 structures)", "novelty_against": "val",
        "mode": "ceiling: first N val crystals round-tripped through the encoding, no model sampling, no "
                "novelty" if args.ceiling else "samples of the model",
        "n_sampled": args.num, "seed": args.seed, "sampler": f"EDM Heun, {args.steps} steps, sigma 80 -> 0.002, "
        f"rho 7, churn {model.config.diffusion.S_churn}", "unconditional": True,
        "evaluation": report["protocol"], "oxidation_states": "smact14",
        "cov_cutoffs": "struct 0.2 / comp 4 (CDVAE perov-5)", "threads": torch.get_num_threads(),
        "budget": "CPU only; the embedded model is a short CPU training run, far below the paper's budget",
        "skipped_evaluators": report["skipped"],
    }
    command = "OMP_NUM_THREADS=1 python -m benchmarks.crysgen_perov5 " + shlex.join(argv_or_sys(args))
    name = args.name or ("crysgen_perov5_ceiling" if args.ceiling else "crysgen_perov5")
    json_path, _ = write_results(name, results, protocol, command)
    for key, value in metrics.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"sampling: {args.num / sample_seconds:.2f} crystals/s, NFE {result.nfe}; results -> {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
