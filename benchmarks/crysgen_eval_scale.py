"""Full ``crysgen evaluate`` cost on a one-formula dataset from a cold cache (issue 12's target: 1,000 generated
crystals against a ~2,000-crystal carbon reference in under 10 minutes on 2 cores).

The sets are made as in ``benchmarks.crysgen_novelty`` (``crysgen.testing``: random P1 carbon cells of 6-24 atoms
and perturbed polymorph supercells; the generated set holds new random cells and perturbed copies of training
crystals), sized like the carbon set the issue was measured on: 2,032 training crystals (novelty), 2,030 test
crystals (coverage, Wasserstein, space groups) and 1,000 generated. Everything ``crysgen evaluate`` computes is
timed end to end in one call of ``crysgen.evaluation.evaluate_crystals`` with a process pool and an empty
fingerprint cache: validity checks, CrystalNN fingerprints of both sets, coverage, uniqueness, novelty, space
groups. ``--warm`` adds a second call with the now warm reference cache (what a rerun costs).

    OMP_NUM_THREADS=1 python -m benchmarks.crysgen_eval_scale --workers 2     # about 7.5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from types import SimpleNamespace

from benchmarks.harness import write_results


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=2032)
    parser.add_argument("--n-test", type=int, default=2030)
    parser.add_argument("--n-generated", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm", action="store_true", help="evaluate a second time with the warm reference cache")
    parser.add_argument("--name", default="crysgen_eval_scale")
    return parser.parse_args(argv)


def build(args) -> tuple[list, list, list]:
    """(generated, train, test): generated = perturbed copies of train (20 %) + new random cells."""
    from benchmarks.crysgen_novelty import build_sets

    def sets(n_reference: int, n_generated: int, seed: int):
        return build_sets(SimpleNamespace(random_fraction=0.75, known_fraction=0.2, seed=seed,
                                          n_reference=n_reference, n_generated=n_generated))

    generated, train, _ = sets(args.n_train, args.n_generated, args.seed)
    _, test, _ = sets(args.n_test, 1, args.seed + 100)
    return generated, train, test


def main(argv=None) -> int:
    args = parse_args(argv)
    from crysgen.evaluation import evaluate_crystals

    start = time.perf_counter()
    generated, train, test = build(args)
    build_s = time.perf_counter() - start
    rows = {}
    with tempfile.TemporaryDirectory() as cache, ProcessPoolExecutor(args.workers) as pool:
        for label in ("cold cache", "warm reference cache")[: 2 if args.warm else 1]:
            start = time.perf_counter()
            report = evaluate_crystals(generated, reference=test, train=train, dataset="carbon_24", executor=pool,
                                       seed=args.seed, reference_cache_dir=cache, progress=True)
            seconds = time.perf_counter() - start
            metrics = report["metrics"]
            rows[label] = {"seconds": round(seconds, 1), "minutes": round(seconds / 60, 2),
                           **{k: round(float(metrics[k]), 4) for k in
                              ("valid", "cov_recall", "cov_precision", "unique", "novel", "sg_frac_p1")
                              if metrics.get(k) is not None}}
            print(label, rows[label], flush=True)
    protocol = {
        "issue": "12: 1,000 generated vs a ~2,000-crystal one-formula reference, cold cache, 2 cores, < 10 min",
        "data": f"crysgen.testing carbon: train {args.n_train} (novelty), test {args.n_test} (coverage), generated "
                f"{args.n_generated} (20 % perturbed train copies, the rest random 6-24-atom P1 cells); seed "
                f"{args.seed}; built in {build_s:.1f} s (not counted)",
        "evaluation": "crysgen.evaluation.evaluate_crystals, dataset carbon_24 (COV cut-offs struct 0.2 / comp 4 as "
                      "CDVAE), StructureMatcher defaults, every evaluator",
        "workers": args.workers,
        "cache": "an empty temporary fingerprint cache" + (", then the same one warm" if args.warm else ""),
    }
    command = "OMP_NUM_THREADS=1 python -m benchmarks.crysgen_eval_scale " + shlex.join(
        argv if argv is not None else sys.argv[1:])
    json_path, _ = write_results(args.name, rows, protocol, command)
    print(f"results -> {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
