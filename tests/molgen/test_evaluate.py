"""Evaluation suite on hand-made molecules with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from molgen.metrics import (
    LENIENT_VALENCES,
    AtomCountBaseline,
    atom_count_baseline_mae,
    atom_stability,
    charge_metrics,
    edm_bond_orders,
    edm_stability_metrics,
    evaluate_molecules,
    geometry_checks,
    ood_target,
    permutation_baseline_mae,
    property_mae,
    rdkit_metrics,
    stability_metrics,
)
from molgen.metrics.edm_bonds import EDM_DOUBLE_PM, EDM_MARGINS_PM, EDM_SINGLE_PM, EDM_TRIPLE_PM
from molgen.representation import BOND_AROMATIC, BOND_SINGLE, MolBatch, MolTensors, mol_to_tensors
from shared.evaluation import MissingDependency

Chem = pytest.importorskip("rdkit.Chem")
from rdkit.Chem import AllChem  # noqa: E402


def tensors(smiles: str, seed: int = 0) -> MolTensors:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return mol_to_tensors(mol)


def batch(*smiles: str) -> MolBatch:
    return MolBatch.from_tensors([tensors(s) for s in smiles])


def manual(numbers, bonds, charges=None) -> MolTensors:
    """A molecule from an explicit bond list [(i, j, category)], positions irrelevant (zeros)."""
    n = len(numbers)
    index = torch.tensor([[i, j] for i, j, _ in bonds], dtype=torch.long).reshape(-1, 2).T
    return MolTensors(torch.tensor(numbers), torch.tensor(charges or [0] * n), torch.zeros(n, 3),
                      index, torch.tensor([k for _, _, k in bonds], dtype=torch.long))


# --- stability ------------------------------------------------------------------------------------------------

CLOSED_SHELL = ["C", "c1ccccc1", "c1ccncc1", "c1cc[nH]c1", "c1ccoc1", "c1ccc2ccccc2c1", "c1ncc[nH]1",
                "[NH3+]CC(=O)[O-]", "C[N+](=O)[O-]", "[NH4+]", "C[O-]", "FC(F)F", "C#N"]


def test_closed_shell_molecules_are_strictly_stable_with_aromatic_as_1_5():
    b = batch(*CLOSED_SHELL)
    assert bool((atom_stability(b) == b.mask).all())
    assert stability_metrics(b) == {"atom_stability": 1.0, "mol_stability": 1.0}
    # benzene really carries aromatic bonds (category 4), so the test exercises the 1.5 counting
    assert bool((b.bonds[1] == BOND_AROMATIC).any())


def test_radical_fails_strict_but_passes_lenient_with_exact_fractions():
    b = batch("C", "[CH3]")  # methane (5 atoms, stable) + methyl radical (C has 3 bonds)
    strict = stability_metrics(b)
    assert strict["atom_stability"] == pytest.approx(8 / 9)
    assert strict["mol_stability"] == 0.5
    assert stability_metrics(b, LENIENT_VALENCES) == {"atom_stability": 1.0, "mol_stability": 1.0}


def test_aromatic_bonds_are_not_cast_to_one():
    # a ring carbon with two aromatic bonds and no hydrogen: Kekule valence 2 or 3, never 4
    ring = manual([6] * 6 + [1] * 5, [(i, (i + 1) % 6, BOND_AROMATIC) for i in range(6)]
                  + [(i, 6 + i - 1, BOND_SINGLE) for i in range(1, 6)])
    stable = atom_stability(MolBatch.from_tensors([ring]))[0]
    assert stable.tolist() == [False] + [True] * 10
    # pentavalent carbon fails everywhere; N+ with 3 bonds fails strict (radical cation) but passes MiDi's table
    five = MolBatch.from_tensors([manual([6, 1, 1, 1, 1, 1], [(0, k, BOND_SINGLE) for k in range(1, 6)])])
    assert not atom_stability(five)[0, 0] and not atom_stability(five, LENIENT_VALENCES)[0, 0]
    nh3_plus = MolBatch.from_tensors([manual([7, 1, 1, 1], [(0, k, BOND_SINGLE) for k in (1, 2, 3)], [1, 0, 0, 0])])
    assert not atom_stability(nh3_plus)[0, 0] and atom_stability(nh3_plus, LENIENT_VALENCES)[0, 0]


# --- EDM distance bonds -------------------------------------------------------------------------------------


def _edm_reference(a: str, b: str, d_angstrom: float) -> int:
    """Scalar transcription of EDM's nested threshold rule."""
    d = 100 * d_angstrom
    key = (a, b) if (a, b) in EDM_SINGLE_PM else (b, a)
    if key not in EDM_SINGLE_PM or d >= EDM_SINGLE_PM[key] + EDM_MARGINS_PM[0]:
        return 0
    if key in EDM_DOUBLE_PM and d < EDM_DOUBLE_PM[key] + EDM_MARGINS_PM[1]:
        if key in EDM_TRIPLE_PM and d < EDM_TRIPLE_PM[key] + EDM_MARGINS_PM[2]:
            return 3
        return 2
    return 1


