"""Benchmark plumbing: what machine ran it, robust timings, and results written as JSON + Markdown.

Every benchmark writes ``benchmarks/results/<name>.json`` (machine-readable) and ``<name>.md`` (a table, the
protocol, the machine and the exact command), both atomically.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.io import atomic_write_json, atomic_write_text

__all__ = ["RESULTS_DIR", "TimingStats", "machine_info", "timeit", "write_results"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def machine_info() -> dict[str, Any]:
    """CPU model and cores, thread settings, library versions, accelerator, git commit."""
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": "cpu",
        "gpu": None,
        "git_commit": _git_commit(),
    }
    if torch.cuda.is_available():
        info["device"] = "cuda"
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


@dataclass(frozen=True)
class TimingStats:
    """Wall-clock seconds per call over ``repeats`` timed calls (after ``warmup`` untimed ones)."""

    median_s: float
    iqr_s: float  # interquartile range: spread that ignores the odd slow outlier
    q1_s: float
    q3_s: float
    min_s: float
    max_s: float
    mean_s: float
    repeats: int
    warmup: int
    samples_s: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["samples_s"] = list(self.samples_s)
        return data


def timeit(
    fn: Callable[[], Any], repeats: int = 5, warmup: int = 1, *, sync: Callable[[], None] | None = None
) -> TimingStats:
    """Time ``fn()``; ``sync`` (e.g. ``torch.cuda.synchronize``) runs before each clock read for async devices."""
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"timeit: repeats must be an integer >= 1, got {repeats!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"timeit: warmup must be an integer >= 0, got {warmup!r}")
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        if sync is not None:
            sync()
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        samples.append(time.perf_counter() - start)
    values = np.asarray(samples)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return TimingStats(
        median_s=float(median), iqr_s=float(q3 - q1), q1_s=float(q1), q3_s=float(q3),
        min_s=float(values.min()), max_s=float(values.max()), mean_s=float(values.mean()),
        repeats=repeats, warmup=warmup, samples_s=tuple(float(v) for v in samples),
    )


def write_results(
    name: str,
    results: dict,
    protocol: dict | str,
    command: str,
    table: list[dict] | None = None,
    *,
    results_dir: str | Path | None = None,
    machine: dict | None = None,
) -> tuple[Path, Path]:
    """Write ``<results_dir>/<name>.json`` and ``<name>.md``; returns both paths.

    ``results`` holds the headline numbers, ``table`` optional rows (one dict per row, columns in order of first
    appearance), ``protocol`` how the numbers were obtained, ``command`` how to reproduce them.
    """
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise ValueError(f"benchmark name must be letters, digits, '.', '_' or '-', got {name!r}")
    if not isinstance(results, Mapping):
        raise TypeError(f"results must be a dict, got {type(results).__name__}")
    if table is not None and not all(isinstance(row, Mapping) for row in table):
        raise TypeError("table must be a list of dicts (one per row)")
    folder = Path(results_dir) if results_dir is not None else RESULTS_DIR
    record = {
        "name": name,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "protocol": protocol,
        "results": dict(results),
        "table": [dict(row) for row in table] if table is not None else None,
        "machine": machine if machine is not None else machine_info(),
    }
    json_path = atomic_write_json(folder / f"{name}.json", record)
    md_path = atomic_write_text(folder / f"{name}.md", _markdown(record))
    return json_path, md_path


# --- Markdown -----------------------------------------------------------------------------------------------


def _markdown(record: dict) -> str:
    lines = [f"# {record['name']}", "", f"Generated {record['created_utc']}.", ""]
    if record["table"]:
        lines += [_table(record["table"]), ""]
    lines += ["## Results", "", _table([{"metric": k, "value": v} for k, v in _flatten(record["results"])]), ""]
    lines += ["## Protocol", ""]
    protocol = record["protocol"]
    if isinstance(protocol, Mapping):
        lines += [f"- **{k}**: {_cell(v)}" for k, v in protocol.items()]
    else:
        lines.append(str(protocol).strip())
    lines += ["", "## Machine", ""]
    lines += [f"- **{k}**: {_cell(v)}" for k, v in record["machine"].items()]
    lines += ["", "## Command", "", "```bash", record["command"], "```", ""]
    return "\n".join(lines)


def _table(rows: list[Mapping]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [str(c) for c in row if str(c) not in columns]
    if not columns:
        return "(no results)"
    out = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = {str(k): v for k, v in row.items()}
        out.append("| " + " | ".join(_cell(cells.get(c, "")) for c in columns) + " |")
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple)) and len(value) > 8:
        text = f"[{len(value)} values]"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _flatten(results: Mapping, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts become dotted keys: {"fcd": {"mean": 1}} -> [("fcd.mean", 1)]."""
    items = []
    for key, value in results.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items += _flatten(value, full + ".")
        else:
            items.append((full, value))
    return items


# --- machine details ----------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _git_commit() -> str | None:
    """Short commit of the checkout (with ``-dirty`` when there are local changes); None outside git.

    Read-only: ``--no-optional-locks`` keeps ``git status`` from rewriting the index while others use git.
    """
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit
