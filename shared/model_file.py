"""One model-file header for every domain: ``{"format", "format_version", "domain", ...domain payload}``.

A model file is a ``torch.save`` dict written atomically; the header says what it is so that a reader can refuse
another domain's file, or a newer version, in one clear sentence instead of a KeyError. Readers accept the files
written before the header was shared: a missing ``format_version`` (molgen) counts as version 1, and crysgen's
``version`` key is read as ``format_version``. Loading never runs code from the file (``safe_torch_load``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.io import atomic_torch_save
from shared.safe_load import safe_torch_load

__all__ = ["HEADER_KEYS", "read_model_file", "write_model_file"]

HEADER_KEYS = ("format", "format_version", "domain")


def write_model_file(path: str | os.PathLike, payload: dict[str, Any], *, format: str, version: int,
                     domain: str) -> Path:
    """Write ``payload`` under the shared header (its keys must not collide with the header's), atomically."""
    clash = sorted(set(payload) & set(HEADER_KEYS))
    if clash:
        raise ValueError(f"payload keys {clash} are reserved for the model-file header")
    return atomic_torch_save({"format": format, "format_version": int(version), "domain": domain, **payload}, path)


def read_model_file(path: str | os.PathLike, *, format: str, max_version: int, what: str, hint: str = "",
                    map_location: Any = "cpu") -> dict[str, Any]:
    """The payload of a model file of ``format`` (up to ``max_version``); otherwise a ValueError that names the
    file, what it holds instead and ``hint`` (e.g. how to get the right kind of file)."""
    path = Path(path)
    payload = safe_torch_load(path, what, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != format:
        held = (f"format {payload['format']!r}" if isinstance(payload, dict) and "format" in payload
                else "a dict without a format tag" if isinstance(payload, dict) else type(payload).__name__)
        raise ValueError(f"{path} is not a {what}: it holds {held}{'; ' + hint if hint else ''}")
    version = int(payload.get("format_version", payload.get("version", 1)))
    if version > max_version:
        raise ValueError(f"{path} has format version {version}; this scoregen reads {what}s up to version "
                         f"{max_version}: upgrade scoregen")
    return {**payload, "format_version": version}
