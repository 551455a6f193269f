"""Molecule evaluation suite: stability (strict and lenient), EDM distance bonds, RDKit chemistry, geometry
sanity, conditional-generation protocol pieces, all available as ``shared.evaluation`` Evaluators."""

from molgen.metrics.chemistry import MoleculeCheck, charge_metrics, check_molecule, novelty, rdkit_metrics
from molgen.metrics.conditional import (
    AtomCountBaseline,
    atom_count_baseline_mae,
    ood_target,
    permutation_baseline_mae,
    property_mae,
)
from molgen.metrics.edm_bonds import edm_bond_orders, edm_stability_metrics
from molgen.metrics.evaluators import default_evaluators, evaluate_molecules
from molgen.metrics.geometry import geometry_checks, geometry_metrics
from molgen.metrics.stability import LENIENT_VALENCES, STRICT_VALENCES, atom_stability, stability_metrics

__all__ = [
    "AtomCountBaseline",
    "LENIENT_VALENCES",
    "MoleculeCheck",
    "STRICT_VALENCES",
    "atom_count_baseline_mae",
    "atom_stability",
    "charge_metrics",
    "check_molecule",
    "default_evaluators",
    "edm_bond_orders",
    "edm_stability_metrics",
    "evaluate_molecules",
    "geometry_checks",
    "geometry_metrics",
    "novelty",
    "ood_target",
    "permutation_baseline_mae",
    "property_mae",
    "rdkit_metrics",
    "stability_metrics",
]
