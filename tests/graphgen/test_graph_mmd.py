"""Degree / clustering / orbit MMDs of the GDSS protocol: hand-computed values, a naive per-pair reference of the
GDSS kernels, scipy's Wasserstein distance, histograms against networkx, and bad input."""

from __future__ import annotations

import math
import time

import networkx as nx
import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from graphgen.metrics.graph_mmd import (
    clustering_histogram,
    compute_mmd,
    degree_histogram,
    eval_graph_list,
    gaussian_emd_kernel,
    gaussian_kernel,
    gaussian_tv_kernel,
    mean_orbit_counts,
    pairwise_emd_1d,
)


def _random_graphs(seed: int, count: int, n_range=(5, 16)) -> list[nx.Graph]:
    rng = np.random.default_rng(seed)
    return [
        nx.gnp_random_graph(int(rng.integers(*n_range)), float(rng.uniform(0.1, 0.6)), seed=int(rng.integers(2**31)))
        for _ in range(count)
    ]


def _naive_mmd(samples1, samples2, pair_kernel, is_hist=True):
    """GDSS ``compute_mmd`` spelled out pair by pair (pad each pair, normalise histograms)."""

    def pad(a, b):
        width = max(len(a), len(b))
        return np.pad(a, (0, width - len(a))), np.pad(b, (0, width - len(b)))

    if is_hist:
        samples1 = [s / s.sum() for s in samples1]
        samples2 = [s / s.sum() for s in samples2]

    def disc(xs, ys):
        return sum(pair_kernel(*pad(x, y)) for x in xs for y in ys) / (len(xs) * len(ys))

    return disc(samples1, samples1) + disc(samples2, samples2) - 2 * disc(samples1, samples2)


def _emd_pair(x, y, scaling=1.0):
    support = np.arange(len(x))
    return wasserstein_distance(support, support, x, y) / scaling


def test_emd_equals_scipy_wasserstein():
    rng = np.random.default_rng(0)
    x = rng.random((6, 9))
    y = rng.random((4, 7))
    x /= x.sum(1, keepdims=True)
    y /= y.sum(1, keepdims=True)
    ours = pairwise_emd_1d(x, y, distance_scaling=3.0)
    y_pad = np.pad(y, ((0, 0), (0, 2)))
    ref = np.array([[_emd_pair(a, b, 3.0) for b in y_pad] for a in x])
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_degree_mmd_by_hand():
    # path on 3 nodes: degree pmf (0, 2/3, 1/3); triangle: (0, 0, 1). CDFs differ by 2/3 at degree 1 -> EMD 2/3.
    mmd = eval_graph_list([nx.path_graph(3)], [nx.complete_graph(3)], methods=["degree"])["degree"]
    assert mmd == pytest.approx(2.0 - 2.0 * math.exp(-((2 / 3) ** 2) / 2), rel=1e-12)
    # TV variant: TV = (2/3 + 2/3) / 2 = 2/3 as well here.
    mmd_tv = eval_graph_list([nx.path_graph(3)], [nx.complete_graph(3)], methods=["degree"], kernel="tv")["degree"]
    assert mmd_tv == pytest.approx(2.0 - 2.0 * math.exp(-((2 / 3) ** 2) / 2), rel=1e-12)
    # Two graphs on each side: ref = {P3, P3}, gen = {P3, K3}: cross terms 1 and e^{-2/9}.
    k = math.exp(-2 / 9)
    expected = 1.0 + (2 + 2 * k) / 4 - 2 * (2 + 2 * k) / 4
    mmd2 = eval_graph_list([nx.path_graph(3)] * 2, [nx.path_graph(3), nx.complete_graph(3)], methods=["degree"])
    assert mmd2["degree"] == pytest.approx(expected, rel=1e-12)


def test_matches_naive_gdss_kernels():
    ref, gen = _random_graphs(1, 7), _random_graphs(2, 5)
    deg_r, deg_g = [degree_histogram(g) for g in ref], [degree_histogram(g) for g in gen]
    clu_r, clu_g = [clustering_histogram(g) for g in ref], [clustering_histogram(g) for g in gen]
    orb_r, orb_g = [mean_orbit_counts(g) for g in ref], [mean_orbit_counts(g) for g in gen]

    def g_emd(sigma, scaling):
        return lambda a, b: math.exp(-(_emd_pair(a, b, scaling) ** 2) / (2 * sigma**2))

    def g_tv(sigma):
        return lambda a, b: math.exp(-((np.abs(a - b).sum() / 2) ** 2) / (2 * sigma**2))

    def g_l2(sigma):
        return lambda a, b: math.exp(-np.sum((a - b) ** 2) / (2 * sigma**2))

    emd = eval_graph_list(ref, gen, kernel="emd")
    tv = eval_graph_list(ref, gen, kernel="tv")
    assert emd["degree"] == pytest.approx(_naive_mmd(deg_r, deg_g, g_emd(1.0, 1.0)), abs=1e-12)
    assert emd["cluster"] == pytest.approx(_naive_mmd(clu_r, clu_g, g_emd(0.1, 100.0)), abs=1e-12)
    assert emd["orbit"] == pytest.approx(_naive_mmd(orb_r, orb_g, g_l2(30.0), is_hist=False), abs=1e-12)
    assert tv["degree"] == pytest.approx(_naive_mmd(deg_r, deg_g, g_tv(1.0)), abs=1e-12)
    assert tv["cluster"] == pytest.approx(_naive_mmd(clu_r, clu_g, g_tv(0.1)), abs=1e-12)
    assert tv["orbit"] == pytest.approx(_naive_mmd(orb_r, orb_g, g_tv(30.0), is_hist=False), abs=1e-12)
    assert all(v > 0 for v in list(emd.values()) + list(tv.values()))


