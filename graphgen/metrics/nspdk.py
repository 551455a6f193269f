"""NSPDK (neighbourhood subgraph pairwise distance kernel, Costa & De Grave 2010) and its MMD, as GDSS uses it
for molecules: ``vectorize(graphs, complexity=4, discrete=True)`` from EDeN (r = d = 4), then the mean of a
linear kernel on the normalised sparse feature vectors.

Feature construction (EDeN's discrete mode, re-implemented):

* EDeN turns every edge into a vertex carrying the edge label, so a radius-r neighbourhood of a root spans
  levels 0..2r of that expanded graph: original nodes at distance k sit at level 2k, an edge whose nearer end is
  at distance k sits at level 2k+1. A level is summarised by the multiset of (label, degree) of its elements
  (edge-vertices have degree 2); the neighbourhood hash at radius r chains the level hashes 0..2r.
  Like EDeN, radius r is used for a root only when some node lies at distance exactly r (otherwise it would
  repeat a smaller radius).
* For every ordered pair of roots (v, u) at shortest-path distance t <= d and every radius s <= r valid for both,
  two features are counted in block (s, t): the pair {H_s(v), H_s(u)} and the "half" feature H_s(u).
* Each (r, d) block is scaled to unit norm, then the whole vector.

Deviations from EDeN, on purpose: our hashes are 64-bit and stable (blake2b of ``repr(label)`` plus a
splitmix64 mixer; EDeN uses Python's ``hash``, salted per process for strings, folded to 16 bits), so there are
practically no collisions and results never depend on ``PYTHONHASHSEED``; feature columns are the distinct
hashes present, not a 2^16-slot table; the block (r, d) is part of every feature hash, so features of
different blocks never overwrite each other (EDeN's dict merge can).

The kernel is a dot product, so MMD^2 = ||mean(X_ref) - mean(X_gen)||^2 exactly, without the n x m kernel
matrices GDSS builds.
"""

from __future__ import annotations

import hashlib
from typing import Any, Hashable, NamedTuple, Sequence

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import shortest_path

__all__ = ["nspdk_features", "nspdk_kernel", "nspdk_mmd"]

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_TAG_NODE, _TAG_EDGE, _TAG_PAIR, _TAG_HALF, _TAG_ROOT = (_U64(t) for t in (1, 2, 3, 4, 5))


def nspdk_mmd(
    ref_graphs: Sequence[nx.Graph],
    gen_graphs: Sequence[nx.Graph],
    r: int = 4,
    d: int = 4,
    node_label: str | None = "label",
    edge_label: str | None = "label",
    drop_empty_generated: bool = True,
) -> float:
    """Squared MMD with the (normalised, linear) NSPDK kernel between two graph lists (GDSS ``nspdk_stats``).

    Labels are read from the ``node_label`` / ``edge_label`` attributes (``None``: unlabelled). As GDSS does,
    generated graphs without nodes are dropped unless ``drop_empty_generated=False``.
    """
    ref, gen = list(ref_graphs), list(gen_graphs)
    if drop_empty_generated:
        gen = [g for g in gen if g.number_of_nodes() > 0]
    if not ref or not gen:
        raise ValueError(
            f"nspdk_mmd needs non-empty graph lists (got {len(ref)} reference, {len(gen)} generated non-empty graphs)"
        )
    features, _ = nspdk_features(ref + gen, r=r, d=d, node_label=node_label, edge_label=edge_label)
    mean_ref = np.asarray(features[: len(ref)].mean(axis=0)).ravel()
    mean_gen = np.asarray(features[len(ref) :].mean(axis=0)).ravel()
    diff = mean_ref - mean_gen
    return float(diff @ diff)


def nspdk_kernel(
    graphs_a: Sequence[nx.Graph],
    graphs_b: Sequence[nx.Graph] | None = None,
    r: int = 4,
    d: int = 4,
    node_label: str | None = "label",
    edge_label: str | None = "label",
) -> np.ndarray:
    """Dense NSPDK kernel matrix (dot products of normalised feature vectors) between two graph lists."""
    graphs_a = list(graphs_a)
    both = graphs_a if graphs_b is None else graphs_a + list(graphs_b)
    features, _ = nspdk_features(both, r=r, d=d, node_label=node_label, edge_label=edge_label)
    x = features[: len(graphs_a)]
    y = x if graphs_b is None else features[len(graphs_a) :]
    return np.asarray((x @ y.T).todense())


