"""Where reference data lives: an explicit option first, then the ``SCOREGEN_DATA`` environment variable."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV_VAR", "resolve_data_dir", "require_file"]

DATA_ENV_VAR = "SCOREGEN_DATA"


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The data directory given by ``explicit`` or ``$SCOREGEN_DATA``; ``None`` when neither is set.

    An explicitly named directory that does not exist is an error, not a silent fallback.
    """
    chosen = explicit if explicit is not None else os.environ.get(DATA_ENV_VAR)
    if chosen is None or str(chosen) == "":
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        source = "--data-dir" if explicit is not None else f"${DATA_ENV_VAR}"
        raise FileNotFoundError(f"data directory {path} (from {source}) does not exist")
    return path


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a Path, or a FileNotFoundError that says what was expected there."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path
