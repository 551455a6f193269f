"""QM9 in 3D: the 130,831-molecule table shipped by the PyPI package ``qm9pack``, bonds perceived from coordinates.

Pipeline (``prepare_qm9``):

1. Read ``qm9pack/data/qm9_part{1,2,3}.csv`` (original QM9 index, SMILES, InChI, elements, XYZ in Angstrom and the
   properties). The files are located without importing ``qm9pack`` (its ``__init__`` needs ``pkg_resources``).
2. Perceive bonds and formal charges from the coordinates with RDKit ``rdDetermineBonds.DetermineBonds(charge=0)``
   (connectivity from covalent radii; when that gives no valid bond ordering, e.g. the 1.87 A bridgehead
   distance of bicyclo[1.1.1]pentanes, retry with extended-Hueckel connectivity).
3. Compare the perceived molecule with the QM9 SMILES (canonical SMILES, stereo removed). Molecules whose
   perception fails or disagrees are excluded and counted by reason in ``summary.json``.
4. Split the kept molecules (``qm9_splits``) and cache everything in ``cache_dir`` (``atomic_torch_save``).

Splits (PropMolFlow/EDM conditional protocol): permutation of the kept molecules by ``numpy.random.default_rng(42)``;
the first ``n_train`` (100,000) are ``train``, the next ``n - n_train - n_test`` are ``valid`` and the last
``n_test = int(0.1 * n)`` are ``test`` (EDM's train/valid/test order). ``train`` is halved as in EDM's
conditional experiments: ``train_regressor`` = first half (property regressors), ``train_generator`` = second
half (the conditional generator).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from molgen.representation import MolTensors, atom_type_index, tensors_to_mol
from molgen.units import QM9_PROPERTY_UNITS
from shared.io import atomic_torch_save, atomic_write_json

__all__ = [
    "QM9_NUM_MOLECULES",
    "QM9_PROPERTIES",
    "QM9Table",
    "QM9Dataset",
    "qm9pack_data_dir",
    "load_qm9_table",
    "perceive_molecule",
    "canonical_smiles",
    "qm9_splits",
    "prepare_qm9",
    "read_summary",
]

QM9_NUM_MOLECULES = 130_831
PREPARE_VERSION = "v1"
QM9_PROPERTIES: tuple[str, ...] = tuple(QM9_PROPERTY_UNITS)
_COLUMNS = {
    "mu": "Dipole_debye",
    "alpha": "Polarizability_bohr3",
    "homo": "HOMO_au",
    "lumo": "LUMO_au",
    "gap": "HOMO_LUMO_gap_au",
    "r2": "R2_bohr2",
    "zpve": "ZPVE_au",
    "U0": "InternalEnergy_0K_au",
    "U": "InternalEnergy_298K_au",
    "H": "Enthalphy_298K_au",  # sic, qm9pack's spelling
    "G": "GibbsFreeEnergy_298K_au",
    "Cv": "Heatcapacity_Cv_cal_mol_K",
}
_PARTS = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
_SYMBOL_TO_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


# --- the raw table ------------------------------------------------------------------------------------------


def qm9pack_data_dir(source_dir: str | os.PathLike | None = None) -> Path:
    """Folder holding qm9pack's CSV files: ``source_dir`` if given, else the installed package's ``data``."""
    if source_dir is None:
        spec = importlib.util.find_spec("qm9pack")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("package qm9pack is not installed (pip install qm9pack), and no source_dir given")
        source_dir = Path(list(spec.submodule_search_locations)[0]) / "data"
    folder = Path(source_dir)
    missing = [name for name in _PARTS if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"QM9 table files {missing} not found in {folder}")
    return folder


@dataclass
class QM9Table:
    """Raw QM9 rows in file order (ascending original index). Properties already in molgen's units."""

    index: np.ndarray  # (M,) original 1-based QM9 index
    smiles: list[str]
    inchi: list[str]
    numbers: list[np.ndarray]  # per molecule (n,) atomic numbers
    positions: list[np.ndarray]  # per molecule (n, 3) Angstrom
    properties: np.ndarray  # (M, len(QM9_PROPERTIES))

    def __len__(self) -> int:
        return len(self.index)


