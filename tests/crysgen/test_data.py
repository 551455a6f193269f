"""CDVAE CSV loading: CDVAE's canonicalisation, malformed rows reported, parallel == serial, on-disk cache."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("pymatgen")
from pymatgen.core import Lattice, Structure  # noqa: E402
from pymatgen.io.cif import CifWriter  # noqa: E402

from crysgen.data import (  # noqa: E402
    DATASETS,
    dataset_path,
    dataset_url,
    load_cdvae_csv,
    load_dataset,
    parse_cif,
)


def skewed_nacl() -> Structure:
    """Rock salt in a deliberately non-reduced cell (a + b as the second vector) that Niggli must fix."""
    prim = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()
    return prim.copy().make_supercell([[1, 0, 0], [1, 1, 0], [0, 0, 1]], in_place=False)


def write_csv(path, rows) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "material_id", "cif", "formula", "heat_ref"])
        for index, (mid, cif, formula, heat) in enumerate(rows):
            writer.writerow([index, mid, cif, formula, heat])


@pytest.fixture
def small_csv(tmp_path):
    cubic = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"],
                                      [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
    rows = [
        ("mp-1", str(CifWriter(skewed_nacl())), "NaCl", -1.5),
        ("bad-2", "data_broken\n_cell_length_a 3.0\nthis is not a cif", "X", 0.0),
        ("mp-3", str(CifWriter(cubic)), "SrTiO3", 0.25),
        ("mp-4", str(CifWriter(Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]]))), "Cu", 0.0),
    ]
    path = tmp_path / "split.csv"
    write_csv(path, rows)
    return path


def test_loads_rows_reports_malformed_row_and_keeps_properties(small_csv):
    dataset = load_cdvae_csv(small_csv)
    assert dataset.material_ids == ["mp-1", "mp-3", "mp-4"]
    assert [s.composition.reduced_formula for s in dataset.structures] == ["NaCl", "SrTiO3", "Cu"]
    assert len(dataset.errors) == 1
    error = dataset.errors[0]
    assert (error.row, error.material_id) == (1, "bad-2") and error.reason
    assert dataset.properties == {"formula": ["NaCl", "SrTiO3", "Cu"], "heat_ref": [-1.5, 0.25, 0.0]}


def test_cdvae_canonicalisation_niggli_and_primitive(small_csv):
    cif = str(CifWriter(skewed_nacl()))
    reduced = parse_cif(cif)
    expected = skewed_nacl().get_reduced_structure()
    np.testing.assert_allclose(reduced.lattice.parameters, expected.lattice.parameters, atol=1e-6)
    # canonical orientation: the lattice matrix is the one Lattice.from_parameters builds
    np.testing.assert_allclose(reduced.lattice.matrix,
                               Lattice.from_parameters(*expected.lattice.parameters).matrix, atol=1e-12)
    assert reduced.matches(skewed_nacl())
    unreduced = parse_cif(cif, niggli=False)
    assert unreduced.lattice.angles != pytest.approx(reduced.lattice.angles)
    conventional = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])
    assert len(parse_cif(str(CifWriter(conventional)))) == 4  # CDVAE default: no primitive reduction
    assert len(parse_cif(str(CifWriter(conventional)), primitive=True)) == 1


def test_parallel_equals_serial_and_cache_round_trip(small_csv, tmp_path):
    serial = load_cdvae_csv(small_csv)
    cache = tmp_path / "cache"
    parallel = load_cdvae_csv(small_csv, workers=2, chunk_size=1, cache_dir=cache)
    cached_files = list(cache.iterdir())
    assert len(cached_files) == 1
    from_cache = load_cdvae_csv(small_csv, cache_dir=cache)
    for other in (parallel, from_cache):
        assert other.material_ids == serial.material_ids and other.errors == serial.errors
        assert other.properties == serial.properties
        for a, b in zip(serial.structures, other.structures):
            np.testing.assert_array_equal(a.lattice.matrix, b.lattice.matrix)
            np.testing.assert_array_equal(a.frac_coords, b.frac_coords)
            assert a.species == b.species
    # other settings or other content -> another cache entry
    load_cdvae_csv(small_csv, cache_dir=cache, niggli=False)
    assert len(list(cache.iterdir())) == 2
    small_csv.write_text(small_csv.read_text().replace("-1.5", "-1.25"))
    assert load_cdvae_csv(small_csv, cache_dir=cache).properties["heat_ref"][0] == -1.25
    assert len(list(cache.iterdir())) == 3


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="CDVAE crystal CSV"):
        load_cdvae_csv(tmp_path / "missing.csv")
    no_cif = tmp_path / "no_cif.csv"
    no_cif.write_text("material_id,formula\nmp-1,NaCl\n")
    with pytest.raises(ValueError, match="missing column"):
        load_cdvae_csv(no_cif)


def test_dataset_names_urls_and_paths(tmp_path, monkeypatch):
    assert set(DATASETS) == {"mp_20", "perov_5", "carbon_24"}
    assert dataset_url("mp_20", "train") == \
        "https://raw.githubusercontent.com/txie-93/cdvae/main/data/mp_20/train.csv"
    with pytest.raises(ValueError, match="unknown crystal dataset"):
        dataset_url("mp20", "train")
    with pytest.raises(ValueError, match="unknown split"):
        dataset_url("mp_20", "validation")
    monkeypatch.delenv("SCOREGEN_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="SCOREGEN_DATA"):
        dataset_path("carbon_24", "test")
    with pytest.raises(FileNotFoundError, match="carbon_24/test.csv"):
        dataset_path("carbon_24", "test", data_dir=tmp_path)
    folder = tmp_path / "crystals" / "carbon_24"
    folder.mkdir(parents=True)
    write_csv(folder / "test.csv", [("c-1", str(CifWriter(Structure(Lattice.cubic(3.57), ["C", "C"],
                                                                     [[0, 0, 0], [0.25, 0.25, 0.25]]))),
                                     "C", -9.0)])
    monkeypatch.setenv("SCOREGEN_DATA", str(tmp_path))
    assert dataset_path("carbon_24", "test") == folder / "test.csv"
    assert len(load_dataset("carbon_24", "test")) == 1


@pytest.mark.data
def test_perov5_splits_parse_completely(reference_data, request):
    cache = request.config.cache.mkdir("crysgen_parsed")
    val = load_dataset("perov_5", "val", data_dir=reference_data, workers=2, cache_dir=cache)
    assert len(val) == 3787 and val.errors == []
    assert all(len(s) == 5 for s in val.structures)
    assert set(val.properties) == {"formula", "heat_all", "heat_ref", "dir_gap", "ind_gap"}
    assert np.isfinite(val.properties["heat_ref"]).all()
