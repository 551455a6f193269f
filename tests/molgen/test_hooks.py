"""xTB and PySCF hooks: records and keys, frontier orbitals, and real numbers against QM9's B3LYP values."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest

from molgen.hooks import MoleculeRecord, PySCFHook, XTBHook, frontier_orbitals
from molgen.units import HARTREE_TO_EV
from shared.hooks import run_hook

needs_qm9 = pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")


@pytest.fixture(scope="module")
def qm9_first():
    """QM9 molecules 1-3 (methane, ammonia, water) as (record, (homo, lumo, mu)) with HOMO/LUMO in Hartree."""
    from molgen.data import load_qm9_table

    table = load_qm9_table(limit=3)
    out = {}
    for k, name in enumerate(["methane", "ammonia", "water"]):
        props = table.properties[k]
        out[name] = (MoleculeRecord.from_arrays(table.numbers[k], table.positions[k]),
                     (props[2] / HARTREE_TO_EV, props[3] / HARTREE_TO_EV, props[0]))
    return out


WATER = MoleculeRecord.from_arrays([8, 1, 1], [[0, 0, 0], [0.9572, 0, 0], [-0.2399872, 0.9266272, 0]])
METHYL = MoleculeRecord.from_arrays([6, 1, 1, 1], [[0, 0, 0], [1.08, 0, 0], [-0.54, 0.935, 0], [-0.54, -0.935, 0]])


def test_record_validation_and_default_multiplicity():
    assert WATER.multiplicity == 1 and not WATER.open_shell
    assert METHYL.multiplicity == 2 and METHYL.n_electrons == 9
    with pytest.raises(ValueError, match="multiplicity"):
        MoleculeRecord.from_arrays([6, 1, 1, 1], METHYL.positions, multiplicity=1)
    with pytest.raises(ValueError, match="positions"):
        MoleculeRecord((8, 1), ((0.0, 0.0, 0.0),))
    cation = MoleculeRecord.from_arrays([6, 1, 1, 1], METHYL.positions, charge=1)
    assert cation.multiplicity == 1


def test_keys_are_stable_and_settings_sensitive():
    hook = XTBHook()
    jittered = MoleculeRecord.from_arrays(WATER.numbers, WATER.positions_array() + 1e-9)
    assert hook.key(WATER) == hook.key(jittered)
    assert hook.key(WATER) != hook.key(MoleculeRecord.from_arrays(WATER.numbers, WATER.positions_array() + 1e-3))
    assert hook.key(WATER) != XTBHook(optimize=True).key(WATER)
    assert PySCFHook().key(WATER) != PySCFHook(density_fit=True).key(WATER)
    assert pickle.loads(pickle.dumps((hook, WATER))) == (hook, WATER)


def test_frontier_orbitals_from_occupations():
    assert frontier_orbitals([-1.0, -0.5, 0.2, 0.4], [2, 2, 0, 0]) == (-0.5, 0.2)
    # per-spin channels (doublet): alpha has one more electron
    energies = [[-1.0, -0.4, 0.3], [-1.0, -0.2, 0.1]]
    assert frontier_orbitals(energies, [[1, 1, 0], [1, 0, 0]], capacity=1.0) == (-0.4, -0.2)
    with pytest.raises(ValueError, match="occupied"):
        frontier_orbitals([-1.0, 0.5], [2, 2])


@pytest.mark.skipif(importlib.util.find_spec("tblite") is None, reason="tblite not installed")
def test_xtb_sanity_and_caching(tmp_path):
    methane = MoleculeRecord.from_arrays(
        [6, 1, 1, 1, 1], 0.629 * np.array([[0, 0, 0], [1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    )
    ammonia = MoleculeRecord.from_arrays([7, 1, 1, 1], [[0, 0, 0.1162], [0, 0.9377, -0.2711],
                                                        [0.8121, -0.4689, -0.2711], [-0.8121, -0.4689, -0.2711]])
    items = [WATER, methane, ammonia]
    results = run_hook(XTBHook(), items, cache_dir=tmp_path)
    assert [r.status for r in results] == ["ok"] * 3
    water, ch4, nh3 = (r.values for r in results)
    for v in (water, ch4, nh3):
        assert v["energy_eV"] < 0 and v["gap_eV"] > 0
        assert v["gap_eV"] == pytest.approx(v["lumo_eV"] - v["homo_eV"])
    assert 1.6 < water["dipole_D"] < 2.8  # experiment 1.85 D
    assert ch4["dipole_D"] < 0.05
    assert 1.2 < nh3["dipole_D"] < 2.2  # experiment 1.47 D
    again = run_hook(XTBHook(), items, cache_dir=tmp_path)
    assert all(r.cached for r in again) and [r.values for r in again] == [r.values for r in results]
    optimized = XTBHook(optimize=True).compute_one(WATER)
    assert optimized["converged"] and optimized["energy_eV"] <= water["energy_eV"] + 1e-8


pyscf_needed = pytest.mark.skipif(importlib.util.find_spec("pyscf") is None, reason="pyscf not installed")


@pyscf_needed
def test_pyscf_open_shell_and_scf_failure_are_recorded(tmp_path):
    results = run_hook(PySCFHook(), [METHYL], cache_dir=tmp_path)
    assert results[0].status == "failed" and "open-shell" in results[0].reason
    unconverged = run_hook(PySCFHook(basis="sto-3g", max_cycle=1, grid_level=0), [WATER], cache_dir=tmp_path)
    assert unconverged[0].status == "failed" and "SCFNotConverged" in unconverged[0].reason


def _check_against_qm9(values, reference, tolerance_eV=0.005, tolerance_D=0.002):
    # the issue asks for 0.03 eV / 0.05 D; with Gaussian's basis definition we measure <= 1.5 meV / 1e-4 D
    # (benchmarks/results/molgen_dft_agreement.md), so a regression to PySCF's own 6-31G(2df,p) is caught
    homo, lumo, mu = reference
    assert values["homo_eV"] == pytest.approx(homo * HARTREE_TO_EV, abs=tolerance_eV)
    assert values["lumo_eV"] == pytest.approx(lumo * HARTREE_TO_EV, abs=tolerance_eV)
    assert values["dipole_D"] == pytest.approx(mu, abs=tolerance_D)


@pyscf_needed
@needs_qm9
def test_pyscf_reproduces_qm9_methane(qm9_first):
    record, reference = qm9_first["methane"]
    _check_against_qm9(PySCFHook().compute_one(record), reference)


@pytest.mark.slow
@pyscf_needed
@needs_qm9
@pytest.mark.parametrize("name", ["ammonia", "water"])
def test_pyscf_reproduces_qm9_polar_molecules(qm9_first, name):
    record, reference = qm9_first[name]
    _check_against_qm9(PySCFHook().compute_one(record), reference)


@pytest.mark.slow
@pyscf_needed
@needs_qm9
def test_pyscf_builtin_basis_misses_qm9_water_dipole(qm9_first):
    """Why the default basis is ``"qm9"``: PySCF's own 6-31G(2df,p) (6-311G-style 2d exponents, spherical d)
    gives 1.98 D for QM9's water, whose label is 1.85 D."""
    record, (_, _, mu) = qm9_first["water"]
    assert PySCFHook(basis="6-31G(2df,p)").compute_one(record)["dipole_D"] == pytest.approx(mu + 0.128, abs=0.01)


@pytest.mark.slow
@pyscf_needed
@needs_qm9
def test_pyscf_frequencies_give_qm9_heat_capacity(qm9_first):
    record, _ = qm9_first["methane"]
    values = PySCFHook(frequencies=True).compute_one(record)
    assert values["n_imaginary"] == 0
    assert values["cv_cal_mol_K"] == pytest.approx(6.469, abs=0.05)  # QM9 Cv of methane
    assert values["frequencies_cm1"][-1] == pytest.approx(3151.7, abs=5.0)
