"""Tensor helpers used across shared/ (one definition each)."""

from __future__ import annotations

from torch import Tensor

__all__ = ["per_sample"]


def per_sample(v: Tensor, x: Tensor) -> Tensor:
    """View a per-sample ``(B,)`` tensor as ``(B, 1, ..., 1)`` so it broadcasts over the non-batch dims of ``x``
    (unchecked; :func:`shared.sde.expand_like` is the checked version for public callers)."""
    return v.reshape(-1, *([1] * (x.dim() - 1)))
