"""Reading SDF and XYZ files: multi-molecule files, perceived bonds, explicit hydrogens, clear errors."""

from __future__ import annotations

import pytest

from molgen.io import molecules_to_batch, read_molecules, read_xyz_frames
from molgen.metrics import stability_metrics

Chem = pytest.importorskip("rdkit.Chem")
from rdkit.Chem import AllChem  # noqa: E402


def embedded(smiles: str, seed: int = 0):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    AllChem.MMFFOptimizeMolecule(mol)
    mol.SetProp("_Name", smiles)
    return mol


def write_sdf(path, mols):
    writer = Chem.SDWriter(str(path))
    for mol in mols:
        writer.write(mol)
    writer.close()
    return path


def write_xyz(path, mols):
    path.write_text("".join(Chem.MolToXYZBlock(m) for m in mols))
    return path


def heavy_smiles(mol) -> str:
    return Chem.MolToSmiles(Chem.RemoveHs(Chem.Mol(mol), sanitize=True))


SMILES = ["CCO", "c1ccncc1", "[NH3+]CC(=O)[O-]"]


def test_multi_molecule_sdf_round_trip_keeps_names_charges_and_hydrogens(tmp_path):
    mols = [embedded(s) for s in SMILES]
    read = read_molecules(write_sdf(tmp_path / "m.sdf", mols))
    assert len(read) == 3 and read.names == SMILES and read.record_index == [0, 1, 2]
    for original, got in zip(mols, read.mols):
        assert got.GetNumAtoms() == original.GetNumAtoms()
        assert sum(a.GetFormalCharge() for a in got.GetAtoms()) == 0
        assert heavy_smiles(got) == heavy_smiles(original)
    assert stability_metrics(molecules_to_batch(read.mols))["mol_stability"] == 1.0


def test_multi_frame_xyz_bonds_are_perceived(tmp_path):
    mols = [embedded(s) for s in ("CCO", "c1ccncc1", "C#N")]
    read = read_molecules(write_xyz(tmp_path / "m.xyz", mols))
    assert len(read) == 3 and all(read.bonds_perceived)
    assert [heavy_smiles(m) for m in read.mols] == [heavy_smiles(m) for m in mols]


def test_radical_in_sdf_stays_a_radical(tmp_path):
    # methyl radical written with its three hydrogens; reading must not add a fourth implicit hydrogen
    radical = embedded("[CH3]")
    read = read_molecules(write_sdf(tmp_path / "r.sdf", [radical, embedded("C")]))
    assert read.mols[0].GetNumAtoms() == 4
    assert read.mols[0].GetAtomWithIdx(0).GetNumImplicitHs() == 0
    assert stability_metrics(molecules_to_batch(read.mols))["mol_stability"] == 0.5


def test_unsupported_element_is_named(tmp_path):
    path = write_sdf(tmp_path / "cl.sdf", [embedded("CCl"), embedded("CO")])
    with pytest.raises(ValueError, match=r"cl\.sdf: molecule 1, line 1: unsupported element\(s\) Cl"):
        read_molecules(path)
    skipped = read_molecules(path, on_error="skip")
    assert len(skipped) == 1 and skipped.skipped[0].number == 1 and "Cl" in skipped.skipped[0].reason
    assert len(read_molecules(path, elements=None)) == 2


def test_unreadable_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="molecule file not found"):
        read_molecules(tmp_path / "none.sdf")
    (tmp_path / "a.pdb").write_text("ATOM")
    with pytest.raises(ValueError, match="unsupported file type .pdb"):
        read_molecules(tmp_path / "a.pdb")
    (tmp_path / "junk.sdf").write_text("this is not an sdf file\n")
    with pytest.raises(ValueError, match="junk.sdf"):
        read_molecules(tmp_path / "junk.sdf")
    (tmp_path / "bad.xyz").write_text("2\ncomment\nO 0 0 0\nH 0.9 zero 0\n")
    with pytest.raises(ValueError, match="line 4"):
        read_molecules(tmp_path / "bad.xyz")
    (tmp_path / "short.xyz").write_text("3\ncomment\nO 0 0 0\n")
    with pytest.raises(ValueError, match="ends early"):
        read_xyz_frames(tmp_path / "short.xyz")
    (tmp_path / "el.xyz").write_text("1\n\nXx 0 0 0\n")
    with pytest.raises(ValueError, match="unknown element symbol 'Xx'"):
        read_molecules(tmp_path / "el.xyz")


def test_xyz_without_valid_bond_orders_keeps_connectivity(tmp_path):
    # CH2 plus a distant H atom: no bond ordering with charge 0 exists (odd electron count), yet the molecule is
    # kept with its connectivity so that the metrics can count it as unstable
    (tmp_path / "odd.xyz").write_text("4\nodd\nC 0 0 0\nH 1.09 0 0\nH -0.5 0.9 0\nH 0 0 9\n")
    read = read_molecules(tmp_path / "odd.xyz")
    assert len(read) == 1 and read.mols[0].GetNumAtoms() == 4
    assert read.bonds_perceived == [False]
    assert read.mols[0].GetNumBonds() == 2
