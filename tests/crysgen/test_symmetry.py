"""Symmetrisation of generated crystals: a slightly perturbed diamond is Fd-3m again, the option is off by
default, and crysgen sample --symmetrize writes symmetrised CIFs next to the decoded ones."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("pymatgen")
pytest.importorskip("spglib")
from pymatgen.core import Structure  # noqa: E402

from crysgen.cli import main  # noqa: E402
from crysgen.io import read_structures  # noqa: E402
from crysgen.symmetry import space_group_number, symmetrize, symmetrize_structures  # noqa: E402
from crysgen.testing import diamond, graphite  # noqa: E402


def displaced(structure, distance: float = 0.02, seed: int = 0):
    """Every atom moved by ``distance`` A in a random direction (cell unchanged)."""
    rng = np.random.default_rng(seed)
    step = rng.normal(size=(len(structure), 3))
    step *= distance / np.linalg.norm(step, axis=1, keepdims=True)
    return Structure(structure.lattice, structure.species, structure.cart_coords + step, coords_are_cartesian=True)


@pytest.mark.parametrize("cell", ["conventional", "primitive"])
def test_a_slightly_perturbed_diamond_becomes_fd3m_again(cell):
    base = diamond() if cell == "conventional" else diamond().get_primitive_structure()
    noisy = displaced(base)
    assert space_group_number(noisy, 1e-3) in (1, 2)  # what a decoded sample looks like at a tight tolerance
    assert space_group_number(noisy, 0.1) == 227
    fixed = symmetrize(noisy, 0.1)
    assert space_group_number(fixed, 1e-5) == 227  # exactly symmetric, not just within the tolerance
    assert len(fixed) == len(base)  # never more sites than the input
    np.testing.assert_allclose(sorted(fixed.lattice.abc), sorted(base.lattice.abc), atol=1e-6)
    assert fixed.composition == base.composition


def test_symmetrize_keeps_what_it_cannot_improve():
    supercell = displaced(graphite().make_supercell([2, 1, 1], in_place=False), 0.02)
    fixed = symmetrize(supercell, 0.1)
    assert space_group_number(fixed, 1e-5) == 194 and len(fixed) <= len(supercell)
    out, done = symmetrize_structures([None, displaced(diamond())], 0.1)
    assert out[0] is None and done == [False, True] and space_group_number(out[1], 1e-5) == 227
    with pytest.raises(ValueError, match="> 0"):
        symmetrize(diamond(), 0.0)


@pytest.fixture(scope="module")
def two_sample_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("symmetrize")
    common = ["sample", "-n", "6", "--steps", "6", "--seed", "3", "--no-progress"]
    assert main([*common, "--out", str(root / "plain")]) == 0
    assert main([*common, "--out", str(root / "sym"), "--symmetrize", "0.1"]) == 0
    return root


def test_off_by_default(two_sample_dirs):
    plain = two_sample_dirs / "plain"
    assert json.loads((plain / "sampling.json").read_text())["symmetrize"] is None
    assert not (plain / "unsymmetrized").exists()
    header = next(csv.reader((plain / "summary.csv").open()))
    assert "symmetrized" not in header and "space_group" in header


def test_sample_symmetrize_writes_refined_and_decoded_cells(two_sample_dirs):
    plain, sym = two_sample_dirs / "plain", two_sample_dirs / "sym"
    assert json.loads((sym / "sampling.json").read_text())["symmetrize"] == 0.1
    rows = list(csv.DictReader((sym / "summary.csv").open()))
    decoded = [r for r in rows if r["decoded"] == "True"]
    assert decoded, "the embedded model decodes some of 6 samples"
    # the same seed: the unsymmetrised cells are the plain run's samples
    raw = read_structures(sym / "unsymmetrized").structures
    same = [s for s in read_structures(plain).structures if s is not None]
    assert len(raw) == len(same) and all(np.allclose(a.lattice.matrix, b.lattice.matrix, atol=1e-5)
                                         for a, b in zip(raw, same))
    refined = [s for s in read_structures(sym).structures if s is not None]
    for row, before, after in zip(decoded, raw, refined):
        if row["symmetrized"] == "True":
            group = space_group_number(before, 0.1)
            assert space_group_number(after, 1e-3) == group == int(row["space_group"])
            assert len(after) <= len(before)


def test_bad_tolerance_is_a_usage_error(tmp_path, capsys):
    assert main(["sample", "-n", "2", "--out", str(tmp_path), "--symmetrize", "0"]) == 2
    assert "tolerance must be > 0" in capsys.readouterr().err
