"""Surrogates (trees exported to arrays) and generate-and-screen."""

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")
from rdkit import Chem  # noqa: E402

from molgen.surrogates import (TreeEnsemble, fit_surrogate, load_surrogates, molecule_features,  # noqa: E402
                               save_surrogates)
from tests.molgen.test_generator_training import tiny_model  # noqa: E402, F401  (module fixture)


def test_exported_trees_predict_exactly_as_scikit_learn_with_missing_values():
    sklearn = pytest.importorskip("sklearn.ensemble")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 6))
    x[::7, 2] = np.nan
    y = 2 * x[:, 0] + np.nan_to_num(x[:, 2]) + np.sin(3 * x[:, 3])
    model = sklearn.HistGradientBoostingRegressor(max_iter=40, max_leaf_nodes=15, early_stopping=False,
                                                  random_state=0).fit(x, y)
    test = rng.normal(size=(400, 6))
    test[::5, 2] = np.nan
    np.testing.assert_allclose(TreeEnsemble.from_sklearn(model).predict(test), model.predict(test), atol=1e-12)


def test_surrogates_round_trip_through_an_npz_without_pickle(tmp_path):
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4))
    trees = {"gap": fit_surrogate(x, x[:, 0], max_iter=10), "mu": fit_surrogate(x, x[:, 1] ** 2, max_iter=10)}
    path = save_surrogates(tmp_path / "s.npz", trees, note="test")
    loaded, meta = load_surrogates(path)
    assert meta == {"note": "test"} and sorted(loaded) == ["gap", "mu"]
    for name in trees:
        np.testing.assert_array_equal(loaded[name].predict(x), trees[name].predict(x))
    with np.load(path, allow_pickle=False) as data:  # every array loads without pickle
        assert all(data[k].dtype != object for k in data.files)
    with pytest.raises(FileNotFoundError):
        load_surrogates(tmp_path / "missing.npz")


def test_features_count_what_a_chemist_counts_and_survive_unsanitisable_graphs():
    ethanol = Chem.MolFromSmiles("CCO")
    f = molecule_features([ethanol, None])
    assert f.shape == (2, 1038)
    assert list(f[0, :7]) == [0, 2, 0, 1, 0, 0, 6]  # no explicit H; C2, O1; six hydrogens attached
    assert f[0, 7] == 2 and f[0, 11] == 0 and f[0, 12:].sum() > 0 and not f[1].any()
    assert not f[0, -2:].any()  # no conformer: no dipole estimate
    pentavalent = Chem.RWMol(Chem.MolFromSmiles("C", sanitize=False))
    for _ in range(5):
        pentavalent.AddBond(0, pentavalent.AddAtom(Chem.Atom(9)), Chem.BondType.SINGLE)
    row = molecule_features([pentavalent.GetMol()])[0]
    assert row[1] == 1 and row[4] == 5 and row[7] == 5


def _embedded(smiles: str, seed: int = 7):
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return mol


def test_charge_dipole_feature_is_rotation_invariant_and_tells_polar_from_apolar():
    from scipy.spatial.transform import Rotation

    water, methane, co2 = _embedded("O"), _embedded("C"), _embedded("O=C=O")
    f = molecule_features([water, methane, co2])
    assert f[0, -2] > 1.0 and f[1, -2] < 0.05 and f[2, -2] < 0.05  # D: water polar, CH4 and CO2 not
    assert f[0, -1] > 0.5 and f[2, -1] > 0.1  # charge separation even where the dipole cancels
    turned = Chem.Mol(water)
    conformer = turned.GetConformer()
    moved = Rotation.random(random_state=3).apply(conformer.GetPositions()) + [4.0, -2.0, 7.0]
    for i, xyz in enumerate(moved):
        conformer.SetAtomPosition(i, xyz.tolist())
    assert molecule_features([turned])[0, -2:] == pytest.approx(f[0, -2:], rel=1e-5)
    # raw generated output is an unsanitised graph (no hybridisation: Gasteiger charges would all be NaN)
    raw = Chem.MolFromMolBlock(Chem.MolToMolBlock(water), sanitize=False, removeHs=False)
    assert molecule_features([raw])[0, -2:] == pytest.approx(f[0, -2:], rel=1e-5)


