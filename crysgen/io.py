"""Reading generated crystals: a sample directory (CIFs + ``summary.csv``), a folder of CIFs, or a CSV with a
``cif`` column (CDVAE style).

The convention is molgen's: a structure that cannot be read (a CIF pymatgen cannot parse, a text file that is
not a CIF, a garbage ``cif`` cell) stops the reader with ``shared.io.UnreadableRecord`` naming the file or the
CSV row (counted from 1, header excluded) and why, unless ``on_error="skip"``: then the others are read and the
bad ones are listed in ``skipped``. A sample the sampler could not decode (``decoded=False`` in summary.csv, an
empty ``cif`` cell) is ``None``: an invalid crystal for the metrics, not damage to the file.
"""

from __future__ import annotations

import csv
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.io import UnreadableRecord

__all__ = ["UNFINISHED_MARKER", "SkippedStructure", "StructureSet", "read_structures", "parse_cif_text",
           "sample_metadata"]

_SUMMARY_COLUMNS = {"index", "decoded"}
UNFINISHED_MARKER = ".crysgen-sample-unfinished"  # in a sample directory while crysgen.sampling writes it


@dataclass(frozen=True)
class SkippedStructure:
    """A structure that was not read: where it is (a file name, or ``row N`` of a CSV) and why."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"

    def to_dict(self) -> dict:
        return {"source": self.source, "reason": self.reason}


@dataclass
class StructureSet:
    """Structures read from ``path`` (None: an undecoded sample), their names, and what could not be read."""

    path: Path
    structures: list = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    skipped: list[SkippedStructure] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.structures)


class CifProblem(ValueError):
    """Why one CIF text is not a structure, in words (the caller adds where it is)."""


def read_structures(source: str | os.PathLike, *, on_error: str = "raise") -> StructureSet:
    """Structures from a sample directory, a folder of ``*.cif`` files, or a CSV with a ``cif`` column.

    ``on_error``: "raise" (UnreadableRecord on the first unreadable structure) or "skip" (listed in ``skipped``).
    A source with nothing readable in it is a ValueError even when skipping.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() == ".csv":
        result = _read_csv(path, on_error)
    elif path.is_file() and path.suffix.lower() == ".cif":
        result = StructureSet(path)
        _add_cif_file(result, path, on_error)
    elif path.is_dir():
        result = _read_directory(path, on_error)
    else:
        raise FileNotFoundError(f"no sample directory, CIF or CSV at {path}")
    if result.skipped and not any(s is not None for s in result.structures):
        shown = "; ".join(str(s) for s in result.skipped[:3])
        raise ValueError(f"{path}: no readable structure ({shown})")
    return result


