"""CDVAE generation metrics on hand-made crystals with known answers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("pymatgen")
pytest.importorskip("smact")
from pymatgen.core import Composition, Lattice, Structure  # noqa: E402

from crysgen.evaluation import (  # noqa: E402
    CrystalBatch,
    comp_stats,
    composition_validity,
    coverage,
    evaluate_crystals,
    make_evaluators,
    standardize,
    structure_validity,
)
from shared.evaluation import run_evaluators  # noqa: E402


def rocksalt(a: float = 5.64, cation: str = "Na", anion: str = "Cl") -> Structure:
    """Primitive two-atom rock-salt cell (Fm-3m, 225) of conventional lattice constant ``a``."""
    lattice = Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    return Structure(lattice, [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def perovskite(a: float = 3.9, a_site: str = "Sr", b_site: str = "Ti") -> Structure:
    return Structure(Lattice.cubic(a), [a_site, b_site, "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def test_structure_validity_distance_and_volume():
    assert structure_validity(rocksalt())
    close_pair = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.06, 0, 0]])  # 0.3 A apart
    assert not structure_validity(close_pair)
    # the minimum image counts: 0.97 and 0.0 are 0.15 A apart across the boundary
    assert not structure_validity(Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0.97, 0, 0], [0, 0, 0]]))
    assert not structure_validity(Structure(Lattice.cubic(0.4), ["Cu"], [[0, 0, 0]]))  # volume 0.064 A^3
    assert structure_validity(Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]]))
    assert not structure_validity(None)


@pytest.mark.parametrize("formula,expected", [
    ("NaCl", True), ("SrTiO3", True), ("Na2O", True), ("Fe2O3", True),
    ("NaCl2", False),  # Na+ cannot balance 2 Cl-
    ("Cu", True), ("CuZn", True),  # single element and all-metal alloys count valid
    ("NaO3", False), ("CO2", True), ("LiF4", False),
])
def test_composition_validity_known_cases(formula, expected):
    assert composition_validity(Composition(formula)) is expected


def test_composition_validity_agrees_with_smacts_own_smact14_screen():
    from smact.screening import smact_validity

    formulas = ["NaCl", "NaCl2", "SrTiO3", "BaTiN3", "KMgF3", "LaAlO3", "CsPbI3", "YCrON2", "FeS2", "AlN",
                "TiO", "MgAl2O4", "Ca3N2", "SrNbO2N", "LiFePO4", "NaCl3", "CuCdN3"]
    for formula in formulas:
        expected = smact_validity(Composition(formula), oxidation_states_set="smact14")
        assert composition_validity(Composition(formula)) == expected, formula


def test_coverage_on_known_fingerprints():
    rng = np.random.default_rng(0)
    ref_s, ref_c = rng.uniform(size=(6, 4)), rng.normal(size=(6, 3))
    same = coverage(ref_s, ref_c, ref_s, ref_c, 0.2, 4.0)
    assert same["cov_recall"] == 1 and same["cov_precision"] == 1 and same["amsd_recall"] == 0
    # shifting half the generated set far away: precision 1/2, recall drops to the covered half
    gen_s = ref_s.copy()
    gen_s[3:] += 10
    shifted = coverage(gen_s, ref_c, ref_s, ref_c, 0.2, 4.0)
    assert shifted["cov_precision"] == 0.5
    assert shifted["cov_recall"] == pytest.approx(np.mean(
        np.min(np.linalg.norm(ref_s[:, None] - gen_s[None], axis=2), axis=1) <= 0.2))
    # precision divides by all generated crystals, also invalid ones not passed in
    assert coverage(ref_s, ref_c, ref_s, ref_c, 0.2, 4.0, n_generated=12)["cov_precision"] == 0.5
    # composition distance counts too
    assert coverage(ref_s, ref_c + 5, ref_s, ref_c, 0.2, 4.0)["cov_recall"] == 0


def test_standardize_matches_cdvae_scaler_rules():
    ref = np.array([[1.0, 2.0, np.nan], [3.0, 2.0, np.nan]])
    out = standardize(np.array([[2.0, 5.0, 1.0], [np.nan, 2.0, 1.0]]), *comp_stats(ref))
    # column 0: mean 2, std 1; column 1: zero std -> 1; column 2: all NaN -> mean 0, std 1; NaN -> 0
    np.testing.assert_allclose(out, [[0.0, 3.0, 1.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def reference_set():
    return [perovskite(3.9), perovskite(4.0, "Ba", "Ti"), rocksalt(5.64), rocksalt(4.21, "Mg", "O")]


def test_evaluators_identical_and_shifted_sets(reference_set):
    evaluators = make_evaluators(seed=0)
    context = {"reference": CrystalBatch(reference_set), "train": reference_set[:2], "dataset": "perov_5"}
    same = run_evaluators(evaluators, CrystalBatch(list(reference_set)), context).metrics
    assert same["valid"] == same["comp_valid"] == same["struct_valid"] == 1
    assert same["cov_recall"] == 1 and same["cov_precision"] == 1
    assert same["wdist_density"] == 0 and same["wdist_num_elems"] == 0
    assert same["unique"] == 1 and same["novel"] == 0.5  # the two rock salts are not in train
    assert same["sg_frac_p1"] == 0 and same["sg_n_unique"] == 2 and same["sg_tv_distance"] == 0

    # generated: the same crystals strained by 40 % plus one invalid (0.3 A pair) and one undecodable (None)
    strained = [Structure(s.lattice.matrix * 1.4, s.species, s.frac_coords) for s in reference_set]
    bad = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.06, 0, 0]])
    generated = CrystalBatch(strained + [bad, None])
    shifted = run_evaluators(evaluators, generated, context).metrics
    assert shifted["valid"] == pytest.approx(4 / 6) and shifted["struct_valid"] == pytest.approx(4 / 6)
    assert shifted["wdist_density"] > 0.5
    assert shifted["cov_precision"] <= 4 / 6  # invalid crystals are in the denominator
    assert shifted["amsd_recall"] >= same["amsd_recall"]
    assert shifted["unique"] == 1 and shifted["novel"] == 0.5  # StructureMatcher scales volumes


def test_duplicates_lower_uniqueness_and_skips_are_reported(reference_set):
    generated = [perovskite(), perovskite(3.9001), rocksalt()]
    report = run_evaluators(make_evaluators(), CrystalBatch(generated), {})
    assert report.metrics["unique"] == pytest.approx(2 / 3)
    assert set(report.skipped) == {"crystal_coverage", "crystal_property_wdist", "crystal_novelty"}


def test_module_level_evaluators_read_their_options_from_the_context(reference_set):
    from crysgen.metrics import OPTION_DEFAULTS, default_evaluators
    from crysgen.metrics import evaluators as module
    from shared.evaluation import Evaluator

    evaluators = default_evaluators()
    assert all(isinstance(ev, Evaluator) for ev in evaluators)
    assert all(getattr(module, ev.__name__) is ev for ev in evaluators)  # module-level, not closures
    assert [ev.name for ev in evaluators] == [ev.name for ev in make_evaluators()]
    assert len({ev.name for ev in evaluators}) == len(evaluators)
    assert {ev.name: ev.requires for ev in evaluators} == {
        "crystal_validity": frozenset(), "crystal_coverage": frozenset({"reference"}),
        "crystal_property_wdist": frozenset({"reference"}), "crystal_uniqueness": frozenset(),
        "crystal_novelty": frozenset({"train"}), "crystal_space_groups": frozenset()}
    assert make_evaluators()[1].requires == {"reference", "dataset"}
    assert make_evaluators(cov_cutoffs=(0.2, 4.0))[1].requires == {"reference"}

    strained = [Structure(s.lattice.matrix * 1.1, s.species, s.frac_coords) for s in reference_set]
    bad = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.06, 0, 0]])
    generated = CrystalBatch(strained + reference_set[:2] + [bad, None])
    reference = CrystalBatch(reference_set)
    wide = (np.zeros(132), np.full(132, 1e3))
    cases = [
        ({}, {"reference": reference, "train": reference_set[:2], "dataset": "perov_5"}),
        ({"n_samples": 3, "seed": 5, "matcher_kwargs": {"ltol": 0.1}},
         {"reference": reference, "train": reference_set[2:], "dataset": "carbon"}),
        ({"cov_cutoffs": (0.3, 5.0), "comp_scaler": wide}, {"reference": reference}),
        ({"seed": 1}, {}),
    ]
    for options, data in cases:
        bound = run_evaluators(make_evaluators(**options), generated, data)
        stats: dict = {}
        read = run_evaluators(default_evaluators(), generated, {**data, **options, "match_stats": stats})
        assert read.metrics == pytest.approx(bound.metrics, rel=0, abs=0, nan_ok=True), options
        assert set(read.skipped) == set(bound.skipped), options
        assert bool(stats) == ("train" in data)
    assert set(OPTION_DEFAULTS) == {"n_samples", "seed", "cov_cutoffs", "comp_scaler", "matcher_kwargs", "executor",
                                    "progress", "match_stats"}
    # coverage needs cut-offs: from the context, else from the dataset; with neither it is skipped, saying so
    no_cutoffs = run_evaluators(default_evaluators(), generated, {"reference": reference})
    assert no_cutoffs.skipped["crystal_coverage"] == "missing context: dataset"
    assert no_cutoffs.skipped == run_evaluators(make_evaluators(), generated, {"reference": reference}).skipped


def test_wasserstein_subsampling_is_seeded(reference_set):
    generated = CrystalBatch([rocksalt(a) for a in np.linspace(4.0, 6.0, 9)])
    context = {"reference": reference_set}
    runs = [run_evaluators(make_evaluators(n_samples=4, seed=s), generated, context).metrics["wdist_density"]
            for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]


def test_evaluate_crystals_with_executor_records_protocol(reference_set):
    with ThreadPoolExecutor(2) as pool:
        out = evaluate_crystals(reference_set, reference=reference_set, dataset="perovskite", executor=pool)
    assert out["metrics"]["cov_recall"] == 1 and out["skipped"] == {"crystal_novelty": "missing context: train"}
    assert out["protocol"]["oxidation_states_set"] == "smact14"
    assert out["protocol"]["cov_cutoffs"] == [0.2, 4.0]
    # a given composition scaler replaces the reference statistics: a huge std makes compositions "close"
    batch = CrystalBatch(reference_set)
    ref_comp = batch.fingerprints()[1]
    wide = (np.zeros(ref_comp.shape[1]), np.full(ref_comp.shape[1], 1e6))
    shifted = [Structure(s.lattice, ["Ca" if e.symbol in ("Sr", "Ba", "Na", "Mg") else e for e in s.species],
                         s.frac_coords) for s in reference_set]
    narrow_run = run_evaluators(make_evaluators(cov_cutoffs=(0.2, 4.0)), CrystalBatch(shifted),
                                {"reference": batch}).metrics
    wide_run = run_evaluators(make_evaluators(cov_cutoffs=(0.2, 4.0), comp_scaler=wide), CrystalBatch(shifted),
                              {"reference": batch}).metrics
    assert wide_run["amcd_recall"] < 1e-3 < narrow_run["amcd_recall"]
    # a dataset that is no CDVAE benchmark: coverage is skipped and says why, unless cut-offs are given
    unknown = evaluate_crystals(reference_set, reference=reference_set, dataset="my_carbon")
    assert "no COV cut-offs for dataset 'my_carbon'" in unknown["skipped"]["crystal_coverage"]
    assert "cov_recall" not in unknown["metrics"] and unknown["protocol"]["cov_cutoffs"] is None
    given = evaluate_crystals(reference_set, reference=reference_set, dataset="my_carbon", cov_cutoffs=(0.3, 5.0))
    assert given["metrics"]["cov_recall"] == 1 and given["protocol"]["cov_cutoffs"] == [0.3, 5.0]


def test_disk_cache_round_trips_and_is_keyed_by_content(reference_set, tmp_path):
    fresh = CrystalBatch(reference_set + [None], cache_dir=tmp_path)
    struct, comp, ok = fresh.fingerprints()
    checks = (fresh.struct_valid, fresh.comp_valid, fresh.space_groups())
    files = sorted(tmp_path.glob("crystal-*.json"))
    assert len(files) == 3  # fingerprints, checks, space groups

    cached = CrystalBatch(list(reference_set) + [None], cache_dir=tmp_path)
    cached._map = _forbid_recompute(cached._map)  # must be served from disk
    struct2, comp2, ok2 = cached.fingerprints()
    np.testing.assert_array_equal(ok2, ok)
    np.testing.assert_allclose(struct2, struct, equal_nan=True)
    np.testing.assert_allclose(comp2, comp, equal_nan=True)
    for a, b in zip(checks, (cached.struct_valid, cached.comp_valid, cached.space_groups())):
        np.testing.assert_array_equal(a, b)

    # other structures -> other key; a corrupt file is recomputed, not trusted
    moved = [Structure(s.lattice.matrix * 1.01, s.species, s.frac_coords) for s in reference_set]
    CrystalBatch(moved, cache_dir=tmp_path).space_groups()
    assert len(list(tmp_path.glob("crystal-*.json"))) == 4
    for f in files:
        f.write_text("{truncated")
    again = CrystalBatch(list(reference_set) + [None], cache_dir=tmp_path)
    np.testing.assert_array_equal(again.struct_valid, checks[0])


def _forbid_recompute(original):
    def guarded(name, fn):
        def fail(_):
            raise AssertionError(f"{name} recomputed although it is cached on disk")

        return original(name, fail)

    return guarded


def test_space_group_distributions_and_p1_fractions():
    from crysgen.testing import diamond, graphite, lonsdaleite, random_carbon

    p1 = random_carbon(8, np.random.default_rng(0))
    generated = [diamond(), diamond().get_primitive_structure(), graphite(), p1]
    reference = [diamond(3.6), graphite(), lonsdaleite(), lonsdaleite(2.5)]
    out = evaluate_crystals(generated, reference=reference, train=reference, dataset="carbon_24")
    metrics = out["metrics"]
    assert metrics["sg_frac_p1"] == 0.25 and metrics["sg_frac_p1_reference"] == 0.0
    assert metrics["sg_n_unique"] == 3
    groups = out["space_groups"]
    assert groups["symprec"] == 0.1
    assert groups["generated"][0] == {"number": 227, "symbol": "Fd-3m", "count": 2, "fraction": 0.5}
    assert {g["symbol"] for g in groups["generated"]} == {"Fd-3m", "P6_3/mmc", "P1"}
    assert groups["reference"] == [{"number": 194, "symbol": "P6_3/mmc", "count": 3, "fraction": 0.75},
                                   {"number": 227, "symbol": "Fd-3m", "count": 1, "fraction": 0.25}]
    # TV distance: generated {227: .5, 194: .25, 1: .25} vs reference {194: .75, 227: .25}
    assert metrics["sg_tv_distance"] == pytest.approx(0.5)
    # novelty: the two diamonds match diamond(3.6) (volumes are scaled), graphite matches, the P1 cell is new
    assert metrics["novel"] == 0.25
    assert out["protocol"]["novelty_matching"]["pairs"] == 16


def test_progress_bars_while_computing_not_when_cached(reference_set, tmp_path, capsys):
    batch = CrystalBatch(reference_set, cache_dir=tmp_path, progress=True, label="reference")
    batch.fingerprints()
    err = capsys.readouterr().err
    assert "reference fingerprints" in err and "4/4" in err
    CrystalBatch(reference_set, cache_dir=tmp_path, progress=True, label="reference").fingerprints()
    assert capsys.readouterr().err == ""  # read from the cache: nothing to wait for
    CrystalBatch(reference_set, progress=False).fingerprints()
    assert capsys.readouterr().err == ""


def test_no_valid_generated_crystal_gives_zero_coverage_not_an_error(reference_set):
    too_close = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.06, 0, 0]])
    out = evaluate_crystals([None, too_close], reference=reference_set, dataset="perov_5")
    assert out["metrics"]["valid"] == 0
    assert out["metrics"]["cov_recall"] == 0 and out["metrics"]["cov_precision"] == 0


def test_an_interrupted_quantity_resumes_from_its_last_finished_block(tmp_path):
    from crysgen.testing import carbon_set

    structures = carbon_set(10, seed=0)
    calls = []

    def n_sites(structure):  # stands in for the fingerprints; Ctrl-C arrives at the 7th crystal
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return len(structure)

    batch = CrystalBatch(structures, cache_dir=tmp_path)
    batch.block_size = 4
    with pytest.raises(KeyboardInterrupt):
        batch._map("n_sites", n_sites)
    assert [p.name.split(".")[-2] for p in tmp_path.iterdir()] == ["part-0-4"]  # one finished block kept

    calls.clear()
    again = CrystalBatch(structures, cache_dir=tmp_path)
    again.block_size = 4
    assert again._map("n_sites", n_sites) == [len(s) for s in structures]
    assert len(calls) == 6  # crystals 5-10: the finished block was not computed again
    assert [p.suffix for p in tmp_path.iterdir()] == [".json"] and "part" not in next(tmp_path.iterdir()).name
    calls.clear()
    assert CrystalBatch(structures, cache_dir=tmp_path)._map("n_sites", n_sites) == [len(s) for s in structures]
    assert not calls  # the whole quantity now comes from its file


def test_fingerprints_with_one_tessellation_per_crystal_are_matminers():
    """crysgen's all-sites tessellation path gives matminer's site-by-site CrystalNN ops fingerprints to the last
    bits (differences of ~1e-17 from the order of float operations in high-symmetry cells, 0 in P1 cells):
    random P1 carbon cells, perturbed polymorph supercells, hand-made ionic crystals; a crystal with sites
    outside the unit cell and a one-site cell take the site-by-site path and agree too."""
    pytest.importorskip("matminer")
    from pymatgen.core import local_env

    from crysgen.evaluation import site_fingerprints
    from crysgen.testing import carbon_set

    structures = carbon_set(12, seed=3) + [rocksalt(), perovskite(), perovskite(4.1, "Ba", "Zr")]
    outside = perovskite()
    outside.translate_sites([0, 2], [1.0, -1.0, 0.0], frac_coords=True, to_unit_cell=False)
    one_site = Structure(Lattice.cubic(2.9), ["Fe"], [[0.1, 0.2, 0.3]])
    calls = []
    original = local_env.VoronoiNN.get_all_nn_info

    def counting(self, structure):
        calls.append(len(structure))
        return original(self, structure)

    local_env.VoronoiNN.get_all_nn_info = counting
    try:
        for structure in [*structures, outside, one_site]:
            fast = site_fingerprints(structure)
            slow = site_fingerprints(structure, tessellate_once=False)
            np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-14, err_msg=str(structure.composition))
    finally:
        local_env.VoronoiNN.get_all_nn_info = original
    assert local_env.VoronoiNN.__name__ == "VoronoiNN"  # the swap is undone
    assert calls == [len(s) for s in structures]  # one tessellation per crystal; none for the last two
    with ThreadPoolExecutor(4) as pool:  # threads take turns with the swap and leave the class as it was
        threaded = list(pool.map(site_fingerprints, structures[:6]))
    assert local_env.VoronoiNN.__name__ == "VoronoiNN"
    for structure, fps in zip(structures, threaded):
        np.testing.assert_allclose(fps, site_fingerprints(structure, tessellate_once=False), rtol=0, atol=1e-14)
