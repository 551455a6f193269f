"""Reading 3D molecule files (SDF/MOL and XYZ, one or many molecules per file) into RDKit Mols.

* SDF/MOL: read unsanitised, exactly as written: every hydrogen must be explicit (atoms get no implicit H, so
  a radical in a generated molecule stays a radical instead of being silently capped).
* XYZ: concatenated frames (atom count, comment line, ``symbol x y z`` lines). Bonds and formal charges are
  perceived from the coordinates with ``molgen.data.perceive_molecule`` (total charge 0 unless given); when no
  valid bond ordering exists, connectivity alone (single bonds) is kept so the metrics can judge the molecule.

Errors are ``FileNotFoundError``/``ValueError`` naming the file; a record (SDF molecule, XYZ frame) that cannot
be read is a ``shared.io.UnreadableRecord`` naming it and its line, numbers counted from 1 as editors show them.
With ``on_error="skip"`` such records are listed in ``MoleculeFile.skipped`` and the others are read: an XYZ
reader finds the next frame after a damaged one from its atom-count line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from molgen.representation import ATOM_TYPES, ATOMIC_NUMBERS, MolBatch
from shared.io import UnreadableRecord, split_sdf_records

__all__ = ["MoleculeFile", "SkippedRecord", "read_molecules", "read_xyz_frames", "molecules_to_batch",
           "SUPPORTED_SUFFIXES"]

SUPPORTED_SUFFIXES = (".sdf", ".mol", ".sd", ".xyz")


@dataclass(frozen=True)
class SkippedRecord:
    """A record of the file that was not read: its number among the records and the line where the problem is
    (both counted from 1), and why."""

    number: int
    reason: str
    line: int | None = None
    kind: str = "molecule"  # what a record is called: "frame" in XYZ files

    def where(self) -> str:
        return f"{self.kind} {self.number}" + (f", line {self.line}" if self.line is not None else "")

    def __str__(self) -> str:
        return f"{self.where()}: {self.reason}"

    def to_dict(self) -> dict:
        return {"record": self.number, "line": self.line, "reason": self.reason}


@dataclass
class MoleculeFile:
    """Molecules read from ``path``: RDKit Mols with one conformer, their titles, and what could not be read."""

    path: Path
    mols: list
    names: list[str]
    skipped: list[SkippedRecord] = field(default_factory=list)
    bonds_perceived: list[bool] = field(default_factory=list)  # XYZ: False where only connectivity was found
    record_index: list[int] = field(default_factory=list)  # position of each molecule among the records, from 0
    record_lines: list[int | None] = field(default_factory=list)  # first line of each molecule's record, from 1
    kind: str = "molecule"

    def __len__(self) -> int:
        return len(self.mols)

    def _add(self, mol, name: str, index: int, line: int | None, perceived: bool = True) -> None:
        self.mols.append(mol)
        self.names.append(name)
        self.record_index.append(index)
        self.record_lines.append(line)
        self.bonds_perceived.append(perceived)

    def _keep(self, keep: Sequence[int]) -> None:
        for name in ("mols", "names", "record_index", "record_lines", "bonds_perceived"):
            values = getattr(self, name)
            setattr(self, name, [values[k] for k in keep])


def read_molecules(path: str | os.PathLike, *, elements: Sequence[int] | None = ATOMIC_NUMBERS,
                   on_error: str = "raise", charge: int = 0) -> MoleculeFile:
    """Read an SDF/MOL or XYZ file. ``elements``: allowed atomic numbers (None: any); ``on_error``: "raise" on
    the first unreadable molecule or "skip" it (recorded in ``skipped``); ``charge``: total charge of XYZ
    molecules for bond perception."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"molecule file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix or '(none)'}; use one of {SUPPORTED_SUFFIXES}")
    from shared.evaluation import require_package

    require_package("rdkit", extra="chem")
    if suffix == ".xyz":
        result = _read_xyz(path, charge, on_error)
    else:
        result = _read_sdf(path, on_error)
    if elements is not None:
        _check_elements(result, set(int(z) for z in elements), on_error)
    if not result.mols:
        reasons = "; ".join(str(record) for record in result.skipped[:3])
        raise ValueError(f"{path}: no readable molecule" + (f" ({reasons})" if reasons else ""))
    return result


def molecules_to_batch(mols: Sequence) -> MolBatch:
    """Padded ``MolBatch`` of the molecules (their first conformer)."""
    return MolBatch.from_mols(mols)


# --- SDF ------------------------------------------------------------------------------------------------------


