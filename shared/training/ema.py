"""Exponential moving average of model weights (the weights most score models are sampled with)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["EMA", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel and/or ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


class EMA:
    """Shadow copy ``s <- d * s + (1 - d) * p`` of the floating-point parameters of ``model``.

    With ``warmup=True`` the decay used at update ``n`` (0-based) is ``min(decay, (1 + n) / (10 + n))`` so the
    average forgets the random initialisation quickly. Buffers (e.g. BatchNorm running statistics, which are
    averages already) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = False) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1], got {decay}")
        model = unwrap_model(model)
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.dtype.is_floating_point}
        self.buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        self._model = model

    def _target(self, model: nn.Module | None) -> nn.Module:
        # explicit None test: an empty nn.Sequential is falsy
        return unwrap_model(self._model if model is None else model)

    def current_decay(self) -> float:
        """The decay the next :meth:`update` will use."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module | None = None) -> None:
        """Move the shadow weights towards the current weights of ``model`` (default: the tracked model)."""
        params = dict(self._target(model).named_parameters())
        weight = 1.0 - self.current_decay()
        for name, shadow in self.shadow.items():
            shadow.lerp_(params[name].detach().to(shadow.dtype), weight)
        for name, buffer in self._target(model).named_buffers():
            if name in self.buffers:
                self.buffers[name].copy_(buffer)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module | None = None) -> None:
        """Overwrite the weights (and buffers) of ``model`` with the averages."""
        model = self._target(model)
        params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
        for name, shadow in self.shadow.items():
            params[name].copy_(shadow)
        for name, value in self.buffers.items():
            buffers[name].copy_(value)

    @contextmanager
    def swap(self, model: nn.Module | None = None) -> Iterator[nn.Module]:
        """Temporarily load the averages into ``model``; the training weights come back on exit."""
        model = self._target(model)
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            model.load_state_dict(saved)

    average_parameters = swap

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": dict(self.shadow), "buffers": dict(self.buffers)}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        for part in ("shadow", "buffers"):
            mine, theirs = getattr(self, part), state[part]
            if set(mine) != set(theirs):
                raise ValueError(f"EMA {part} names differ: missing {sorted(set(mine) - set(theirs))}, "
                                 f"unexpected {sorted(set(theirs) - set(mine))}")
            for name, tensor in mine.items():
                tensor.copy_(theirs[name])
        self.decay, self.warmup = float(state["decay"]), bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
