"""The StructureMatcher pre-filters are exact: on a small set, novelty and uniqueness equal the brute-force
answers of pymatgen's matcher, for its default settings and others, and every pair the matcher accepts passes
the filters."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

pytest.importorskip("pymatgen")
from pymatgen.analysis.structure_matcher import StructureMatcher  # noqa: E402
from pymatgen.core import Lattice, Structure  # noqa: E402

from crysgen.matching import (  # noqa: E402
    MatchFilter,
    gram_factor_bounds,
    group_structures,
    novel_flags,
    reduce_structures,
    successive_minima,
)
from crysgen.testing import carbon_set, perturbed, random_carbon  # noqa: E402


def test_successive_minima_do_not_depend_on_the_basis():
    np.testing.assert_allclose(successive_minima(np.eye(3) * 3.0), [3.0, 3.0, 3.0])
    a = 3.567
    fcc = np.array([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    np.testing.assert_allclose(successive_minima(fcc), [a / 2 ** 0.5] * 3)
    skewed = np.array([[1, 0, 0], [3, 1, 0], [-2, 5, 1]]) @ fcc  # same lattice, long basis vectors
    np.testing.assert_allclose(successive_minima(skewed), [a / 2 ** 0.5] * 3)
    # an elongated cell: minima are the sorted lengths
    np.testing.assert_allclose(successive_minima(np.diag([2.0, 7.0, 4.0])), [2.0, 4.0, 7.0])


@pytest.mark.parametrize("angles", [(90, 90, 90), (60, 60, 60), (90, 90, 120), (104, 77, 63), (3, 90, 90)])
def test_gram_factor_bounds_contain_the_box_and_are_tight(angles):
    low, high = gram_factor_bounds(angles, 5.0)
    grid = [np.radians(np.clip(np.linspace(a - 5, a + 5, 41), 0, 180)) for a in angles]
    x, y, z = (np.cos(g) for g in np.meshgrid(*grid, indexing="ij"))
    values = 1 - x ** 2 - y ** 2 - z ** 2 + 2 * x * y * z
    assert low <= values.min() + 1e-12 and values.max() <= high + 1e-12
    assert values.min() - low < 1e-9  # the minimum is a corner, on the grid
    if min(angles) > 5:
        assert high - values.max() < 1e-3  # the maximum is found to within the grid spacing
    else:  # an angle that may reach 0: the stationary points degenerate, the bound falls back to G <= 1
        assert high == 1.0


def _scaled(structure, factor: float):
    return Structure(structure.lattice.matrix * factor, structure.species, structure.frac_coords)


def _sets():
    """Generated and training crystals with known answers of every kind: near copies, the same polymorph
    supercells perturbed otherwise, random cells of the same site counts (same key, different shape), copies
    10 % and 30 % larger (match only with scale=True), another composition, exact duplicates."""
    rng = np.random.default_rng(7)
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    perovskite = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                           [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    train = carbon_set(12, seed=1) + [random_carbon(n, rng) for n in (6, 6, 8, 8, 12, 12)] + [rocksalt, perovskite]
    generated = [perturbed(train[i], rng, 0.02, 0.02) for i in (0, 3, 7, 12, 15)]  # near copies
    generated += [_scaled(train[13], 1.1), _scaled(train[16], 1.3)]
    generated += carbon_set(4, seed=5)  # the same polymorph supercells, perturbed otherwise
    generated += [random_carbon(n, rng) for n in (6, 8, 8, 12)]
    generated += [_scaled(rocksalt, 1.3)]
    generated += [generated[0].copy(), generated[8].copy()]  # exact duplicates for uniqueness
    return generated, train


MATCHERS = {
    "pymatgen defaults": {},
    "DiffCSP": {"ltol": 0.3, "stol": 0.5, "angle_tol": 10},
    "no volume scaling": {"scale": False},
    "supercells (filters off)": {"attempt_supercell": True},
}


@pytest.fixture(scope="module")
def sets():
    return _sets()


@pytest.mark.parametrize("name", list(MATCHERS))
def test_novelty_and_uniqueness_equal_brute_force(sets, name):
    generated, train = sets
    matcher = StructureMatcher(**MATCHERS[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = np.array([[matcher.fit(g, t) for t in train] for g in generated])
        brute_groups = matcher.group_structures(generated)
    stats: dict = {}
    flags = novel_flags(generated, train, matcher, stats=stats)
    assert flags == [not row.any() for row in fits]
    assert 0 < sum(flags) < len(flags), "the set must hold both novel and known crystals"

    # every accepted pair passes the filters; the filters reject most of the others
    flt = MatchFilter(matcher)
    gen_r, train_r = reduce_structures(generated, matcher), reduce_structures(train, matcher)
    same_key = np.array([[flt.key(g) == flt.key(t) for t in train_r] for g in gen_r])
    passes = same_key & np.array([[flt.candidates(g, [t]) == [0] for t in train_r] for g in gen_r])
    assert not (fits & ~passes).any()
    assert stats["pairs"] == fits.size
    assert stats["fit_calls"] <= stats["pairs_after_filters"] <= stats["pairs_same_key"] <= stats["pairs"]
    if flt.site_count:
        assert stats["pairs_same_key"] < 0.5 * stats["pairs"]
        assert stats["pairs_after_filters"] < stats["pairs_same_key"]
        assert passes.sum() < same_key.sum()  # the lattice (and volume) tests reject pairs of the same key

    ours = group_structures(generated, matcher)
    as_indices = sorted(sorted(next(i for i, s in enumerate(generated) if s is member) for member in group)
                        for group in brute_groups)
    assert sorted(sorted(g) for g in ours) == as_indices
    assert len(ours) < len(generated)  # the duplicates are grouped


def test_the_lattice_filter_alone_rejects_pairs_the_matcher_rejects():
    """Same composition and site count, different shape: only the lattice test tells them apart."""
    matcher = StructureMatcher()
    flt = MatchFilter(matcher)
    flat = Structure(Lattice.orthorhombic(2.0, 6.0, 6.0), ["C"], [[0, 0, 0]])
    cube = Structure(Lattice.cubic(4.0), ["C"], [[0, 0, 0]])
    a, b = reduce_structures([cube, flat], matcher)
    assert flt.key(a) == flt.key(b)
    assert flt.candidates(a, [b]) == [] and not matcher.fit(cube, flat)  # cube's minima exceed flat's lengths
    assert flt.candidates(a, [a]) == [0] and matcher.fit(cube, cube)


def test_volume_filter_only_without_scaling():
    cube = Structure(Lattice.cubic(4.0), ["C"], [[0, 0, 0]])
    big = Structure(Lattice.cubic(4.0 * 1.5), ["C"], [[0, 0, 0]])
    scaled, fixed = StructureMatcher(), StructureMatcher(scale=False)
    assert not MatchFilter(scaled).volume and MatchFilter(fixed).volume
    a, b = reduce_structures([big, cube], fixed)
    assert MatchFilter(fixed).candidates(a, [b]) == [] and not fixed.fit(big, cube)
    a, b = reduce_structures([big, cube], scaled)
    assert MatchFilter(scaled).candidates(a, [b]) == [0] and scaled.fit(big, cube)  # scale=True ignores volume


def test_volume_bounds_hold_for_strained_cells():
    """V1 of every cell that a scale=False matcher maps onto the target lies inside the target's bounds."""
    matcher = StructureMatcher(scale=False)
    flt = MatchFilter(matcher)
    target = Structure(Lattice.from_parameters(3.0, 3.4, 3.9, 80, 95, 110), ["C"], [[0, 0, 0]])
    (t,) = reduce_structures([target], matcher)
    arrays = flt.arrays([t])
    for factors, shear in itertools.product([(0.9, 1.05, 1.1), (1.15, 1.15, 1.15), (0.85, 0.85, 0.85)],
                                            [-4.0, 0.0, 4.0]):
        a, b, c, al, be, ga = target.lattice.parameters
        params = (a * factors[0], b * factors[1], c * factors[2], al + shear, be - shear, ga + shear)
        strained = Structure(Lattice.from_parameters(*params), ["C"], [[0, 0, 0]])
        if matcher.fit(strained, target):
            assert arrays["volume_low"][0] <= strained.volume <= arrays["volume_high"][0]
    assert arrays["volume_low"][0] < target.volume < arrays["volume_high"][0]
    assert math.isclose(arrays["volume_high"][0] / target.volume, (1.2 ** 3) *
                        math.sqrt(gram_factor_bounds(target.lattice.angles, 5)[1]) /
                        math.sqrt(gram_factor_bounds(target.lattice.angles, 0)[1]), rel_tol=1e-9)


def test_parallel_novelty_equals_serial(sets):
    from concurrent.futures import ThreadPoolExecutor

    generated, train = sets
    with ThreadPoolExecutor(2) as pool:
        assert novel_flags(generated, train, executor=pool) == novel_flags(generated, train)