def _read_sdf(path: Path, on_error: str) -> MoleculeFile:
    from rdkit import RDLogger

    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read as SDF ({exc})") from None
    blocks = split_sdf_records(text)
    if not blocks:
        raise ValueError(f"{path}: no molecule records found (is it an SDF/MOL file?)")
    out = MoleculeFile(path, [], [])
    RDLogger.DisableLog("rdApp.*")
    try:
        for k, (line, block) in enumerate(blocks):
            mol = _parse_sdf_block(block)
            reason = None
            if mol is None:
                reason = "unparsable record"
            elif mol.GetNumAtoms() == 0:
                reason = "no atoms"
            elif mol.GetNumConformers() == 0:
                reason = "no coordinates"
            if reason is not None:
                _fail(out, SkippedRecord(k + 1, reason, line), on_error)
                continue
            for atom in mol.GetAtoms():
                atom.SetNoImplicit(True)  # hydrogens are explicit in 3D files; never cap open valences
            mol.UpdatePropertyCache(strict=False)
            out._add(mol, mol.GetProp("_Name") if mol.HasProp("_Name") else "", k, line)
    finally:
        RDLogger.EnableLog("rdApp.error")
    return out


def _parse_sdf_block(block: str):
    import io

    from rdkit import Chem

    supplier = Chem.ForwardSDMolSupplier(io.BytesIO(block.encode()), sanitize=False, removeHs=False,
                                         strictParsing=True)
    try:
        return next(supplier, None)
    except Exception:  # noqa: BLE001 - RDKit raises for some malformed blocks instead of returning None
        return None


# --- XYZ ------------------------------------------------------------------------------------------------------


@dataclass
class _XYZFrame:
    """One frame as found in the file: numbered from 1, ``line`` is its atom-count line; ``error`` (with the
    line it concerns) when it cannot be read."""

    number: int
    line: int
    comment: str = ""
    symbols: list[str] = field(default_factory=list)
    positions: np.ndarray | None = None
    error: str | None = None
    error_line: int | None = None


def read_xyz_frames(path: str | os.PathLike) -> list[tuple[str, list[str], np.ndarray]]:
    """Frames of a (multi-)XYZ file as ``(comment, symbols, positions (n, 3))``; UnreadableRecord (a ValueError)
    naming the first bad frame and its line."""
    path = Path(path)
    frames = []
    for frame in _xyz_frames(_xyz_lines(path)):
        if frame.error is not None:
            raise UnreadableRecord(f"{path}: frame {frame.number}, line {frame.error_line}: {frame.error}")
        frames.append((frame.comment, frame.symbols, frame.positions))
    if not frames:
        raise ValueError(f"{path}: empty XYZ file")
    return frames


def _xyz_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _xyz_frames(lines: list[str]) -> Iterator[_XYZFrame]:
    """Every frame, good or bad, in file order. After a bad frame, reading resumes at the next line that can
    be an atom count (a lone positive integer), so one damaged frame costs only itself."""
    pos, number = 0, 0
    while pos < len(lines):
        if not lines[pos].strip():
            pos += 1  # blank lines between frames are tolerated
            continue
        number += 1
        frame, pos = _xyz_frame(lines, pos, number)
        yield frame


def _xyz_frame(lines: list[str], pos: int, number: int) -> tuple[_XYZFrame, int]:
    """The frame whose atom-count line is ``lines[pos]``, and where the next one starts."""
    frame = _XYZFrame(number, pos + 1)

    def bad(reason: str, line_index: int, resume: int) -> tuple[_XYZFrame, int]:
        frame.error, frame.error_line = reason, line_index + 1
        return frame, resume

    fields = lines[pos].split()
    try:
        n = int(fields[0])
    except ValueError:
        return bad(f"expected an atom count, got {lines[pos][:40]!r}", pos, _next_count_line(lines, pos + 1))
    if n <= 0:
        return bad(f"atom count must be positive, got {n}", pos, _next_count_line(lines, pos + 1))
    if pos + 2 + n > len(lines):
        found = max(len(lines) - pos - 2, 0)
        return bad(f"frame announces {n} atoms but the file ends early (after {found} atom line(s))", pos,
                   len(lines))
    frame.comment = lines[pos + 1].strip()
    coords = []
    for index in range(pos + 2, pos + 2 + n):
        fields = lines[index].split()
        try:
            xyz = [float(v) for v in fields[1:4]]
            if len(xyz) != 3:
                raise ValueError
        except ValueError:
            # a short frame runs into the next one: resume at this very line if it is that frame's count
            return bad(f"expected 'symbol x y z', got {lines[index][:60]!r}", index, _next_count_line(lines, index))
        if not all(np.isfinite(xyz)):
            return bad(f"non-finite coordinate in {lines[index].strip()[:60]!r}", index, pos + 2 + n)
        frame.symbols.append(fields[0])
        coords.append(xyz)
    frame.positions = np.asarray(coords, dtype=np.float64)
    return frame, pos + 2 + n