def test_screening_keeps_one_candidate_per_target_closest_by_the_surrogate(tiny_model):  # noqa: F811
    from molgen.checkpoint import load_generator
    from molgen.sampling import generate
    from molgen.screening import screen_candidates

    class HeavyAtoms:  # a stand-in surrogate: the predicted "gap" is the number of heavy atoms
        def predict(self, features):
            return features[:, 1:6].sum(1)

    generator = load_generator(tiny_model)
    counts = torch.tensor([2, 3, 4, 5, 2, 3])
    candidates = generate(generator, 6, condition={"gap": 8.0}, num_atoms=counts, steps=4, seed=2)
    picks, stats = screen_candidates(candidates, 2, 3, {"gap": HeavyAtoms()}, {"gap": 1.0})
    assert picks.tolist()[0] in (0, 1, 2) and picks.tolist()[1] in (3, 4, 5) and stats["candidates"] == 6
    screened = generate(generator, 2, condition={"gap": 8.0}, steps=4, seed=2, screen=3,
                        surrogates={"gap": HeavyAtoms()})
    assert len(screened) == 2 and screened.settings["screen"] == 3
    assert torch.equal(screened.targets["gap"], torch.full((2,), 8.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="needs a condition"):
        generate(generator, 2, steps=2, screen=2, surrogates={"gap": HeavyAtoms()})
    with pytest.raises(ValueError, match="no screening surrogate for mu"):
        generate(generator, 2, condition={"mu": 1.0}, steps=2, screen=2, surrogates={"gap": HeavyAtoms()})


def test_shipped_surrogates_know_the_trends_a_chemist_knows():
    """Polarisability and heat capacity grow with size; benzene's gap lies well below methane's; acetonitrile and
    acetone are polar, methane and benzene are not."""
    surrogates, meta = load_surrogates()
    assert sorted(surrogates) == ["Cv", "alpha", "gap", "homo", "lumo", "mu"]
    assert all(s["test_mae"] > 0 for s in meta["scores"].values())
    mols = [_embedded(s) for s in ("C", "CCCCCC", "c1ccccc1", "O")]  # with 3D coordinates, as screened molecules
    x = molecule_features(mols)
    alpha, gap, mu, cv = (surrogates[p].predict(x) for p in ("alpha", "gap", "mu", "Cv"))
    assert alpha[1] > alpha[0] + 20 and cv[1] > cv[0] + 10
    assert gap[2] < gap[0] - 3  # eV
    # D: acetonitrile 3.9 and acetone 2.9 (experiment) against apolar methane and benzene (water, 1.9 D, is one of
    # QM9's few three-atom molecules: the trees are coarse there)
    polar = surrogates["mu"].predict(molecule_features([_embedded("CC#N"), _embedded("CC(C)=O")]))
    assert polar[0] > 3.0 and polar[1] > 2.0 and max(mu[0], mu[2]) < 0.5, (polar, mu)


def test_conditional_sampling_screens_by_the_model_files_default(tiny_model):  # noqa: F811
    import dataclasses

    from molgen.checkpoint import load_generator
    from molgen.sampling import generate, resolve_screen

    class HeavyAtoms:
        def predict(self, features):
            return features[:, 1:6].sum(1)

    plain = load_generator(tiny_model)
    assert plain.conditional_screen == 1  # files without the setting screen nothing
    generator = dataclasses.replace(plain, metadata={**plain.metadata, "conditional_screen": 3})
    assert resolve_screen(generator, {"gap": 8.0}, None) == 3
    assert resolve_screen(generator, {}, None) == 1  # unconditional sampling is never screened
    assert resolve_screen(generator, {"gap": 8.0}, 1) == 1  # an explicit 1: the network alone
    surrogates = {"gap": HeavyAtoms()}
    default = generate(generator, 2, condition={"gap": 8.0}, steps=3, seed=4, surrogates=surrogates)
    explicit = generate(generator, 2, condition={"gap": 8.0}, steps=3, seed=4, surrogates=surrogates, screen=3)
    assert default.settings["screen"] == 3 and default.nfe == explicit.nfe
    assert torch.equal(default.batch.positions, explicit.batch.positions)
    alone = generate(generator, 2, condition={"gap": 8.0}, steps=3, seed=4, screen=1)
    assert "screen" not in alone.settings
    assert "screen" not in generate(generator, 2, steps=3, seed=4).settings
    for bad in (0, 2.5, True, "4"):
        with pytest.raises(ValueError, match="screen"):
            resolve_screen(generator, {"gap": 8.0}, bad)
    broken = dataclasses.replace(plain, metadata={**plain.metadata, "conditional_screen": 0})
    with pytest.raises(ValueError, match="conditional_screen"):
        broken.conditional_screen
