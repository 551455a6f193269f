"""Loading torch files without running code from them, and saying what a file is when it is not a model.

Every model and checkpoint file of scoregen is read with ``torch.load(weights_only=True)``: plain tensors,
numbers, strings and containers only, so opening a file never executes code from it. When that fails, torch's
own message is about pickle opcodes and ends with the advice to retry with ``weights_only=False`` (which would
run whatever code the file holds); users need neither. ``safe_torch_load`` replaces it with one line naming the
file and what it appears to be instead: empty, a text file (SMILES, XYZ, ...), a truncated or damaged PyTorch
file, or a pickle that needs arbitrary code to load, naming the classes it references.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickletools
import re
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

__all__ = ["safe_torch_load", "describe_unloadable"]

_HEAD_BYTES = 64 * 1024
_MAX_NAMES = 3  # referenced classes named in a message
# what a text file of a given suffix usually holds, in the words users know it by
_TEXT_KINDS = {".smi": "SMILES", ".smiles": "SMILES", ".sdf": "SDF molecules", ".sd": "SDF molecules",
               ".mol": "a MOL block", ".xyz": "XYZ coordinates", ".cif": "a CIF crystal", ".csv": "CSV",
               ".json": "JSON", ".yaml": "YAML", ".yml": "YAML", ".py": "Python source", ".md": "Markdown",
               ".log": "a log"}
# organic-subset atoms, bracket atoms, ring closures, bonds and branches: enough to tell SMILES from prose
_SMILES_TOKEN = re.compile(r"^(?=.*[A-Za-z])"
                           r"(?:Cl|Br|[BCNOPSFI]|[bcnops]|\[[^\]\s]+\]|[0-9]|%[0-9]{2}|[-=#$/\\().+:~*@])+$")


def safe_torch_load(path: str | os.PathLike, kind: str, *, map_location: Any = "cpu",
                    safe_globals: Iterable[Any] | None = None, error: type[Exception] = ValueError) -> Any:
    """``torch.load(path, weights_only=True)``; on failure ``error("{path} is not a {kind}: it is ...")``.

    ``kind`` names what the caller expected (e.g. "graphgen model file"); ``safe_globals`` are extra classes
    the caller allows (as ``torch.serialization.safe_globals`` takes them). ``error`` must accept one message
    and should be a ValueError so that the command line reports it as a user error.
    """
    path = Path(path)
    allowed = torch.serialization.safe_globals(list(safe_globals)) if safe_globals else contextlib.nullcontext()
    try:
        with allowed, warnings.catch_warnings():
            # torch warns about any pickle newer than protocol 2 before failing on it: a second line of noise
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - bad bytes make torch raise many types; all mean "not loadable"
        raise error(f"{path} is not a {kind}: it is {describe_unloadable(path, err)}") from err


def describe_unloadable(path: str | os.PathLike, error: BaseException | None = None) -> str:
    """What ``path`` appears to be, as a phrase ("an empty file", "a text file (...)", ...), judged from its
    bytes and from the error torch raised on it. Never repeats torch's advice to disable weights_only."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError as err:
        return f"unreadable ({err.strerror or type(err).__name__})"
    if size == 0:
        return "an empty file (0 bytes)"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _describe_zip(path)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return _describe_pickle(head, size, error)
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file (decompress it first if it holds a model)"
    text = _as_text(head)
    if text is not None:
        return _describe_text(path, text)
    return f"binary data of an unknown kind ({size} bytes, beginning {head[:8].hex(' ')})"


# --- the kinds of file --------------------------------------------------------------------------------------


