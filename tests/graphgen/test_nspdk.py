"""NSPDK: a hand-computed kernel value, an unhashed per-node reference implementation, invariances, stability
across PYTHONHASHSEED, the MMD identity, and bad input."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from graphgen.metrics import nspdk
from graphgen.metrics.nspdk import nspdk_features, nspdk_kernel, nspdk_mmd

REPO_ROOT = Path(__file__).resolve().parents[2]


def labelled(atoms: str, bonds: list[tuple[int, int, int]]) -> nx.Graph:
    graph = nx.Graph()
    for i, atom in enumerate(atoms):
        graph.add_node(i, label=atom)
    for a, b, order in bonds:
        graph.add_edge(a, b, label=order)
    return graph


def random_molecule_like(rng: np.random.Generator) -> nx.Graph:
    n = int(rng.integers(1, 11))
    graph = nx.random_labeled_tree(n, seed=int(rng.integers(2**31))) if n > 1 else nx.empty_graph(1)
    for _ in range(int(rng.integers(0, 3))):  # a few rings
        a, b = rng.integers(0, n, size=2)
        if a != b:
            graph.add_edge(int(a), int(b))
    for v in graph.nodes():
        graph.nodes[v]["label"] = str(rng.choice(["C", "N", "O"]))
    for a, b in graph.edges():
        graph.edges[a, b]["label"] = int(rng.choice([1, 1, 2]))
    return graph


def reference_feature_vector(graph: nx.Graph, r: int, d: int) -> dict:
    """NSPDK without hashing: neighbourhood = tuple of exact sorted level contents (EDeN's edge-as-vertex levels);
    features are tuples; per-(r, d) then global normalisation. Slow and obviously faithful."""
    dist = dict(nx.all_pairs_shortest_path_length(graph))
    descriptor = {}
    for v in graph.nodes():
        levels = []
        for k in range(r + 1):
            levels.append(
                tuple(sorted(repr((graph.nodes[u]["label"], graph.degree(u))) for u, du in dist[v].items() if du == k))
            )
            levels.append(
                tuple(
                    sorted(
                        repr(graph.edges[a, b]["label"])
                        for a, b in graph.edges()
                        if a in dist[v] and min(dist[v][a], dist[v][b]) == k
                    )
                )
            )
        for k in range(r + 1):
            if any(du == k for du in dist[v].values()):
                descriptor[v, k] = tuple(levels[: 2 * k + 1])
    counts: dict = {}
    for v in graph.nodes():
        for u, duv in dist[v].items():
            if duv > d:
                continue
            for k in range(r + 1):
                if (v, k) in descriptor and (u, k) in descriptor:
                    block = counts.setdefault((k, duv), Counter())
                    block[("pair", *sorted([descriptor[v, k], descriptor[u, k]]))] += 1
                    block[("half", descriptor[u, k])] += 1
    vector = {}
    for block_key, block in counts.items():
        norm = math.sqrt(sum(c * c for c in block.values()))
        for feature, c in block.items():
            vector[(block_key, feature)] = c / norm
    total = math.sqrt(sum(x * x for x in vector.values()))
    return {key: x / total for key, x in vector.items()}


def test_hand_computed_kernel():
    # C-C vs C-N (single bond). Both have blocks (r, d) in {0, 1}^2. Overlaps: block (0,0): C-C has pair(C,C) and
    # half(C) at 1/sqrt2 each, C-N has them at 1/2 -> 1/sqrt2; block (0,1): half(C) 1/sqrt2 x 1/sqrt6; radius-1
    # neighbourhoods differ. Global norms are sqrt(4) on both sides.
    cc, cn = labelled("CC", [(0, 1, 1)]), labelled("CN", [(0, 1, 1)])
    kernel = nspdk_kernel([cc, cn])
    assert kernel[0, 1] == pytest.approx((1 / math.sqrt(2) + 1 / math.sqrt(12)) / 4, rel=1e-12)
    np.testing.assert_allclose(np.diag(kernel), 1.0)
    single = nspdk_kernel([labelled("C", [])], [labelled("C", []), labelled("N", [])])
    np.testing.assert_allclose(single, [[1.0, 0.0]])
    # bond order matters
    assert nspdk_kernel([cc], [labelled("CC", [(0, 1, 2)])])[0, 0] < 1.0


def test_matches_unhashed_reference():
    rng = np.random.default_rng(11)
    graphs = [random_molecule_like(rng) for _ in range(14)]
    for r, d in ((4, 4), (2, 3)):
        refs = [reference_feature_vector(g, r, d) for g in graphs]
        expected = np.array([[sum(a[k] * b.get(k, 0.0) for k in a) for b in refs] for a in refs])
        np.testing.assert_allclose(nspdk_kernel(graphs, r=r, d=d), expected, atol=1e-12)
        features, _ = nspdk_features(graphs, r=r, d=d)
        assert [len(ref) for ref in refs] == np.diff(features.indptr).tolist()  # no hash collisions


def test_batching_does_not_change_features(monkeypatch):
    rng = np.random.default_rng(8)
    graphs = [random_molecule_like(rng) for _ in range(10)]
    whole, columns = nspdk_features(graphs)
    monkeypatch.setattr(nspdk, "_GRAPHS_PER_BATCH", 3)
    batched, batched_columns = nspdk_features(graphs)
    np.testing.assert_array_equal(columns, batched_columns)
    np.testing.assert_allclose(batched.toarray(), whole.toarray(), atol=1e-15)


def test_permutation_invariance():
    rng = np.random.default_rng(3)
    graph = random_molecule_like(rng)
    while graph.number_of_nodes() < 6:
        graph = random_molecule_like(rng)
    perm = rng.permutation(graph.number_of_nodes())
    permuted = nx.Graph()
    mapping = {v: f"atom{perm[i]}" for i, v in enumerate(graph.nodes())}
    permuted.add_nodes_from(sorted((mapping[v], data) for v, data in graph.nodes(data=True)))
    permuted.add_edges_from((mapping[b], mapping[a], data) for a, b, data in graph.edges(data=True))
    x, _ = nspdk_features([graph, permuted])
    np.testing.assert_allclose(x[0].toarray(), x[1].toarray(), atol=1e-15)


def test_mmd_identities():
    rng = np.random.default_rng(5)
    ref = [random_molecule_like(rng) for _ in range(9)]
    gen = [random_molecule_like(rng) for _ in range(6)]
    assert nspdk_mmd(ref, list(reversed(ref))) == pytest.approx(0.0, abs=1e-14)
    kernel = nspdk_kernel(ref + gen)
    kxx, kyy, kxy = kernel[:9, :9], kernel[9:, 9:], kernel[:9, 9:]
    explicit = kxx.mean() + kyy.mean() - 2 * kxy.mean()  # what GDSS computes with pairwise_kernels
    assert nspdk_mmd(ref, gen) == pytest.approx(explicit, abs=1e-12)
    assert nspdk_mmd(gen, ref) == pytest.approx(explicit, abs=1e-12)
    assert explicit > 0
    assert np.linalg.eigvalsh(kernel).min() > -1e-10


def test_stable_across_hash_seeds():
    # Load the module file directly: importing the package would pull in RDKit/torch and cost seconds.
    script = (
        "import importlib.util, sys, networkx as nx\n"
        f"spec = importlib.util.spec_from_file_location('nspdk', {str(REPO_ROOT / 'graphgen/metrics/nspdk.py')!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "nspdk_features, nspdk_mmd = mod.nspdk_features, mod.nspdk_mmd\n"
        "g = nx.Graph(); g.add_node(0, label='C'); g.add_node(1, label='O'); g.add_node(2, label='N')\n"
        "g.add_edge(0, 1, label=2); g.add_edge(1, 2, label=1)\n"
        "h = nx.Graph(); h.add_node('a', label='C'); h.add_node('b', label='C'); h.add_edge('a', 'b', label=1)\n"
        "x, cols = nspdk_features([g, h])\n"
        "print(cols.tolist(), x.data.tolist(), repr(nspdk_mmd([g], [h])))\n"
    )
    outputs = set()
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO_ROOT, check=True
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1


def test_unlabelled_graphs_and_bad_input():
    assert nspdk_mmd([nx.cycle_graph(5)], [nx.cycle_graph(5)], node_label=None, edge_label=None) == 0.0
    assert nspdk_mmd([nx.cycle_graph(5)], [nx.path_graph(5)], node_label=None, edge_label=None) > 0.0
    with pytest.raises(ValueError, match="has no 'label' attribute"):
        nspdk_mmd([nx.path_graph(2)], [nx.path_graph(3)])
    with pytest.raises(ValueError, match="no nodes"):
        nspdk_features([nx.Graph()])
    with pytest.raises(ValueError, match="non-empty"):
        nspdk_mmd([labelled("C", [])], [nx.Graph()])
    with pytest.raises(ValueError, match="non-empty"):
        nspdk_mmd([], [labelled("C", [])])
    # GDSS drops empty generated graphs
    ref, gen = [labelled("CO", [(0, 1, 1)])], [labelled("C", [])]
    assert nspdk_mmd(ref, gen + [nx.Graph()]) == nspdk_mmd(ref, gen)