def load_qm9_table(source_dir: str | os.PathLike | None = None, limit: int | None = None) -> QM9Table:
    """Read the qm9pack CSV parts (only the first ``limit`` rows when given)."""
    import pandas as pd

    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    folder = qm9pack_data_dir(source_dir)
    columns = ["Index", "SMILES", "InChi", "Elements", "XYZ_Ang", *_COLUMNS.values()]
    frames, remaining = [], limit
    for name in _PARTS:
        frame = pd.read_csv(folder / name, usecols=columns, nrows=remaining)
        frames.append(frame)
        if remaining is not None:
            remaining -= len(frame)
            if remaining <= 0:
                break
    table = pd.concat(frames, ignore_index=True).sort_values("Index", kind="stable").reset_index(drop=True)
    numbers, positions = [], []
    for row, (elements, xyz) in enumerate(zip(table["Elements"], table["XYZ_Ang"])):
        symbols = [s.strip().strip("'\"") for s in elements.strip("[]").split(",")]
        try:
            z = np.array([_SYMBOL_TO_Z[s] for s in symbols], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"QM9 row {row} (index {table['Index'][row]}): unknown element {exc}") from None
        coords = np.array(xyz.replace("[", "").replace("]", "").split(","), dtype=np.float64)
        if coords.size != 3 * len(z):
            raise ValueError(f"QM9 index {table['Index'][row]}: {len(z)} elements but {coords.size} coordinates")
        numbers.append(z)
        positions.append(coords.reshape(-1, 3))
    props = np.stack(
        [table[_COLUMNS[name]].to_numpy(np.float64) * QM9_PROPERTY_UNITS[name][1] for name in QM9_PROPERTIES], 1
    )
    return QM9Table(
        index=table["Index"].to_numpy(np.int64),
        smiles=table["SMILES"].tolist(),
        inchi=table["InChi"].tolist(),
        numbers=numbers,
        positions=positions,
        properties=props,
    )


# --- bond perception ----------------------------------------------------------------------------------------


def canonical_smiles(mol) -> str:
    """Canonical SMILES without stereochemistry and without explicit hydrogens (the comparison key)."""
    from rdkit import Chem

    copy = Chem.Mol(mol)
    Chem.RemoveStereochemistry(copy)
    return Chem.MolToSmiles(Chem.RemoveHs(copy), isomericSmiles=False)


@contextlib.contextmanager
def _quiet_c_output():
    """Silence C-level stdout and stderr (RDKit's Hueckel code prints distance warnings to stderr)."""
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield
        return
    with open(os.devnull, "wb") as devnull:
        _flush_c_stdio()
        os.dup2(devnull.fileno(), 1)
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            _flush_c_stdio()  # C stdio may buffer the text; flush it into /dev/null before restoring
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def _flush_c_stdio() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


def perceive_molecule(numbers: Sequence[int], positions: np.ndarray, charge: int = 0):
    """RDKit Mol with bonds and formal charges perceived from 3D coordinates (Angstrom); raises on failure."""
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds
    from rdkit.Geometry import Point3D

    rw = Chem.RWMol()
    for z in numbers:
        rw.AddAtom(Chem.Atom(int(z)))
    conformer = Chem.Conformer(len(numbers))
    for k, (x, y, z) in enumerate(np.asarray(positions, dtype=np.float64).tolist()):
        conformer.SetAtomPosition(k, Point3D(x, y, z))
    rw.AddConformer(conformer, assignId=True)
    bare = rw.GetMol()
    mol = Chem.Mol(bare)
    try:
        rdDetermineBonds.DetermineBonds(mol, charge=charge)
    except Exception:  # noqa: BLE001 - RDKit raises several types here; the fallback decides
        mol = Chem.Mol(bare)
        with _quiet_c_output():
            rdDetermineBonds.DetermineBonds(mol, charge=charge, useHueckel=True)
    return mol


