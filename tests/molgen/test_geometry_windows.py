"""QM9-derived geometry windows, soundness, PoseBusters and relaxation, on molecules with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from molgen.metrics import geometry_checks, geometry_metrics
from molgen.metrics.soundness import molecule_soundness, strain_metrics
from molgen.metrics.windows import bond_window_tables, derive_windows, load_windows, zero_point_amplitude
from molgen.relax import connectivity_matches, heavy_atom_rmsd, relax_molecule, relax_molecules
from molgen.representation import BOND_DOUBLE, BOND_TRIPLE, MolBatch, MolTensors, mol_to_tensors, tensors_to_mol

Chem = pytest.importorskip("rdkit.Chem")
from rdkit.Chem import AllChem  # noqa: E402


def relaxed(smiles: str) -> "Chem.Mol":
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=0) == 0
    AllChem.MMFFOptimizeMolecule(mol)
    return mol


def _bond(t: MolTensors, a: int, b: int) -> int:
    pairs = t.bond_index.T.tolist()
    return pairs.index(sorted([a, b]))


def _stretch(t: MolTensors, a: int, b: int, length: float) -> MolTensors:
    """Move atom b (alone) along a->b so that the a-b distance is ``length``."""
    out = MolTensors(**{k: getattr(t, k).clone() for k in vars(t)})
    d = out.positions[b] - out.positions[a]
    out.positions[b] = out.positions[a] + d / d.norm() * length
    return out


# --- the packaged windows --------------------------------------------------------------------------------------


def test_packaged_windows_are_data_derived_and_chemically_sensible():
    w = load_windows()
    assert w["source"].startswith("QM9 train_generator")
    # margins are zero-point stretch amplitudes: light X-H bonds vibrate more than heavy multiple bonds
    assert w["bonds"]["1-6:1"]["margin"] == pytest.approx(0.078, abs=0.002)
    assert w["bonds"]["6-6:3"]["margin"] < w["bonds"]["6-6:2"]["margin"] < w["bonds"]["6-6:1"]["margin"]
    for key, window in {**w["bonds"], **w["pairs"], **w["angles"]}.items():
        assert window["lo"] < window["q_lo"] <= window["median"] <= window["q_hi"] < window["hi"], key
        assert window["n"] >= w["min_count"]
    # every QM9 class sits inside a chemist's wide window for its element pair, and orders are ordered
    chemist = {"1-6": (0.90, 1.20), "1-7": (0.90, 1.20), "1-8": (0.85, 1.20), "6-6": (1.10, 1.80),
               "6-7": (1.05, 1.75), "6-8": (1.10, 1.60)}
    for key, window in w["bonds"].items():
        pair = key.split(":")[0]
        if pair in chemist:
            lo, hi = chemist[pair]
            assert lo <= window["lo"] and window["hi"] <= hi, key
    medians = [w["bonds"][f"6-6:{order}"]["median"] for order in (1, 4, 2, 3)]
    assert medians == sorted(medians, reverse=True)  # C-C > aromatic > C=C > C#C
    assert abs(w["bonds"]["1-6:1"]["median"] - 1.094) < 0.005  # the textbook C-H length of QM9's B3LYP minima
    by_order, by_pair = bond_window_tables()
    assert torch.isfinite(by_order[6, 6, 1]).all() and torch.equal(by_order[6, 7, 1:], by_order[7, 6, 1:])
    assert torch.isnan(by_order[0, 6]).all()  # unknown elements have no window (their bonds fail)


def test_zero_point_amplitude_matches_the_harmonic_oscillator():
    # H2 (4401 cm^-1 is not in the table, so check the formula on C-H: mu = 0.9299 amu, 2950 cm^-1)
    hbar, amu, c = 1.054571817e-34, 1.66053906660e-27, 2.99792458e10
    mu = 1.008 * 12.011 / 13.019 * amu
    expected = math.sqrt(hbar / (2 * mu * 2 * math.pi * c * 2950.0)) * 1e10
    assert zero_point_amplitude(6, 1, 1) == pytest.approx(expected, rel=1e-12)
    assert zero_point_amplitude(6, 6, 1) > zero_point_amplitude(6, 6, 2) > zero_point_amplitude(6, 6, 3)


def test_derived_windows_contain_the_data_they_came_from(tmp_path):
    from molgen.data import prepare_qm9
    from molgen.data import QM9Dataset

    path = prepare_qm9(tmp_path, limit=400, workers=0)
    w = derive_windows(path, split="train_generator", min_count=5)
    file = tmp_path / "windows.json"
    file.write_text(__import__("json").dumps(w))
    data = QM9Dataset(path, "train_generator")
    batch = MolBatch.from_tensors([data.tensors(i) for i in range(len(data))])
    checks = geometry_checks(batch, windows=str(file))
    assert bool(checks["bond_lengths_ok"].all()) and bool(checks["bond_angles_ok"].all())


# --- geometry checks -------------------------------------------------------------------------------------------


def test_bond_windows_separate_sound_from_strained_bonds():
    good = mol_to_tensors(relaxed("CCO"))
    c_h = next(i for i in range(good.num_atoms) if int(good.numbers[i]) == 1)
    carbon = int(next(j for j, h in good.bond_index.T.tolist() if h == c_h) if False else
                 [a for a, b in good.bond_index.T.tolist() if b == c_h][0])
    long_ch = _stretch(good, carbon, c_h, 1.22)  # inside the issue's loose 0.90-1.20? no: beyond QM9's C-H 1.17
    slightly = _stretch(good, carbon, c_h, 1.12)  # a C-H QM9 shows
    checks = geometry_checks(MolBatch.from_tensors([good, long_ch, slightly]))
    assert checks["bond_lengths_ok"].tolist() == [True, False, True]
    assert checks["n_bonds"].tolist() == [8, 8, 8]
    assert checks["n_bonds_in_window"].tolist() == [8, 7, 8]
    metrics = geometry_metrics(MolBatch.from_tensors([good, long_ch]))
    assert metrics["bond_length_fraction"] == pytest.approx(15 / 16)


def test_bond_order_windows_are_stricter_than_pair_windows():
    ethyne = mol_to_tensors(relaxed("C#C"))  # C#C 1.20 A
    as_double = MolTensors(**{k: getattr(ethyne, k).clone() for k in vars(ethyne)})
    k = int((ethyne.bond_types == BOND_TRIPLE).nonzero()[0])
    as_double.bond_types[k] = BOND_DOUBLE  # a 1.20 A bond called double: no QM9 C=C is that short
    checks = geometry_checks(MolBatch.from_tensors([ethyne, as_double]))
    assert checks["bond_lengths_ok"].tolist() == [True, False]
    assert checks["bond_lengths_in_pair_windows"].tolist() == [True, True]


def test_angle_windows_know_small_rings():
    cyclopropane = mol_to_tensors(relaxed("C1CC1"))  # 60 degree C-C-C angles are QM9 chemistry
    water = mol_to_tensors(relaxed("O"))
    squeezed = MolTensors(**{k: getattr(water, k).clone() for k in vars(water)})
    squeezed.positions = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0],
                                       [0.96 * math.cos(math.radians(70)), 0.96 * math.sin(math.radians(70)), 0.0]])
    checks = geometry_checks(MolBatch.from_tensors([cyclopropane, water, squeezed]))
    assert checks["bond_angles_ok"].tolist() == [True, True, False]


def test_geometry_checks_are_invariant_to_rotation_translation_and_permutation():
    mols = [mol_to_tensors(relaxed(s)) for s in ("CC(=O)N", "c1ccncc1", "OCC#N")]
    mols.append(_stretch(mols[0], 0, 1, 1.75))
    base = geometry_checks(MolBatch.from_tensors(mols))
    rng = np.random.default_rng(0)
    moved = []
    for t in mols:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        rot = torch.tensor(q * np.sign(np.linalg.det(q)), dtype=t.positions.dtype)
        perm = torch.as_tensor(rng.permutation(t.num_atoms))
        inverse = torch.argsort(perm)
        index = inverse[t.bond_index]
        index, _ = torch.sort(index, dim=0)
        moved.append(MolTensors(t.numbers[perm], t.charges[perm], t.positions[perm] @ rot.T + 3.0, index,
                                t.bond_types))
    again = geometry_checks(MolBatch.from_tensors(moved))
    for name in base:
        assert torch.equal(base[name], again[name]), name


# --- soundness and PoseBusters ---------------------------------------------------------------------------------


def test_soundness_needs_all_four():
    good = mol_to_tensors(relaxed("CCO"))
    long_cc = _stretch(good, 0, 1, 1.80)
    fragments = mol_to_tensors(relaxed("C.O"))
    sound = molecule_soundness(MolBatch.from_tensors([good, long_cc, fragments]))
    assert sound["valid"].tolist() == [True, True, True]
    assert sound["connected"].tolist() == [True, True, False]
    assert sound["bond_windows"].tolist() == [True, False, True]
    assert sound["sound"].tolist() == [True, False, False]


def test_posebusters_passes_relaxed_and_fails_squashed_molecules():
    pytest.importorskip("posebusters")
    from molgen.metrics.soundness import posebusters_checks

    good = relaxed("c1ccccc1O")
    bent = Chem.Mol(good)
    conf = bent.GetConformer()
    ring = [a.GetIdx() for a in bent.GetAtoms() if a.GetIsAromatic()]
    pos = conf.GetAtomPosition(ring[0])
    conf.SetAtomPosition(ring[0], (pos.x, pos.y, pos.z + 0.8))  # a puckered benzene ring
    checks = posebusters_checks([good, bent])
    assert checks["posebusters_valid"] == [True, False], checks
    assert checks["aromatic_ring_flatness"] == [True, False]


def test_posebusters_survives_a_closed_stderr_left_behind(monkeypatch):
    """posebusters leaves RDKit's log handler on the stderr of its last run; a closed one failed every InChI check."""
    pytest.importorskip("posebusters")
    import io

    import rdkit

    from molgen.metrics.soundness import posebusters_checks

    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(rdkit.log_handler, "stream", closed)
    assert posebusters_checks([relaxed("CCO")])["inchi_convertible"] == [True]


