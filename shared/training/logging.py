"""Append-only metric logs (JSON lines and CSV), written by rank 0 only, one flushed line per record.

Resume-safe: files are appended to, never truncated on open; :meth:`truncate_after` drops records newer
than the checkpoint a run resumes from, so a crash between checkpoint and log line leaves no duplicates.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from shared.io import atomic_write_text
from shared.training import distributed

__all__ = ["CSVLogger", "JSONLLogger"]


def _plain(value: Any) -> Any:
    """Python scalars from tensors / numpy scalars; non-finite floats as strings (JSON has no NaN)."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class _Logger:
    def __init__(self, path: str | os.PathLike, enabled: bool | None = None) -> None:
        self.path = Path(path)
        self.enabled = distributed.is_main() if enabled is None else bool(enabled)
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)


class JSONLLogger(_Logger):
    """One JSON object per line."""

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = json.dumps({k: _plain(v) for k, v in record.items()}, allow_nan=False)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        # a crash mid-append can leave one cut line at the end: ignore it
        records = []
        for i, line in enumerate(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if i != len(lines) - 1:
                    raise ValueError(f"{self.path}: line {i + 1} is not valid JSON") from None
        return records

    def truncate_after(self, step: int, key: str = "step") -> None:
        """Keep only records with ``record[key] <= step``."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [r for r in self.read() if r.get(key, -1) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


class CSVLogger(_Logger):
    """CSV with a header; a record with new keys rewrites the file with the widened header."""

    def __init__(self, path: str | os.PathLike, enabled: bool | None = None) -> None:
        super().__init__(path, enabled)
        self.fields: list[str] = []
        if self.enabled and self.path.is_file() and self.path.stat().st_size:
            with open(self.path, newline="", encoding="utf-8") as handle:
                self.fields = next(csv.reader(handle), [])

    def read(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buffer.getvalue())

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {k: _plain(v) for k, v in record.items()}
        new = [k for k in record if k not in self.fields]
        if new:
            rows = self.read()
            self.fields = self.fields + new
            self._rewrite(rows + [record])
            return
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, fieldnames=self.fields, restval="").writerow(record)
            handle.flush()

    def truncate_after(self, step: int, key: str = "step") -> None:
        """Keep only rows with ``int(row[key]) <= step``."""
        if not self.enabled or not self.path.is_file() or not self.fields:
            return
        self._rewrite([r for r in self.read() if r.get(key) in ("", None) or int(r[key]) <= step])
