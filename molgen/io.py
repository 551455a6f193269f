"""Reading 3D molecule files (SDF/MOL and XYZ, one or many molecules per file) into RDKit Mols.

* SDF/MOL: read unsanitised, exactly as written: every hydrogen must be explicit (atoms get no implicit H, so
  a radical in a generated molecule stays a radical instead of being silently capped).
* XYZ: concatenated frames (atom count, comment line, ``symbol x y z`` lines). Bonds and formal charges are
  perceived from the coordinates with ``molgen.data.perceive_molecule`` (total charge 0 unless given); when no
  valid bond ordering exists, connectivity alone (single bonds) is kept so the metrics can judge the molecule.

Errors are ``FileNotFoundError``/``ValueError`` naming the file and the molecule (and line for XYZ).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from molgen.representation import ATOM_TYPES, ATOMIC_NUMBERS, MolBatch

__all__ = ["MoleculeFile", "read_molecules", "read_xyz_frames", "molecules_to_batch", "SUPPORTED_SUFFIXES"]

SUPPORTED_SUFFIXES = (".sdf", ".mol", ".sd", ".xyz")


@dataclass
class MoleculeFile:
    """Molecules read from ``path``: RDKit Mols with one conformer, their titles, and what could not be read."""

    path: Path
    mols: list
    names: list[str]
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (record index, reason)
    bonds_perceived: list[bool] = field(default_factory=list)  # XYZ: False where only connectivity was found
    record_index: list[int] = field(default_factory=list)  # position of each molecule among the file's records

    def __len__(self) -> int:
        return len(self.mols)


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
        reasons = "; ".join(f"molecule {k}: {r}" for k, r in result.skipped[:3])
        raise ValueError(f"{path}: no readable molecule" + (f" ({reasons})" if reasons else ""))
    return result


def molecules_to_batch(mols: Sequence) -> MolBatch:
    """Padded ``MolBatch`` of the molecules (their first conformer)."""
    return MolBatch.from_mols(mols)


# --- SDF ------------------------------------------------------------------------------------------------------


def _read_sdf(path: Path, on_error: str) -> MoleculeFile:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        supplier = Chem.ForwardSDMolSupplier(str(path), sanitize=False, removeHs=False, strictParsing=True)
        records = list(supplier)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read as SDF ({exc})") from None
    finally:
        RDLogger.EnableLog("rdApp.error")
    if not records:
        raise ValueError(f"{path}: no molecule records found (is it an SDF/MOL file?)")
    out = MoleculeFile(path, [], [])
    for k, mol in enumerate(records):
        reason = None
        if mol is None:
            reason = "unparsable record"
        elif mol.GetNumAtoms() == 0:
            reason = "no atoms"
        elif mol.GetNumConformers() == 0:
            reason = "no coordinates"
        if reason is not None:
            _fail(out, k, reason, on_error)
            continue
        for atom in mol.GetAtoms():
            atom.SetNoImplicit(True)  # hydrogens are explicit in 3D files; never cap open valences
        mol.UpdatePropertyCache(strict=False)
        out.mols.append(mol)
        out.names.append(mol.GetProp("_Name") if mol.HasProp("_Name") else "")
        out.bonds_perceived.append(True)
        out.record_index.append(k)
    return out


# --- XYZ ------------------------------------------------------------------------------------------------------


def read_xyz_frames(path: str | os.PathLike) -> list[tuple[str, list[str], np.ndarray]]:
    """Frames of a (multi-)XYZ file as ``(comment, symbols, positions (n, 3))``; ValueError with the line."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    frames, pos = [], 0
    while pos < len(lines):
        if not lines[pos].strip():
            pos += 1  # blank lines between frames are tolerated
            continue
        try:
            n = int(lines[pos].split()[0])
        except ValueError:
            raise ValueError(f"{path}, line {pos + 1}: expected an atom count, got {lines[pos][:40]!r}") from None
        if n <= 0:
            raise ValueError(f"{path}, line {pos + 1}: atom count must be positive, got {n}")
        if pos + 2 + n > len(lines):
            raise ValueError(f"{path}, line {pos + 1}: frame announces {n} atoms but the file ends early")
        comment, symbols, coords = lines[pos + 1].strip(), [], []
        for offset in range(n):
            number = pos + 3 + offset
            fields = lines[number - 1].split()
            try:
                symbols.append(fields[0])
                coords.append([float(v) for v in fields[1:4]])
                if len(coords[-1]) != 3:
                    raise ValueError
            except (ValueError, IndexError):
                raise ValueError(f"{path}, line {number}: expected 'symbol x y z', got {lines[number - 1][:60]!r}") \
                    from None
        frames.append((comment, symbols, np.asarray(coords, dtype=np.float64)))
        pos += 2 + n
    if not frames:
        raise ValueError(f"{path}: empty XYZ file")
    return frames


def _read_xyz(path: Path, charge: int, on_error: str) -> MoleculeFile:
    from rdkit import Chem

    from molgen.data import perceive_molecule

    table = Chem.GetPeriodicTable()
    out = MoleculeFile(path, [], [])
    for k, (comment, symbols, positions) in enumerate(read_xyz_frames(path)):
        try:
            numbers = [_atomic_number(table, s) for s in symbols]
        except ValueError as exc:
            _fail(out, k, str(exc), on_error)
            continue
        perceived = True
        try:
            mol = perceive_molecule(numbers, positions, charge=charge)
        except Exception:  # noqa: BLE001 - RDKit raises several types; no valid bond orders: keep connectivity
            mol, perceived = _connectivity_only(numbers, positions, charge), False
        for atom in mol.GetAtoms():
            atom.SetNoImplicit(True)
        mol.UpdatePropertyCache(strict=False)
        mol.SetProp("_Name", comment)
        out.mols.append(mol)
        out.names.append(comment)
        out.bonds_perceived.append(perceived)
        out.record_index.append(k)
    return out


def _atomic_number(table, symbol: str) -> int:
    clean = symbol.strip()
    if clean.isdigit():
        return int(clean)
    clean = clean[:1].upper() + clean[1:].lower()
    try:
        z = int(table.GetAtomicNumber(clean))
    except RuntimeError:
        z = 0
    if z <= 0:
        raise ValueError(f"unknown element symbol {symbol!r}")
    return z


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
            _fail(result, result.record_index[k], reason, on_error)
        else:
            keep.append(k)
    result.mols = [result.mols[k] for k in keep]
    result.names = [result.names[k] for k in keep]
    result.bonds_perceived = [result.bonds_perceived[k] for k in keep]
    result.record_index = [result.record_index[k] for k in keep]


def _fail(result: MoleculeFile, index: int, reason: str, on_error: str) -> None:
    if on_error == "raise":
        raise ValueError(f"{result.path}: molecule {index}: {reason}")
    result.skipped.append((index, reason))
