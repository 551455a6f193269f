"""graphgen datasets in the GDSS protocol: generic graph benchmarks and the QM9 / ZINC250k molecule sets.

Generic graphs come from ``<data_dir>/graphs/<name>.json`` (the GDSS lists in published order); the test split
is the first ``int(0.2 * len)`` graphs, no shuffle. Molecules are preprocessed as GDSS/MoFlow do: parse,
round-trip through non-isomeric canonical SMILES (this fixes the atom order), kekulize, drop hydrogens, and
keep only atomic numbers and bond orders. Formal charges are therefore dropped (ZINC250k has [N+], [O-], [NH+],
[S-], ...); decoding restores +1 on over-valent N/O/S only, exactly as GDSS (see
``graphgen.representation.construct_mol``). Preprocessed molecules are cached on disk, keyed by a hash of the
source files and the settings.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import networkx as nx
import numpy as np
import torch
from rdkit import Chem
from rdkit.rdBase import BlockLogs
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch.utils.data import Dataset

from graphgen.representation import (
    QM9_ATOMS,
    ZINC250K_ATOMS,
    degree_features,
    graphs_to_adjacency,
    node_flags,
)
from shared.io import atomic_write_bytes, write_cache
from shared.paths import require_file, resolve_data_dir

__all__ = [
    "GRAPH_DATASETS",
    "QM9_MAX_ATOMS",
    "ZINC250K_MAX_ATOMS",
    "ZINC250K_URL",
    "load_graph_list",
    "split_graphs",
    "load_graph_dataset",
    "community_graphs",
    "grid_graphs",
    "GraphDataset",
    "MoleculeData",
    "smiles_to_molecule_data",
    "read_qm9pack_table",
    "qm9_property_labels",
    "node_counts_from_file",
    "load_qm9",
    "load_zinc250k",
    "MoleculeDataset",
]

_LOG = logging.getLogger(__name__)

# GDSS configs: (max_node_num, max_feat_num) per generic benchmark
GRAPH_DATASETS: dict[str, tuple[int, int]] = {
    "community_small": (20, 10),
    "ego_small": (18, 17),
    "grid": (361, 5),
    "ENZYMES": (125, 10),
}
QM9_MAX_ATOMS = 9
ZINC250K_MAX_ATOMS = 38
ZINC250K_URL = (
    "https://raw.githubusercontent.com/aspuru-guzik-group/chemical_vae/master/models/zinc_properties/"
    "250k_rndm_zinc_drugs_clean_3.csv"
)
ZINC250K_FILE = "250k_rndm_zinc_drugs_clean_3.csv"
_CACHE_FORMAT = 1  # bump when the cached arrays change meaning


# ============================================================================================ generic graphs
def _require_data_dir(data_dir: str | os.PathLike | None) -> Path:
    path = resolve_data_dir(data_dir)
    if path is None:
        raise FileNotFoundError("no data directory: pass data_dir or set $SCOREGEN_DATA")
    return path


def load_graph_list(name: str, data_dir: str | os.PathLike | None = None) -> list[nx.Graph]:
    """The benchmark list ``graphs/<name>.json`` as networkx graphs (nodes 0..n-1, published order)."""
    path = require_file(_require_data_dir(data_dir) / "graphs" / f"{name}.json", f"graph dataset '{name}'")
    with open(path, encoding="utf-8") as handle:
        payload = json.load(handle)
    if not isinstance(payload, dict) or not isinstance(payload.get("graphs"), list):
        raise ValueError(f"{path}: expected an object with a 'graphs' list")
    graphs = []
    for i, entry in enumerate(payload["graphs"]):
        try:
            n = int(entry["num_nodes"])
            edges = [(int(u), int(v)) for u, v in entry["edges"]]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{path}: graph {i} needs 'num_nodes' and a list of [u, v] 'edges' ({error})"
            ) from None
        if any(not (0 <= u < n and 0 <= v < n) for u, v in edges):
            raise ValueError(f"{path}: graph {i} has an edge outside nodes 0..{n - 1}")
        graph = nx.Graph()
        graph.add_nodes_from(range(n))
        graph.add_edges_from(edges)
        graphs.append(graph)
    return graphs


def split_graphs(graphs: Sequence[nx.Graph], test_fraction: float = 0.2) -> tuple[list, list]:
    """GDSS split: ``(train, test)`` with test = the first ``int(test_fraction * len)`` graphs, no shuffle."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    test_size = int(test_fraction * len(graphs))
    return list(graphs[test_size:]), list(graphs[:test_size])


