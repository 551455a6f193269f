"""Per-node counts of the 15 orbits of connected 2-, 3- and 4-node graphlets (ORCA numbering).

Orbits (position of a node inside an *induced* connected graphlet):

====  ==============================  ====  ===============================
0     edge (degree)                   8     4-cycle
1     3-path end                      9     paw (tailed triangle), tail end
2     3-path centre                   10    paw, degree-2 triangle node
3     triangle                        11    paw, degree-3 centre
4     4-path end                      12    diamond, degree-2 node
5     4-path inner node               13    diamond, degree-3 node
6     3-star (claw) leaf              14    4-clique
7     3-star centre
====  ==============================  ====  ===============================

Method (no enumeration of 4-node subsets): from sparse adjacency algebra we count, for every node, the
*non-induced* occurrences of each 4-node pattern (a subgraph isomorphic to the pattern, extra edges allowed),
e.g. 4-cycles through ``i`` = sum_k C((A^2)_ik, 2). Each induced graphlet contains a fixed number of
non-induced patterns with the node in each position, so non-induced = M @ induced with an integer
unitriangular ``M`` (``_NONINDUCED_FROM_INDUCED``), which we invert exactly.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import scipy.sparse as sp

__all__ = ["N_ORBITS", "orbit_counts", "orbit_counts_from_adjacency", "graph_adjacency"]

N_ORBITS = 15
DENSE_MAX_NODES = 1024  # above this, adjacency algebra runs on scipy.sparse matrices

# Row p: a non-induced pattern orbit (4..14); column o: an induced orbit (4..14); entry: how many copies of
# pattern p, with the node in position p, live inside one induced graphlet with the node in orbit o.
# Derived by listing the spanning connected subgraphs of each graphlet (e.g. a 4-clique contains 6 diamonds,
# 12 paws, 3 four-cycles, 4 claws and 12 four-paths); the tests check the result against brute force.
_NONINDUCED_FROM_INDUCED = np.array(
    [
        #  4  5  6  7  8  9 10 11 12 13 14   <- induced orbit
        [1, 0, 0, 0, 2, 2, 1, 0, 4, 2, 6],  # 4-path end
        [0, 1, 0, 0, 2, 0, 1, 2, 2, 4, 6],  # 4-path inner
        [0, 0, 1, 0, 0, 1, 1, 0, 2, 1, 3],  # claw leaf
        [0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 1],  # claw centre
        [0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 3],  # 4-cycle
        [0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 3],  # paw tail end
        [0, 0, 0, 0, 0, 0, 1, 0, 2, 2, 6],  # paw degree-2 triangle node
        [0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 3],  # paw centre
        [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 3],  # diamond degree-2 node
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3],  # diamond degree-3 node
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],  # 4-clique
    ],
    dtype=np.int64,
)
# Unitriangular integer matrix -> integer inverse; rounding the float inverse is exact here.
_INDUCED_FROM_NONINDUCED = np.rint(np.linalg.inv(_NONINDUCED_FROM_INDUCED)).astype(np.int64)
assert np.array_equal(_INDUCED_FROM_NONINDUCED @ _NONINDUCED_FROM_INDUCED, np.eye(11, dtype=np.int64))


def graph_adjacency(graph: nx.Graph) -> sp.csr_matrix:
    """Binary symmetric CSR adjacency (float64) of an undirected simple networkx graph, rows in
    ``graph.nodes()`` order. Edge weights are ignored; directed graphs, multigraphs and self-loops are rejected."""
    if not isinstance(graph, nx.Graph):
        raise ValueError(f"expected a networkx.Graph, got {type(graph).__name__}")
    if graph.is_directed() or graph.is_multigraph():
        raise ValueError("expected an undirected simple graph (got a directed graph or a multigraph)")
    if nx.number_of_selfloops(graph) > 0:
        raise ValueError(f"graph has {nx.number_of_selfloops(graph)} self-loop(s); remove them first")
    n = graph.number_of_nodes()
    row = {v: i for i, v in enumerate(graph.nodes())}
    ends = np.array([(row[u], row[v]) for u, v in graph.edges()], dtype=np.int64).reshape(-1, 2)
    ones = np.ones(2 * len(ends))
    return sp.csr_matrix((ones, (np.r_[ends[:, 0], ends[:, 1]], np.r_[ends[:, 1], ends[:, 0]])), shape=(n, n))


def orbit_counts(graph: nx.Graph) -> np.ndarray:
    """``(n_nodes, 15)`` int64 orbit counts, rows in ``graph.nodes()`` order (what ORCA ``node 4`` prints)."""
    return orbit_counts_from_adjacency(graph_adjacency(graph))


def orbit_counts_from_adjacency(adj: sp.spmatrix | np.ndarray) -> np.ndarray:
    """Orbit counts from a symmetric 0/1 adjacency matrix with an empty diagonal (dense or sparse)."""
    a = sp.csr_matrix(adj, dtype=np.float64)
    n = a.shape[0]
    if a.shape[1] != n:
        raise ValueError(f"adjacency must be square, got shape {a.shape}")
    if n == 0:
        return np.zeros((0, N_ORBITS), dtype=np.int64)
    if a.diagonal().any():
        raise ValueError("adjacency has a non-zero diagonal (self-loops)")
    if (a != a.T).nnz:
        raise ValueError("adjacency is not symmetric")
    a.data = (a.data != 0).astype(np.float64)
    a.eliminate_zeros()
    # Small graphs: dense BLAS beats scipy.sparse's per-call overhead by far; large ones stay sparse.
    # All counts are integers far below 2**53, so float64 arithmetic is exact.
    if n <= DENSE_MAX_NODES:
        a = a.toarray()

    deg = _rowsum(a)
    walks2 = a @ a  # (A^2)_ij = common neighbours of i and j
    edge_tri = _hadamard(a, walks2)  # T_ij = triangles through edge ij
    tri = _rowsum(edge_tri) / 2
    nbr_deg_minus1 = a @ (deg - 1)

    out = np.zeros((n, N_ORBITS), dtype=np.float64)
    out[:, 0] = deg
    out[:, 1] = nbr_deg_minus1 - 2 * tri
    out[:, 2] = _choose2(deg) - tri
    out[:, 3] = tri
    out[:, 4:] = _noninduced_four_node(a, deg, walks2, edge_tri, tri, nbr_deg_minus1) @ _INDUCED_FROM_NONINDUCED.T
    return np.rint(out).astype(np.int64)


def _noninduced_four_node(a, deg, walks2, edge_tri, tri, nbr_deg_minus1) -> np.ndarray:
    """``(n, 11)`` non-induced counts of the patterns in ``_NONINDUCED_FROM_INDUCED`` row order."""
    cols = np.zeros((a.shape[0], 11), dtype=np.float64)
    # 4-path i-j-k-l: walks of length 3 from i minus the ones revisiting i or backtracking.
    cols[:, 0] = a @ nbr_deg_minus1 - deg * (deg - 1) - 2 * tri
    # 4-path j-i-k-l: an edge k-l beyond neighbour k, another neighbour j of i; drop l == j (triangles).
    cols[:, 1] = (deg - 1) * nbr_deg_minus1 - 2 * tri
    cols[:, 2] = a @ _choose2(deg - 1)  # claw leaf: the centre picks two more neighbours
    cols[:, 3] = _choose3(deg)
    # 4-cycles through i: an opposite node k and two of its common neighbours with i (k == i excluded).
    cols[:, 4] = _rowsum(_map_entries(walks2, _choose2)) - _choose2(deg)
    cols[:, 5] = a @ tri - 2 * tri  # paw tail end: triangles at the neighbour that avoid i
    cols[:, 6] = edge_tri @ (deg - 2)  # paw triangle node: triangle on edge (i, c), tail from c
    cols[:, 7] = tri * (deg - 2)  # paw centre
    # Diamond, i of degree 2: an edge (u, v) inside N(i) plus another common neighbour of u and v.
    cols[:, 8] = _rowsum(_hadamard(a @ (edge_tri - a), a)) / 2
    # Diamond, i of degree 3: a chord (i, v) and two common neighbours of i and v.
    cols[:, 9] = _rowsum(_map_entries(edge_tri, _choose2))
    cols[:, 10] = _four_cliques(a)
    return cols


def _four_cliques(a) -> np.ndarray:
    """4-cliques per node: every 4-clique through x is exactly one triangle avoiding x plus x as common
    neighbour of all three corners, so the count is a column sum over triangles of their common neighbours."""
    u, v = _nonzero(sp.triu(a, k=1) if sp.issparse(a) else np.triu(a, k=1))
    if len(u) == 0:
        return np.zeros(a.shape[0])
    edge_row, w = _nonzero(_hadamard(a[u], a[v]))  # common neighbours w of each edge (u < v)
    keep = w > v[edge_row]  # list each triangle once, as u < v < w
    u, v, w = u[edge_row[keep]], v[edge_row[keep]], w[keep]
    if len(w) == 0:
        return np.zeros(a.shape[0])
    return np.asarray(_hadamard(_hadamard(a[u], a[v]), a[w]).sum(axis=0)).ravel()


# Dense/sparse adapters, so the formulas above read the same for both storage types.
def _rowsum(m) -> np.ndarray:
    return np.asarray(m.sum(axis=1)).ravel()


def _hadamard(x, y):
    return x.multiply(y).tocsr() if sp.issparse(x) else x * y


def _map_entries(m, fn):
    """``fn`` applied entry-wise; for sparse input only to stored entries, so ``fn(0)`` must be 0."""
    if not sp.issparse(m):
        return fn(m)
    m = m.copy()
    m.data = fn(m.data)
    return m


def _nonzero(m) -> tuple[np.ndarray, np.ndarray]:
    if sp.issparse(m):
        coo = m.tocoo()
        return coo.row.astype(np.int64), coo.col.astype(np.int64)
    return np.nonzero(m)


def _choose2(x: np.ndarray) -> np.ndarray:
    return x * (x - 1) / 2


def _choose3(x: np.ndarray) -> np.ndarray:
    return x * (x - 1) * (x - 2) / 6