def _perceive_record(numbers: np.ndarray, positions: np.ndarray, smiles: str, inchi: str) -> dict:
    """Perceive one molecule and compare with the reference SMILES/InChI; never raises."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        mol = perceive_molecule(numbers, positions)
    except Exception as exc:  # noqa: BLE001 - any perception failure is a counted exclusion
        return {"status": "perception_failed", "reason": f"{type(exc).__name__}: {str(exc)[:120]}"}
    reference = Chem.MolFromSmiles(smiles)
    if reference is None:
        return {"status": "reference_unparsable", "reason": f"RDKit cannot parse QM9 SMILES {smiles!r}"}
    ours, theirs = canonical_smiles(mol), canonical_smiles(reference)
    if ours != theirs:
        return {"status": "smiles_mismatch", "reason": f"perceived {ours} vs QM9 {theirs}"}
    tensors = _mol_arrays(mol)
    tensors["smiles"] = ours
    tensors["inchi_match"] = _inchi_skeleton(Chem.MolToInchi(mol)) == _inchi_skeleton(inchi)
    tensors["status"] = "ok"
    return tensors


def _inchi_skeleton(inchi: str | None) -> str:
    """InChI without its stereo layers (/b /t /m /s)."""
    if not inchi:
        return ""
    return "/".join(part for part in inchi.split("/") if part[:1] not in ("b", "t", "m", "s"))


def _mol_arrays(mol) -> dict:
    from molgen.representation import mol_to_tensors

    t = mol_to_tensors(mol)
    return {
        "charges": t.charges.numpy().astype(np.int8),
        "bond_index": t.bond_index.numpy().astype(np.int16),
        "bond_types": t.bond_types.numpy().astype(np.int8),
    }


def _perceive_chunk(chunk: list[tuple]) -> list[dict]:
    with _quiet_c_output():
        return [_perceive_record(*args) for args in chunk]


# --- splits -------------------------------------------------------------------------------------------------


def qm9_splits(
    n: int, *, seed: int = 42, n_train: int = 100_000, test_fraction: float = 0.1
) -> dict[str, np.ndarray]:
    """Index arrays into the ``n`` kept molecules (see module docstring for the protocol)."""
    n_test = int(test_fraction * n)
    if n_train <= 1 or n_train + n_test > n:
        raise ValueError(f"cannot split {n} molecules into {n_train} train and {n_test} test molecules")
    perm = np.random.default_rng(seed).permutation(n)
    train = perm[:n_train]
    return {
        "train": train,
        "train_regressor": train[: n_train // 2],
        "train_generator": train[n_train // 2 :],
        "valid": perm[n_train : n - n_test],
        "test": perm[n - n_test :],
    }


# --- prepare + dataset --------------------------------------------------------------------------------------


def _cache_name(limit: int | None) -> str:
    return f"qm9_{PREPARE_VERSION}_{'all' if limit is None else f'first{limit}'}"


def prepare_qm9(
    cache_dir: str | os.PathLike,
    limit: int | None = None,
    workers: int | None = None,
    source_dir: str | os.PathLike | None = None,
    chunk_size: int = 2000,
    n_train: int | None = None,
    progress: bool = False,
) -> Path:
    """Perceive, check, split and cache QM9; returns the cached ``.pt`` path (reused when present).

    ``workers``: process count (None = all CPUs, 0 or 1 = in this process). ``n_train`` defaults to 100,000 for
    the full table and to the same fraction (100,000 / 130,831) of the kept molecules for a ``limit`` run.
    """
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{_cache_name(limit)}.pt"
    if path.is_file():
        return path
    table = load_qm9_table(source_dir, limit)
    args = [(table.numbers[k], table.positions[k], table.smiles[k], table.inchi[k]) for k in range(len(table))]
    chunks = [args[k : k + chunk_size] for k in range(0, len(args), chunk_size)]
    workers = (os.cpu_count() or 1) if workers is None else workers
    records: list[dict] = []
    bar = _bar(len(args), progress)
    if workers <= 1:
        for chunk in chunks:
            records.extend(_perceive_chunk(chunk))
            if bar is not None:
                bar.update(len(chunk))
    else:
        # spawn: forking a process that holds torch/OpenMP threads can deadlock
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            for chunk, result in zip(chunks, pool.map(_perceive_chunk, chunks)):
                records.extend(result)
                if bar is not None:
                    bar.update(len(chunk))
    if bar is not None:
        bar.close()

    kept = [k for k, r in enumerate(records) if r["status"] == "ok"]
    excluded: dict[str, list[int]] = {}
    reasons: dict[str, str] = {}
    for k, r in enumerate(records):
        if r["status"] != "ok":
            excluded.setdefault(r["status"], []).append(int(table.index[k]))
            reasons[str(int(table.index[k]))] = r["reason"]
    if not kept:
        raise ValueError("prepare_qm9: no molecule survived bond perception")
    if n_train is None:
        n_train = 100_000 if limit is None else int(len(kept) * 100_000 / QM9_NUM_MOLECULES)
    splits = qm9_splits(len(kept), n_train=n_train)

    counts = np.array([len(table.numbers[k]) for k in kept])
    n_bonds = np.array([records[k]["bond_types"].shape[0] for k in kept])
    data = {
        "version": PREPARE_VERSION,
        "property_names": list(QM9_PROPERTIES),
        "property_units": [QM9_PROPERTY_UNITS[p][0] for p in QM9_PROPERTIES],
        "qm9_index": torch.as_tensor(table.index[kept]),
        "smiles": [records[k]["smiles"] for k in kept],
        "atom_ptr": torch.as_tensor(np.concatenate([[0], np.cumsum(counts)])),
        "bond_ptr": torch.as_tensor(np.concatenate([[0], np.cumsum(n_bonds)])),
        "numbers": torch.as_tensor(np.concatenate([table.numbers[k] for k in kept]).astype(np.int8)),
        "charges": torch.as_tensor(np.concatenate([records[k]["charges"] for k in kept])),
        "positions": torch.as_tensor(np.concatenate([table.positions[k] for k in kept]).astype(np.float32)),
        "bond_index": torch.as_tensor(np.concatenate([records[k]["bond_index"] for k in kept], axis=1)),
        "bond_types": torch.as_tensor(np.concatenate([records[k]["bond_types"] for k in kept])),
        "properties": torch.as_tensor(table.properties[kept]),
        "splits": {name: torch.as_tensor(idx) for name, idx in splits.items()},
    }
    summary = {
        "version": PREPARE_VERSION,
        "limit": limit,
        "read": len(table),
        "kept": len(kept),
        "excluded": {status: len(ids) for status, ids in sorted(excluded.items())},
        "excluded_qm9_index": excluded,
        "inchi_disagreements_among_kept": int(sum(not records[k]["inchi_match"] for k in kept)),
        "split_sizes": {name: int(len(idx)) for name, idx in splits.items()},
        "split_protocol": "numpy default_rng(42) permutation of kept molecules; train/valid/test in that order; "
        "train_regressor = first half of train, train_generator = second half",
    }
    atomic_write_json(cache_dir / f"{_cache_name(limit)}_summary.json", summary)
    atomic_write_json(cache_dir / f"{_cache_name(limit)}_excluded.json", reasons)
    atomic_torch_save(data, path)
    return path


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="qm9 bonds")


class QM9Dataset:
    """The prepared QM9 molecules (or one split of them), indexable; items are dicts of tensors."""

    def __init__(self, path: str | os.PathLike, split: str | None = None):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"prepared QM9 file not found: {path} (run molgen.data.prepare_qm9 first)")
        from shared.safe_load import safe_torch_load

        self._data = safe_torch_load(path, "prepared QM9 file")
        if not isinstance(self._data, dict) or "splits" not in self._data or "smiles" not in self._data:
            held = self._data.get("format", "a dict of other things") if isinstance(self._data, dict) else \
                type(self._data).__name__
            raise ValueError(f"{path} is not a prepared QM9 file (it holds {held}); pass the file "
                             f"molgen.data.prepare_qm9 writes (qm9_v*_all.pt)")
        if self._data.get("version") != PREPARE_VERSION:
            raise ValueError(f"{path} was prepared by version {self._data.get('version')}, need {PREPARE_VERSION}")
        if split is None:
            self.indices = torch.arange(len(self._data["smiles"]))
        elif split in self._data["splits"]:
            self.indices = self._data["splits"][split]
        else:
            raise ValueError(f"unknown split {split!r}; choose from {sorted(self._data['splits'])}")
        self.property_names: list[str] = list(self._data["property_names"])

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def _row(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a QM9 dataset of {len(self)} molecules")
        return int(self.indices[i])

    def tensors(self, i: int) -> MolTensors:
        d, row = self._data, self._row(i)
        a0, a1 = int(d["atom_ptr"][row]), int(d["atom_ptr"][row + 1])
        b0, b1 = int(d["bond_ptr"][row]), int(d["bond_ptr"][row + 1])
        return MolTensors(
            numbers=d["numbers"][a0:a1].long(),
            charges=d["charges"][a0:a1].long(),
            positions=d["positions"][a0:a1],
            bond_index=d["bond_index"][:, b0:b1].long(),
            bond_types=d["bond_types"][b0:b1].long(),
        )

    def __getitem__(self, i: int) -> dict:
        mol = self.tensors(i)
        return {
            "numbers": mol.numbers,
            "atom_types": atom_type_index(mol.numbers),
            "charges": mol.charges,
            "positions": mol.positions,
            "bond_index": mol.bond_index,
            "bond_types": mol.bond_types,
            "properties": self._data["properties"][self._row(i)],
        }

    def to_mol(self, i: int):
        """The molecule as a sanitised RDKit Mol with its QM9 conformer."""
        return tensors_to_mol(self.tensors(i))

    def smiles(self) -> list[str]:
        return [self._data["smiles"][int(r)] for r in self.indices]

    def qm9_index(self) -> torch.Tensor:
        return self._data["qm9_index"][self.indices]

    def num_atoms(self) -> torch.Tensor:
        ptr = self._data["atom_ptr"]
        return (ptr[1:] - ptr[:-1])[self.indices]

    def property(self, name: str) -> torch.Tensor:
        if name not in self.property_names:
            raise ValueError(f"unknown QM9 property {name!r}; choose from {self.property_names}")
        return self._data["properties"][self.indices, self.property_names.index(name)]


def read_summary(cache_dir: str | os.PathLike, limit: int | None = None) -> dict:
    """The exclusion/split summary written by ``prepare_qm9``."""
    path = Path(cache_dir) / f"{_cache_name(limit)}_summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"QM9 summary not found: {path} (run molgen.data.prepare_qm9 first)")
    return json.loads(path.read_text())
