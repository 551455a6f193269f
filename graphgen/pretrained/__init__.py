"""The embedded default QM9 model (``qm9.pt``) and its manifest (how it was trained, what it scores)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["PRETRAINED_DIR", "default_model_path"]

PRETRAINED_DIR = Path(__file__).resolve().parent


def default_model_path() -> Path:
    """The embedded model file named in ``manifest.json``; FileNotFoundError says what is missing."""
    manifest = PRETRAINED_DIR / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"no model given and no embedded default model yet ({manifest} is missing): pass "
                                "a model file, a run directory or an imported GDSS model")
    path = PRETRAINED_DIR / json.loads(manifest.read_text(encoding="utf-8"))["file"]
    if not path.is_file():
        raise FileNotFoundError(f"the embedded default model {path} named in {manifest} is missing: reinstall "
                                "scoregen or pass a model")
    return path
