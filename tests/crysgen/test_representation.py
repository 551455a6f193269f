"""CrystalEncoder / MatrixScaler: layout, exact round trips, canonical order, skipping, decoding rules, CIF."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pymatgen")
from pymatgen.core import Lattice, Structure  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

from crysgen.representation import MAX_Z, CrystalEncoder, MatrixScaler, write_cifs  # noqa: E402


def built_structures() -> list:
    ase_build = pytest.importorskip("ase.build")
    from pymatgen.io.ase import AseAtomsAdaptor

    adaptor = AseAtomsAdaptor()
    out = [
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.59, 2.96), ["Ti", "O"],
                                  [[0, 0, 0], [0.305, 0.305, 0]]),
        Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"],
                                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]),
        Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.25, 5.21), ["Zn", "O"],
                                  [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]]),
        adaptor.get_structure(ase_build.bulk("Cu", "fcc", a=3.6)),
        adaptor.get_structure(ase_build.bulk("Si", "diamond", a=5.43)),
        adaptor.get_structure(ase_build.bulk("MgO", "rocksalt", a=4.21, cubic=True)),
    ]
    rng = np.random.default_rng(0)  # a triclinic cell with arbitrary positions, including negative coords
    out.append(Structure(Lattice.from_parameters(4.1, 5.3, 6.2, 81.0, 97.0, 105.0), ["Li", "Fe", "P", "O"],
                         rng.uniform(-0.5, 1.5, size=(4, 3))))
    return out


def assert_same_structure(original, decoded, tol: float = 1e-5) -> None:
    """Species exactly, lattice parameters and (periodic) fractional coordinates to ``tol``, any site order."""
    assert len(original) == len(decoded)
    np.testing.assert_allclose(decoded.lattice.parameters, original.lattice.parameters, atol=tol)
    z_a = np.array([s.specie.Z for s in original])
    z_b = np.array([s.specie.Z for s in decoded])
    diff = original.frac_coords[:, None, :] - decoded.frac_coords[None, :, :]
    cost = np.abs(diff - np.round(diff)).max(axis=2) + 1e3 * (z_a[:, None] != z_b[None, :])
    rows, cols = linear_sum_assignment(cost)
    assert cost[rows, cols].max() < tol


def test_layout_of_one_matrix():
    encoder = CrystalEncoder(n_elements=3, max_sites=4)
    nacl = Structure(Lattice.cubic(5.0), ["Cl", "Na"], [[0.5, 0.5, 0.5], [0, 0, 0]])
    m = encoder.encode(nacl)
    assert m.shape == (MAX_Z + 2 + 8, 3) == encoder.shape
    # E: slot 0 = Na (Z=11), slot 1 = Cl (Z=17), slot 2 unused
    assert m[10, 0] == 1 and m[16, 1] == 1 and m[:MAX_Z].sum() == 2
    np.testing.assert_allclose(m[MAX_Z], [5, 5, 5])
    np.testing.assert_allclose(m[MAX_Z + 1], [90, 90, 90])
    # C/O: sites sorted by slot, Na first
    np.testing.assert_allclose(m[MAX_Z + 2:MAX_Z + 4], [[0, 0, 0], [0.5, 0.5, 0.5]])
    np.testing.assert_array_equal(m[MAX_Z + 6:], [[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]])
    assert not m[MAX_Z + 4:MAX_Z + 6].any()


@pytest.mark.parametrize("n_elements,width", [(1, 3), (2, 3), (5, 5)])
def test_width_and_padding_for_other_element_counts(n_elements, width):
    encoder = CrystalEncoder(n_elements=n_elements, max_sites=2)
    assert encoder.width == width
    s = Structure(Lattice.cubic(3.0), ["Cu"], [[0.1, 0.2, 0.3]])
    m = encoder.encode(s)
    mask = encoder.padding_mask()
    assert not m[mask].any()  # padding stays zero
    assert mask[:MAX_Z].sum() == MAX_Z * (width - n_elements)
    assert mask[MAX_Z:MAX_Z + 4].sum() == 4 * (width - 3)  # L and C rows
    assert_same_structure(s, encoder.decode(m), tol=1e-12)


def test_round_trip_of_built_structures_with_scaling():
    structures = built_structures()
    encoder = CrystalEncoder(n_elements=4, max_sites=8)
    encoded = encoder.encode_many(structures)
    assert encoded.skipped == [] and encoded.indices == list(range(len(structures)))
    scaler = MatrixScaler().fit(encoded.matrices, encoder.padding_mask())
    scaled = scaler.transform(encoded.matrices)
    assert scaled.min() == pytest.approx(-1) and scaled.max() == pytest.approx(1)
    decoded = encoder.decode_many(scaler.inverse_transform(scaled), errors="raise")
    for original, back in zip(structures, decoded):
        assert_same_structure(original, back)
        assert back.composition == original.composition


def test_log_cos_lattice_rows_round_trip_with_scaling():
    """lattice="log-cos": the L rows hold ln(a, b, c) and cos(alpha, beta, gamma); scaled and back, every built
    structure decodes to itself, and the other blocks are those of the paper's layout."""
    structures = built_structures()
    plain, logcos = CrystalEncoder(n_elements=4, max_sites=8), CrystalEncoder(n_elements=4, max_sites=8,
                                                                               lattice="log-cos")
    for structure in structures:
        a, b = plain.encode(structure), logcos.encode(structure)
        rows = plain.lattice_row
        np.testing.assert_allclose(b[rows, :3], np.log(structure.lattice.abc), atol=1e-12)
        np.testing.assert_allclose(b[rows + 1, :3], np.cos(np.radians(structure.lattice.angles)), atol=1e-12)
        other = np.ones(plain.rows, dtype=bool)
        other[rows:rows + 2] = False
        np.testing.assert_array_equal(a[other], b[other])
    encoded = logcos.encode_many(structures)
    scaler = MatrixScaler().fit(encoded.matrices, logcos.padding_mask())
    decoded = logcos.decode_many(scaler.inverse_transform(scaler.transform(encoded.matrices)), errors="raise")
    for original, back in zip(structures, decoded):
        assert_same_structure(original, back, tol=1e-8)
    # |cos| > 1 cannot be an angle: clipped to 0 or 180 degrees, which is no cell
    broken = encoded.matrices[0].copy()
    broken[logcos.lattice_row + 1, 0] = 1.5
    with pytest.raises(ValueError, match="no valid cell"):
        logcos.decode(broken)
    with pytest.raises(ValueError, match="lattice"):
        CrystalEncoder(lattice="matrix")


