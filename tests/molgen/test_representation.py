"""MolTensors / MolBatch: shapes, validation, and exact round trips through RDKit."""

from __future__ import annotations

import pytest
import torch

from molgen.representation import (
    BOND_AROMATIC,
    BOND_DOUBLE,
    MolBatch,
    MolTensors,
    atom_type_index,
    mol_to_tensors,
    tensors_to_mol,
)

Chem = pytest.importorskip("rdkit.Chem")
from rdkit.Chem import AllChem  # noqa: E402


def embedded(smiles: str, seed: int = 0):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return mol


def stereo_free(mol) -> str:
    copy = Chem.Mol(mol)
    Chem.RemoveStereochemistry(copy)
    return Chem.MolToSmiles(Chem.RemoveHs(copy), isomericSmiles=False)


@pytest.mark.parametrize("smiles", ["CCO", "c1ccccc1", "c1cc[nH]c1", "[NH3+]CC(=O)[O-]", "C#N", "C[N+](=O)[O-]"])
def test_rdkit_round_trip_is_exact(smiles):
    mol = embedded(smiles)
    tensors = mol_to_tensors(mol)
    back = tensors_to_mol(tensors)
    assert stereo_free(back) == stereo_free(mol)
    assert torch.allclose(torch.as_tensor(back.GetConformer().GetPositions(), dtype=torch.float32), tensors.positions)
    assert tensors.charges.tolist() == [a.GetFormalCharge() for a in mol.GetAtoms()]
    assert bool((tensors.bond_index[0] < tensors.bond_index[1]).all())


def test_aromatic_and_double_bonds_are_their_own_categories():
    benzene = mol_to_tensors(embedded("c1ccccc1"))
    heavy = (benzene.numbers[benzene.bond_index[0]] == 6) & (benzene.numbers[benzene.bond_index[1]] == 6)
    assert benzene.bond_types[heavy].tolist() == [BOND_AROMATIC] * 6
    ethene = mol_to_tensors(embedded("C=C"))
    assert (ethene.bond_types == BOND_DOUBLE).sum() == 1


def test_batch_pads_and_unbatches_exactly():
    mols = [mol_to_tensors(embedded(s)) for s in ["C", "CCO", "c1ccccc1"]]
    batch = MolBatch.from_tensors(mols)
    assert batch.numbers.shape == (3, 12)
    assert batch.num_atoms.tolist() == [5, 9, 12]
    assert torch.equal(batch.bonds, batch.bonds.transpose(1, 2))
    assert int(batch.numbers[~batch.mask].abs().sum()) == 0
    for original, restored in zip(mols, batch.unbatch()):
        assert torch.equal(original.bond_matrix(), restored.bond_matrix())
        assert torch.equal(original.numbers, restored.numbers)
        assert torch.equal(original.positions, restored.positions)


def test_atom_type_index_and_errors():
    assert atom_type_index(torch.tensor([1, 6, 7, 8, 9])).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"\[16\]"):
        atom_type_index(torch.tensor([6, 16]))
    with pytest.raises(ValueError, match="disagree"):
        MolTensors(torch.tensor([6]), torch.tensor([0, 0]), torch.zeros(1, 3), torch.zeros(2, 0), torch.zeros(0))
    with pytest.raises(ValueError, match="conformer"):
        mol_to_tensors(Chem.AddHs(Chem.MolFromSmiles("C")))
    with pytest.raises(ValueError, match="implicit hydrogens"):
        mol = Chem.MolFromSmiles("C")
        AllChem.EmbedMolecule(mol, randomSeed=0)
        mol_to_tensors(mol)
