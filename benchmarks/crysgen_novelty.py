"""Novelty and uniqueness cost on a one-formula set (issue 12): N generated vs a 2,000-crystal carbon reference,
the previous brute-force StructureMatcher loop against ``crysgen.matching`` (exact pre-filters).

The data are made here (``crysgen.testing``): the reference holds random P1 carbon cells of 6-24 atoms
(``--random-fraction``) and perturbed polymorph supercells (diamond, graphite, lonsdaleite); the generated set
holds new random cells and perturbed copies of reference crystals (``--known-fraction``), so both answers occur.

* **now**: ``novel_flags`` and ``group_structures`` over the whole sets, timed end to end (reduction included).
* **before** (the code this replaced: ``any(matcher.fit(g, t) for t in train[formula])`` and
  ``matcher.group_structures`` per formula): uniqueness is timed in full; the novelty loop would take hours, so
  it is timed on ``--old-generated`` generated crystals against the first ``--old-references`` reference crystals
  (more than the matcher's 300-structure reduction cache, as in a full run) and extrapolated: seconds per
  ``fit`` call times the exact number of calls the old loop makes on the full sets (every reference crystal
  for a novel crystal; up to the first match, in reference order, for a known one). The sub-sample's answers
  are checked against ``novel_flags`` on the same sub-sets.

    OMP_NUM_THREADS=1 python -m benchmarks.crysgen_novelty            # 200 vs 2,000, about 2-3 minutes
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import warnings

import numpy as np

from benchmarks.harness import write_results


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-reference", type=int, default=2000)
    parser.add_argument("--n-generated", type=int, default=200)
    parser.add_argument("--random-fraction", type=float, default=0.75,
                        help="share of random P1 cells in the reference (the rest: polymorph supercells)")
    parser.add_argument("--known-fraction", type=float, default=0.2,
                        help="share of generated crystals that are perturbed copies of reference crystals")
    parser.add_argument("--old-generated", type=int, default=2, help="generated crystals timed the old way")
    parser.add_argument("--old-references", type=int, default=400, help="reference crystals they are matched to")
    parser.add_argument("--workers", type=int, default=1, help="processes for crysgen.matching (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="crysgen_novelty")
    return parser.parse_args(argv)


def build_sets(args) -> tuple[list, list, list[bool]]:
    from crysgen.testing import carbon_set, perturbed, random_carbon

    rng = np.random.default_rng(args.seed)
    n_random = int(round(args.random_fraction * args.n_reference))
    reference = [random_carbon(int(rng.integers(6, 25)), rng) for _ in range(n_random)]
    reference += carbon_set(args.n_reference - n_random, seed=args.seed + 1)
    order = rng.permutation(len(reference))
    reference = [reference[i] for i in order]
    n_known = int(round(args.known_fraction * args.n_generated))
    generated = [perturbed(reference[int(i)], rng, 0.02, 0.01)
                 for i in rng.choice(len(reference), n_known, replace=False)]
    generated += [random_carbon(int(rng.integers(6, 25)), rng) for _ in range(args.n_generated - n_known)]
    is_copy = [True] * n_known + [False] * (args.n_generated - n_known)
    order = rng.permutation(len(generated))
    return [generated[i] for i in order], reference, [is_copy[i] for i in order]


def first_match_index(item, reduced_refs, matcher) -> int | None:
    """Position (in reference order) of the first reference crystal that ``matcher.fit`` accepts, or None."""
    from crysgen.matching import MatchFilter

    flt = MatchFilter(matcher)
    same_key = [i for i, ref in enumerate(reduced_refs) if flt.key(ref) == flt.key(item)]
    others = [reduced_refs[i] for i in same_key]
    for j in flt.candidates(item, others):
        if matcher.fit(item.structure, others[j].structure, skip_structure_reduction=True):
            return same_key[j]
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    from concurrent.futures import ProcessPoolExecutor

    from pymatgen.analysis.structure_matcher import StructureMatcher

    from crysgen.matching import group_structures, novel_flags, reduce_structures

    warnings.simplefilter("ignore")
    matcher = StructureMatcher()
    start = time.perf_counter()
    generated, reference, is_copy = build_sets(args)
    build_s = time.perf_counter() - start
    print(f"built {len(generated)} generated and {len(reference)} reference carbon crystals in {build_s:.1f} s",
          flush=True)

    pool = ProcessPoolExecutor(args.workers) if args.workers > 1 else None
    try:
        stats: dict = {}
        start = time.perf_counter()
        flags = novel_flags(generated, reference, matcher, executor=pool, stats=stats)
        new_novelty_s = time.perf_counter() - start
        start = time.perf_counter()
        groups = group_structures(generated, matcher, executor=pool)
        new_unique_s = time.perf_counter() - start
    finally:
        if pool is not None:
            pool.shutdown()
    print(f"now: novelty {new_novelty_s:.1f} s ({sum(flags)}/{len(flags)} novel), uniqueness {new_unique_s:.1f} s "
          f"({len(groups)} groups)", flush=True)

    # exact number of fit calls the old loop makes on the full sets
    reduced_gen = reduce_structures(generated, matcher)
    reduced_ref = reduce_structures(reference, matcher)
    old_fits = 0
    for item, novel in zip(reduced_gen, flags):
        index = None if novel else first_match_index(item, reduced_ref, matcher)
        old_fits += len(reference) if index is None else index + 1

    # the old novelty loop, timed on a sub-sample: novel crystals first (each scans the whole sub-reference)
    sub_gen = [g for g, novel in zip(generated, flags) if novel][: args.old_generated]
    sub_ref = reference[: args.old_references]
    start = time.perf_counter()
    calls, old_answers = 0, []
    for g in sub_gen:
        found = False
        for t in sub_ref:
            calls += 1
            if matcher.fit(g, t):
                found = True
                break
        old_answers.append(not found)
    old_sub_s = time.perf_counter() - start
    per_fit = old_sub_s / max(calls, 1)
    agree_novelty = old_answers == novel_flags(sub_gen, sub_ref, matcher)
    print(f"before (sub-sample): {calls} fit calls in {old_sub_s:.1f} s = {1000 * per_fit:.1f} ms each; "
          f"agrees with crysgen.matching: {agree_novelty}", flush=True)

    start = time.perf_counter()
    old_groups = matcher.group_structures(generated)
    old_unique_s = time.perf_counter() - start
    agree_unique = sorted(len(g) for g in old_groups) == sorted(len(g) for g in groups)
    print(f"before: uniqueness {old_unique_s:.1f} s ({len(old_groups)} groups, same partition sizes: "
          f"{agree_unique})", flush=True)

    old_novelty_est = per_fit * old_fits
    results = {
        "novelty_now_s": round(new_novelty_s, 2), "novelty_before_estimated_s": round(old_novelty_est, 1),
        "novelty_speedup": round(old_novelty_est / new_novelty_s, 1),
        "uniqueness_now_s": round(new_unique_s, 2), "uniqueness_before_s": round(old_unique_s, 2),
        "novel_fraction": sum(flags) / len(flags), "unique_groups": len(groups),
        "before_fit_ms": round(1000 * per_fit, 2), "before_fit_calls_full_run": old_fits,
        "pairs": stats.get("pairs"), "pairs_same_key_now": stats.get("pairs_same_key"),
        "pairs_after_filters_now": stats.get("pairs_after_filters"), "fit_calls_now": stats.get("fit_calls"),
        "now_reduce_s": stats.get("reduce_seconds"), "now_match_s": stats.get("match_seconds"),
        "subsample_answers_agree": agree_novelty, "uniqueness_partitions_agree": agree_unique,
    }
    protocol = {
        "issue": "12: 200 generated vs a 2,000-crystal one-formula (carbon) reference",
        "data": f"crysgen.testing: reference {args.random_fraction:.0%} random P1 carbon cells of 6-24 atoms, "
                f"the rest perturbed polymorph supercells; generated {args.known_fraction:.0%} perturbed copies "
                f"of reference crystals, the rest new random cells; seed {args.seed}",
        "matcher": "pymatgen StructureMatcher defaults (ltol 0.2, stol 0.3, angle_tol 5, primitive_cell, scale)",
        "now": "crysgen.matching.novel_flags / group_structures on the full sets, end to end",
        "before": f"novelty: brute-force fit loop timed on {len(sub_gen)} novel generated x {len(sub_ref)} "
                  f"reference crystals, extrapolated by seconds per fit x the exact number of fit calls of the "
                  f"full run; uniqueness: matcher.group_structures timed in full",
        "filters": stats.get("filters"), "workers": args.workers,
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "load_average_at_end": list(os.getloadavg()),
    }
    table = [
        {"step": "novelty", "before_s": round(old_novelty_est, 1), "now_s": round(new_novelty_s, 2),
         "before": "extrapolated", "fit_calls_before": old_fits, "fit_calls_now": stats.get("fit_calls")},
        {"step": "uniqueness", "before_s": round(old_unique_s, 2), "now_s": round(new_unique_s, 2),
         "before": "measured", "fit_calls_before": None, "fit_calls_now": None},
    ]
    command = "OMP_NUM_THREADS=1 python -m benchmarks.crysgen_novelty " + shlex.join(argv if argv is not None
                                                                                    else sys.argv[1:])
    json_path, _ = write_results(args.name, results, protocol, command.strip(), table)
    print(f"novelty: before ~{old_novelty_est / 60:.0f} min (extrapolated), now {new_novelty_s:.1f} s; "
          f"uniqueness: before {old_unique_s:.1f} s, now {new_unique_s:.1f} s -> {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
