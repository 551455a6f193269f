"""crysgen's EDM sampler levers on perov-5: Heun steps and bf16 autocast, with validity and COV beside each.

Every setting samples the same N crystals (same seed) from the embedded perov-5 model (or ``--checkpoint``) on one
thread, times the sampling call in CPU-seconds (decoding included, evaluation not), and scores the crystals with
the CDVAE protocol of benchmarks.crysgen_perov5 (validity smact14 + structural, COV-R/P at 0.2 / 4 against the
perov-5 test split, Wasserstein distances of density and element count).

Usage:
  python -m benchmarks.crysgen_sampler_levers --data-dir ../shared/data -n 500 \
      --settings 100:fp32 100:bf16 50:fp32 50:bf16 25:bf16
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from benchmarks.harness import machine_info, write_results

KEEP = ("valid", "comp_valid", "struct_valid", "cov_recall", "cov_precision", "wdist_density", "wdist_num_elems",
        "unique")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--checkpoint", default=None, help="crysgen model (default: the embedded perov-5 model)")
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--settings", nargs="+", default=["100:fp32", "100:bf16", "50:fp32", "50:bf16", "25:bf16"],
                        help="STEPS:PRECISION pairs")
    parser.add_argument("--name", default="crysgen_sampler_levers")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from crysgen.checkpoint import load_model
    from crysgen.data import load_dataset
    from crysgen.evaluation import evaluate_crystals
    from crysgen.sampling import sample_crystals
    from crysgen.train import default_cache_dir

    model = load_model(args.checkpoint, "cpu")
    cache = default_cache_dir()
    test = load_dataset("perov_5", "test", args.data_dir, cache_dir=cache).structures
    val = load_dataset("perov_5", "val", args.data_dir, cache_dir=cache).structures
    table = []
    for setting in args.settings:
        steps_text, precision = setting.split(":")
        steps = int(steps_text)
        cpu0 = time.process_time()
        result = sample_crystals(model, args.n, steps=steps, seed=args.seed, batch_size=args.batch_size,
                                 precision=precision)
        cpu = time.process_time() - cpu0
        report = evaluate_crystals(result.structures, reference=test, train=val, dataset="perov_5", seed=args.seed,
                                   reference_cache_dir=cache / "fingerprints")
        metrics = report["metrics"]
        row = {"steps": steps, "precision": result.settings["precision"], "nfe": result.nfe,
               "cpu_s": round(cpu, 1), "crystals_per_cpu_s": round(args.n / cpu, 2),
               **{k: round(float(metrics[k]), 4) for k in KEEP if k in metrics}}
        table.append(row)
        print(row, flush=True)
    base = table[0]["cpu_s"]
    for row in table:
        row["speedup_vs_first"] = round(base / row["cpu_s"], 2)
    protocol = (f"Embedded perov-5 model unless --checkpoint; N = {args.n} crystals per setting, seed {args.seed}, "
                f"batch {args.batch_size}, one thread; EDM Heun with the model's churn "
                f"({model.config.diffusion.S_churn}), sigma {model.config.diffusion.sigma_max} -> "
                f"{model.config.diffusion.sigma_min}, rho {model.config.diffusion.rho}; NFE = 2 steps - 1. bf16 = the "
                "denoiser under bf16 autocast, Heun integration in fp32. CPU-s = process time of sample_crystals "
                "(sampling + decoding). Metrics: CDVAE protocol (benchmarks.crysgen_perov5): validity smact14 + "
                "structural, COV-R/P at 0.2 / 4 vs the perov-5 test split, novelty/uniqueness vs val (the model's "
                "training split).")
    command = "python -m benchmarks.crysgen_sampler_levers " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {f"{r['steps']}:{r['precision']}": {"cpu_s": r["cpu_s"], "valid": r.get("valid"),
                                                   "cov_recall": r.get("cov_recall")} for r in table}
    write_results(args.name, results, protocol, command, table, machine=machine_info())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