def load_graph_dataset(name: str, data_dir: str | os.PathLike | None = None) -> tuple[list, list]:
    """``(train, test)`` graph lists of a GDSS benchmark."""
    if name not in GRAPH_DATASETS:
        raise ValueError(f"unknown graph dataset '{name}'; choose from {sorted(GRAPH_DATASETS)}")
    return split_graphs(load_graph_list(name, data_dir))


def community_graphs(
    num_graphs: int,
    generator: np.random.Generator,
    node_range: tuple[int, int] = (12, 20),
    p_in: float = 0.7,
    p_inter: float = 0.05,
) -> list[nx.Graph]:
    """GDSS/GraphRNN community-small generator: two G(n, p_in) communities of ``max_nodes // 2`` nodes each
    (``max_nodes`` uniform in ``node_range``), then between every pair of connected components each node pair
    is bridged with probability ``2 p_inter / size``; a pair left without a bridge gets one between the
    components' first nodes. Unlike GDSS (fixed seeds 0 and 1 for the communities), all randomness comes
    from ``generator``.
    """
    graphs = []
    for _ in range(num_graphs):
        size = int(generator.integers(node_range[0], node_range[1] + 1)) // 2
        n = 2 * size
        block = np.zeros((n, n), dtype=bool)
        block[:size, :size] = True
        block[size:, size:] = True
        adj = np.triu(block & (generator.random((n, n)) < p_in), k=1)
        num_comp, labels = connected_components(coo_matrix(adj), directed=False)
        p_bridge = p_inter * 2 / size
        members = [np.flatnonzero(labels == c) for c in range(num_comp)]
        for i in range(num_comp):
            for j in range(i + 1, num_comp):
                a, b = members[i], members[j]
                bridge = generator.random((a.size, b.size)) < p_bridge
                if not bridge.any():
                    bridge[0, 0] = True
                rows, cols = np.nonzero(bridge)
                adj[np.minimum(a[rows], b[cols]), np.maximum(a[rows], b[cols])] = True
        graph = nx.Graph()
        graph.add_nodes_from(range(n))
        graph.add_edges_from(zip(*np.nonzero(adj)))
        graphs.append(nx.convert_node_labels_to_integers(graph))
    return graphs


def grid_graphs(
    num_graphs: int, generator: np.random.Generator, side_range: tuple[int, int] = (10, 19)
) -> list[nx.Graph]:
    """GDSS grid benchmark generator: 2-D ``m x n`` grids, ``m, n`` uniform in ``side_range`` (inclusive)."""
    sides = generator.integers(side_range[0], side_range[1] + 1, size=(num_graphs, 2))
    return [nx.convert_node_labels_to_integers(nx.grid_2d_graph(int(m), int(n))) for m, n in sides]


class GraphDataset(Dataset):
    """Padded GDSS tensors of generic graphs: ``{"x": (N, max_feat_num) one-hot degree, "adj": (N, N) binary,
    "flags": (N,) node mask}``. Degrees >= ``max_feat_num`` are clipped to the last class."""

    def __init__(self, graphs: Sequence[nx.Graph], max_node_num: int, max_feat_num: int):
        if len(graphs) == 0:
            raise ValueError("GraphDataset needs at least one graph")
        self.adj = graphs_to_adjacency(graphs, max_node_num)
        self.flags = node_flags([g.number_of_nodes() for g in graphs], max_node_num)
        self.x = degree_features(self.adj, max_feat_num, self.flags)

    def __len__(self) -> int:
        return self.adj.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "adj": self.adj[index], "flags": self.flags[index]}


