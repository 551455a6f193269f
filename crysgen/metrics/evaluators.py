"""The crystal metrics as ``shared.evaluation`` Evaluators over generated crystals (a list of structures or a
``CrystalBatch``; ``None`` = failed to decode, counted as invalid).

Context keys (data): ``reference`` (test structures or a CrystalBatch: coverage, property distances, reference
space groups), ``train`` (training structures: novelty), ``dataset`` (a CDVAE benchmark name, for the COV cut-offs).

Context keys (options; an absent key takes the default in ``OPTION_DEFAULTS``):

* ``n_samples`` (1000), ``seed`` (0): property distances use at most ``n_samples`` valid crystals, drawn with
  ``numpy.random.default_rng(seed)``.
* ``cov_cutoffs`` (None): (structure, composition) COV cut-offs; without them those of ``dataset``. Coverage with
  neither is skipped ("missing context: dataset"); an unknown ``dataset`` is a ValueError.
* ``comp_scaler`` (None): ``(means, stds)`` replacing the reference-set statistics of the composition fingerprints
  (e.g. CDVAE's ``CompScalerMeans/Stds``, to match its published numbers exactly).
* ``matcher_kwargs`` (None): keyword arguments of pymatgen's StructureMatcher (uniqueness, novelty).
* ``executor`` (None), ``progress`` (False): matching through an Executor, with a progress bar.
* ``match_stats`` (None): a dict that receives the novelty matching's pair counts.

``default_evaluators()`` lists the six evaluators; ``make_evaluators(**options)`` gives them with the options bound.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from concurrent.futures import Executor
from typing import Any, Sequence

import numpy as np

from crysgen.metrics.batch import CrystalBatch
from crysgen.metrics.coverage import comp_stats, cov_cutoffs_for, coverage, standardize
from shared.evaluation import EvaluationSkipped, evaluator, require_package

__all__ = ["OPTION_DEFAULTS", "default_evaluators", "make_evaluators"]

OPTION_DEFAULTS: dict[str, Any] = {
    "n_samples": 1000, "seed": 0, "cov_cutoffs": None, "comp_scaler": None, "matcher_kwargs": None,
    "executor": None, "progress": False, "match_stats": None,
}


def _option(context: dict, key: str) -> Any:
    return context.get(key, OPTION_DEFAULTS[key])


def _matcher(kwargs: dict | None):
    require_package("pymatgen", extra="chem")
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(**(kwargs or {}))


@evaluator("crystal_validity")
def validity_evaluator(generated, context: dict) -> dict[str, float]:
    batch = CrystalBatch.of(generated)
    return {"comp_valid": batch.comp_valid.mean(), "struct_valid": batch.struct_valid.mean(),
            "valid": batch.valid.mean()}


@evaluator("crystal_coverage", requires={"reference"})
def coverage_evaluator(generated, context: dict) -> dict[str, float]:
    """COV-R/COV-P of the valid generated crystals; needs ``cov_cutoffs`` or a ``dataset`` with known cut-offs."""
    batch, ref = CrystalBatch.of(generated), CrystalBatch.of(context["reference"])
    cutoffs = _option(context, "cov_cutoffs")
    if not cutoffs:
        if context.get("dataset") is None:
            raise EvaluationSkipped("missing context: dataset")
        cutoffs = cov_cutoffs_for(context["dataset"])
    struct_cutoff, comp_cutoff = cutoffs
    if not batch.valid.any():  # nothing to cover with (e.g. a barely trained model): no fingerprints needed
        return {"cov_recall": 0.0, "cov_precision": 0.0}
    try:
        g_struct, g_comp, g_ok = batch.fingerprints()
    except ValueError:  # no generated crystal has a fingerprint
        return {"cov_recall": 0.0, "cov_precision": 0.0}
    r_struct, r_comp, r_ok = ref.fingerprints()
    keep = g_ok & batch.valid
    r_struct, r_comp = r_struct[r_ok], r_comp[r_ok]
    comp_scaler = _option(context, "comp_scaler")
    mean, std = comp_stats(r_comp) if comp_scaler is None else map(np.asarray, comp_scaler)
    return coverage(g_struct[keep], standardize(g_comp[keep], mean, std), r_struct,
                    standardize(r_comp, mean, std), struct_cutoff, comp_cutoff, n_generated=len(batch))


@evaluator("crystal_property_wdist", requires={"reference"})
def property_wdist_evaluator(generated, context: dict) -> dict[str, float]:
    """Wasserstein distances of density and number of elements: up to ``n_samples`` valid crystals vs reference."""
    from scipy.stats import wasserstein_distance

    batch, ref = CrystalBatch.of(generated), CrystalBatch.of(context["reference"])
    n_samples = _option(context, "n_samples")
    valid = batch.valid_structures
    if not valid:
        return {"wdist_density": math.nan, "wdist_num_elems": math.nan}
    if len(valid) > n_samples:
        chosen = np.random.default_rng(_option(context, "seed")).choice(len(valid), n_samples, replace=False)
        valid = [valid[i] for i in chosen]
    reference = [s for s in ref.structures if s is not None]
    return {
        "wdist_density": wasserstein_distance([s.density for s in valid], [s.density for s in reference]),
        "wdist_num_elems": wasserstein_distance([len(s.composition) for s in valid],
                                                [len(s.composition) for s in reference]),
    }


@evaluator("crystal_uniqueness")
def uniqueness_evaluator(generated, context: dict) -> dict[str, float]:
    """Distinct StructureMatcher groups over the valid crystals."""
    batch = CrystalBatch.of(generated)
    valid = batch.valid_structures
    if not valid:
        return {"unique": math.nan}
    from crysgen.matching import group_structures

    groups = group_structures(valid, _matcher(_option(context, "matcher_kwargs")),
                              executor=_option(context, "executor"), progress=_option(context, "progress"))
    return {"unique": len(groups) / len(valid)}


@evaluator("crystal_novelty", requires={"train"})
def novelty_evaluator(generated, context: dict) -> dict[str, float]:
    """Fraction of the valid crystals that match no training crystal."""
    batch = CrystalBatch.of(generated)
    valid = batch.valid_structures
    if not valid:
        return {"novel": math.nan}
    from crysgen.matching import novel_flags

    train = [s for s in CrystalBatch.of(context["train"]).structures if s is not None]
    novel = novel_flags(valid, train, _matcher(_option(context, "matcher_kwargs")),
                        executor=_option(context, "executor"), progress=_option(context, "progress"),
                        stats=_option(context, "match_stats"))
    return {"novel": float(np.mean(novel))}


@evaluator("crystal_space_groups")
def space_groups_evaluator(generated, context: dict) -> dict[str, float]:
    """P1 fraction and distinct groups of the valid crystals; with a reference, its P1 fraction and the
    total-variation distance between the two distributions."""
    batch = CrystalBatch.of(generated)
    groups = batch.space_groups()[batch.valid]
    if groups.size == 0:
        return {"sg_frac_p1": math.nan, "sg_n_unique": 0.0}
    out = {"sg_frac_p1": float(np.mean(groups == 1)), "sg_n_unique": float(len(set(groups.tolist())))}
    if context.get("reference") is not None:
        ref = CrystalBatch.of(context["reference"]).space_groups()
        ref = ref[ref >= 0]
        out["sg_tv_distance"] = _total_variation(groups, ref)
        out["sg_frac_p1_reference"] = float(np.mean(ref == 1)) if ref.size else math.nan
    return out


def _total_variation(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance between the empirical distributions of two integer samples."""
    pa, pb = Counter(a.tolist()), Counter(b.tolist())
    return 0.5 * sum(abs(pa[k] / len(a) - pb[k] / len(b)) for k in set(pa) | set(pb))