def _describe_zip(path: Path) -> str:
    if not zipfile.is_zipfile(path):
        return ("a truncated or damaged PyTorch file (a zip archive whose end is missing: "
                "was it copied or downloaded completely?)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            damaged = archive.testzip()
            pickles = [name for name in names if name.endswith("data.pkl")]
            structure = archive.read(pickles[0]) if pickles and damaged is None else b""
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return "a damaged zip archive"
    if not pickles:
        return f"a zip archive, not a PyTorch file (it holds {', '.join(names[:_MAX_NAMES]) or 'nothing'})"
    if damaged is not None:
        return f"a damaged PyTorch file (member {damaged} fails its checksum)"
    # data.pkl holds the object structure (tensors are separate members): small, and read without executing
    unsafe = [name for name in _pickle_globals(structure)[0] if not _allowed_by_torch(name)]
    if unsafe:
        return _needs_code("a PyTorch file", unsafe)
    return "a damaged PyTorch file (its contents cannot be decoded)"


def _describe_pickle(head: bytes, size: int, error: BaseException | None) -> str:
    names, complete = _pickle_globals(head)
    unsafe = [n for n in names if not _allowed_by_torch(n)]
    if unsafe:
        return _needs_code("a Python pickle", unsafe)
    if not complete and size <= len(head):
        return "a truncated pickle (it ends before its STOP opcode)"
    refused = error is not None and "weights only load failed" in str(error).lower()
    if refused:
        return "a plain Python pickle (not written by torch.save) that safe loading (weights_only) cannot read"
    return f"a damaged or truncated PyTorch/pickle file ({type(error).__name__ if error else 'unreadable'})"


def _describe_text(path: Path, text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    shown = first if len(first) <= 40 else first[:37] + "..."
    kind = _TEXT_KINDS.get(path.suffix.lower()) or _guess_text_kind(lines)
    return f"a text file{f' ({kind}?)' if kind else ''}, first line {shown!r}"


def _guess_text_kind(lines: list[str]) -> str | None:
    if not lines:
        return None
    if lines[0].startswith(("{", "[")):
        return "JSON"
    if lines[0].startswith("data_"):
        return "a CIF crystal"
    if all(_SMILES_TOKEN.match(line.split()[0]) for line in lines[:20]):
        return "SMILES"
    return None


def _needs_code(what: str, names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMES]) + (f" and {len(names) - _MAX_NAMES} more" if len(names) > _MAX_NAMES
                                             else "")
    return (f"{what} that needs arbitrary code to load (it references {shown}); safe loading (weights_only) "
            "refused it, and scoregen never loads such files")


# --- helpers ------------------------------------------------------------------------------------------------


def _as_text(head: bytes) -> str | None:
    """``head`` decoded as UTF-8 text, or None for binary data (NUL bytes, invalid UTF-8)."""
    if b"\x00" in head:
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start >= len(head) - 3:  # a multi-byte character cut by the end of the sample
            return head[: err.start].decode("utf-8")
        return None


def _pickle_globals(data: bytes) -> tuple[list[str], bool]:
    """Classes/functions a pickle references (``module.name``), read from its opcodes without executing any;
    and whether its STOP opcode was reached (False: truncated, or longer than ``data``)."""
    names: list[str] = []
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL" or opcode.name == "INST":
                names.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
            if opcode.name == "STOP":
                return _unique(names), True
    except Exception:  # noqa: BLE001 - genops raises ValueError and others at the cut of a truncated pickle
        pass
    return _unique(names), False


def _allowed_by_torch(name: str) -> bool:
    """Whether weights-only loading accepts ``name`` (tensor rebuilders, storages, dtypes, OrderedDict...): the
    others are what makes it refuse a file, e.g. ``torch.nn.modules.linear.Linear`` of a pickled whole model."""
    allowed = _torch_allowlist()
    if allowed is not None:
        return name in allowed
    return name.startswith(("torch._utils._rebuild", "torch._tensor._rebuild", "collections.OrderedDict",
                            "_codecs.encode")) or (name.startswith("torch.") and name.count(".") == 1)


@functools.lru_cache(maxsize=1)
def _torch_allowlist() -> frozenset[str] | None:
    """torch's own list of what weights_only accepts; None where this torch version keeps it elsewhere (it is
    private), and the prefixes above stand in."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return frozenset(_get_allowed_globals())
    except Exception:  # noqa: BLE001 - any change of the private API just means "use the fallback"
        return None


def _unique(names: list[str]) -> list[str]:
    # protocol-2 pickles use Python 2's module names, which the unpickler maps to Python 3's
    modern = (name.replace("__builtin__.", "builtins.", 1).replace("copy_reg.", "copyreg.", 1) for name in names)
    return list(dict.fromkeys(modern))
