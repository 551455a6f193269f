"""Shared fixtures: the reference data directory (skips cleanly on a fresh machine without it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _reference_data_dir() -> Path | None:
    env = os.environ.get("SCOREGEN_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """``../shared/data`` (or ``$SCOREGEN_DATA``); the test is skipped when it is absent."""
    path = _reference_data_dir()
    if path is None:
        pytest.skip("reference data directory not available (set SCOREGEN_DATA)")
    return path