# --- relaxation ------------------------------------------------------------------------------------------------


def test_heavy_atom_rmsd_is_superposition_free():
    rng = np.random.default_rng(1)
    numbers = [6, 6, 8, 1, 1]
    a = rng.normal(size=(5, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    assert heavy_atom_rmsd(numbers, a, a @ q.T + 2.0) == pytest.approx(0.0, abs=1e-6)
    b = a.copy()
    b[3:] += 5.0  # hydrogens do not count
    assert heavy_atom_rmsd(numbers, a, b) == pytest.approx(0.0, abs=1e-6)


def test_connectivity_check_sees_a_broken_bond():
    mol = relaxed("CCO")
    assert connectivity_matches(mol)
    pos = mol.GetConformer().GetPositions()
    oxygen = next(a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "O")
    pos[oxygen] += 2.0 * (pos[oxygen] - pos[1]) / np.linalg.norm(pos[oxygen] - pos[1])
    assert not connectivity_matches(mol, pos)
    # a bicyclo[1.1.1]pentane cage: its bridgeheads sit ~1.9 A apart, unbonded (RDKit's covalent-radius rule
    # would bond them; QM9's own C-C lengths do not)
    cage = relaxed("C1C2CC1C2")
    heads = [a.GetIdx() for a in cage.GetAtoms() if sum(n.GetSymbol() == "C" for n in a.GetNeighbors()) == 3]
    xyz = cage.GetConformer().GetPositions()
    assert 1.75 < np.linalg.norm(xyz[heads[0]] - xyz[heads[1]]) < 2.0
    assert connectivity_matches(cage)


def _strained(smiles: str, scale: float = 1.08):
    mol = relaxed(smiles)
    conf = mol.GetConformer()
    pos = conf.GetPositions() * scale  # every bond 8 % long
    for i, xyz in enumerate(pos):
        conf.SetAtomPosition(i, xyz.tolist())
    return mol


@pytest.mark.parametrize("method", ["mmff", "xtb"])
def test_relaxation_removes_strain_and_keeps_bonding(method):
    if method == "xtb":
        pytest.importorskip("tblite")
    mol = _strained("CC(=O)O")
    before = geometry_checks(MolBatch.from_mols([mol]))["bond_lengths_ok"]
    result = relax_molecule(mol, method)
    assert result.status == "ok" and result.converged and result.bonding_survives
    assert result.relax_energy_eV > 0.3  # 8 % on every bond costs far more than thermal energy
    assert 0.01 < result.heavy_rmsd_A < 0.5
    after = geometry_checks(MolBatch.from_mols([result.mol]))["bond_lengths_ok"]
    assert not bool(before[0]) and bool(after[0])
    # atoms, bonds and charges are the generated ones; only coordinates moved
    assert Chem.MolToSmiles(result.mol) == Chem.MolToSmiles(mol)
    fields = result.fields()
    assert fields["relax_bonding_changed"] == 0 and fields["relax_status"] == "ok"


def test_relaxation_skips_what_a_chemist_would_not_relax_and_reports_it():
    radical = Chem.RWMol(relaxed("C"))
    radical.RemoveAtom(4)
    radical.GetAtomWithIdx(0).SetNoImplicit(True)
    invalid = tensors_to_mol(mol_to_tensors(relaxed("CC")), sanitize=False)
    invalid = Chem.RWMol(invalid)
    invalid.GetBondWithIdx(0).SetBondType(Chem.BondType.TRIPLE)  # a pentavalent carbon pair
    results = relax_molecules([radical.GetMol(), invalid.GetMol(), relaxed("C.O"), relaxed("CCO")], "mmff")
    assert [r.status for r in results] == ["skipped", "skipped", "skipped", "ok"]
    assert [r.reason for r in results[:3]] == ["open shell", "not RDKit-valid", "more than one fragment"]
    summary = strain_metrics(results, prefix="s_")
    assert summary["s_relaxed"] == 0.25 and summary["s_bonding_survives"] == 0.25
    with pytest.raises(ValueError, match="unknown relaxation method"):
        relax_molecule(relaxed("C"), "uff")


def test_relax_molecules_in_a_process_pool_matches_serial():
    mols = [_strained(s) for s in ("CCO", "CC#N", "C1CCOC1")]
    serial = relax_molecules(mols, "mmff")
    pooled = relax_molecules(mols, "mmff", workers=2)
    for a, b in zip(serial, pooled):
        assert a.status == b.status == "ok"
        np.testing.assert_allclose(a.mol.GetConformer().GetPositions(), b.mol.GetConformer().GetPositions(),
                                   atol=1e-6)
        assert a.relax_energy_eV == pytest.approx(b.relax_energy_eV, abs=1e-6)
