"""Small torch.distributed helper: set up from torchrun's environment, a no-op in a single process."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "all_gather_object",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "cleanup",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "init",
    "is_initialized",
    "is_main",
    "print0",
    "shard_seed",
]


def init(backend: str | None = None) -> None:
    """Join the process group described by ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``.

    Without ``WORLD_SIZE`` > 1 (a plain ``python`` run) nothing happens. Backend: nccl with CUDA, else gloo.
    """
    if is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE > 1 but {missing} not set; launch with torchrun")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(get_local_rank())
    dist.init_process_group(backend=backend, init_method="env://")


def cleanup() -> None:
    if is_initialized():
        dist.destroy_process_group()


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return get_rank() == 0


def print0(*args, **kwargs) -> None:
    if is_main():
        print(*args, **kwargs)


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def shard_seed(seed: int, rank: int | None = None) -> int:
    """A seed for ``rank`` (default: this process) derived from ``seed``; distinct ranks get distinct seeds."""
    rank = get_rank() if rank is None else rank
    # SeedSequence mixes (seed, rank) thoroughly; 63 bits stay valid for torch and numpy
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over all ranks (a copy; the input is untouched)."""
    result = tensor.detach().clone()
    if is_initialized() and get_world_size() > 1:
        dist.all_reduce(result, op=dist.ReduceOp.SUM)
        result /= get_world_size()
    return result


def all_gather_object(obj):
    """``[obj of rank 0, obj of rank 1, ...]``; ``[obj]`` in a single process."""
    if not is_initialized() or get_world_size() == 1:
        return [obj]
    gathered = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (picklable objects); ``obj`` itself in a single process.

    For decisions one rank must make for all, e.g. a default run directory named after the date.
    """
    if not is_initialized() or get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