def test_edm_bond_orders_match_brute_force_on_a_grid():
    symbols = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
    distances = np.arange(0.9, 1.8, 0.0025)
    pairs = [(a, b) for a in symbols for b in symbols]
    numbers, positions = [], []
    for a, b in pairs:
        for d in distances:
            numbers.append([symbols[a], symbols[b]])
            positions.append([[0.0, 0.0, 0.0], [d, 0.0, 0.0]])
    orders = edm_bond_orders(torch.tensor(numbers), torch.tensor(positions, dtype=torch.float64),
                             torch.ones(len(numbers), 2, dtype=torch.bool))[:, 0, 1]
    expected = [_edm_reference(a, b, d) for a, b in pairs for d in distances]
    assert orders.tolist() == expected
    assert {0, 1, 2, 3} <= set(expected)


def test_edm_stability_on_hand_geometries():
    # acetylene: C#C 1.20, C-H 1.06 -> triple + single -> every atom exactly saturated
    acetylene = MolTensors(torch.tensor([6, 6, 1, 1]), torch.zeros(4, dtype=torch.long),
                           torch.tensor([[0.0, 0, 0], [1.2, 0, 0], [-1.06, 0, 0], [2.26, 0, 0]]),
                           torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    b = MolBatch.from_tensors([acetylene])
    assert edm_bond_orders(b.numbers, b.positions, b.mask)[0, 0, 1] == 3
    assert edm_stability_metrics(b.numbers, b.positions, b.mask)["edm_mol_stability"] == 1.0
    stretched = b.positions.clone()
    stretched[0, 1:] += torch.tensor([0.2, 0, 0])  # C-C 1.40: a double bond now, carbons under-saturated
    metrics = edm_stability_metrics(b.numbers, stretched, b.mask)
    assert metrics == {"edm_atom_stability": 0.5, "edm_mol_stability": 0.0}


# --- geometry -----------------------------------------------------------------------------------------------


def test_geometry_checks_flag_exactly_the_broken_molecule():
    good = tensors("CCO")
    long_bond = MolTensors(**{k: getattr(good, k).clone() for k in vars(good)})
    c0, c1 = good.bond_index[:, 0].tolist()  # the C-C bond
    direction = (good.positions[c1] - good.positions[c0]) / (good.positions[c1] - good.positions[c0]).norm()
    long_bond.positions[c1:] += 0.8 * direction
    hydrogens = (good.numbers == 1).nonzero().flatten().tolist()
    # two intact ethanols, the second shifted so that one of its hydrogens sits 0.5 A from one of the first's
    n = good.num_atoms
    shift = good.positions[hydrogens[0]] + torch.tensor([0.5, 0.0, 0.0]) - good.positions[hydrogens[-1]]
    clash = MolTensors(good.numbers.repeat(2), good.charges.repeat(2),
                       torch.cat([good.positions, good.positions + shift]),
                       torch.cat([good.bond_index, good.bond_index + n], 1), good.bond_types.repeat(2))
    # water with a 30 degree H-O-H angle (bond lengths kept at 0.96 A; no pair is more than 2 bonds apart)
    angle = tensors("O")
    angle.positions = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0],
                                    [0.96 * np.cos(np.radians(30)), 0.96 * np.sin(np.radians(30)), 0.0]])
    checks = geometry_checks(MolBatch.from_tensors([good, long_bond, clash, angle]))
    assert checks["bond_lengths_ok"].tolist() == [True, False, True, True]
    assert checks["no_clash"].tolist() == [True, True, False, True]
    # (the stretched molecule's shifted hydrogens also bend its angles; only the others are pinned here)
    assert [checks["bond_angles_ok"].tolist()[k] for k in (0, 2, 3)] == [True, True, False]
    assert checks["geometry_ok"].tolist() == [True, False, False, False]


# --- RDKit chemistry and charges ----------------------------------------------------------------------------