def sample_metadata(source: str | os.PathLike) -> dict | None:
    """The ``sampling.json`` that ``crysgen sample`` wrote next to ``source`` (a sample directory or its
    summary.csv), with ``path`` added; None when there is none or it is not a JSON object."""
    import json

    path = Path(source).expanduser()
    folder = path if path.is_dir() else path.parent if path.name == "summary.csv" else None
    if folder is None or not (folder / "sampling.json").is_file():
        return None
    try:
        meta = json.loads((folder / "sampling.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {**meta, "path": str(folder / "sampling.json")} if isinstance(meta, dict) else None


def parse_cif_text(text: str):
    """One pymatgen Structure from CIF text; CifProblem saying why not (pymatgen's own errors range from
    ZeroDivisionError to 'Invalid CIF file with no structures!', and it warns on the way)."""
    from pymatgen.core import Structure

    if not text.strip():
        raise CifProblem("empty CIF")
    if "data_" not in text:
        first = next(line.strip() for line in text.splitlines() if line.strip())
        raise CifProblem(f"not a CIF (no data_ block; it begins {first[:40]!r})")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # collected, not printed: a failure reports the first one below
        try:
            structure = Structure.from_str(text, fmt="cif")
        except ZeroDivisionError:
            raise CifProblem("malformed CIF: a loop_ names its columns but holds no values") from None
        except Exception as err:  # noqa: BLE001 - pymatgen raises many types for bad CIFs; all are data problems
            raise CifProblem(_parse_failure(err, caught)) from None
    if len(structure) == 0:
        raise CifProblem("CIF has no atom sites")
    _check_values(structure)
    return structure


def _check_values(structure) -> None:
    """pymatgen accepts NaN cell lengths and unknown symbols (as dummy species); neither is a crystal."""
    import numpy as np
    from pymatgen.core import Element

    lattice = structure.lattice
    if not (np.isfinite(lattice.abc).all() and np.isfinite(lattice.angles).all()):
        raise CifProblem(f"non-finite cell parameters {tuple(round(float(v), 4) for v in lattice.parameters)}")
    if not np.isfinite(structure.frac_coords).all():
        raise CifProblem("non-finite fractional coordinates")
    for k, site in enumerate(structure):
        for species in site.species:
            symbol = getattr(species, "symbol", str(species))
            if not Element.is_valid_symbol(symbol):
                raise CifProblem(f"unknown element {symbol!r}")
        if not site.is_ordered:  # a disordered site is a mixture of crystals, not one of them
            raise CifProblem(f"unsupported: site {k} is partially occupied ({site.species.formula}); crysgen handles "
                             f"ordered crystals only (order it first, e.g. pymatgen's OrderDisorderedStructure"
                             f"Transformation)")


def _parse_failure(err: Exception, caught: list) -> str:
    message = " ".join(str(err).split()) or type(err).__name__
    detail = next((" ".join(str(w.message).split()) for w in caught if "parsing CIF" not in str(w.message)), "")
    return f"{type(err).__name__}: {message[:200]}" + (f" ({detail[:200]})" if detail else "")


# --- the three layouts --------------------------------------------------------------------------------------


def _read_csv(path: Path, on_error: str) -> StructureSet:
    header, rows = _csv_rows(path)
    if "cif" not in header:
        if _SUMMARY_COLUMNS <= set(header):
            return _read_directory(path.parent, on_error)  # our summary.csv: the CIFs lie next to it
        raise ValueError(f"{path}: no 'cif' column (header: {', '.join(header) or 'empty'})")
    result = StructureSet(path)
    for number, row in enumerate(rows, start=1):
        material_id = row.get("material_id") or ""
        name = material_id or f"row {number}"
        text = row.get("cif") or ""
        if not text.strip():
            result.structures.append(None)  # CDVAE-style outputs leave the cell empty for undecoded samples
            result.names.append(name)
            continue
        try:
            structure = parse_cif_text(text)
        except CifProblem as problem:
            where = f"row {number}" + (f" ({material_id})" if material_id else "")
            _fail(result, SkippedStructure(where, str(problem)), on_error)
            continue
        result.structures.append(structure)
        result.names.append(name)
    return result


def _read_directory(folder: Path, on_error: str) -> StructureSet:
    if (folder / UNFINISHED_MARKER).is_file():
        raise ValueError(f"{folder} holds an unfinished sample set: crysgen sample was stopped while writing it "
                         f"(sample again into it, or delete {UNFINISHED_MARKER} to read its CIFs as they are)")
    summary = folder / "summary.csv"
    if summary.is_file():
        return _read_sample_directory(folder, summary, on_error)
    cifs = sorted(folder.glob("*.cif"))
    if not cifs:
        raise FileNotFoundError(f"{folder} holds no summary.csv and no *.cif files")
    result = StructureSet(folder)
    for cif in cifs:
        _add_cif_file(result, cif, on_error)
    return result


def _read_sample_directory(folder: Path, summary: Path, on_error: str) -> StructureSet:
    """A directory written by ``crysgen sample``: summary.csv lists every sample, decoded ones have a CIF."""
    header, rows = _csv_rows(summary)
    missing = _SUMMARY_COLUMNS - set(header)
    if missing:
        raise ValueError(f"{summary}: missing column(s) {sorted(missing)} (header: {', '.join(header)})")
    result = StructureSet(folder)
    for number, row in enumerate(rows, start=1):
        try:
            index = int(row["index"])
        except (TypeError, ValueError):
            raise ValueError(f"{summary}: row {number}: index {row['index']!r} is not a whole number") from None
        if row["decoded"] != "True":
            result.structures.append(None)
            result.names.append(f"sample_{index:05d}")
            continue
        _add_cif_file(result, folder / f"sample_{index:05d}.cif", on_error)
    return result


def _add_cif_file(result: StructureSet, path: Path, on_error: str) -> None:
    try:
        structure = parse_cif_text(_cif_file_text(path))
    except CifProblem as problem:
        _fail(result, SkippedStructure(path.name, str(problem)), on_error)
        return
    result.structures.append(structure)
    result.names.append(path.stem)


def _cif_file_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CifProblem("file missing") from None
    except OSError as err:
        raise CifProblem(f"cannot be read ({err.strerror})") from None
    if b"\x00" in data:
        raise CifProblem("a binary file, not a CIF")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # old CIFs are often Latin-1; the parser decides if it is a CIF


def _csv_rows(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a CIF cell of a large cell exceeds the 128 kB default
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text CSV file (invalid UTF-8)") from None
    except csv.Error as err:
        raise ValueError(f"{path}: not a readable CSV file ({err})") from None
    if not header:
        raise ValueError(f"{path} is empty: expected a header line")
    return header, rows


def _fail(result: StructureSet, skipped: SkippedStructure, on_error: str) -> None:
    if on_error == "raise":
        raise UnreadableRecord(f"{result.path}: {skipped}")
    result.skipped.append(skipped)