def _next_count_line(lines: list[str], start: int) -> int:
    for index in range(start, len(lines)):
        fields = lines[index].split()
        if len(fields) == 1 and fields[0].isdigit() and int(fields[0]) > 0:
            return index
    return len(lines)


def _read_xyz(path: Path, charge: int, on_error: str) -> MoleculeFile:
    from rdkit import Chem

    from molgen.data import perceive_molecule

    table = Chem.GetPeriodicTable()
    out = MoleculeFile(path, [], [], kind="frame")
    frames = list(_xyz_frames(_xyz_lines(path)))
    if not frames:
        raise ValueError(f"{path}: empty XYZ file")
    for k, frame in enumerate(frames):
        if frame.error is not None:
            _fail(out, SkippedRecord(frame.number, frame.error, frame.error_line, "frame"), on_error)
            continue
        try:
            numbers = [_atomic_number(table, s) for s in frame.symbols]
        except ValueError as exc:
            line = frame.line + 2 + next(i for i, s in enumerate(frame.symbols) if not _known(table, s))
            _fail(out, SkippedRecord(frame.number, str(exc), line, "frame"), on_error)
            continue
        perceived = True
        try:
            mol = perceive_molecule(numbers, frame.positions, charge=charge)
        except Exception:  # noqa: BLE001 - RDKit raises several types; no valid bond orders: keep connectivity
            mol, perceived = _connectivity_only(numbers, frame.positions, charge), False
        for atom in mol.GetAtoms():
            atom.SetNoImplicit(True)
        mol.UpdatePropertyCache(strict=False)
        mol.SetProp("_Name", frame.comment)
        out._add(mol, frame.comment, k, frame.line, perceived)
    return out


def _known(table, symbol: str) -> bool:
    try:
        _atomic_number(table, symbol)
    except ValueError:
        return False
    return True


def _atomic_number(table, symbol: str) -> int:
    clean = symbol.strip()
    if clean.isdigit():
        return int(clean)
    clean = clean[:1].upper() + clean[1:].lower()
    z = _symbol_table(table).get(clean, 0)
    if z <= 0:  # looked up in a dict: RDKit's GetAtomicNumber prints a C++ stack trace for an unknown symbol
        raise ValueError(f"unknown element symbol {symbol!r}")
    return z


_SYMBOLS: dict[str, int] = {}


def _symbol_table(table) -> dict[str, int]:
    if not _SYMBOLS:
        _SYMBOLS.update({table.GetElementSymbol(z): z for z in range(1, 119)})
    return _SYMBOLS


def _connectivity_only(numbers: Sequence[int], positions: np.ndarray, charge: int):
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds
    from rdkit.Geometry import Point3D

    rw = Chem.RWMol()
    for z in numbers:
        rw.AddAtom(Chem.Atom(int(z)))
    conformer = Chem.Conformer(len(numbers))
    for k, (x, y, z) in enumerate(positions.tolist()):
        conformer.SetAtomPosition(k, Point3D(x, y, z))
    rw.AddConformer(conformer, assignId=True)
    mol = rw.GetMol()
    rdDetermineBonds.DetermineConnectivity(mol, charge=charge)
    return mol


# --- checks ---------------------------------------------------------------------------------------------------


def _check_elements(result: MoleculeFile, allowed: set[int], on_error: str) -> None:
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    allowed_names = ", ".join(ATOM_TYPES) if allowed == set(ATOMIC_NUMBERS) else str(sorted(allowed))
    keep = []
    for k, mol in enumerate(result.mols):
        bad = sorted({a.GetAtomicNum() for a in mol.GetAtoms()} - allowed)
        if bad:
            names = ", ".join(table.GetElementSymbol(z) if z > 0 else "dummy atom" for z in bad)
            reason = f"unsupported element(s) {names} (supported: {allowed_names})"
            record = SkippedRecord(result.record_index[k] + 1, reason, result.record_lines[k], result.kind)
            _fail(result, record, on_error)
        else:
            keep.append(k)
    result._keep(keep)
    result.skipped.sort(key=lambda record: record.number)


def _fail(result: MoleculeFile, record: SkippedRecord, on_error: str) -> None:
    if on_error == "raise":
        raise UnreadableRecord(f"{result.path}: {record}")
    result.skipped.append(record)
