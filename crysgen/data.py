"""CDVAE benchmark CSVs (MP-20, perov-5, carbon-24): locate, parse in parallel, cache on disk.

A CDVAE CSV has columns ``[<index>,] material_id, cif, <properties...>``. Each CIF is read the way CDVAE's
``build_crystal`` does with its dataset configs (``niggli=True, primitive=False`` for all three benchmarks):
``Structure.from_str(cif, fmt="cif")``, then ``get_reduced_structure()`` (Niggli), then a canonical rebuild
``Structure(Lattice.from_parameters(*lattice.parameters), species, frac_coords)`` so the cell orientation
depends only on the six lattice parameters. ``primitive=True`` additionally calls ``get_primitive_structure()``
first (CDVAE's option, off by default).

A row whose CIF cannot be parsed is reported as a ``ParseError`` (row, material_id, reason) and skipped.

A dataset is named by a benchmark name (``<data_dir>/crystals/<name>/<split>.csv``; the three CDVAE benchmarks
and any folder the user puts there), a directory holding ``<split>.csv`` files, or one CDVAE CSV (see
``resolve_dataset``). ``write_cdvae_csv`` writes structures in the same format.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import sys
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.io import atomic_write_json, atomic_write_text
from shared.paths import require_file, resolve_data_dir

__all__ = [
    "DATASETS",
    "CrystalDataset",
    "DatasetSplit",
    "ParseError",
    "dataset_path",
    "dataset_url",
    "load_cdvae_csv",
    "load_dataset",
    "parse_cif",
    "resolve_dataset",
    "write_cdvae_csv",
]

CDVAE_URL = "https://raw.githubusercontent.com/txie-93/cdvae/main/data/{name}/{split}.csv"
SPLITS = ("train", "val", "test")
# target property CDVAE conditions/evaluates on, per benchmark
DATASETS: dict[str, dict[str, Any]] = {
    "mp_20": {"property": "formation_energy_per_atom", "max_atoms": 20},
    "perov_5": {"property": "heat_ref", "max_atoms": 5},
    "carbon_24": {"property": "energy_per_atom", "max_atoms": 24},
}
_CACHE_FORMAT = 1
_csv_limit_raised = False


@dataclass(frozen=True)
class ParseError:
    row: int  # 0-based data row in the CSV (header excluded)
    material_id: str
    reason: str


@dataclass
class CrystalDataset:
    """Parsed structures with their ids and property columns, plus the rows that could not be parsed."""

    structures: list
    material_ids: list[str]
    properties: dict[str, list] = field(default_factory=dict)
    errors: list[ParseError] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.structures)


def dataset_url(name: str, split: str) -> str:
    """CDVAE's raw-GitHub URL of a benchmark split (for users downloading it; never fetched here)."""
    _check_name_split(name, split)
    return CDVAE_URL.format(name=name, split=split)


def dataset_path(name: str, split: str, data_dir: str | os.PathLike | None = None) -> Path:
    """``<data_dir>/crystals/<name>/<split>.csv`` (data dir from the option or ``$SCOREGEN_DATA``)."""
    _check_name_split(name, split)
    root = resolve_data_dir(data_dir)
    if root is None:
        raise FileNotFoundError(
            f"no data directory for {name}/{split}: pass data_dir or set SCOREGEN_DATA "
            f"(download from {dataset_url(name, split)} into <data_dir>/crystals/{name}/{split}.csv)")
    path = root / "crystals" / name / f"{split}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (download it from {dataset_url(name, split)})")
    return path


@dataclass(frozen=True)
class DatasetSplit:
    """Where one split of a dataset lives: ``name`` (benchmark name, or the folder/file it was found in),
    ``split`` (a split name, or a CSV's stem) and the CSV ``path`` (absolute)."""

    name: str
    split: str
    path: Path


DEFAULT_SPLIT = "train"


