"""Graphs and molecules as GDSS tensors: node features X (B, N, F) and adjacency A (B, N, N), both ways.

Molecules (GDSS / MoFlow convention): hydrogens removed, kekulized; X is a one-hot over the dataset's atom
types (optionally with a trailing "virtual" column for empty slots), A holds bond orders
{0: none, 1: single, 2: double, 3: triple}. Formal charges are *not* encoded (as in GDSS); decoding puts a
+1 charge back on N, O or S whose valence exceeds the neutral one by exactly one (GDSS ``construct_mol``).

Generic graphs: A is binary; X is a one-hot of the (clipped) node degree; padded slots are empty.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import networkx as nx
import numpy as np
import torch
from rdkit import Chem
from rdkit.rdBase import BlockLogs

__all__ = [
    "sdf_record_mol",
    "QM9_ATOMS",
    "ZINC250K_ATOMS",
    "BOND_TYPES",
    "mol_to_tensors",
    "mols_to_tensors",
    "quantize_bond_orders",
    "add_virtual_channel",
    "construct_mol",
    "decode_molecules",
    "valence_problem",
    "graphs_to_adjacency",
    "adjacency_to_graphs",
    "degree_features",
    "node_flags",
]

QM9_ATOMS: tuple[str, ...] = ("C", "N", "O", "F")
ZINC250K_ATOMS: tuple[str, ...] = ("C", "N", "O", "F", "P", "S", "Cl", "Br", "I")
BOND_TYPES = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
_BOND_ORDER = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
# neutral valences GDSS uses to decide whether a +1 charge explains an over-valent N, O or S
_NEUTRAL_VALENCE = {7: 3, 8: 2, 16: 2}


# ---------------------------------------------------------------------------------------------- molecules
def mol_to_tensors(
    mol: Chem.Mol, atom_types: Sequence[str], max_atoms: int, virtual_channel: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """One molecule as ``X (max_atoms, T[+1])`` one-hot atom types and ``A (max_atoms, max_atoms)`` bond orders.

    Hydrogens are removed and the molecule kekulized first; atom order is RDKit's.
    """
    mol = Chem.RemoveHs(mol)
    mol = Chem.Mol(mol)
    Chem.Kekulize(mol, clearAromaticFlags=True)
    n = mol.GetNumAtoms()
    if n > max_atoms:
        raise ValueError(f"molecule has {n} heavy atoms, more than max_atoms={max_atoms}")
    index = {symbol: i for i, symbol in enumerate(atom_types)}
    symbols = [atom.GetSymbol() for atom in mol.GetAtoms()]
    unknown = sorted(set(symbols) - set(index))
    if unknown:
        raise ValueError(f"atom types {unknown} are not in the allowed list {list(atom_types)}")
    width = len(atom_types) + int(virtual_channel)
    x = torch.zeros(max_atoms, width)
    types = torch.tensor([index[s] for s in symbols], dtype=torch.long)
    x[torch.arange(n), types] = 1.0
    if virtual_channel:
        x[n:, -1] = 1.0
    adj = torch.zeros(max_atoms, max_atoms)
    if mol.GetNumBonds():
        bonds = torch.tensor(
            [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), _bond_order(b)) for b in mol.GetBonds()],
            dtype=torch.long,
        )
        adj[bonds[:, 0], bonds[:, 1]] = bonds[:, 2].float()
        adj[bonds[:, 1], bonds[:, 0]] = bonds[:, 2].float()
    return x, adj


def mols_to_tensors(
    mols: Iterable[Chem.Mol], atom_types: Sequence[str], max_atoms: int, virtual_channel: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of molecules as ``X (B, N, T[+1])`` and ``A (B, N, N)``."""
    pairs = [mol_to_tensors(m, atom_types, max_atoms, virtual_channel) for m in mols]
    if not pairs:
        raise ValueError("mols_to_tensors needs at least one molecule")
    xs, adjs = zip(*pairs)
    return torch.stack(xs), torch.stack(adjs)


def _bond_order(bond: Chem.Bond) -> int:
    try:
        return _BOND_ORDER[bond.GetBondType()]
    except KeyError:
        raise ValueError(
            f"bond {bond.GetIdx()} has type {bond.GetBondType()}; only kekulized single/double/triple bonds "
            "are representable"
        ) from None


