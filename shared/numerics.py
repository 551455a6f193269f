"""Floating-point hygiene: subnormal (denormal) numbers cost x86 CPUs 10-100x per operation.

Trained weights that weight decay pushed towards zero end up subnormal (the published GDSS QM9 checkpoint has
whole attention heads of ~1e-40 weights); every product with them then takes the slow path. Replacing them by
zero changes a result by less than float32's smallest normal number (1.2e-38), far below its precision.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["flush_denormal_mode", "flush_denormals_"]


def flush_denormals_(module: nn.Module) -> int:
    """Set every subnormal entry of ``module``'s floating parameters and buffers to zero; returns how many."""
    count = 0
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if not tensor.is_floating_point():
                continue
            tiny = (tensor != 0) & (tensor.abs() < torch.finfo(tensor.dtype).tiny)
            n = int(tiny.sum())
            if n:
                tensor.masked_fill_(tiny, 0.0)
                count += n
    return count


@contextmanager
def flush_denormal_mode(enabled: bool = True):
    """CPU flush-to-zero for subnormal results inside the block (torch's default, off, is restored after).

    A no-op where the CPU does not support it; CUDA kernels flush by default anyway.
    """
    if not enabled:
        yield
        return
    supported = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(False)
