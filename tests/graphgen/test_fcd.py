"""Fréchet distance against closed forms and scipy; FCD with the fcd package's ChemNet, cached statistics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

import graphgen.metrics.fcd as fcd_module
from graphgen.metrics import (
    canonical_smiles,
    chemnet_activations,
    fcd_score,
    frechet_distance,
    gaussian_statistics,
    reference_statistics,
)


def _random_cov(rng: np.random.Generator, d: int, rank: int | None = None) -> np.ndarray:
    factor = rng.normal(size=(d, rank or d))
    return factor @ factor.T / d


def test_identical_gaussians_have_zero_distance():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=6), _random_cov(rng, 6)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_diagonal_covariances_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    var1, var2 = rng.uniform(0.1, 3.0, 5), rng.uniform(0.1, 3.0, 5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-10)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0)


def test_full_covariances_match_scipy_sqrtm():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    s1, s2 = _random_cov(rng, 8), _random_cov(rng, 8)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-8)


def test_singular_covariances_are_stable():
    rng = np.random.default_rng(3)
    s1, s2 = _random_cov(rng, 30, rank=4), _random_cov(rng, 30, rank=6)  # like n < d activations
    value = frechet_distance(np.zeros(30), s1, np.zeros(30), s2)
    assert np.isfinite(value) and value > 0
    assert frechet_distance(np.zeros(30), s1, np.zeros(30), s1) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_rejects_bad_input():
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(np.zeros(2), np.eye(2) * np.nan, np.zeros(2), np.eye(2))


def test_gaussian_statistics_are_mean_and_unbiased_covariance():
    a = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, sigma = gaussian_statistics(a)
    assert np.allclose(mu, [2.0, 4.0])
    assert np.allclose(sigma, [[4.0, 7.0], [7.0, 13.0]])
    with pytest.raises(ValueError):
        gaussian_statistics(a[:1])


SMALL = [
    "CCO",
    "CCN",
    "CC(C)O",
    "C1CC1",
    "CC=O",
    "OCC=O",
    "CC#N",
    "NCC(=O)O",
    "C1CCOC1",
    "CCOC",
    "CC(N)=O",
    "OC1CC1",
    "CN(C)C",
    "C#CCO",
    "CCCO",
    "FC(F)F",
]
LARGE = [
    "CCCCCCCCCCCCCCCCCC(=O)O",
    "Clc1ccc(cc1)C(c1ccc(Cl)cc1)C(Cl)(Cl)Cl",
    "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "CN1CCC[C@H]1c1cccnc1",
    "O=C(Nc1ccc(Br)cc1)c1ccc(I)s1",
    "CCCCCCCCCCCCCCCCCCCCCC",
    "c1ccc2cc3ccccc3cc2c1",
    "CC(=O)Oc1ccccc1C(=O)O",
    "CCN(CC)CCOC(=O)c1ccc(N)cc1",
    "COc1ccc2[nH]cc(CCN(C)C)c2c1",
    "FC(F)(F)c1ccc(Oc2ccccc2)cc1",
    "CCCCCCCCOc1ccc(cc1)C(=O)O",
    "Brc1ccc(cc1)C1CCCCC1",
    "OCCCCCCCCCCCCCCO",
    "CCCCCCc1ccc(O)cc1O",
    "Clc1cc(Cl)c(Cl)c(Cl)c1Cl",
]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside the fcd package
def test_chemnet_matches_fcd_package_and_set_against_itself_is_zero():
    import fcd as fcd_package

    mine = fcd_score(SMALL, LARGE)
    theirs = fcd_package.get_fcd(
        [canonical_smiles(s) for s in SMALL], [canonical_smiles(s) for s in LARGE], device="cpu"
    )
    assert mine == pytest.approx(theirs, rel=1e-5)
    assert fcd_score(SMALL, SMALL) == pytest.approx(0.0, abs=1e-4)
    activations = chemnet_activations(SMALL[:3])
    assert activations.shape == (3, 512) and np.array_equal(activations, chemnet_activations(SMALL[:3]))


def test_fcd_increases_for_a_shifted_set():
    near = fcd_score(SMALL[:8], SMALL[8:])  # small aliphatic molecules vs. more of the same
    far = fcd_score(SMALL[:8], LARGE[:8])  # vs. large aromatic / halogenated / long-chain ones
    assert 0 < near < far


def test_reference_statistics_are_cached_by_content(tmp_path, monkeypatch):
    mu, sigma = reference_statistics(SMALL, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1

    def fail(*args, **kwargs):
        raise AssertionError("cache was not used")

    monkeypatch.setattr(fcd_module, "chemnet_activations", fail)
    # a different spelling of the same molecules hits the same (canonical) cache entry
    respelled = ["OCC"] + SMALL[1:]
    mu2, sigma2 = reference_statistics(respelled, cache_dir=tmp_path)
    assert np.array_equal(mu, mu2) and np.array_equal(sigma, sigma2)
    with pytest.raises(AssertionError):
        reference_statistics(SMALL[:-1], cache_dir=tmp_path)


def test_invalid_smiles_are_skipped_with_a_warning():
    with pytest.warns(UserWarning, match="skipped 1 invalid"):
        activations = chemnet_activations(["CCO", "C((", "CCN"])
    assert activations.shape == (2, 512)