def quantize_bond_orders(adj: torch.Tensor) -> torch.Tensor:
    """Continuous adjacency -> integer bond orders as GDSS ``quantize_mol``.

    Thresholds 0.5 / 1.5 / 2.5 with the boundary going up (so no banker's rounding), clamped to {0, 1, 2, 3}.
    """
    return torch.floor(adj + 0.5).clamp(0, 3).to(torch.long)


def add_virtual_channel(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """GDSS sampler step: binarise generated atom features and append the "no atom" column.

    ``x > threshold`` gives 0/1 features; the virtual column is ``1 - sum``. An argmax over the result (as in
    ``construct_mol``) therefore means: no feature above the threshold -> empty slot, otherwise the *first*
    channel above the threshold (not the largest raw value).
    """
    binary = (x > threshold).to(x.dtype)
    return torch.cat([binary, 1 - binary.sum(dim=-1, keepdim=True)], dim=-1)


def valence_problem(mol: Chem.Mol) -> tuple[int, int] | None:
    """``(atom index, explicit valence)`` of the first over-valent atom, or ``None`` when valences are fine.

    Same check as GDSS ``check_valency`` (RDKit's SANITIZE_PROPERTIES, first failing atom in index order), but
    read from RDKit's problem objects rather than by parsing the error message text.
    """
    with BlockLogs():
        problems = Chem.DetectChemistryProblems(mol, sanitizeOps=Chem.SanitizeFlags.SANITIZE_PROPERTIES)
    for problem in problems:
        if problem.GetType() == "AtomValenceException":
            atom = mol.GetAtomWithIdx(problem.GetAtomIdx())
            valence = sum(b.GetBondTypeAsDouble() for b in atom.GetBonds()) + atom.GetNumExplicitHs()
            return atom.GetIdx(), int(round(valence))
    return None


def construct_mol(
    x: torch.Tensor | np.ndarray, bond_orders: torch.Tensor | np.ndarray, atom_types: Sequence[str]
) -> Chem.RWMol:
    """GDSS ``construct_mol``: one molecule from ``x (N, T+1)`` (last column = empty) and integer ``A (N, N)``.

    Atom type = argmax of ``x``; slots whose argmax is the last column are dropped. Bonds are read from the
    lower triangle in row-major order; after each bond, if the first over-valent atom is N, O or S with valence
    one above neutral it gets formal charge +1 (e.g. [N+] in nitro groups). The result is *not* sanitised.
    """
    x = torch.as_tensor(x)
    orders = torch.as_tensor(bond_orders).to(torch.long)
    if x.ndim != 2 or x.shape[1] != len(atom_types) + 1:
        raise ValueError(
            f"x must have shape (N, {len(atom_types) + 1}) incl. the empty column, got {tuple(x.shape)}"
        )
    if orders.shape != (x.shape[0], x.shape[0]):
        raise ValueError(f"bond_orders must have shape {(x.shape[0], x.shape[0])}, got {tuple(orders.shape)}")
    if orders.numel() and (orders.min() < 0 or orders.max() > 3):
        raise ValueError("bond_orders must be integers in {0, 1, 2, 3}; quantize them first")
    types = x.argmax(dim=-1)
    exists = types != len(atom_types)
    mol = Chem.RWMol()
    for t in types[exists].tolist():
        mol.AddAtom(Chem.Atom(atom_types[t]))
    sub = torch.tril(orders[exists][:, exists], diagonal=-1)
    for start, end in torch.nonzero(sub).tolist():
        mol.AddBond(start, end, BOND_TYPES[int(sub[start, end])])
        problem = valence_problem(mol)
        if problem is not None:
            idx, valence = problem
            atom = mol.GetAtomWithIdx(idx)
            neutral = _NEUTRAL_VALENCE.get(atom.GetAtomicNum())
            if neutral is not None and valence - neutral == 1:
                atom.SetFormalCharge(1)
    return mol


def decode_molecules(
    x: torch.Tensor, adj: torch.Tensor, atom_types: Sequence[str], threshold: float = 0.5
) -> list[Chem.RWMol]:
    """Generated ``x (B, N, T)`` and continuous ``adj (B, N, N)`` -> uncorrected RDKit molecules (GDSS sampler)."""
    if x.ndim != 3 or adj.ndim != 3 or x.shape[:2] != adj.shape[:2] or adj.shape[1] != adj.shape[2]:
        raise ValueError(
            f"expected x (B, N, T) and adj (B, N, N); got {tuple(x.shape)} and {tuple(adj.shape)}"
        )
    if x.shape[-1] != len(atom_types):
        raise ValueError(f"x has {x.shape[-1]} feature channels but {len(atom_types)} atom types were given")
    x_full = add_virtual_channel(x.detach().cpu().float(), threshold)
    orders = quantize_bond_orders(adj.detach().cpu().float())
    return [construct_mol(xi, ai, atom_types) for xi, ai in zip(x_full, orders)]


# ---------------------------------------------------------------------------------------------- generic graphs
def graphs_to_adjacency(graphs: Sequence[nx.Graph], max_node_num: int) -> torch.Tensor:
    """Binary padded adjacency ``(B, max_node_num, max_node_num)``; node order = ``graph.nodes`` order."""
    adj = torch.zeros(len(graphs), max_node_num, max_node_num)
    for b, graph in enumerate(graphs):
        n = graph.number_of_nodes()
        if n > max_node_num:
            raise ValueError(f"graph {b} has {n} nodes, more than max_node_num={max_node_num}")
        position = {node: i for i, node in enumerate(graph.nodes)}
        edges = [(position[u], position[v]) for u, v in graph.edges if u != v]
        if edges:
            e = torch.tensor(edges, dtype=torch.long)
            adj[b, e[:, 0], e[:, 1]] = 1.0
            adj[b, e[:, 1], e[:, 0]] = 1.0
    return adj


def adjacency_to_graphs(adj: torch.Tensor, threshold: float = 0.5) -> list[nx.Graph]:
    """GDSS ``quantize`` + ``adjs_to_graphs``: entries ``>= threshold`` are edges; self-loops and isolated
    nodes are dropped; an empty result becomes a single-node graph (as in GDSS)."""
    if adj.ndim != 3 or adj.shape[1] != adj.shape[2]:
        raise ValueError(f"adj must have shape (B, N, N), got {tuple(adj.shape)}")
    binary = adj.detach().cpu() >= threshold
    binary &= ~torch.eye(adj.shape[1], dtype=torch.bool)
    graphs = []
    for a in binary.numpy():
        graph = nx.from_numpy_array(a.astype(np.int8))
        graph.remove_nodes_from(list(nx.isolates(graph)))
        if graph.number_of_nodes() < 1:
            graph.add_node(1)
        graphs.append(graph)
    return graphs


def node_flags(num_nodes: Sequence[int] | torch.Tensor, max_node_num: int) -> torch.Tensor:
    """``(B, max_node_num)`` float mask: 1 for the first ``num_nodes[b]`` slots."""
    sizes = torch.as_tensor(num_nodes, dtype=torch.long)
    return (torch.arange(max_node_num, device=sizes.device) < sizes[:, None]).float()


def degree_features(adj: torch.Tensor, max_feat_num: int, flags: torch.Tensor | None = None) -> torch.Tensor:
    """GDSS ``init_features('deg')``: one-hot node degree ``(B, N, max_feat_num)``, masked by ``flags``.

    GDSS fails when a degree reaches ``max_feat_num``; here such degrees are clipped to the last class.
    """
    degree = adj.sum(dim=-1).round().to(torch.long).clamp(0, max_feat_num - 1)
    x = torch.nn.functional.one_hot(degree, max_feat_num).to(adj.dtype)
    if flags is None:
        flags = (adj.abs().sum(dim=-1) > 0).to(adj.dtype)
    return x * flags[..., None]


def sdf_record_mol(block: str, sanitize: bool = True):
    """The molecule of one SDF record (with its data fields), or None where RDKit cannot read it."""
    import io

    from rdkit import Chem

    try:
        return next(Chem.ForwardSDMolSupplier(io.BytesIO(block.encode()), sanitize=sanitize), None)
    except Exception:  # noqa: BLE001 - RDKit raises for some malformed blocks instead of returning None
        return None
