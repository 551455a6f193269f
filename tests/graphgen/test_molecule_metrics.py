"""GDSS molecule metrics on hand-made molecules with known answers."""

from __future__ import annotations

import pytest
import torch
from rdkit import Chem

from graphgen.metrics import (
    canonical_smiles,
    correct_mol,
    gdss_molecule_metrics,
    is_valence_valid,
    largest_fragment,
    novelty,
    uniqueness,
    validity,
    validity_without_correction,
)
from graphgen.representation import QM9_ATOMS, mol_to_tensors


def _raw(atoms: list[str], bonds: list[tuple[int, int, int]]) -> Chem.RWMol:
    """An unsanitised molecule exactly as a decoder would build it."""
    mol = Chem.RWMol()
    for symbol in atoms:
        mol.AddAtom(Chem.Atom(symbol))
    types = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    for i, j, order in bonds:
        mol.AddBond(i, j, types[order])
    return mol


PENTAVALENT = _raw(["C"] * 6, [(0, j, 1) for j in range(1, 6)])


def test_validity_without_correction_counts_fragments_and_empty_as_valid():
    ethanol = _raw(["C", "C", "O"], [(0, 1, 1), (1, 2, 1)])
    fragments = _raw(["C", "C", "O"], [(0, 1, 1)])  # CC.O: disconnected but every valence is fine
    empty = Chem.RWMol()
    assert [is_valence_valid(m) for m in (ethanol, PENTAVALENT, fragments, empty)] == [
        True,
        False,
        True,
        True,
    ]
    assert validity_without_correction([ethanol, PENTAVALENT, fragments, empty]) == 0.75
    with pytest.raises(ValueError):
        validity_without_correction([])


def test_correct_mol_removes_a_single_bond_of_pentavalent_carbon():
    corrected, was_valid = correct_mol(PENTAVALENT)
    assert not was_valid
    # all bonds of atom 0 are single -> the first one (0-1) is removed
    assert Chem.MolToSmiles(corrected) == "C.CC(C)(C)C"
    assert is_valence_valid(corrected) and not is_valence_valid(PENTAVALENT)  # input untouched


def test_correct_mol_lowers_the_highest_order_bond_first():
    # C0=C1 double plus three single bonds on C0: valence 5 -> the double bond becomes single
    mol = _raw(["C"] * 5, [(0, 2, 1), (0, 1, 2), (0, 3, 1), (0, 4, 1)])
    corrected, was_valid = correct_mol(mol)
    assert not was_valid and corrected.GetNumBonds() == 4
    assert corrected.GetBondBetweenAtoms(0, 1).GetBondType() == Chem.BondType.SINGLE
    # O with a triple bond (valence 3) needs two steps: triple -> double -> single
    oxygen = _raw(["C", "O"], [(0, 1, 3)])
    fixed, _ = correct_mol(oxygen)
    assert fixed.GetBondBetweenAtoms(0, 1).GetBondType() == Chem.BondType.DOUBLE
    assert canonical_smiles(fixed) == "C=O"


def test_correct_mol_keeps_valid_molecules():
    mol = _raw(["C", "C", "O"], [(0, 1, 2), (1, 2, 1)])
    corrected, was_valid = correct_mol(mol)
    assert was_valid and canonical_smiles(corrected) == "C=CO"


def test_largest_fragment_is_longest_smiles_string():
    corrected, _ = correct_mol(PENTAVALENT)
    assert Chem.MolToSmiles(largest_fragment(corrected)) == "CC(C)(C)C"
    assert Chem.MolToSmiles(largest_fragment(Chem.MolFromSmiles("O.CCCC.N"))) == "CCCC"
    assert largest_fragment(None) is None


def test_validity_uniqueness_novelty_by_hand():
    generated = ["CCO", "OCC", "C1CC1", "invalid((", "", "C(C)(C)(C)(C)C"]
    assert validity(generated) == pytest.approx(3 / 6)
    assert uniqueness(generated) == pytest.approx(2 / 3)  # CCO twice, C1CC1 once
    assert novelty(generated, ["C(C)O", "CCCC"]) == pytest.approx(1 / 2)  # CCO is known, C1CC1 is new
    assert novelty(generated, ["CCO"], canonicalize_train=False) == pytest.approx(1 / 2)
    with pytest.raises(ValueError):
        uniqueness(["xx"])


