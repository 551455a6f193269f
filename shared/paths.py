"""Where reference data lives: an explicit option first, then the ``SCOREGEN_DATA`` environment variable."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV_VAR", "DATA_ENV_VAR", "cache_dir", "resolve_data_dir", "require_file"]

DATA_ENV_VAR = "SCOREGEN_DATA"
CACHE_ENV_VAR = "SCOREGEN_CACHE"


def cache_dir(*parts: str) -> Path:
    """Where derived files (prepared datasets, parsed tables) are cached: ``$SCOREGEN_CACHE`` or
    ``~/.cache/scoregen``, then ``parts``. Point the variable at a writable folder when HOME is not."""
    root = os.environ.get(CACHE_ENV_VAR) or "~/.cache/scoregen"
    return Path(root).expanduser().joinpath(*parts)


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
