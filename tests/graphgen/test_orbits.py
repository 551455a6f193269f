"""Orbit counts against brute-force enumeration of connected induced 3- and 4-node subgraphs."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from graphgen.metrics import orbits
from graphgen.metrics.orbits import N_ORBITS, orbit_counts, orbit_counts_from_adjacency


def brute_force_orbits(graph: nx.Graph) -> np.ndarray:
    """Look at every 3- and 4-node subset; if its induced subgraph is connected, name the graphlet by its
    edge count and degree sequence and the node's orbit by its degree inside the graphlet."""
    nodes = list(graph.nodes())
    row = {v: i for i, v in enumerate(nodes)}
    out = np.zeros((len(nodes), N_ORBITS), dtype=np.int64)
    for v in nodes:
        out[row[v], 0] = graph.degree(v)
    orbit_of = {  # (size, edges, sorted degrees) -> {degree inside graphlet: orbit}
        (3, 2, (1, 1, 2)): {1: 1, 2: 2},  # 3-path
        (3, 3, (2, 2, 2)): {2: 3},  # triangle
        (4, 3, (1, 1, 2, 2)): {1: 4, 2: 5},  # 4-path
        (4, 3, (1, 1, 1, 3)): {1: 6, 3: 7},  # claw
        (4, 4, (2, 2, 2, 2)): {2: 8},  # 4-cycle
        (4, 4, (1, 2, 2, 3)): {1: 9, 2: 10, 3: 11},  # paw
        (4, 5, (2, 2, 3, 3)): {2: 12, 3: 13},  # diamond
        (4, 6, (3, 3, 3, 3)): {3: 14},  # 4-clique
    }
    for size in (3, 4):
        for subset in itertools.combinations(nodes, size):
            sub = graph.subgraph(subset)
            if not nx.is_connected(sub):
                continue
            key = (size, sub.number_of_edges(), tuple(sorted(d for _, d in sub.degree())))
            for v in subset:
                out[row[v], orbit_of[key][sub.degree(v)]] += 1
    return out


def _test_graphs():
    rng = np.random.default_rng(1234)
    graphs = []
    for density in (0.1, 0.3, 0.5, 0.7, 0.9):
        for _ in range(8):
            n = int(rng.integers(2, 11))
            graphs.append(nx.gnp_random_graph(n, density, seed=int(rng.integers(2**31))))
    graphs += [
        nx.star_graph(5),
        nx.path_graph(7),
        nx.cycle_graph(4),
        nx.cycle_graph(6),
        nx.complete_graph(4),
        nx.complete_graph(6),
        nx.empty_graph(3),
        nx.petersen_graph(),
        nx.wheel_graph(6),
        nx.disjoint_union(nx.complete_graph(4), nx.star_graph(3)),
    ]
    return graphs


@pytest.mark.parametrize("graph", _test_graphs())
def test_matches_brute_force(graph):
    np.testing.assert_array_equal(orbit_counts(graph), brute_force_orbits(graph))


@pytest.mark.parametrize("graph", _test_graphs()[::4])
def test_sparse_path_matches_brute_force(graph, monkeypatch):
    # large graphs run on scipy.sparse; force that path on small ones so brute force can check it
    monkeypatch.setattr(orbits, "DENSE_MAX_NODES", 0)
    np.testing.assert_array_equal(orbit_counts(graph), brute_force_orbits(graph))


def test_dense_and_sparse_agree_on_a_larger_graph(monkeypatch):
    graph = nx.powerlaw_cluster_graph(300, 4, 0.5, seed=3)  # many triangles and 4-cliques
    dense = orbit_counts(graph)
    monkeypatch.setattr(orbits, "DENSE_MAX_NODES", 0)
    np.testing.assert_array_equal(orbit_counts(graph), dense)
    assert dense[:, 14].sum() > 0


def test_known_graphs_by_hand():
    # 4-clique: every node has degree 3, 3 triangles, 1 four-clique, and nothing induced that is sparser.
    expected = np.zeros(N_ORBITS, dtype=np.int64)
    expected[[0, 3, 14]] = [3, 3, 1]
    np.testing.assert_array_equal(orbit_counts(nx.complete_graph(4)), np.tile(expected, (4, 1)))
    # star with 3 leaves: the centre is the claw centre (orbit 7) and 3 path centres (orbit 2).
    star = orbit_counts(nx.star_graph(3))
    assert star[0].tolist() == [3, 0, 3, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert star[1].tolist() == [1, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]


def test_node_order_and_relabelling():
    graph = nx.gnp_random_graph(12, 0.4, seed=5)
    perm = np.random.default_rng(0).permutation(12)
    relabelled = nx.relabel_nodes(graph, {i: f"n{perm[i]}" for i in range(12)})
    shuffled = nx.Graph()
    shuffled.add_nodes_from(sorted(relabelled.nodes()))
    shuffled.add_edges_from(relabelled.edges())
    counts = orbit_counts(graph)
    counts_shuffled = orbit_counts(shuffled)
    order = [list(shuffled.nodes()).index(f"n{perm[i]}") for i in range(12)]
    np.testing.assert_array_equal(counts_shuffled[order], counts)


def test_bad_input():
    loop = nx.path_graph(3)
    loop.add_edge(1, 1)
    with pytest.raises(ValueError, match="self-loop"):
        orbit_counts(loop)
    with pytest.raises(ValueError, match="undirected"):
        orbit_counts(nx.DiGraph([(0, 1)]))
    with pytest.raises(ValueError, match="symmetric"):
        orbit_counts_from_adjacency(np.array([[0, 1], [0, 0]]))
    assert orbit_counts(nx.Graph()).shape == (0, N_ORBITS)