def test_encoding_is_canonical_under_site_permutation():
    structure = built_structures()[2]  # SrTiO3
    encoder = CrystalEncoder(n_elements=3, max_sites=5)
    reference = encoder.encode(structure)
    rng = np.random.default_rng(1)
    for _ in range(5):
        order = rng.permutation(len(structure))
        shuffled = Structure(structure.lattice, [structure[i].specie for i in order],
                             structure.frac_coords[order] + rng.integers(-2, 3, size=(len(order), 3)))
        np.testing.assert_allclose(encoder.encode(shuffled), reference, atol=1e-12)


def test_origin_at_site_encodes_every_translation_alike_and_round_trips():
    """origin="site": the anchor (first site of the rarest element) is at 0, a translated or permuted copy of the
    crystal encodes to the same matrix, and decoding gives back the crystal up to that translation."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    rng = np.random.default_rng(3)
    structure = Structure(Lattice.from_parameters(4.1, 5.3, 6.2, 81.0, 97.0, 105.0), ["Li", "Fe", "O", "O", "Fe"],
                          rng.uniform(0, 1, size=(5, 3)))  # Li is the only element with one site: the anchor
    encoder = CrystalEncoder(n_elements=3, max_sites=6, origin="site")
    reference = encoder.encode(structure)
    np.testing.assert_array_equal(reference[encoder.coord_row], 0.0)  # Li (slot 0, lowest Z) at the origin
    for _ in range(5):
        order = rng.permutation(len(structure))
        moved = Structure(structure.lattice, [structure[i].specie for i in order],
                          structure.frac_coords[order] + rng.uniform(-3, 3, size=3))
        np.testing.assert_allclose(encoder.encode(moved), reference, atol=1e-9)
    back = encoder.decode(reference)
    assert StructureMatcher(primitive_cell=False, scale=False).fit(structure, back)
    shifted = structure.copy()
    shifted.translate_sites(range(len(shifted)), -structure.frac_coords[0])
    assert_same_structure(shifted, back, tol=1e-9)
    # the rarest element decides even when it is not the lowest Z: Fe2 O2 Mg -> Mg anchors
    mgo = Structure(Lattice.cubic(5.0), ["O", "O", "Mg", "Fe", "Fe"], rng.uniform(0, 1, size=(5, 3)))
    m = encoder.encode(mgo)
    mg_row = encoder.coord_row + 2  # slots O, Mg, Fe: Mg's one site follows O's two
    np.testing.assert_array_equal(m[mg_row], 0.0)
    assert m[encoder.occ_row + 2, 1] == 1
    with pytest.raises(ValueError, match="origin"):
        CrystalEncoder(origin="centre")


def test_permute_sites_reorders_coordinate_and_occupancy_rows_together():
    torch = pytest.importorskip("torch")
    structures = built_structures()
    encoder = CrystalEncoder(n_elements=4, max_sites=8)
    x = torch.as_tensor(encoder.encode_many(structures).matrices)
    generator = torch.Generator().manual_seed(0)
    permuted = encoder.permute_sites(x, generator)
    rows = slice(0, encoder.coord_row)
    torch.testing.assert_close(permuted[:, rows], x[:, rows], rtol=0, atol=0)  # E and L blocks untouched
    assert not torch.equal(permuted, x)
    sites = encoder.max_sites
    for i, original in enumerate(structures):
        # each (coordinates, occupancy) row pair is kept whole: the same multiset of sites
        pairs = lambda m: sorted(map(tuple, torch.cat([m[encoder.coord_row:encoder.coord_row + sites],  # noqa: E731
                                                       m[encoder.occ_row:]], dim=1).tolist()))
        assert pairs(permuted[i]) == pairs(x[i])
        assert_same_structure(original, encoder.decode(permuted[i].numpy()))
    again = encoder.permute_sites(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, permuted, rtol=0, atol=0)  # the generator decides the order


def test_encode_many_reports_and_skips_what_does_not_fit():
    encoder = CrystalEncoder(n_elements=2, max_sites=3)
    ok = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    too_many_sites = Structure(Lattice.cubic(8.0), ["Cu"] * 4, np.eye(4, 3) * 0.4)
    too_many_elements = Structure(Lattice.cubic(5.0), ["Sr", "Ti", "O"], np.eye(3) * 0.5)
    heavy = Structure(Lattice.cubic(5.0), ["Am"], [[0, 0, 0]])  # Z = 95
    disordered = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])
    result = encoder.encode_many([ok, too_many_sites, too_many_elements, heavy, disordered])
    assert result.indices == [0] and result.matrices.shape == (1, *encoder.shape)
    assert [index for index, _ in result.skipped] == [1, 2, 3, 4]
    assert result.skip_counts == {"too many sites": 1, "too many elements": 1, "Z > 94": 1, "disordered": 1}
    with pytest.raises(ValueError, match="too many sites"):
        encoder.encode(too_many_sites)


def test_decode_thresholds_wrapping_and_errors():
    encoder = CrystalEncoder(n_elements=3, max_sites=3)
    m = encoder.encode(Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    noisy = m.copy()
    noisy[:MAX_Z, 0] += 0.2  # argmax still Na
    noisy[MAX_Z + 2] = [1.25, -0.25, 0.5]  # coords outside the cell are wrapped
    noisy[MAX_Z + 2 + 3 + 2] = [0.1, 0.45, 0.2]  # third site below threshold: dropped
    noisy[MAX_Z + 2 + 3 + 1] = [0.0, 0.51, 0.3]  # second site: just above threshold, slot 1
    s = encoder.decode(noisy)
    assert [site.specie.symbol for site in s] == ["Na", "Cl"]
    np.testing.assert_allclose(s.frac_coords[0], [0.25, 0.75, 0.5])
    bad_lattice = m.copy()
    bad_lattice[MAX_Z, 0] = -1.0
    empty = m.copy()
    empty[MAX_Z + 2 + 3:] = 0.0
    with pytest.raises(ValueError, match="lattice"):
        encoder.decode(bad_lattice)
    with pytest.raises(ValueError, match="no occupied site"):
        encoder.decode(empty)
    flat = m.copy()  # angles 120/120/120 on equal lengths: a cell of zero thickness (volume ~1e-15 A^3)
    flat[MAX_Z + 1, :3] = 120.0
    with pytest.raises(ValueError, match="flat cell"):
        encoder.decode(flat)
    nearly_flat = m.copy()  # thin but real: decoded, and its CIF reads back
    nearly_flat[MAX_Z + 1, :3] = 119.0
    from crysgen.io import parse_cif_text
    from crysgen.representation import structure_to_cif

    assert parse_cif_text(structure_to_cif(encoder.decode(nearly_flat))).num_sites == 2
    out = encoder.decode_many(np.stack([m, bad_lattice, empty, flat]))
    assert out[0] is not None and out[1] is None and out[2] is None and out[3] is None
    with pytest.raises(ValueError, match="shape"):
        encoder.decode_many(np.zeros((2, 5, 3)))


def test_scaler_state_torch_and_degenerate_rows():
    torch = pytest.importorskip("torch")
    encoder = CrystalEncoder(n_elements=4, max_sites=8)
    train = encoder.encode_many(built_structures()).matrices
    scaler = MatrixScaler().fit(train, encoder.padding_mask())
    # a never-seen element row has no spread: one-hot 0 maps to -1 and 1 maps to +1
    assert scaler.row_min[0] == 0 and scaler.row_max[0] == 1  # hydrogen never occurs
    restored = MatrixScaler.from_state_dict(json.loads(json.dumps(scaler.state_dict())))
    np.testing.assert_array_equal(restored.transform(train), scaler.transform(train))
    as_tensor = restored.transform(torch.tensor(train, dtype=torch.float64))
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.float64
    np.testing.assert_allclose(as_tensor.numpy(), scaler.transform(train), atol=1e-12)
    np.testing.assert_allclose(restored.inverse_transform(as_tensor).numpy(), train, atol=1e-10)
    # lattice-length row: min/max over the training a, b, c values (padding column excluded)
    assert scaler.row_min[MAX_Z] == train[:, MAX_Z, :3].min()
    assert scaler.row_max[MAX_Z] == train[:, MAX_Z, :3].max()
    # not refitted on new data: a longer cell maps above +1
    bigger = train[:1].copy()
    bigger[0, MAX_Z, :3] = 2 * train[:, MAX_Z, :3].max()
    assert scaler.transform(bigger)[0, MAX_Z, 0] > 1
    with pytest.raises(ValueError, match="not fitted"):
        MatrixScaler().transform(train)
    with pytest.raises(ValueError, match="shape"):
        scaler.transform(np.zeros((1, 3, 3)))


def test_write_cifs_round_trip(tmp_path):
    structures = built_structures()[:3]
    paths = write_cifs([structures[0], None, structures[2]], tmp_path)
    assert [p.name for p in paths] == ["sample_00000.cif", "sample_00002.cif"]
    back = Structure.from_file(paths[1])
    assert back.matches(structures[2])
    assert_same_structure(structures[2], back, tol=1e-5)


@pytest.mark.data
def test_round_trip_every_perov5_val_structure(reference_data, request):
    from crysgen.data import load_cdvae_csv

    cache = request.config.cache.mkdir("crysgen_parsed")
    dataset = load_cdvae_csv(reference_data / "crystals" / "perov_5" / "val.csv", workers=2, cache_dir=cache)
    assert len(dataset) == 3787 and dataset.errors == []
    encoder = CrystalEncoder(n_elements=5, max_sites=5)  # perov-5 has up to 5 elements in 5 sites
    encoded = encoder.encode_many(dataset.structures)
    assert encoded.skipped == []
    scaler = MatrixScaler().fit(encoded.matrices, encoder.padding_mask())
    decoded = encoder.decode_many(scaler.inverse_transform(scaler.transform(encoded.matrices)), errors="raise")
    for original, back in zip(dataset.structures, decoded):
        assert_same_structure(original, back)