def nspdk_features(
    graphs: Sequence[nx.Graph],
    r: int = 4,
    d: int = 4,
    node_label: str | None = "label",
    edge_label: str | None = "label",
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Normalised NSPDK feature vectors: a ``(n_graphs, n_features)`` CSR matrix and the uint64 feature hash of
    each column (sorted), so matrices of different calls can be aligned by hash."""
    if r < 0 or d < 0:
        raise ValueError(f"radius and distance must be >= 0, got r={r}, d={d}")
    graphs = list(graphs)
    if not graphs:
        raise ValueError("nspdk_features needs at least one graph")
    label_cache: dict[Any, np.uint64] = {}
    rows, hashes, values = [], [], []
    for first in range(0, len(graphs), _GRAPHS_PER_BATCH):  # batches bound the memory of the pair arrays
        batch = [
            _graph_arrays(g, first + i, node_label, edge_label, label_cache)
            for i, g in enumerate(graphs[first : first + _GRAPHS_PER_BATCH])
        ]
        row, feature, value = _batch_features(batch, r, d)
        rows.append(row + first)
        hashes.append(feature)
        values.append(value)
    columns, inverse = np.unique(np.concatenate(hashes), return_inverse=True)
    matrix = sp.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), inverse.ravel())), shape=(len(graphs), len(columns))
    )
    return matrix, columns


_GRAPHS_PER_BATCH = 256


# ------------------------------------------------------------------------------------------- feature extraction
class _GraphArrays(NamedTuple):
    dist: np.ndarray  # (n, n) shortest-path lengths, -1 between components
    edges: np.ndarray  # (m, 2) node positions
    node_elem: np.ndarray  # (n,) uint64 hash of (label, degree) of each node
    edge_elem: np.ndarray  # (m,) uint64 hash of (label, degree 2) of each edge-vertex


def _graph_arrays(
    graph: nx.Graph, index: int, node_label: str | None, edge_label: str | None, label_cache: dict
) -> _GraphArrays:
    """Validate one graph and turn it into arrays (the only per-graph Python work)."""
    if not isinstance(graph, nx.Graph) or graph.is_directed() or graph.is_multigraph():
        raise ValueError(f"graph {index}: expected an undirected simple networkx.Graph")
    n = graph.number_of_nodes()
    if n == 0:
        raise ValueError(f"graph {index} has no nodes; NSPDK is undefined for empty graphs")
    if nx.number_of_selfloops(graph):
        raise ValueError(f"graph {index} has self-loops; remove them first")
    position = {v: i for i, v in enumerate(graph.nodes())}
    edges = np.array([(position[a], position[b]) for a, b in graph.edges()], dtype=np.int64).reshape(-1, 2)
    node_hash = np.array(
        [
            _label_hash(_attr(data, node_label, f"graph {index}, node {v!r}"), label_cache)
            for v, data in graph.nodes(data=True)
        ],
        dtype=_U64,
    )
    edge_hash = np.array(
        [
            _label_hash(_attr(data, edge_label, f"graph {index}, edge {(a, b)!r}"), label_cache)
            for a, b, data in graph.edges(data=True)
        ],
        dtype=_U64,
    )
    adj = sp.csr_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    dist = shortest_path(adj, directed=False, unweighted=True)
    dist = np.where(np.isinf(dist), -1, dist).astype(np.int64)
    deg = np.bincount(edges.ravel(), minlength=n).astype(_U64)
    node_elem = _mix(_combine(_combine(node_hash, deg), _TAG_NODE))
    edge_elem = _mix(_combine(_combine(edge_hash, _U64(2)), _TAG_EDGE))
    return _GraphArrays(dist, edges, node_elem, edge_elem)


def _batch_features(batch: list[_GraphArrays], r: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised features of a batch of graphs as (graph row in batch, feature hash, value) triples."""
    sizes = np.array([len(g.node_elem) for g in batch])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n_roots, n_levels = int(sizes.sum()), 2 * r + 1

    # (root, level, element hash) triples of the expanded-graph levels 0..2r of every root
    roots, levels, elems, pair_v, pair_u, pair_d = [], [], [], [], [], []
    for g, off in zip(batch, offsets):
        v, u = np.nonzero((g.dist >= 0) & (g.dist <= max(r, d)))
        k = g.dist[v, u]
        near = k <= r
        roots.append(v[near] + off)
        levels.append(2 * k[near])
        elems.append(g.node_elem[u[near]])
        close = k <= d
        pair_v.append(v[close] + off)
        pair_u.append(u[close] + off)
        pair_d.append(k[close])
        if len(g.edges):  # an edge sits at level 2 * (distance of its nearer end) + 1
            edge_k = np.minimum(g.dist[:, g.edges[:, 0]], g.dist[:, g.edges[:, 1]])
            ev, e = np.nonzero((edge_k >= 0) & (edge_k < r))
            roots.append(ev + off)
            levels.append(2 * edge_k[ev, e] + 1)
            elems.append(g.edge_elem[e])
    roots, levels, elems = np.concatenate(roots), np.concatenate(levels), np.concatenate(elems)

    # multiset hash per (root, level): wrap-around sum of element hashes (order independent)
    level_hash = np.zeros(n_roots * n_levels, dtype=_U64)
    np.add.at(level_hash, roots * n_levels + levels, elems)
    level_hash = level_hash.reshape(n_roots, n_levels)
    present = np.zeros(n_roots * n_levels, dtype=bool)
    present[roots * n_levels + levels] = True
    valid = present.reshape(n_roots, n_levels)[:, 0::2]  # radius k exists iff some node is at distance k

    chain = np.full(n_roots, _TAG_ROOT, dtype=_U64)
    root_hash = np.zeros((n_roots, r + 1), dtype=_U64)
    for level in range(n_levels):
        chain = _combine(chain, level_hash[:, level])
        if level % 2 == 0:
            root_hash[:, level // 2] = chain

    # every ordered root pair at distance <= d, for every radius valid at both ends
    v, u, dd = (np.repeat(np.concatenate(x), r + 1) for x in (pair_v, pair_u, pair_d))
    rr = np.tile(np.arange(r + 1), len(v) // (r + 1))
    ok = valid[v, rr] & valid[u, rr]
    v, u, dd, rr = v[ok], u[ok], dd[ok], rr[ok]
    hv, hu = root_hash[v, rr], root_hash[u, rr]
    block = rr * (d + 1) + dd
    block_seed = _combine(
        _combine(np.repeat(np.arange(r + 1, dtype=_U64), d + 1), np.tile(np.arange(d + 1, dtype=_U64), r + 1)), _U64(0)
    )[block]
    pair = _combine(_combine(_combine(block_seed, np.minimum(hv, hu)), np.maximum(hv, hu)), _TAG_PAIR)
    half = _combine(_combine(block_seed, hu), _TAG_HALF)

    graph_of_root = np.repeat(np.arange(len(batch)), sizes)
    graph = np.tile(graph_of_root[v], 2)
    feature = np.concatenate([pair, half])
    block = np.tile(block, 2)
    order = np.lexsort((feature, graph))
    graph, feature, block = graph[order], feature[order], block[order]
    starts = np.flatnonzero(np.r_[True, (graph[1:] != graph[:-1]) | (feature[1:] != feature[:-1])])
    counts = np.diff(np.r_[starts, len(feature)]).astype(np.float64)
    graph, feature, block = graph[starts], feature[starts], block[starts]

    n_blocks = (r + 1) * (d + 1)
    graph_block = graph * n_blocks + block
    values = counts / np.sqrt(np.bincount(graph_block, weights=counts**2))[graph_block]  # unit norm per block
    values /= np.sqrt(np.bincount(graph, weights=values**2))[graph]  # ... then per graph
    return graph, feature, values


# ---------------------------------------------------------------------------------------------------- hashing
def _attr(data: dict, key: str | None, where: str) -> Hashable:
    if key is None:
        return None
    if key not in data:
        raise ValueError(f"{where} has no {key!r} attribute (pass node_label/edge_label=None for unlabelled graphs)")
    return data[key]


def _label_hash(label: Any, cache: dict) -> np.uint64:
    """Stable 64-bit hash of a label (independent of PYTHONHASHSEED); ``repr`` keeps 'C' and 1 and 1.0 apart."""
    key = (type(label), label)
    if key not in cache:
        digest = hashlib.blake2b(repr(label).encode("utf-8"), digest_size=8).digest()
        cache[key] = _U64(int.from_bytes(digest, "little"))
    return cache[key]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (a bijection on uint64 with good avalanche), element-wise with wrap-around."""
    x = np.asarray(x, dtype=_U64)
    with np.errstate(over="ignore"):  # wrap-around is intended (0-d inputs would warn)
        x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _combine(seed: np.ndarray, value: np.ndarray | np.uint64) -> np.ndarray:
    """Order-dependent combination of two uint64 hashes."""
    seed = np.asarray(seed, dtype=_U64)
    with np.errstate(over="ignore"):
        return _mix(seed ^ (_mix(value) + _GOLDEN + (seed << _U64(6)) + (seed >> _U64(2))))
