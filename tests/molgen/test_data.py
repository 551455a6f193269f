"""QM9 from qm9pack: parsing, units, bond perception against QM9's SMILES, caching, parallel == serial, splits."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from molgen import units
from molgen.data import (
    QM9Dataset,
    canonical_smiles,
    load_qm9_table,
    perceive_molecule,
    prepare_qm9,
    qm9_splits,
    read_summary,
)
from molgen.metrics import atom_stability, geometry_checks
from molgen.representation import MolBatch

pytest.importorskip("rdkit")
pytestmark = pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")

LIMIT = 1700  # includes QM9 #1642, whose QM9 SMILES is a zwitterion but whose geometry perceives as neutral


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    cache = tmp_path_factory.mktemp("qm9")
    return cache, prepare_qm9(cache, limit=LIMIT, workers=2, chunk_size=500)


def test_units_are_codata():
    assert units.HARTREE_TO_EV == 27.211386245988
    # 1 e*Angstrom = 4.8032 D is the textbook value
    assert math.isclose(units.E_ANGSTROM_TO_DEBYE, 4.80320, rel_tol=1e-5)


def test_first_rows_are_parsed_in_molgen_units():
    table = load_qm9_table(limit=3)
    assert table.index.tolist() == [1, 2, 3]
    assert table.smiles == ["C", "N", "O"]
    assert table.numbers[0].tolist() == [6, 1, 1, 1, 1]
    np.testing.assert_allclose(table.positions[0][0], [-0.0126981359, 1.0858041578, 0.0080009958])
    names = list(units.QM9_PROPERTY_UNITS)
    methane = dict(zip(names, table.properties[0]))
    assert methane["homo"] == pytest.approx(-0.3877 * units.HARTREE_TO_EV)
    assert methane["gap"] == pytest.approx(0.5048 * units.HARTREE_TO_EV)
    assert methane["alpha"] == pytest.approx(13.21)
    assert methane["Cv"] == pytest.approx(6.469)
    assert methane["U0"] == pytest.approx(-40.47893 * units.HARTREE_TO_EV)
    # every C-H bond of methane is 1.09 Angstrom
    d = np.linalg.norm(table.positions[0][1:] - table.positions[0][0], axis=1)
    np.testing.assert_allclose(d, 1.0919, atol=2e-3)


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="qm9_part1.csv"):
        load_qm9_table(tmp_path)
    with pytest.raises(ValueError, match="limit"):
        load_qm9_table(limit=0)


def test_hueckel_fallback_perceives_bicyclopentane():
    # QM9 #105 bicyclo[1.1.1]pentane: the 1.87 A bridgehead distance fools covalent-radius connectivity
    table = load_qm9_table(limit=110)
    k = table.index.tolist().index(105)
    mol = perceive_molecule(table.numbers[k], table.positions[k])
    assert canonical_smiles(mol) == canonical_smiles(Chem_from(table.smiles[k]))


def Chem_from(smiles):
    from rdkit import Chem

    return Chem.MolFromSmiles(smiles)


def test_prepare_counts_exclusions_and_caches(prepared):
    cache, path = prepared
    summary = read_summary(cache, LIMIT)
    assert summary["read"] == LIMIT
    assert summary["kept"] + sum(summary["excluded"].values()) == LIMIT
    assert 1642 in summary["excluded_qm9_index"]["smiles_mismatch"]
    assert summary["kept"] >= LIMIT - 5
    mtime = path.stat().st_mtime_ns
    assert prepare_qm9(cache, limit=LIMIT, workers=2) == path and path.stat().st_mtime_ns == mtime


def test_parallel_equals_serial(tmp_path):
    a = torch.load(prepare_qm9(tmp_path / "a", limit=300, workers=2, chunk_size=100), weights_only=False)
    b = torch.load(prepare_qm9(tmp_path / "b", limit=300, workers=1), weights_only=False)
    for key in ("numbers", "charges", "positions", "bond_index", "bond_types", "properties", "qm9_index"):
        assert torch.equal(a[key], b[key]), key
    assert a["smiles"] == b["smiles"]


def test_dataset_items_match_qm9_smiles_and_pass_the_metrics(prepared):
    _, path = prepared
    ds = QM9Dataset(path)
    item = ds[0]
    assert item["atom_types"].tolist() == [1, 0, 0, 0, 0]
    assert ds.property("homo")[0] == pytest.approx(-0.3877 * units.HARTREE_TO_EV)
    table = load_qm9_table(limit=LIMIT)
    reference = dict(zip(table.index.tolist(), table.smiles))
    rng = np.random.default_rng(0)
    for i in rng.choice(len(ds), 25, replace=False):
        assert canonical_smiles(ds.to_mol(int(i))) == canonical_smiles(Chem_from(reference[int(ds.qm9_index()[i])]))
    # the reference data itself is 100% strictly stable and geometrically sane
    batch = MolBatch.from_tensors([ds.tensors(i) for i in range(len(ds))])
    assert bool((atom_stability(batch) | ~batch.mask).all())
    checks = geometry_checks(batch)
    assert bool(checks["geometry_ok"].all())


def test_dataset_splits_and_errors(prepared):
    _, path = prepared
    full = QM9Dataset(path)
    parts = {name: QM9Dataset(path, split=name) for name in ("train", "valid", "test")}
    assert sum(len(p) for p in parts.values()) == len(full)
    with pytest.raises(ValueError, match="unknown split"):
        QM9Dataset(path, split="nope")
    with pytest.raises(FileNotFoundError, match="prepare_qm9"):
        QM9Dataset(path.parent / "missing.pt")
    with pytest.raises(ValueError, match="unknown QM9 property"):
        full.property("nope")


def test_split_protocol_full_size():
    n = 130_000
    splits = qm9_splits(n)
    sizes = {k: len(v) for k, v in splits.items()}
    assert sizes == {"train": 100_000, "train_regressor": 50_000, "train_generator": 50_000,
                     "valid": 17_000, "test": 13_000}
    everything = np.concatenate([splits["train"], splits["valid"], splits["test"]])
    assert np.array_equal(np.sort(everything), np.arange(n))
    assert np.array_equal(np.sort(np.concatenate([splits["train_regressor"], splits["train_generator"]])),
                          np.sort(splits["train"]))
    assert np.array_equal(splits["train"], np.random.default_rng(42).permutation(n)[:100_000])
    again = qm9_splits(n)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    with pytest.raises(ValueError, match="cannot split"):
        qm9_splits(1000)
