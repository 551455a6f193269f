"""Run the project's benchmarks with the commands that produced the committed results (``make bench``).

Each benchmark is one module of this folder run in its own process; what it needs (reference data, hours of
CPU) is declared here, so ``--all`` runs what this machine can and says what it skipped and why.

  python -m benchmarks.run --list             # what exists, how long it takes, what it needs
  python -m benchmarks.run --all              # every "quick" benchmark (minutes each)
  python -m benchmarks.run --all --long       # also the long ones (hours on a CPU)
  python -m benchmarks.run molgen_dft_agreement crysgen_perov5
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass

from shared.paths import resolve_data_dir


@dataclass(frozen=True)
class Benchmark:
    name: str
    args: tuple[str, ...]  # "{data}" is replaced by the reference data directory
    cost: str  # rough single-thread CPU time
    long: bool = False
    needs_data: bool = True
    module: str | None = None  # the script, when one script is run in several ways (default: name)


BENCHMARKS = (
    Benchmark("sampler_overhead", ("--batch", "256", "--nodes", "38", "--steps", "3", "--repeats", "2",
                                   "--threads", "1"), "~2 min", needs_data=False),
    Benchmark("molgen_dft_agreement", ("--first", "12", "--fluorinated", "4", "--work",
                                       "runs/bench/dft-agreement"), "~7 min", needs_data=False),
    Benchmark("crysgen_perov5", ("-n", "500", "--chgnet", "200", "--data-dir", "{data}"), "~20 min"),
    Benchmark("graphgen_graphs", ("--checkpoint", "{data}/gdss_checkpoints/gdss_community_small.pth",
                                  "--data-dir", "{data}", "--seeds", "42", "43", "44", "--work",
                                  "runs/bench/cs-gdss", "--name", "graphgen_community_small_gdss"), "~15 min"),
    Benchmark("molgen_qm9", (), "~15 min (first run prepares QM9)", needs_data=False),
    Benchmark("molgen_generate_unconditional", ("-n", "1000", "--steps", "20", "50", "100", "--cond-n", "0",
                                                "--threads", "1", "--name", "molgen_generate_unconditional"),
              "~35 min (embedded generator, 3 x 1,000 molecules)", long=True, needs_data=False,
              module="molgen_generate"),
    Benchmark("molgen_generate_conditional", ("-n", "200", "--steps", "100", "--cond-n", "100", "--ood-n", "50",
                                              "--b3lyp", "4", "--threads", "1", "--name", "molgen_generate_conditional",
                                              "--work", "runs/bench/molgen-cond", "--screen", "1"),
              "~30 min (6 properties, the network alone; xTB on all, B3LYP on 4)", long=True, needs_data=False,
              module="molgen_generate"),
    Benchmark("molgen_generate_screened", ("-n", "50", "--steps", "100", "--cond-n", "50", "--ood-n", "0",
                                           "--b3lyp", "0", "--screen", "8", "--batch-size", "64", "--threads", "1",
                                           "--name", "molgen_generate_screened", "--work", "runs/bench/molgen-screen"),
              "~80 min (6 properties x 50 targets x 8 screened candidates, the default for conditions; xTB on "
              "gap/HOMO/LUMO)", long=True,
              needs_data=False, module="molgen_generate"),
    Benchmark("molgen_surrogates", ("--out", "runs/bench/surrogates.npz"),
              "~15 min (six graph surrogates fitted on QM9's generator half; the shipped file is --out "
              "molgen/pretrained/surrogates.npz)", needs_data=False),
    Benchmark("graphgen_dft", ("--data-dir", "{data}", "-n", "500", "--work", "runs/bench/graphgen-dft",
                               "--threads", "1"), "~25 min (500 sampled + 500 QM9 test molecules through xTB)"),
    Benchmark("graphgen_speed", ("--data-dir", "{data}", "-n", "1000", "--steps", "100", "--repeats", "3",
                                 "--threads", "1"), "~10 min (interleaved reference vs current sampling)"),
    Benchmark("crysgen_novelty", (), "~2 min (200 vs 2,000 one-formula carbon crystals; brute force sub-sampled)",
              needs_data=False),
    Benchmark("crysgen_eval_scale", ("--workers", "2"),
              "~11 min on 2 cores (full evaluate: 1,000 vs 2,030 test + 2,032 train carbon crystals, cold cache)",
              needs_data=False),
    Benchmark("graphgen_qm9", ("--checkpoint", "{data}/gdss_checkpoints/gdss_qm9.pth", "--data-dir", "{data}",
                               "-n", "10000", "--threads", "1", "--work", "runs/bench/qm9-gdss",
                               "--name", "graphgen_qm9_gdss"), "~2 h", long=True),
    Benchmark("graphgen_qm9_ours", ("--checkpoint", "graphgen/pretrained/qm9.pt", "--data-dir", "{data}", "-n",
                                    "1000", "--seed", "7", "--threads", "1", "--work", "runs/bench/qm9-ours",
                                    "--name", "graphgen_qm9_ours"),
              "~10 min (the embedded QM9 model with its own sampler)", module="graphgen_qm9"),
    Benchmark("graphgen_qm9_snr_ablation", ("-n", "300", "--grid", "0.2:0.2", "0.1:0.2", "0.05:0.2", "0:0.2",
                                            "0.2:0", "0.02:0.2", "0.01:0.2", "0.03:0.2", "0.02:0.3", "0.02:0.4"),
              "~20 min (10 corrector settings x 300 molecules)", needs_data=False, module="graphgen_snr_ablation"),
    Benchmark("molgen_recipes", ("--steps", "400", "--n", "200", "--recipes",
                                 "baseline,beta21,beta21_noise01,beta21_distort",
                                 "--grid", "embedded,baseline,beta21,beta21_noise01"),
              "~2 h (4 recipes x 400 training steps, each judged on 200 molecules)", long=True, needs_data=False),
    Benchmark("molgen_guidance", ("-n", "60", "--scales", "1", "1.5", "2"),
              "~10 min (gap 4.5 vs 8.5 at three guidance scales, MMFF + GFN2-xTB)", needs_data=False),
    Benchmark("crysgen_sampler_levers", ("--data-dir", "{data}", "-n", "300", "--settings", "100:fp32", "100:bf16",
                                         "50:fp32", "50:bf16", "25:fp32"),
              "~12 min (Heun steps x precision, 300 perov-5 crystals each, CDVAE metrics)"),
    # benchmarks.graphgen_throughput needs a checkout of the official GDSS code (--gdss-dir): run it by hand,
    # see benchmarks/GRAPHGEN.md
)


def command(bench: Benchmark, data_dir: str | None) -> list[str]:
    args = [a.replace("{data}", data_dir or "") for a in bench.args]
    return [sys.executable, "-m", f"benchmarks.{bench.module or bench.name}", *args]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default with --all: every quick one)")
    parser.add_argument("--all", action="store_true")
    parser.add_argument("--long", action="store_true", help="with --all: include the long benchmarks")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--data-dir", default=None, help="reference data (default: $SCOREGEN_DATA)")
    args = parser.parse_args(argv)
    by_name = {b.name: b for b in BENCHMARKS}
    if args.list or not (args.all or args.names):
        for b in BENCHMARKS:
            print(f"{b.name:<22} {b.cost:>8}  {'long' if b.long else 'quick'}  "
                  f"{'needs reference data' if b.needs_data else 'no data needed'}")
        return 0
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {sorted(by_name)}")
    chosen = [by_name[n] for n in args.names] or [b for b in BENCHMARKS if args.long or not b.long]
    reason = "pass --data-dir or set SCOREGEN_DATA"
    try:
        found = resolve_data_dir(args.data_dir)
    except FileNotFoundError as err:
        found, reason = None, str(err)
    data_dir = None if found is None else str(found)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    failed, skipped = [], []
    for bench in chosen:
        if bench.needs_data and data_dir is None:
            skipped.append(f"{bench.name}: no reference data ({reason})")
            continue
        cmd = command(bench, data_dir)
        print("$", shlex.join(cmd), flush=True)
        if subprocess.run(cmd, env=env).returncode != 0:
            failed.append(bench.name)
    for line in skipped:
        print("skipped", line)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
