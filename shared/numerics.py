"""Floating-point hygiene and precision: subnormal (denormal) numbers cost x86 CPUs 10-100x per operation;
bf16 autocast runs a network at up to twice fp32's speed where the hardware multiplies bf16 natively.

Trained weights that weight decay pushed towards zero end up subnormal (the published GDSS QM9 checkpoint has
whole attention heads of ~1e-40 weights); every product with them then takes the slow path. Replacing them by
zero changes a result by less than float32's smallest normal number (1.2e-38), far below its precision.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import torch
from torch import nn

__all__ = ["PRECISIONS", "flush_denormal_mode", "flush_denormals_", "native_bf16", "network_autocast",
           "resolve_precision"]


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


PRECISIONS = ("fp32", "bf16", "auto")


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` multiplies bf16 natively: CPUs with avx512_bf16 or AMX, CUDA GPUs with bf16 support.

    Without native support bf16 autocast is emulated and slower than fp32, so ``precision="auto"`` keeps fp32.
    """
    return _native_bf16(str(torch.device(device)))


@lru_cache(maxsize=None)  # read /proc/cpuinfo once, not on every network call
def _native_bf16(device: str) -> bool:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``fp32`` or ``bf16``: ``auto`` becomes bf16 where :func:`native_bf16`, else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def network_autocast(precision: str, device: torch.device | str = "cpu"):
    """The context to run a network in: bf16 autocast (matmuls and convolutions in bf16, reductions in fp32) or
    nothing. Callers keep their state and integrator in fp32 and cast the network's outputs back."""
    from contextlib import nullcontext

    device = torch.device(device)
    if resolve_precision(precision, device) == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