def _tensors(smiles: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [mol_to_tensors(Chem.MolFromSmiles(s), QM9_ATOMS, 9) for s in smiles]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def test_gdss_molecule_metrics_end_to_end():
    x, adj = _tensors(["CCO", "CCO", "C1CC1", "CC"])
    # sample 3 becomes pentavalent carbon: CC plus four extra carbons on atom 0
    x[3, 2:6, 0] = 1.0
    adj[3, 0, 2:6] = adj[3, 2:6, 0] = 1.0
    # and sample 1 gets an extra, disconnected atom (a fragment that passes the valence check)
    x[1, 3, 2] = 1.0
    result = gdss_molecule_metrics(x * 0.9, adj + 0.2, QM9_ATOMS, train_smiles=["OCC"])
    assert result["num_samples"] == 4 and result["num_mols"] == 4
    assert result["validity_wo_correction"] == pytest.approx(3 / 4)
    assert result["validity"] == 1.0
    assert result["smiles"] == ["CCO", "CCO", "C1CC1", "CC(C)(C)C"]
    assert result["uniqueness"] == pytest.approx(3 / 4)
    assert result["novelty"] == pytest.approx(2 / 3)


def test_molecule_graphs_label_atoms_and_kekule_bond_orders():
    from graphgen.metrics import molecule_graphs, nspdk_mmd

    benzene, acetonitrile = Chem.MolFromSmiles("c1ccccc1"), Chem.MolFromSmiles("CC#N")
    Chem.Kekulize(benzene, clearAromaticFlags=True)
    ring, nitrile = molecule_graphs([benzene, acetonitrile])
    assert sorted(d["label"] for _, _, d in ring.edges(data=True)) == [1, 1, 1, 2, 2, 2]
    assert [ring.nodes[i]["label"] for i in ring] == ["C"] * 6
    assert {d["label"] for _, _, d in nitrile.edges(data=True)} == {1, 3}
    assert [nitrile.nodes[i]["label"] for i in nitrile] == ["C", "C", "N"]
    assert nspdk_mmd([ring], [ring]) < 1e-12 < nspdk_mmd([ring], [nitrile])


def test_evaluate_molecules_is_a_deprecated_alias():
    from graphgen.metrics import evaluate_molecules

    x, adj = _tensors(["CCO", "CC"])
    with pytest.warns(DeprecationWarning, match="gdss_molecule_metrics"):
        old = evaluate_molecules(x, adj, QM9_ATOMS)
    assert old == gdss_molecule_metrics(x, adj, QM9_ATOMS)


def test_registered_evaluators_report_what_they_skip():
    import networkx as nx

    from graphgen.evaluation import evaluation_report, molecule_metrics
    from graphgen.metrics.evaluators import default_evaluators
    from shared.evaluation import Evaluator

    evaluators = default_evaluators(True) + default_evaluators(False)
    assert all(isinstance(e, Evaluator) for e in evaluators)
    assert len({e.name for e in evaluators}) == len(evaluators)
    report = evaluation_report(["CCO", "CCO", None, "C.C"], True)
    assert report.metrics["validity_wo_correction"] == pytest.approx(3 / 4)
    assert report.metrics["atom_fraction_C"] == pytest.approx(6 / 8)
    assert set(report.skipped) == {"novelty", "fcd"} and "train_smiles" in report.skipped["novelty"]
    # the public dict keeps one atom_fractions mapping, where the per-element metrics stood
    metrics = molecule_metrics(["CCO", "CCO", None, "C.C"], train_smiles=["CCO"], fcd=False)
    assert list(metrics) == ["validity_wo_correction", "uniqueness", "multi_fragment_fraction", "mean_heavy_atoms",
                             "atom_fractions", "novelty"]
    assert metrics["atom_fractions"] == pytest.approx({"C": 0.75, "O": 0.25}) and metrics["novelty"] == 0.5
    graphs = evaluation_report([nx.cycle_graph(5)] * 3, False, [nx.cycle_graph(5)] * 3)
    assert set(graphs.metrics) == {"degree", "cluster", "orbit"} and graphs.metrics["degree"] == pytest.approx(0)
    assert evaluation_report([nx.cycle_graph(5)], False).skipped == {"graph_mmd": "missing context: reference_graphs"}