# ============================================================================================ molecules
@dataclass
class MoleculeData:
    """Preprocessed molecules in a compact form (dense tensors are built per item or batch).

    ``atoms (M, max_atoms)`` atom-type indices into ``atom_types`` (-1 = empty slot); bonds of molecule ``i``
    are ``bonds[bond_offsets[i]:bond_offsets[i + 1]]`` rows ``(begin, end, order)``; ``smiles`` are RDKit
    canonical isomeric SMILES of the source (what GDSS compares against); ``rows`` are 0-based source rows.
    """

    atom_types: tuple[str, ...]
    atoms: np.ndarray
    bonds: np.ndarray
    bond_offsets: np.ndarray
    smiles: list[str]
    rows: np.ndarray

    def __len__(self) -> int:
        return self.atoms.shape[0]

    @property
    def max_atoms(self) -> int:
        return self.atoms.shape[1]

    def subset(self, mask_or_index: np.ndarray) -> "MoleculeData":
        index = np.arange(len(self))[np.asarray(mask_or_index)]
        counts = np.diff(self.bond_offsets)[index]
        starts = self.bond_offsets[index]
        # gather every selected molecule's bond rows at once: start of its run + position inside the run
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return MoleculeData(
            atom_types=self.atom_types,
            atoms=self.atoms[index],
            bonds=self.bonds[np.repeat(starts, counts) + within],
            bond_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            smiles=[self.smiles[i] for i in index],
            rows=self.rows[index],
        )

    def to_tensors(self, virtual_channel: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """All molecules as ``X (M, N, T[+1])`` one-hot and ``A (M, N, N)`` bond orders (dense: meant for
        subsets; use ``MoleculeDataset`` to stream a full 250k-molecule set)."""
        num_types = len(self.atom_types)
        atoms = torch.as_tensor(self.atoms.astype(np.int64))
        x = torch.nn.functional.one_hot(torch.where(atoms < 0, num_types, atoms), num_types + 1).float()
        if not virtual_channel:
            x = x[..., :num_types]
        adj = torch.zeros(len(self), self.max_atoms, self.max_atoms)
        owner = torch.as_tensor(np.repeat(np.arange(len(self)), np.diff(self.bond_offsets)))
        bonds = torch.as_tensor(self.bonds.astype(np.int64))
        adj[owner, bonds[:, 0], bonds[:, 1]] = bonds[:, 2].float()
        adj[owner, bonds[:, 1], bonds[:, 0]] = bonds[:, 2].float()
        return x, adj


def smiles_to_molecule_data(
    smiles: Sequence[str], atom_types: Sequence[str], max_atoms: int, rows: Sequence[int] | None = None
) -> tuple[MoleculeData, list[tuple[int, str, str]]]:
    """Preprocess SMILES the GDSS/MoFlow way. Returns the kept molecules and ``(row, smiles, reason)`` for
    each skipped one (unparsable, too many heavy atoms, or an element outside ``atom_types``)."""
    rows = np.arange(len(smiles)) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(rows) != len(smiles):
        raise ValueError(f"{len(smiles)} SMILES but {len(rows)} row numbers")
    lookup = np.full(128, -1, dtype=np.int64)
    lookup[[Chem.Atom(s).GetAtomicNum() for s in atom_types]] = np.arange(len(atom_types))
    failures: list[tuple[int, str, str]] = []
    atomic_numbers, bonds, kept_rows, kept_texts, kept_smiles = [], [], [], [], []
    with BlockLogs():
        for row, text in zip(rows.tolist(), smiles):
            try:
                mol = Chem.MolFromSmiles(text.strip())
                if mol is None:
                    failures.append((row, text, "unparsable SMILES"))
                    continue
                canonical = Chem.MolToSmiles(mol)
                mol = Chem.MolFromSmiles(Chem.MolToSmiles(mol, isomericSmiles=False))
                Chem.Kekulize(mol, clearAromaticFlags=True)
            except Exception as error:  # one odd molecule must not stop a 250k-row run
                failures.append((row, text, f"RDKit error: {error}"))
                continue
            if mol.GetNumAtoms() > max_atoms:
                failures.append((row, text, f"{mol.GetNumAtoms()} heavy atoms > {max_atoms}"))
                continue
            atomic_numbers.append([a.GetAtomicNum() for a in mol.GetAtoms()])
            bonds.append(
                [
                    (b.GetBeginAtomIdx(), b.GetEndAtomIdx(), int(b.GetBondTypeAsDouble()))
                    for b in mol.GetBonds()
                ]
            )
            kept_rows.append(row)
            kept_texts.append(text)
            kept_smiles.append(canonical)
    # vectorised assembly: flatten, map atomic numbers to type indices, drop molecules with foreign elements
    sizes = np.array([len(a) for a in atomic_numbers], dtype=np.int64)
    flat = np.fromiter((z for a in atomic_numbers for z in a), dtype=np.int64, count=int(sizes.sum()))
    types = lookup[np.clip(flat, 0, 127)]
    owner = np.repeat(np.arange(len(sizes)), sizes)
    foreign = np.bincount(owner[types < 0], minlength=len(sizes)) > 0
    for i in np.flatnonzero(foreign):
        failures.append((kept_rows[i], kept_texts[i], "element not allowed"))
    atoms = np.full((len(sizes), max_atoms), -1, dtype=np.int8)
    position = np.arange(flat.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    atoms[owner, position] = types
    bond_counts = np.array([len(b) for b in bonds], dtype=np.int64)
    bond_array = np.array([t for b in bonds for t in b], dtype=np.int16).reshape(-1, 3)
    data = MoleculeData(
        atom_types=tuple(atom_types),
        atoms=atoms,
        bonds=bond_array,
        bond_offsets=np.concatenate([[0], np.cumsum(bond_counts)]).astype(np.int64),
        smiles=kept_smiles,
        rows=np.asarray(kept_rows, dtype=np.int64),
    )
    if foreign.any():
        data = data.subset(~foreign)
    failures.sort()
    return data, failures


def _report_failures(name: str, failures: list[tuple[int, str, str]], total: int) -> None:
    for row, text, reason in failures[:20]:
        _LOG.warning("%s row %d skipped (%s): %r", name, row, reason, text)
    if failures:
        warnings.warn(
            f"{name}: skipped {len(failures)} of {total} molecules (first rows: {[f[0] for f in failures[:10]]})",
            stacklevel=3,
        )


def _default_cache_dir() -> Path:
    from shared.paths import cache_dir

    return cache_dir("graphgen")


def _file_digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _cached_molecules(
    name: str,
    sources: Sequence[Path],
    atom_types: Sequence[str],
    max_atoms: int,
    read_table,
    cache_dir: str | os.PathLike | None,
) -> MoleculeData:
    """Preprocessed molecules of ``read_table() -> (rows, smiles)``, from the cache when the key matches."""
    settings = json.dumps({"atoms": list(atom_types), "max_atoms": max_atoms, "format": _CACHE_FORMAT})
    key = hashlib.sha256((_file_digest(sources) + settings).encode()).hexdigest()[:20]
    path = Path(cache_dir if cache_dir is not None else _default_cache_dir()) / f"{name}-{key}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return MoleculeData(
                atom_types=tuple(atom_types),
                atoms=stored["atoms"],
                bonds=stored["bonds"],
                bond_offsets=stored["bond_offsets"],
                smiles=stored["smiles"].tolist(),
                rows=stored["rows"],
            )
    rows, smiles = read_table()
    data, failures = smiles_to_molecule_data(smiles, atom_types, max_atoms, rows)
    _report_failures(name, failures, len(smiles))
    buffer = io.BytesIO()
    np.savez(
        buffer,
        atoms=data.atoms,
        bonds=data.bonds,
        bond_offsets=data.bond_offsets,
        smiles=np.array(data.smiles, dtype=str),
        rows=data.rows,
        failed_rows=np.array([f[0] for f in failures], dtype=np.int64),
    )
    if not write_cache(path, lambda p: atomic_write_bytes(p, buffer.getvalue()), f"{name} molecule cache"):
        return data
    _LOG.info("%s: cached %d molecules at %s", name, len(data), path)
    return data


def _split(data: MoleculeData, test_rows: np.ndarray) -> tuple[MoleculeData, MoleculeData]:
    is_test = np.isin(data.rows, test_rows)
    return data.subset(~is_test), data.subset(is_test)


def _qm9pack_tables() -> list[Path]:
    # locate the data without importing qm9pack (its __init__ needs pkg_resources and pandas)
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("QM9 needs the 'qm9pack' package (pip install qm9pack)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return [require_file(folder / f"qm9_part{i}.csv", "qm9pack table") for i in (1, 2, 3)]


def _read_qm9pack_tables(tables: Sequence[Path]) -> tuple[np.ndarray, list[str]]:
    csv.field_size_limit(sys.maxsize)  # the XYZ / frequency columns are long
    rows, smiles = [], []
    for table in tables:
        with open(table, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            index_col, smiles_col = header.index("Index"), header.index("SMILES")
            for record in reader:
                rows.append(int(record[index_col]) - 1)  # QM9 index 1 is row 0
                smiles.append(record[smiles_col])
    order = np.argsort(rows, kind="stable")
    return np.asarray(rows, dtype=np.int64)[order], [smiles[i] for i in order]


def read_qm9pack_table() -> tuple[np.ndarray, list[str]]:
    """QM9 ``(rows, smiles)`` straight from qm9pack, sorted by row (row ``r`` = QM9 index ``r + 1``)."""
    return _read_qm9pack_tables(_qm9pack_tables())


_HARTREE_TO_EV = 27.211386245988  # CODATA 2018, as molgen.units
# qm9pack column -> (our name, factor to eV / Debye); QM9's labels are B3LYP/6-31G(2df,p) at B3LYP geometries
_QM9_LABEL_COLUMNS = {"HOMO_au": ("homo_eV", _HARTREE_TO_EV), "LUMO_au": ("lumo_eV", _HARTREE_TO_EV),
                      "HOMO_LUMO_gap_au": ("gap_eV", _HARTREE_TO_EV), "Dipole_debye": ("dipole_D", 1.0)}


def qm9_property_labels(rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """QM9's HOMO, LUMO, gap (eV) and dipole (D) from qm9pack, for the given 0-based rows (default: all)."""
    csv.field_size_limit(sys.maxsize)
    found: dict[int, list[float]] = {}
    for table in _qm9pack_tables():
        with open(table, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            index_col = header.index("Index")
            columns = [header.index(name) for name in _QM9_LABEL_COLUMNS]
            for record in reader:
                found[int(record[index_col]) - 1] = [float(record[c]) for c in columns]
    wanted = sorted(found) if rows is None else [int(r) for r in rows if int(r) in found]
    table = np.asarray([found[r] for r in wanted], dtype=np.float64).reshape(-1, len(_QM9_LABEL_COLUMNS))
    return {name: table[:, k] * factor for k, (name, factor) in enumerate(_QM9_LABEL_COLUMNS.values())}


def load_qm9(
    data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None
) -> tuple[MoleculeData, MoleculeData]:
    """QM9 ``(train, test)`` from qm9pack with the GDSS test split ``qm9/valid_idx_qm9.json``.

    Row ``r`` is QM9 index ``r + 1``; molecules qm9pack lacks (3,054 unconverged ones) are simply absent.
    """
    split_path = require_file(_require_data_dir(data_dir) / "qm9" / "valid_idx_qm9.json", "QM9 split")
    with open(split_path, encoding="utf-8") as handle:
        payload = json.load(handle)
    if not isinstance(payload, dict) or "valid_idxs" not in payload:
        raise ValueError(f"{split_path}: expected {{'valid_idxs': [...]}}")
    test_rows = np.array([int(i) for i in payload["valid_idxs"]], dtype=np.int64)
    tables = _qm9pack_tables()
    data = _cached_molecules(
        "qm9", tables, QM9_ATOMS, QM9_MAX_ATOMS, lambda: _read_qm9pack_tables(tables), cache_dir
    )
    return _split(data, test_rows)


def _read_zinc_csv(path: Path) -> tuple[np.ndarray, list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader)]
        if "smiles" not in header:
            raise ValueError(f"{path}: no 'smiles' column in header {header}")
        col = header.index("smiles")
        smiles = [record[col].strip() for record in reader if record]
    return np.arange(len(smiles), dtype=np.int64), smiles


def load_zinc250k(
    csv_path: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    split_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[MoleculeData, MoleculeData]:
    """ZINC250k ``(train, test)``: the chemical_vae CSV (``csv_path`` or ``<data_dir>/zinc250k/``) split by
    ``valid_idx_zinc250k.json`` (0-based CSV rows). Download the CSV from ``ZINC250K_URL``."""
    root = resolve_data_dir(data_dir)
    if csv_path is None:
        if root is None:
            raise FileNotFoundError("ZINC250k: pass csv_path or data_dir (or set $SCOREGEN_DATA)")
        csv_path = root / "zinc250k" / ZINC250K_FILE
    if not Path(csv_path).is_file():
        raise FileNotFoundError(f"ZINC250k CSV not found at {csv_path}; download it from {ZINC250K_URL}")
    csv_path = Path(csv_path)
    if split_path is None:
        if root is None:
            raise FileNotFoundError("ZINC250k: pass split_path or data_dir (or set $SCOREGEN_DATA)")
        split_path = root / "zinc250k" / "valid_idx_zinc250k.json"
    split_path = require_file(split_path, "ZINC250k split")
    with open(split_path, encoding="utf-8") as handle:
        payload = json.load(handle)
    if not isinstance(payload, list):
        raise ValueError(f"{split_path}: expected a JSON list of row indices")
    test_rows = np.asarray(payload, dtype=np.int64)
    data = _cached_molecules(
        "zinc250k",
        [csv_path],
        ZINC250K_ATOMS,
        ZINC250K_MAX_ATOMS,
        lambda: _read_zinc_csv(csv_path),
        cache_dir,
    )
    return _split(data, test_rows)


class MoleculeDataset(Dataset):
    """GDSS molecule tensors per item: ``{"x": (N, T[+1]) one-hot atom types, "adj": (N, N) bond orders,
    "flags": (N,) atom mask}``. GDSS trains without the virtual column (``virtual_channel=False``)."""

    def __init__(self, data: MoleculeData, virtual_channel: bool = False):
        if len(data) == 0:
            raise ValueError("MoleculeDataset needs at least one molecule")
        self.data = data
        self.virtual_channel = virtual_channel

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = range(len(self))[index]  # negative indices and IndexError as for a list
        data, num_types, n = self.data, len(self.data.atom_types), self.data.max_atoms
        atoms = torch.as_tensor(data.atoms[index].astype(np.int64))
        x = torch.nn.functional.one_hot(torch.where(atoms < 0, num_types, atoms), num_types + 1).float()
        if not self.virtual_channel:
            x = x[:, :num_types]
        bonds = torch.as_tensor(
            data.bonds[data.bond_offsets[index] : data.bond_offsets[index + 1]].astype(np.int64)
        )
        adj = torch.zeros(n, n)
        adj[bonds[:, 0], bonds[:, 1]] = bonds[:, 2].float()
        adj[bonds[:, 1], bonds[:, 0]] = bonds[:, 2].float()
        return {"x": x, "adj": adj, "flags": (atoms >= 0).float()}


# ============================================================================================ node counts
def node_counts_from_file(path: str | os.PathLike, max_node_num: int) -> torch.Tensor:
    """``counts[k]`` = training graphs with k nodes, from a JSON histogram or the training molecules themselves.

    JSON: a list ``[c_0, c_1, ...]`` or an object ``{"counts": [...]}`` or ``{"<k>": c_k, ...}``. Molecules:
    SMILES (.smi/.txt, first token per line; .csv with a ``smiles`` column, e.g. ZINC250k's) or SDF, counted in
    heavy atoms (the graph nodes). Unreadable records are skipped with a warning that names them.
    """
    path = require_file(path, "node counts")
    suffix = path.suffix.lower()
    if suffix == ".json":
        sizes = None
        counts = _histogram_from_json(path)
    elif suffix in (".smi", ".txt", ".csv", ".sdf"):
        sizes = _heavy_atom_counts(path)
        counts = np.bincount(sizes, minlength=max_node_num + 1)
    else:
        raise ValueError(f"{path}: node counts come from .json (histogram), .smi/.txt/.csv (SMILES) or .sdf")
    if counts.ndim != 1 or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError(f"{path}: a node-count histogram needs non-negative counts with a positive total")
    if len(counts) > max_node_num + 1 and counts[max_node_num + 1:].any():
        largest = int(np.nonzero(counts)[0].max())
        raise ValueError(f"{path}: holds graphs of {largest} nodes but the model has at most {max_node_num}")
    out = np.zeros(max_node_num + 1, dtype=np.int64)
    out[: min(len(counts), max_node_num + 1)] = counts[: max_node_num + 1]
    return torch.as_tensor(out)


def _histogram_from_json(path: Path) -> np.ndarray:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if isinstance(payload, dict) and "counts" in payload:
        payload = payload["counts"]
    try:
        if isinstance(payload, dict):
            pairs = {int(k): float(v) for k, v in payload.items()}
            hist = np.zeros(max(pairs) + 1)
            for k, v in pairs.items():
                hist[k] = v
            return hist
        if isinstance(payload, list):
            return np.asarray([float(v) for v in payload])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: node counts must be numbers indexed by node count ({err})") from None
    raise ValueError(f"{path}: expected a list of counts or an object {{'counts': [...]}} / {{'k': count}}")


def _heavy_atom_counts(path: Path) -> np.ndarray:
    from rdkit import Chem, RDLogger

    from graphgen.representation import sdf_record_mol
    from shared.io import split_sdf_records

    RDLogger.DisableLog("rdApp.*")
    try:
        if path.suffix.lower() == ".sdf":
            text = path.read_bytes().decode("utf-8", errors="replace")
            records = [(k + 1, sdf_record_mol(block, sanitize=False))
                       for k, (_, block) in enumerate(split_sdf_records(text))]
            where = "record"
        else:
            records, where = [], "line"
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            column = 0
            if path.suffix.lower() == ".csv" and lines:
                header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
                if "smiles" not in header:
                    raise ValueError(f"{path}: a CSV needs a 'smiles' column (found {', '.join(header)})")
                column, lines = header.index("smiles"), lines[1:]
                offset = 2
            else:
                offset = 1
            for k, line in enumerate(lines):
                if not line.strip():
                    continue
                fields = next(csv.reader([line])) if path.suffix.lower() == ".csv" else line.split()
                text = fields[column].strip() if len(fields) > column else ""
                records.append((k + offset, Chem.MolFromSmiles(text, sanitize=False) if text else None))
    finally:
        RDLogger.EnableLog("rdApp.*")
    bad = [k for k, m in records if m is None]
    sizes = np.asarray([m.GetNumHeavyAtoms() for _, m in records if m is not None], dtype=np.int64)
    if not sizes.size:
        raise ValueError(f"{path}: no readable molecule to count nodes from")
    if bad:
        shown = ", ".join(str(k) for k in bad[:5]) + (", ..." if len(bad) > 5 else "")
        print(f"warning: {path}: {len(bad)} unreadable {where}(s) skipped for node counts ({where} {shown})",
              file=sys.stderr)
    return sizes