def resolve_dataset(dataset: str | os.PathLike, split: str | None = None,
                    data_dir: str | os.PathLike | None = None) -> DatasetSplit:
    """The CSV of ``split`` of ``dataset``, which is one of

    * a CSV file: itself when ``split`` is None or its stem, else the sibling ``<split>.csv`` (so
      ``data/carbon/train.csv`` with ``split="val"`` is ``data/carbon/val.csv``);
    * a directory: ``<dir>/<split>.csv`` (``split`` default ``train``);
    * a name: ``<data_dir>/crystals/<name>/<split>.csv`` (data dir from the option or ``$SCOREGEN_DATA``) for a
      CDVAE benchmark (``DATASETS``) or any folder placed there.

    FileNotFoundError / ValueError say which of these was tried and what is missing.
    """
    text = os.fspath(dataset)
    if not text.strip():
        raise ValueError("empty dataset name")
    path = Path(text).expanduser()
    if path.is_file():
        if split is None or split == path.stem:
            return DatasetSplit(_name_of_csv(path), path.stem, path.resolve())
        sibling = path.parent / f"{split}.csv"
        if not sibling.is_file():
            raise FileNotFoundError(f"dataset {text} is one CSV file; its folder has no {split}.csv "
                                    f"(found: {_csv_names(path.parent)})")
        return DatasetSplit(_name_of_csv(sibling), split, sibling.resolve())
    if path.is_dir():
        return _split_in_folder(path, split or DEFAULT_SPLIT, path.name, f"dataset directory {path}")
    if path.suffix.lower() == ".csv" or os.sep in text or (os.altsep and os.altsep in text):
        raise FileNotFoundError(f"dataset {text}: no such CSV file or directory")
    split = split or DEFAULT_SPLIT
    if text in DATASETS and split in SPLITS:
        return DatasetSplit(text, split, dataset_path(text, split, data_dir).resolve())
    root = resolve_data_dir(data_dir)
    folder = None if root is None else root / "crystals" / text
    if folder is None or not folder.is_dir():
        where = "no data directory given (pass data_dir or set SCOREGEN_DATA)" if root is None else \
            f"no folder {root / 'crystals' / text}"
        raise ValueError(f"unknown crystal dataset {text!r}: not a CSV file or directory, and not a dataset in "
                         f"the data directory ({where}); CDVAE benchmarks: {sorted(DATASETS)}")
    return _split_in_folder(folder, split, text, f"dataset {text} ({folder})")


def load_dataset(name: str | os.PathLike, split: str | None, data_dir: str | os.PathLike | None = None,
                 **kwargs) -> CrystalDataset:
    """``load_cdvae_csv`` on ``split`` of a dataset given by name, directory or CSV (see ``resolve_dataset``)."""
    return load_cdvae_csv(resolve_dataset(name, split, data_dir).path, **kwargs)


def write_cdvae_csv(path: str | os.PathLike, structures, material_ids=None,
                    properties: dict[str, list] | None = None) -> Path:
    """Write structures as a CDVAE CSV (``,material_id,cif,<properties...>``, CIFs from pymatgen's CifWriter),
    atomically; returns the path."""
    import io

    from pymatgen.io.cif import CifWriter

    structures = list(structures)
    ids = [f"crystal-{i}" for i in range(len(structures))] if material_ids is None else list(material_ids)
    properties = dict(properties or {})
    for name, values in [("material_id", ids), *properties.items()]:
        if len(values) != len(structures):
            raise ValueError(f"{name}: {len(values)} values for {len(structures)} structures")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["", "material_id", "cif", *properties])
    for index, structure in enumerate(structures):
        writer.writerow([index, ids[index], str(CifWriter(structure)), *(v[index] for v in properties.values())])
    return atomic_write_text(path, buffer.getvalue())


def parse_cif(cif: str, niggli: bool = True, primitive: bool = False):
    """One CIF string -> canonical pymatgen Structure, as CDVAE's ``build_crystal`` (see module docstring)."""
    from pymatgen.core import Lattice, Structure

    crystal = Structure.from_str(cif, fmt="cif")
    if primitive:
        crystal = crystal.get_primitive_structure()
    if niggli:
        crystal = crystal.get_reduced_structure()
    return Structure(Lattice.from_parameters(*crystal.lattice.parameters), crystal.species,
                     crystal.frac_coords, coords_are_cartesian=False)


def load_cdvae_csv(
    path: str | os.PathLike,
    *,
    niggli: bool = True,
    primitive: bool = False,
    workers: int | None = None,
    executor: Executor | None = None,
    chunk_size: int = 256,
    cache_dir: str | os.PathLike | None = None,
) -> CrystalDataset:
    """Parse a CDVAE CSV. CIFs are parsed in chunks through ``executor`` (or a ProcessPool of ``workers``;
    ``workers in (None, 0, 1)`` parses serially). With ``cache_dir`` the parsed result is stored under a key of
    (file content hash, settings) and reloaded on the next call."""
    path = require_file(path, "CDVAE crystal CSV")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    settings = {"niggli": bool(niggli), "primitive": bool(primitive), "format": _CACHE_FORMAT}
    cache_file = None
    if cache_dir is not None:
        digest = hashlib.sha256(path.read_bytes() + json.dumps(settings, sort_keys=True).encode()).hexdigest()
        cache_file = Path(cache_dir) / f"{path.parent.name}-{path.stem}-{digest[:20]}.json"
        if cache_file.is_file():
            return _from_cache(cache_file)

    ids, cifs, properties = _read_csv(path)
    chunks = [(start, cifs[start:start + chunk_size], niggli, primitive) for start in range(0, len(cifs), chunk_size)]
    if executor is not None:
        parsed_chunks = list(executor.map(_parse_chunk, chunks))
    elif workers is not None and workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parsed_chunks = list(pool.map(_parse_chunk, chunks))
    else:
        parsed_chunks = [_parse_chunk(chunk) for chunk in chunks]

    records, errors = [], []
    for chunk in parsed_chunks:
        for row, record in chunk:
            if isinstance(record, str):
                errors.append(ParseError(row, ids[row], record))
            else:
                records.append((row, record))
    kept = [row for row, _ in records]
    payload = {
        "source": str(path),
        "rows": kept,
        "material_ids": [ids[row] for row in kept],
        "properties": {name: [values[row] for row in kept] for name, values in properties.items()},
        "lattice": [record[0] for _, record in records],
        "numbers": [record[1] for _, record in records],
        "frac_coords": [record[2] for _, record in records],
        "errors": [[e.row, e.material_id, e.reason] for e in errors],
    }
    if cache_file is not None:
        atomic_write_json(cache_file, payload, indent=None)
    return _from_payload(payload)


