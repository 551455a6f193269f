"""One rule for property targets in every domain: each name once, a finite number, inside the model's training
range widened by an out-of-distribution margin (PropMolFlow's OOD task targets the 99th percentile, so the margin
is ``q99 - median`` of the training values). Targets between the range and the margin warn; beyond it they are
refused: the model has never seen anything like them and would answer with something arbitrary."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import torch

__all__ = ["parse_targets", "check_target_range", "training_range"]


def parse_targets(items: Iterable[str], option: str = "--condition") -> dict[str, float]:
    """``["gap=6.5", "mu=2"]`` -> ``{"gap": 6.5, "mu": 2.0}``; a repeated name, a missing ``=`` or a value that
    is not a finite number is a ValueError naming ``option``."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{option} {item!r}: expected PROP=VALUE, e.g. gap=6.5")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{option} {item!r}: {raw.strip()!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{option} {item!r}: the target must be a finite number")
        if name in out:
            raise ValueError(f"{option} names {name!r} twice ({name}={out[name]:g} and {name}={value:g}); give "
                             f"each property once")
        out[name] = value
    return out


def training_range(values: Sequence[float] | torch.Tensor) -> dict[str, float]:
    """``min``, ``max`` and ``ood_margin`` (q99 - median) of one property's training values, for checkpoints."""
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    return {"min": float(v.min()), "max": float(v.max()),
            "ood_margin": float(v.quantile(0.99) - v.median())}


def check_target_range(name: str, values, low: float, high: float, margin: float, stacklevel: int = 3) -> None:
    """Refuse targets (a number or a tensor of them) that are not finite or lie more than ``margin`` outside
    ``[low, high]``; warn for those outside the range but within the margin."""
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if v.numel() == 0 or not bool(torch.isfinite(v).all()):
        raise ValueError(f"target {name}={values} is not a finite number")
    v_lo, v_hi = float(v.min()), float(v.max())
    if v_lo < low - margin or v_hi > high + margin:
        bad = v_lo if v_lo < low - margin else v_hi
        raise ValueError(f"target {name}={bad:g} is outside the training range [{low:g}, {high:g}] by more than "
                         f"the OOD margin {margin:g}: the model has never seen anything like it")
    if v_lo < low or v_hi > high:
        warnings.warn(f"target {name} ({v_lo:g}..{v_hi:g}) lies outside the training range [{low:g}, {high:g}]",
                      stacklevel=stacklevel)