def default_evaluators() -> list:
    """The six crystal evaluators; options are read from the context (see the module docstring)."""
    return [
        validity_evaluator,
        coverage_evaluator,
        property_wdist_evaluator,
        uniqueness_evaluator,
        novelty_evaluator,
        space_groups_evaluator,
    ]


def make_evaluators(*, n_samples: int = 1000, seed: int = 0, cov_cutoffs: tuple[float, float] | None = None,
                    comp_scaler: tuple[Sequence[float], Sequence[float]] | None = None,
                    matcher_kwargs: dict | None = None, executor: Executor | None = None, progress: bool = False,
                    match_stats: dict | None = None) -> list:
    """``default_evaluators()`` with these options bound (they take precedence over the same keys in the context).
    Context keys: ``reference`` (test structures or CrystalBatch), ``train`` (training structures), ``dataset``
    (benchmark name for the COV cut-offs, unless ``cov_cutoffs`` given: coverage then requires ``reference`` and
    ``dataset``, else ``reference`` only). ``comp_scaler=(means, stds)`` replaces the reference-set statistics for
    the composition fingerprints (e.g. with CDVAE's ``CompScalerMeans/Stds`` to match its published numbers
    exactly). ``executor`` and ``progress`` are used for matching; ``match_stats`` (a dict) receives the novelty
    matching's pair counts."""
    options = {"n_samples": n_samples, "seed": seed, "cov_cutoffs": cov_cutoffs, "comp_scaler": comp_scaler,
               "matcher_kwargs": matcher_kwargs, "executor": executor, "progress": progress,
               "match_stats": match_stats}
    requires = {"crystal_coverage": {"reference"} if cov_cutoffs else {"reference", "dataset"}}
    return [_with_options(ev, options, requires.get(ev.name, ev.requires)) for ev in default_evaluators()]


def _with_options(ev, options: dict, requires) -> Any:
    """``ev`` as an Evaluator of the same name that sees ``options`` in its context."""

    @functools.wraps(ev.fn)
    def bound(generated, context):
        return ev(generated, {**context, **options})

    return evaluator(ev.name, requires=requires)(bound)
