"""Learning-rate schedules as ``LambdaLR`` factors of the base rate, one scheduler step per optimizer step.

The factor for optimizer step ``s`` (0-based) during warmup is ``(s + 1) / warmup_steps``, so the first update
already moves the weights and step ``warmup_steps - 1`` reaches the full rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["SCHEDULES", "build_lr_scheduler", "lr_factor"]

SCHEDULES = ("constant", "linear_warmup", "cosine", "exponential")


def lr_factor(name: str, *, warmup_steps: int = 0, total_steps: int | None = None, gamma: float = 0.999,
              min_lr_ratio: float = 0.0) -> Callable[[int], float]:
    """The multiplier of the base learning rate as a function of the step.

    ``constant``: 1. ``linear_warmup``: linear ramp then 1. ``cosine``: ramp, then half a cosine from 1 down to
    ``min_lr_ratio`` at ``total_steps`` (held after). ``exponential``: ramp, then ``gamma ** (s - warmup_steps)``.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {name!r}; choose one of {SCHEDULES}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if name == "constant" and warmup_steps:
        raise ValueError("the 'constant' schedule has no warmup; use 'linear_warmup' for a ramp")
    if name == "cosine" and (total_steps is None or total_steps <= warmup_steps):
        raise ValueError(f"cosine schedule needs total_steps > warmup_steps, got {total_steps} <= {warmup_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must lie in [0, 1], got {min_lr_ratio}")
    if name == "exponential" and not 0.0 < gamma <= 1.0:
        raise ValueError(f"exponential schedule needs 0 < gamma <= 1, got {gamma}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        after = step - warmup_steps
        if name == "cosine":
            progress = min(after / (total_steps - warmup_steps), 1.0)
            return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if name == "exponential":
            return gamma**after
        return 1.0

    return factor


def build_lr_scheduler(optimizer: Optimizer, name: str = "constant", *, warmup_steps: int = 0,
                       total_steps: int | None = None, gamma: float = 0.999, min_lr_ratio: float = 0.0) -> LambdaLR:
    """A ``LambdaLR`` applying :func:`lr_factor` to every parameter group (state dict holds no pickled code)."""
    return LambdaLR(optimizer, lr_factor(name, warmup_steps=warmup_steps, total_steps=total_steps, gamma=gamma,
                                         min_lr_ratio=min_lr_ratio))