def test_identical_lists_zero_and_symmetry():
    ref, gen = _random_graphs(3, 6), _random_graphs(4, 8)
    for kernel in ("emd", "tv"):
        same = eval_graph_list(ref, list(reversed(ref)), kernel=kernel)
        assert all(abs(v) < 1e-12 for v in same.values())
        forward, backward = eval_graph_list(ref, gen, kernel=kernel), eval_graph_list(gen, ref, kernel=kernel)
        for key in forward:
            assert forward[key] == pytest.approx(backward[key], abs=1e-14)


def test_kernels_are_positive_semidefinite():
    rng = np.random.default_rng(7)
    pmf = rng.random((12, 10))
    pmf /= pmf.sum(1, keepdims=True)
    for gram in (gaussian_kernel(pmf, pmf, 0.3), gaussian_tv_kernel(pmf, pmf, 0.3)):
        assert np.linalg.eigvalsh(gram).min() > -1e-10
    np.testing.assert_allclose(np.diag(gaussian_emd_kernel(pmf, pmf)), 1.0)


def test_histograms_against_networkx():
    for graph in _random_graphs(5, 10):
        np.testing.assert_array_equal(degree_histogram(graph), nx.degree_histogram(graph))
        expected, _ = np.histogram(list(nx.clustering(graph).values()), bins=100, range=(0.0, 1.0))
        np.testing.assert_array_equal(clustering_histogram(graph), expected)


def test_clustering_histogram_known_graphs():
    tri = clustering_histogram(nx.complete_graph(3))
    assert tri[-1] == 3 and tri[:-1].sum() == 0  # every coefficient is 1
    star = clustering_histogram(nx.star_graph(4))
    assert star[0] == 5 and star[1:].sum() == 0  # every coefficient is 0


def test_mean_orbit_counts_by_hand():
    # 4-cycle: every node has degree 2, ends 2 induced 3-paths (via each neighbour to the opposite node),
    # centres 1, and the only 4-node induced subgraph is the cycle itself (orbit 8).
    expected = np.zeros(15)
    expected[[0, 1, 2, 8]] = [2, 2, 1, 1]
    np.testing.assert_array_equal(mean_orbit_counts(nx.cycle_graph(4)), expected)


def test_empty_inputs():
    graphs = _random_graphs(6, 3)
    with pytest.raises(ValueError, match="reference graph list is empty"):
        eval_graph_list([], graphs)
    with pytest.raises(ValueError, match="generated graph list is empty"):
        eval_graph_list(graphs, [])
    with pytest.raises(ValueError, match="reference graphs without nodes"):
        eval_graph_list(graphs + [nx.Graph()], graphs)
    with pytest.raises(ValueError, match="every generated graph is empty"):
        eval_graph_list(graphs, [nx.Graph()])
    with pytest.raises(ValueError, match="generated graphs without nodes"):
        eval_graph_list(graphs, graphs + [nx.Graph()], drop_empty_generated=False)
    # GDSS drops empty generated graphs
    assert eval_graph_list(graphs, graphs + [nx.Graph()]) == eval_graph_list(graphs, graphs)
    with pytest.raises(ValueError, match="kernel"):
        eval_graph_list(graphs, graphs, kernel="rbf")
    with pytest.raises(ValueError, match="unknown method"):
        eval_graph_list(graphs, graphs, methods=["spectral"])
    with pytest.raises(ValueError, match="zero mass"):
        compute_mmd([np.zeros(3)], [np.ones(3)], gaussian_tv_kernel)


def test_community_small_runtime():
    def community(seed):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(12, 21))
        half = n // 2
        graph = nx.disjoint_union(
            nx.gnp_random_graph(half, 0.7, seed=seed), nx.gnp_random_graph(n - half, 0.7, seed=seed + 1)
        )
        graph.add_edge(0, half)
        return graph

    ref = [community(2 * i) for i in range(20)]
    gen = [community(1000 + 2 * i) for i in range(20)]
    start = time.perf_counter()
    result = eval_graph_list(ref, gen)
    elapsed = time.perf_counter() - start
    assert set(result) == {"degree", "cluster", "orbit"}
    assert elapsed < 2.0, f"community-small sized evaluation took {elapsed:.2f} s"


@pytest.mark.data
def test_reference_community_small_split(reference_data):
    import json

    raw = json.loads((reference_data / "graphs" / "community_small.json").read_text())
    graphs = []
    for item in raw["graphs"]:
        graph = nx.Graph()
        graph.add_nodes_from(range(item["num_nodes"]))
        graph.add_edges_from(map(tuple, item["edges"]))
        graphs.append(graph)
    test, train = graphs[:20], graphs[20:]  # GDSS split: first 20 % is the test set
    start = time.perf_counter()
    result = eval_graph_list(test, train)
    elapsed = time.perf_counter() - start
    # same distribution: all three MMDs are small (measured 0.0034 / 0.0092 / 0.0010), far below a mismatch
    assert all(0 < value < 0.02 for value in result.values()), result
    mismatch = eval_graph_list(test, [nx.gnp_random_graph(15, 0.3, seed=i) for i in range(20)])
    assert all(mismatch[key] > 5 * result[key] for key in result), (result, mismatch)
    assert elapsed < 3.0
