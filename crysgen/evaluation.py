"""Crystal evaluation: ``evaluate_crystals`` runs every CDVAE-protocol metric the inputs allow (the metrics and their
definitions are in ``crysgen.metrics``) and reports, besides the metrics, what was skipped and why, the protocol's
settings, and the space-group distributions (number, symbol, count, fraction) under ``space_groups``.

Decoding failures are passed as ``None`` and count as invalid. ``CrystalBatch`` computes each per-crystal
quantity once (optionally through an Executor, with a progress bar), so several evaluators share the work.
A dataset without COV cut-offs (not a CDVAE benchmark) gets no coverage unless ``cov_cutoffs`` are given; the
report says so under ``skipped``.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from concurrent.futures import Executor
from functools import lru_cache
from typing import Any, Iterable, Sequence

from crysgen.metrics import (
    COV_CUTOFFS,
    OXIDATION_STATES_SET,
    SYMPREC,
    CrystalBatch,
    comp_stats,
    composition_validity,
    cov_cutoffs_for,
    coverage,
    default_evaluators,
    make_evaluators,
    site_fingerprints,
    standardize,
    structure_validity,
    structures_digest,
)
from shared.evaluation import run_evaluators

__all__ = [
    "COV_CUTOFFS",
    "OXIDATION_STATES_SET",
    "CrystalBatch",
    "composition_validity",
    "comp_stats",
    "coverage",
    "default_evaluators",
    "evaluate_crystals",
    "make_evaluators",
    "site_fingerprints",
    "space_group_distribution",
    "standardize",
    "structure_validity",
    "structures_digest",
]


def space_group_distribution(numbers: Iterable[int]) -> list[dict[str, Any]]:
    """``[{"number", "symbol", "count", "fraction"}]`` of spglib space-group numbers (0: none found), most
    frequent first."""
    numbers = [int(n) for n in numbers if int(n) >= 0]
    counts = Counter(numbers)
    total = len(numbers)
    return [{"number": number, "symbol": _space_group_symbol(number), "count": count,
             "fraction": count / total}
            for number, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


@lru_cache(maxsize=256)
def _space_group_symbol(number: int) -> str:
    if number < 1:
        return "none"
    from pymatgen.symmetry.groups import SpaceGroup

    return SpaceGroup.from_int_number(number).symbol


def evaluate_crystals(generated: Iterable[Any], *, reference: Iterable[Any] | None = None,
                      train: Iterable[Any] | None = None, dataset: str | None = None,
                      executor: Executor | None = None, n_samples: int = 1000, seed: int = 0,
                      comp_scaler: tuple[Sequence[float], Sequence[float]] | None = None,
                      matcher_kwargs: dict | None = None, cov_cutoffs: tuple[float, float] | None = None,
                      reference_cache_dir: str | os.PathLike | None = None, progress: bool = False) -> dict:
    """Run every crystal evaluator the inputs allow: ``{"metrics", "skipped", "protocol", "space_groups"}``.

    ``reference_cache_dir`` keeps the reference set's fingerprints and checks on disk between calls;
    ``progress`` draws a bar for each quantity computed (fingerprints, checks, space groups, matching).
    ``dataset`` names the COV cut-offs (a CDVAE benchmark); another name, without ``cov_cutoffs``, skips
    coverage with the reason in ``skipped``.
    """
    gen = CrystalBatch(generated, executor, progress=progress, label="generated")
    cutoffs, cutoff_problem = cov_cutoffs, None
    if cutoffs is None and dataset is not None:
        try:
            cutoffs = cov_cutoffs_for(dataset)
        except ValueError as err:
            cutoff_problem = f"{err}; pass cov_cutoffs (crysgen evaluate --cov-cutoffs STRUCT COMP)"
    context = {
        "reference": None if reference is None else CrystalBatch(reference, executor, cache_dir=reference_cache_dir,
                                                                 progress=progress, label="reference"),
        "train": None if train is None else list(train),
        "dataset": dataset,
    }
    match_stats: dict = {}
    evaluators = make_evaluators(n_samples=n_samples, seed=seed, comp_scaler=comp_scaler,
                                 matcher_kwargs=matcher_kwargs, cov_cutoffs=cutoffs, executor=executor,
                                 progress=progress, match_stats=match_stats)
    if cutoff_problem is not None:
        evaluators = [ev for ev in evaluators if ev.name != "crystal_coverage"]
    report = run_evaluators(evaluators, gen, context)
    skipped = dict(report.skipped)
    if cutoff_problem is not None:
        skipped["crystal_coverage"] = cutoff_problem
    protocol = {
        "n_generated": len(gen),
        "oxidation_states_set": OXIDATION_STATES_SET,
        "cov_cutoffs": None if cutoffs is None else list(cutoffs),
        "comp_fp_normalisation": "mean/std of the reference set" if comp_scaler is None else "given",
        "coverage_generated": "valid only",
        "wdist_n_samples": n_samples, "seed": seed, "spglib_symprec": SYMPREC,
        "structure_matcher": matcher_kwargs or "pymatgen defaults",
    }
    if match_stats:
        protocol["novelty_matching"] = match_stats
    groups: dict[str, Any] = {"symprec": SYMPREC}
    if "sg_frac_p1" in report.metrics and not math.isnan(report.metrics["sg_frac_p1"]):
        groups["generated"] = space_group_distribution(gen.space_groups()[gen.valid])
        if context["reference"] is not None:
            groups["reference"] = space_group_distribution(context["reference"].space_groups())
    return {"metrics": report.metrics, "skipped": skipped, "protocol": protocol, "space_groups": groups}
