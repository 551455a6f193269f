"""Atomic, self-describing training checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain containers only (no pickled classes): model / EMA / optimizer /
scheduler state dicts, the config as a plain dict, global RNG states, the step, package versions and a
format version. Files are named ``ckpt-<step:08d>.pt`` so the newest is the one with the highest step.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shared.config import config_to_dict
from shared.io import atomic_torch_save
from shared.safe_load import safe_torch_load
from shared.seeding import capture_rng_state, restore_rng_state
from shared.training.ema import EMA, unwrap_model

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "checkpoint_path",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "restore_checkpoint",
    "save_checkpoint",
]

FORMAT_VERSION = 1
_NAME_RE = re.compile(r"^ckpt-(\d+)\.pt$")
_TEMP_RE = re.compile(r"^\.ckpt-\d+\.pt\..+\.tmp$")  # shared.io.atomic_write's temporaries
# exact types: a str/int subclass (e.g. torch's TorchVersion) is pickled as its class and breaks weights_only
_SCALARS = (str, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupt or not a scoregen checkpoint."""


def checkpoint_path(directory: str | os.PathLike, step: int) -> Path:
    return Path(directory) / f"ckpt-{step:08d}.pt"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        scoregen = version("scoregen")
    except PackageNotFoundError:  # running from a source tree: the package's own version
        import shared

        scoregen = shared.__version__
    return {"torch": str(torch.__version__), "numpy": str(np.__version__), "python": platform.python_version(),
            "scoregen": scoregen}


def _check_plain(obj: Any, where: str) -> None:
    """Refuse anything ``weights_only`` loading would reject, naming where it sits."""
    if type(obj) in (dict, OrderedDict):
        for key, value in obj.items():
            if type(key) not in (str, int):
                raise TypeError(f"checkpoint key {key!r} at {where} is a {type(key).__name__}, not str/int")
            _check_plain(value, f"{where}.{key}")
    elif type(obj) in (list, tuple):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
    elif type(obj) not in _SCALARS and not isinstance(obj, torch.Tensor):
        raise TypeError(f"checkpoint entry {where} is a {type(obj).__name__}; store tensors and plain data only")


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, ema: EMA | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None, step: int,
                    config: Any = None, rng: bool = True, extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (a crash mid-write leaves any previous file intact)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = config_to_dict(config)
    payload = {
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "model": unwrap_model(model).state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "config": config_to_dict(config),
        "rng": capture_rng_state() if rng else None,
        "versions": _versions(),
        "extra": extra or {},
    }
    _check_plain(payload, "checkpoint")
    return atomic_torch_save(payload, path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; FileNotFoundError / CheckpointError on a bad file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = safe_torch_load(path, "scoregen training checkpoint", map_location=map_location,
                              error=CheckpointError)
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path} is not a scoregen checkpoint (no format_version)")
    if payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {payload['format_version']}, this code reads up to "
                              f"{FORMAT_VERSION}; upgrade scoregen")
    return payload


def restore_checkpoint(payload: dict[str, Any], *, model: nn.Module | None = None, ema: EMA | None = None,
                       optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                       rng: bool = True) -> int:
    """Load the states in ``payload`` into the given objects; returns the step."""
    for name, target in (("model", model), ("ema", ema), ("optimizer", optimizer), ("scheduler", scheduler)):
        if target is None:
            continue
        if payload.get(name) is None:
            raise CheckpointError(f"checkpoint holds no {name} state to restore")
        (unwrap_model(target) if name == "model" else target).load_state_dict(payload[name])
    if rng and payload.get("rng") is not None:
        restore_rng_state(payload["rng"])
    return int(payload["step"])


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoint files in ``directory`` sorted by step (temporary files of unfinished writes are ignored)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME_RE.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``directory`` (or its ``checkpoints/`` folder); None if none."""
    directory = Path(directory)
    found = list_checkpoints(directory) or list_checkpoints(directory / "checkpoints")
    return found[-1] if found else None


def prune_checkpoints(directory: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest checkpoints; returns the deleted paths.

    Temporary files of writes that never finished (a process killed while saving) go too: the trainer calls this
    right after its own save, and one run has one writer, so no such file is still being written."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    doomed = list_checkpoints(directory)[:-keep_last]
    if Path(directory).is_dir():
        doomed += sorted(p for p in Path(directory).iterdir() if _TEMP_RE.match(p.name) and p.is_file())
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed
