"""graphgen's sample files: molecules as SMILES (.smi/.txt, one per line) or 2-D SDF, graphs as JSON edge lists or
GraphML; written atomically, read back with GDSS's definition of a bad SMILES line (an invalid molecule, named in
one warning) and clear errors for everything else.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Sequence

import networkx as nx

from shared.io import atomic_write_json, atomic_write_text, split_sdf_records

__all__ = ["write_samples", "read_samples", "mol_smiles"]


def mol_smiles(mol) -> str:
    from rdkit import Chem

    try:
        return Chem.MolToSmiles(mol)
    except Exception:  # RDKit raises its own types for broken (uncorrected) molecules
        return ""


def write_samples(path: str | os.PathLike, items: Sequence[Any]) -> Path:
    """Write molecules (.smi / .txt SMILES, one per line; .sdf 2-D) or graphs (.json edge lists; .graphml)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".smi", ".txt"):
        return atomic_write_text(path, "".join(mol_smiles(m) + "\n" for m in items))
    if suffix == ".sdf":
        return atomic_write_text(path, _sdf_text(items))
    if suffix == ".json":
        graphs = [{"num_nodes": g.number_of_nodes(), "edges": [[int(u), int(v)] for u, v in
                                                               nx.convert_node_labels_to_integers(g).edges]}
                  for g in items]
        return atomic_write_json(path, {"name": "graphgen samples", "graphs": graphs}, indent=None)
    if suffix == ".graphml":
        writer = nx.readwrite.graphml.GraphMLWriter()
        writer.add_graphs([nx.convert_node_labels_to_integers(g) for g in items])
        return atomic_write_text(path, str(writer))
    raise ValueError(f"unknown sample file type {path.suffix!r} for {path}: use .smi, .txt, .sdf, .json or .graphml")


def _sdf_text(mols: Sequence[Any]) -> str:
    from rdkit import Chem
    from rdkit.Chem import rdDepictor

    blocks = []
    for mol in mols:
        mol = Chem.Mol(mol)
        mol.UpdatePropertyCache(strict=False)  # uncorrected molecules may be over-valent: no sanitisation
        Chem.FastFindRings(mol)
        try:
            rdDepictor.Compute2DCoords(mol)
        except (RuntimeError, ValueError):
            pass  # coordinates are cosmetic: the block is still valid with zeros
        blocks.append(Chem.MolToMolBlock(mol, kekulize=False) + "$$$$\n")
    return "".join(blocks)


def read_samples(path: str | os.PathLike, *, warn: Callable[[str], None] | None = None
                 ) -> tuple[list[Any], bool]:
    """``(items, is_molecule)``: SMILES strings from .smi/.txt/.sdf, networkx graphs from .json/.graphml.

    SMILES files keep one item per line, so that a line that is not SMILES at all (garbage, NUL bytes, invalid
    UTF-8) still counts as an invalid molecule (GDSS validity is over everything sampled); such lines (SDF:
    such records) are reported through ``warn`` (default: one line on stderr) with their numbers, counted
    from 1. A file that is empty, mostly binary, or has no line of SMILES at all is a ValueError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".smi", ".txt", ".sdf", ".json", ".graphml"):
        raise ValueError(f"unknown sample file type {path.suffix!r} for {path}: use .smi, .txt, .sdf, .json or "
                         ".graphml")
    data = path.read_bytes()
    if not data.strip():
        raise ValueError(f"{path} is empty: no samples to evaluate")
    if suffix in (".smi", ".txt"):
        return _read_smiles_lines(path, data, warn or _warn_on_stderr), True
    if suffix == ".sdf":
        return _read_sdf_smiles(path, warn or _warn_on_stderr), True
    text = _decoded(path, data)
    if suffix == ".json":
        return _graphs_from_json(path, text), False
    return _graphs_from_graphml(path, text), False


_SHOWN_LINES = 5  # bad lines named in a warning
_SHOWN_CHARS = 30  # characters of each bad line shown


def _read_smiles_lines(path: Path, data: bytes, warn: Callable[[str], None]) -> list[str]:
    from rdkit.rdBase import BlockLogs

    items, bad, binary, nonblank = [], [], 0, 0
    with BlockLogs():  # RDKit would print one parse error per garbage line
        for number, raw in enumerate(data.splitlines(), start=1):
            text = None if b"\x00" in raw else _utf8(raw)
            if text is None:
                binary += 1
            if not raw.strip():
                items.append("")  # the sampler writes an empty line for a molecule RDKit cannot write
                continue
            nonblank += 1
            token = text.split()[0] if text is not None and text.split() else ""
            items.append(token)
            if text is None or not _is_smiles(token):
                bad.append((number, raw))
    if binary and 2 * binary >= nonblank:
        raise ValueError(f"{path} is a binary file, not SMILES text ({binary} of {nonblank} lines hold NUL bytes "
                         f"or invalid UTF-8)")
    if len(bad) == nonblank:
        raise ValueError(f"{path}: none of its {nonblank} lines is SMILES (line {bad[0][0]} "
                         f"{_preview(bad[0][1])}); is it a SMILES file?")
    if bad:
        warn(_bad_lines_message(path, bad, len(items)))
    return items


def _utf8(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _is_smiles(token: str) -> bool:
    """Whether RDKit can parse ``token`` as SMILES syntax; chemistry (valence) is the metrics' business."""
    from rdkit import Chem

    return bool(token) and token.isprintable() and Chem.MolFromSmiles(token, sanitize=False) is not None


def _bad_lines_message(path: Path, bad: list[tuple[int, bytes]], total: int) -> str:
    shown = ", ".join(f"line {number} {_preview(raw)}" for number, raw in bad[:_SHOWN_LINES])
    more = f" and {len(bad) - _SHOWN_LINES} more" if len(bad) > _SHOWN_LINES else ""
    return (f"{path}: {len(bad)} of {total} lines are not SMILES and count as invalid molecules: "
            f"{shown}{more}")


def _preview(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").strip()  # undecodable bytes show as U+FFFD, controls escaped
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "...")


def _warn_on_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _decoded(path: Path, data: bytes) -> str:
    text = None if b"\x00" in data else _utf8(data)
    if text is None:
        raise ValueError(f"{path} is a binary file (NUL bytes or invalid UTF-8), not a {path.suffix} sample file")
    return text


def _read_sdf_smiles(path: Path, warn: Callable[[str], None]) -> list[str]:
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    from graphgen.representation import sdf_record_mol

    blocks = [block for _, block in split_sdf_records(path.read_bytes().decode("utf-8", errors="replace"))]
    with BlockLogs():  # unsanitisable records are invalid molecules, counted by the metrics, not log lines
        mols = [sdf_record_mol(block, sanitize=True) for block in blocks]
        # a record RDKit cannot parse even unsanitised is damage to the file, not an invalid molecule
        unparsed = {k for k, m in enumerate(mols) if m is None and sdf_record_mol(blocks[k], sanitize=False) is None}
    if not mols or len(unparsed) == len(mols):
        raise ValueError(f"{path}: no readable SDF record (is it an SDF file?)")
    if unparsed:
        numbers = sorted(k + 1 for k in unparsed)
        shown = ", ".join(map(str, numbers[:_SHOWN_LINES])) + (
            f" and {len(numbers) - _SHOWN_LINES} more" if len(numbers) > _SHOWN_LINES else "")
        warn(f"{path}: {len(numbers)} of {len(mols)} records are not readable SDF and count as invalid "
             f"molecules: record(s) {shown}")
    return [Chem.MolToSmiles(m) if m is not None else "" for m in mols]


def _graphs_from_json(path: Path, text: str) -> list[nx.Graph]:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("graphs"), list):
        raise ValueError(f"{path}: expected an object with a 'graphs' list")
    graphs = []
    for number, entry in enumerate(payload["graphs"], start=1):
        try:
            g = nx.Graph()
            g.add_nodes_from(range(int(entry["num_nodes"])))
            g.add_edges_from((int(u), int(v)) for u, v in entry["edges"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: graph {number} is not {{'num_nodes': int, 'edges': [[u, v], ...]}} "
                             f"({type(err).__name__}: {err})") from None
        graphs.append(g)
    return graphs


def _graphs_from_graphml(path: Path, text: str) -> list[nx.Graph]:
    from xml.etree.ElementTree import ParseError

    reader = nx.readwrite.graphml.GraphMLReader(node_type=int)
    try:
        return list(reader(string=text))
    except (ParseError, nx.NetworkXError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: not a readable GraphML file ({type(err).__name__}: {err})") from None
