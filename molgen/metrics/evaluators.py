"""The molecule metrics as ``shared.evaluation`` Evaluators over a generated ``MolBatch``.

Context keys: ``train_smiles`` (novelty), ``targets`` and ``predictions`` (conditional MAE; predictions come from
a property regressor run on the generated molecules), ``strain_method`` (``mmff`` or ``xtb``: relax every molecule
and report its strain; ``strain_workers`` processes). ``default_evaluators()`` lists them all;
``evaluate_molecules`` runs them and reports what was skipped and why.
"""

from __future__ import annotations

from shared.evaluation import EvaluationReport, evaluator, require_package, run_evaluators

from molgen.metrics.chemistry import MoleculeCheck, charge_metrics, novelty, rdkit_metrics
from molgen.metrics.conditional import property_mae
from molgen.metrics.edm_bonds import edm_stability_metrics
from molgen.metrics.geometry import geometry_metrics
from molgen.metrics.soundness import posebusters_metrics, soundness_metrics, strain_metrics
from molgen.metrics.stability import LENIENT_VALENCES, STRICT_VALENCES, stability_metrics
from molgen.representation import MolBatch

__all__ = ["default_evaluators", "evaluate_molecules"]


def _rdkit_checks(batch: MolBatch) -> tuple[dict[str, float], list[MoleculeCheck]]:
    """RDKit checks are the slow part; computed once per batch object and shared by the evaluators."""
    cached = batch.__dict__.get("_rdkit_checks")
    if cached is None:
        require_package("rdkit", extra="chem")
        cached = rdkit_metrics(batch.to_mols(sanitize=False))
        batch.__dict__["_rdkit_checks"] = cached
    return cached


@evaluator("stability")
def stability_evaluator(batch: MolBatch, context: dict) -> dict[str, float]:
    strict = stability_metrics(batch, STRICT_VALENCES)
    lenient = stability_metrics(batch, LENIENT_VALENCES, prefix="lenient_")
    return {**strict, **lenient}


@evaluator("edm_stability")
def edm_stability_evaluator(batch: MolBatch, context: dict) -> dict[str, float]:
    return edm_stability_metrics(batch.numbers, batch.positions, batch.mask)


@evaluator("charge")
def charge_evaluator(batch: MolBatch, context: dict) -> dict[str, float]:
    return charge_metrics(batch)


@evaluator("geometry")
def geometry_evaluator(batch: MolBatch, context: dict) -> dict[str, float]:
    return geometry_metrics(batch)


@evaluator("rdkit")
def rdkit_evaluator(batch: MolBatch, context: dict) -> dict[str, float]:
    return dict(_rdkit_checks(batch)[0])


@evaluator("soundness")
def soundness_evaluator(batch: MolBatch, context: dict) -> dict[str, float]:
    return soundness_metrics(batch, _rdkit_checks(batch)[1])


@evaluator("posebusters")
def posebusters_evaluator(batch: MolBatch, context: dict) -> dict[str, float]:
    require_package("rdkit", extra="chem")
    require_package("posebusters", extra="chem")
    return posebusters_metrics(batch.to_mols(sanitize=False))


@evaluator("strain", requires={"strain_method"})
def strain_evaluator(batch: MolBatch, context: dict) -> dict[str, float]:
    require_package("rdkit", extra="chem")
    from molgen.relax import relax_molecules

    results = relax_molecules(batch.to_mols(sanitize=False), context["strain_method"],
                              workers=int(context.get("strain_workers") or 1),
                              # MMFF takes milliseconds per molecule: a bar only for xTB
                              progress=bool(context.get("progress")) and context["strain_method"] == "xtb")
    return strain_metrics(results, prefix=f"strain_{context['strain_method']}_")


@evaluator("novelty", requires={"train_smiles"})
def novelty_evaluator(batch: MolBatch, context: dict) -> dict[str, float]:
    checks = _rdkit_checks(batch)[1]
    return {"novelty": novelty((c.smiles for c in checks), context["train_smiles"])}


@evaluator("property_mae", requires={"targets", "predictions"})
def property_mae_evaluator(batch: MolBatch, context: dict) -> dict[str, float]:
    if len(context["targets"]) != len(batch):
        raise ValueError(f"{len(context['targets'])} targets for {len(batch)} generated molecules")
    return {"property_mae": property_mae(context["targets"], context["predictions"])}


def default_evaluators() -> list:
    return [
        stability_evaluator,
        edm_stability_evaluator,
        charge_evaluator,
        geometry_evaluator,
        rdkit_evaluator,
        soundness_evaluator,
        posebusters_evaluator,
        strain_evaluator,
        novelty_evaluator,
        property_mae_evaluator,
    ]


def evaluate_molecules(batch: MolBatch, context: dict | None = None, evaluators=None) -> EvaluationReport:
    """Run ``evaluators`` (default: all) on ``batch``; the report lists skipped evaluators with reasons."""
    return run_evaluators(default_evaluators() if evaluators is None else evaluators, batch, context or {})