def test_rdkit_metrics_hand_counted():
    mols = [Chem.AddHs(Chem.MolFromSmiles(s)) for s in ["CCO", "OCC", "c1ccccc1", "C.O", "[CH3]"]]
    pentavalent = Chem.RWMol()
    for z in [6, 1, 1, 1, 1, 1]:
        atom = Chem.Atom(z)
        atom.SetNoImplicit(True)
        pentavalent.AddAtom(atom)
    for k in range(1, 6):
        pentavalent.AddBond(0, k, Chem.BondType.SINGLE)
    mols.append(pentavalent.GetMol())
    metrics, checks = rdkit_metrics(mols)
    assert metrics["validity"] == pytest.approx(5 / 6)
    assert metrics["validity_connected"] == pytest.approx(4 / 6)
    assert metrics["uniqueness"] == pytest.approx(4 / 5)  # CCO twice; C.O keeps its largest fragment "C"
    assert metrics["closed_shell"] == pytest.approx(4 / 6)  # the methyl radical is valid but not closed-shell
    assert metrics["largest_fragment_fraction"] == pytest.approx((5 + 5 / 8) / 6)
    assert [c.smiles for c in checks] == ["CCO", "CCO", "c1ccccc1", "C", "[CH3]", None]


def test_charge_metrics_sum_formal_charges():
    m = charge_metrics(batch("[NH3+]CC(=O)[O-]", "[NH4+]", "[CH3]", "C"))
    assert m["net_charge_abs_mean"] == 0.25
    assert m["neutral_fraction"] == 0.75
    assert m["even_electron_fraction"] == 0.75


# --- conditional protocol ------------------------------------------------------------------------------------


def test_conditional_protocol_pieces():
    assert property_mae([1.0, 2.0, 3.0], [1.5, 2.0, 1.0]) == pytest.approx(2.5 / 3)
    with pytest.raises(ValueError, match="differ in length"):
        property_mae([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        property_mae([np.nan], [1.0])

    labels = np.array([0.0, 1.0, 2.0, 3.0])
    predictions = labels.copy()
    perm = np.random.default_rng(7).permutation(4)
    expected = np.abs(labels[perm] - predictions).mean()
    assert permutation_baseline_mae(predictions, labels, np.random.default_rng(7)) == pytest.approx(expected)

    counts, values = [3, 3, 3, 5, 5], [1.0, 2.0, 10.0, 4.0, 6.0]
    baseline = AtomCountBaseline(counts, values)
    assert baseline([3, 5, 9]).tolist() == [2.0, 5.0, 4.0]  # per-count medians; unseen count -> overall median
    assert AtomCountBaseline(counts, values, "mean")([3]).tolist() == [13.0 / 3]
    assert atom_count_baseline_mae(counts, values, [3, 5], [2.5, 5.0]) == pytest.approx(0.25)
    data = np.random.default_rng(0).normal(size=1000)
    assert ood_target(data) == pytest.approx(np.percentile(data, 99))


# --- evaluator protocol ---------------------------------------------------------------------------------------


def test_evaluators_report_metrics_and_skips(monkeypatch):
    b = batch("CCO", "c1ccccc1", "CCO")
    report = evaluate_molecules(b, {"train_smiles": ["CCO"]})
    assert report.metrics["mol_stability"] == 1.0
    assert report.metrics["validity"] == 1.0
    assert report.metrics["uniqueness"] == pytest.approx(2 / 3)
    assert report.metrics["novelty"] == 0.5
    assert report.metrics["geometry_ok"] == 1.0
    assert report.metrics["sound"] == 1.0  # ETKDG geometries of real molecules sit inside QM9's windows
    assert report.skipped == {"property_mae": "missing context: predictions, targets",
                              "strain": "missing context: strain_method"}
    report = evaluate_molecules(b, {"targets": [1.0, 2.0, 3.0], "predictions": [1.0, 2.0, 4.0],
                                    "strain_method": "mmff"})
    assert report.metrics["property_mae"] == pytest.approx(1 / 3)
    assert report.metrics["strain_mmff_relaxed"] == 1.0 and report.metrics["strain_mmff_bonding_survives"] == 1.0
    assert 0.0 < report.metrics["strain_mmff_median_eV"] < 1.0  # ETKDG geometries are close to MMFF minima

    def no_rdkit(module, extra=None):
        raise MissingDependency(module, extra)

    monkeypatch.setattr("molgen.metrics.evaluators.require_package", no_rdkit)
    report = evaluate_molecules(batch("C"), {"train_smiles": ["C"]})
    assert set(report.skipped) == {"rdkit", "soundness", "posebusters", "novelty", "property_mae", "strain"}
    assert "rdkit" in report.skipped["rdkit"]
    assert report.metrics["atom_stability"] == 1.0