# --- internals ----------------------------------------------------------------------------------------------


def _name_of_csv(path: Path) -> str:
    """A CSV named like a split (``carbon/train.csv``) belongs to its folder's dataset; another is its own."""
    return path.parent.name if path.stem in SPLITS else path.stem


def _csv_names(folder: Path) -> str:
    names = sorted(p.name for p in folder.glob("*.csv"))
    return ", ".join(names) or "no CSV files"


def _split_in_folder(folder: Path, split: str, name: str, what: str) -> DatasetSplit:
    path = folder / f"{split}.csv"
    if not path.is_file():
        hint = f" (download it from {dataset_url(name, split)})" if name in DATASETS and split in SPLITS else ""
        raise FileNotFoundError(f"{what} has no {split}.csv{hint}; found: {_csv_names(folder)}")
    return DatasetSplit(name, split, path.resolve())


def _check_name_split(name: str, split: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown crystal dataset {name!r}; known: {sorted(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {SPLITS}")


def _read_csv(path: Path) -> tuple[list[str], list[str], dict[str, list]]:
    global _csv_limit_raised
    if not _csv_limit_raised:  # CIF fields of large cells exceed csv's default 128 kB field limit
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        _csv_limit_raised = True
    try:
        return _read_csv_rows(path)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a text CSV file (invalid UTF-8 at byte {err.start})") from None
    except csv.Error as err:
        raise ValueError(f"{path}: not a readable CSV file ({err})") from None


def _read_csv_rows(path: Path) -> tuple[list[str], list[str], dict[str, list]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: empty file, expected a header with material_id and cif") from None
        missing = {"material_id", "cif"} - set(header)
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)} in header {header}")
        id_col, cif_col = header.index("material_id"), header.index("cif")
        prop_cols = [i for i, name in enumerate(header) if name not in ("", "material_id", "cif")]
        ids, cifs = [], []
        properties: dict[str, list] = {header[i]: [] for i in prop_cols}
        for line, row in enumerate(reader, start=1):
            if len(row) != len(header):
                raise ValueError(f"{path}: data row {line} has {len(row)} fields, header has {len(header)}")
            ids.append(row[id_col])
            cifs.append(row[cif_col])
            for i in prop_cols:
                properties[header[i]].append(_number_or_text(row[i]))
    return ids, cifs, properties


def _number_or_text(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _parse_chunk(chunk) -> list[tuple[int, Any]]:
    """Worker: (row, (lattice params, Z list, frac coords)) per parsed CIF, or (row, reason) on failure."""
    import warnings

    start, cifs, niggli, primitive = chunk
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's CIF parser warns on every rounded occupancy
        for offset, cif in enumerate(cifs):
            try:
                structure = parse_cif(cif, niggli=niggli, primitive=primitive)
                if len(structure) == 0:
                    raise ValueError("CIF has no atom sites")
                params = list(structure.lattice.parameters)
                numbers = [getattr(site.specie, "Z", 0) for site in structure]
                if not all(math.isfinite(v) for v in params) or not all(
                        math.isfinite(v) for row in structure.frac_coords.tolist() for v in row):
                    raise ValueError(f"non-finite cell parameters or coordinates {params}")
                if min(numbers) < 1:
                    raise ValueError(f"unknown element in {sorted({str(s.specie) for s in structure})}")
                record = (params, numbers, structure.frac_coords.tolist())
            except Exception as exc:  # noqa: BLE001 - a bad row is data to report, never a crash
                record = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            out.append((start + offset, record))
    return out


def _from_cache(path: Path) -> CrystalDataset:
    with open(path, encoding="utf-8") as handle:
        return _from_payload(json.load(handle))


def _from_payload(payload: dict) -> CrystalDataset:
    from pymatgen.core import Lattice, Structure

    structures = [
        Structure(Lattice.from_parameters(*params), numbers, np.asarray(frac), coords_are_cartesian=False)
        for params, numbers, frac in zip(payload["lattice"], payload["numbers"], payload["frac_coords"])
    ]
    errors = [ParseError(int(row), str(mid), str(reason)) for row, mid, reason in payload["errors"]]
    return CrystalDataset(structures, list(payload["material_ids"]), dict(payload["properties"]), errors,
                          payload["source"])
