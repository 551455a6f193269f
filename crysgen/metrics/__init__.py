"""CDVAE's generation metrics for crystals, re-implemented (definitions from CDVAE ``scripts/eval_utils.py`` and
``scripts/compute_metrics.py``), each exposed as a ``shared.evaluation`` Evaluator.

* Structural validity: every pairwise (minimum-image) distance >= 0.5 A and cell volume >= 0.1 A^3.
* Compositional validity: SMACT charge neutrality + Pauling electronegativity test over the **smact14**
  oxidation-state set (``Element.oxidation_states_smact14``, SMACT >= 3; the set CDVAE's SMACT 2.x used as its
  default). Single-element and all-metal compositions are valid. Counts are divided by their gcd first.
* COV-R / COV-P: structure fingerprint = mean over sites of matminer's CrystalNN "ops" site fingerprint;
  composition fingerprint = matminer magpie ElementProperty (no NaN imputation, as in CDVAE's matminer).
  Composition fingerprints are standardised with mean/std of the **reference set** (CDVAE hard-codes one
  set of constants, ``CompScalerMeans/Stds``, for every dataset; pass them as ``comp_scaler`` to match its
  published numbers exactly). NaN std -> 1, zero std -> 1, NaN after scaling -> 0, as its StandardScaler.
  Cut-offs: MP-20 0.4 / 10, perov-5 and carbon-24 0.2 / 4.
  Deviation, as the project requires: only *valid* generated crystals enter (CDVAE passes every crystal whose
  fingerprint could be built); precision still divides by the number of generated crystals, as CDVAE does.
* Wasserstein distances of density (g/cm^3) and number of distinct elements between up to ``n_samples``
  valid generated crystals (drawn with a seeded generator) and the whole reference set.
* Uniqueness (distinct StructureMatcher groups / valid), novelty (valid crystals matching no training
  crystal), computed by ``crysgen.matching``: the matcher's own answers, with exact pre-filters so that only
  pairs that could match are fitted.
* Space groups with spglib (symprec 0.1): P1 fraction of the valid generated crystals and of the reference set,
  number of distinct groups, total-variation distance between the two distributions.

Modules: ``checks`` (per-crystal quantities: validity, fingerprints, space group), ``batch`` (``CrystalBatch``: each
per-crystal quantity computed once, through an Executor if given, cached on disk by content hash), ``coverage``
(COV-R/COV-P, composition standardisation, per-dataset cut-offs), ``evaluators`` (the six Evaluators,
``default_evaluators``, ``make_evaluators``). ``crysgen.evaluation.evaluate_crystals`` runs them all.
"""

from crysgen.metrics.batch import CrystalBatch, structures_digest
from crysgen.metrics.checks import (
    OXIDATION_STATES_SET,
    SYMPREC,
    composition_validity,
    site_fingerprints,
    structure_validity,
)
from crysgen.metrics.coverage import COV_CUTOFFS, comp_stats, cov_cutoffs_for, coverage, standardize
from crysgen.metrics.evaluators import OPTION_DEFAULTS, default_evaluators, make_evaluators

__all__ = [
    "COV_CUTOFFS",
    "CrystalBatch",
    "OPTION_DEFAULTS",
    "OXIDATION_STATES_SET",
    "SYMPREC",
    "comp_stats",
    "composition_validity",
    "cov_cutoffs_for",
    "coverage",
    "default_evaluators",
    "make_evaluators",
    "site_fingerprints",
    "standardize",
    "structure_validity",
    "structures_digest",
]
