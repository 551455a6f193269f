"""Safe reading of published GDSS checkpoints (harryjo97/GDSS ``*.pth``).

Those files are PyTorch zip pickles whose configs are ``easydict.EasyDict`` objects. We never unpickle arbitrary
classes: ``torch.load(weights_only=True)`` runs with a stand-in registered under the name ``easydict.EasyDict``
that builds a plain ``OrderedDict`` instead, so neither easydict nor any code from the file is needed.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from shared.safe_load import safe_torch_load

__all__ = ["GDSSCheckpoint", "GDSSImportError", "read_gdss_checkpoint"]

_REQUIRED = ("model_config", "params_x", "params_adj", "x_state_dict", "adj_state_dict")


class GDSSImportError(ValueError):
    """The file is not a GDSS checkpoint we can read safely."""


class _EasyDictStandIn(dict):
    # Unpickling calls cls.__new__(cls); returning an OrderedDict keeps the result a plain container,
    # which the weights-only unpickler then fills with SETITEMS.
    def __new__(cls, *args: Any, **kwargs: Any) -> OrderedDict:  # type: ignore[misc]
        return OrderedDict()


def _plain(obj: Any) -> Any:
    """Nested OrderedDicts -> dicts (tensors and scalars unchanged)."""
    if isinstance(obj, dict):
        return {key: _plain(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_plain(value) for value in obj]
    return obj


@dataclass
class GDSSCheckpoint:
    config: dict                      # GDSS training config: data, sde, model, train, (sampler, sample)
    params_x: dict                    # constructor arguments incl. "model_type"
    params_adj: dict
    x_state_dict: dict[str, torch.Tensor]
    adj_state_dict: dict[str, torch.Tensor]
    ema_x: list[torch.Tensor] | None  # EMA shadow parameters in ``parameters()`` order, when present
    ema_adj: list[torch.Tensor] | None
    ema_decay: float | None


def read_gdss_checkpoint(path: str | os.PathLike) -> GDSSCheckpoint:
    """Read a published GDSS checkpoint without executing code from it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GDSS checkpoint not found: {path}")
    raw = safe_torch_load(path, "GDSS checkpoint",
                          safe_globals=[(_EasyDictStandIn, "easydict.EasyDict")], error=GDSSImportError)
    if not isinstance(raw, dict):
        raise GDSSImportError(f"{path} holds a {type(raw).__name__}, not a GDSS checkpoint dictionary")
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise GDSSImportError(f"{path} is not a GDSS checkpoint: missing {', '.join(missing)}")
    raw = _plain(raw)
    for key in ("params_x", "params_adj"):
        if "model_type" not in raw[key]:
            raise GDSSImportError(f"{path}: {key} lacks 'model_type'")
    ema_x = raw.get("ema_x", {}).get("shadow_params") if isinstance(raw.get("ema_x"), dict) else None
    ema_adj = raw.get("ema_adj", {}).get("shadow_params") if isinstance(raw.get("ema_adj"), dict) else None
    decay = raw["ema_x"].get("decay") if ema_x is not None else None
    return GDSSCheckpoint(raw["model_config"], raw["params_x"], raw["params_adj"], raw["x_state_dict"],
                          raw["adj_state_dict"], ema_x, ema_adj, decay)
