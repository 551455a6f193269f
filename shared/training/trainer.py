"""Step-based training loop: EMA, clipping, LR schedule, AMP, DDP, logs, atomic checkpoints, exact resume.

Reproducibility contract (CPU: bitwise). The trainer owns every source of randomness it hands out:
- the loss noise comes from ``trainer.generator`` (seeded from ``config.seed``, per rank via ``shard_seed``);
- the data order comes from an :class:`EpochSampler` whose permutation is a function of ``(seed, epoch)``
  only. A plain ``DataLoader`` (shuffling or not) is rebuilt around one. The checkpoint stores the epoch and
  the number of batches consumed in it; on resume the sampler starts after them (indices are skipped, no
  data is loaded for nothing). The loader's own generator (DataLoader worker base seeds) is re-seeded per
  epoch, so the global RNG is never consumed by data loading;
- global python/numpy/torch RNG states (e.g. dropout) are saved in checkpoints and restored on resume, and
  are saved and restored around ``eval_fn`` so evaluation never changes training.
Other iterables are used as given (``set_epoch(epoch)`` is called if the sampler has it) and skipped batch
by batch on resume: exact only if the iterable yields the same batches each time.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler, SequentialSampler
from tqdm import tqdm

from shared.config import config_to_dict
from shared.seeding import capture_rng_state, make_generator, restore_rng_state
from shared.training import distributed
from shared.training.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)
from shared.training.ema import EMA
from shared.training.logging import CSVLogger, JSONLLogger
from shared.training.schedules import build_lr_scheduler

__all__ = ["EpochSampler", "Trainer", "TrainerConfig"]

LossFn = Callable[[nn.Module, Any, torch.Generator], "torch.Tensor | tuple[torch.Tensor, dict[str, Any]]"]


@dataclasses.dataclass
class TrainerConfig:
    max_steps: int = 10_000
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0  # max global grad norm; None: no clipping (the norm is still logged)
    ema_decay: float | None = 0.999  # None: no EMA
    ema_warmup: bool = False
    lr_schedule: Literal["constant", "linear_warmup", "cosine", "exponential"] = "constant"
    warmup_steps: int = 0
    lr_gamma: float = 0.999  # per-step factor of the exponential schedule
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    log_every: int = 100
    checkpoint_every: int | None = 1000  # None: only the final checkpoint
    eval_every: int | None = None
    keep_last: int = 3
    amp: bool = False  # bf16 autocast on CPU, fp16 autocast + GradScaler on CUDA
    compile: bool = False
    seed: int = 0
    device: str = "auto"  # "auto": CUDA (this rank's device) if available, else CPU
    progress: bool = True
    max_nonfinite: int = 10  # raise after this many consecutive non-finite losses
    csv_log: bool = True

    def __post_init__(self) -> None:
        for name in ("max_steps", "log_every", "keep_last", "max_nonfinite"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("checkpoint_every", "eval_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "lr_gamma", "min_lr_ratio", "grad_clip", "ema_decay"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(float(value)):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1) or be None, got {self.ema_decay}")
        if self.weight_decay < 0 or self.warmup_steps < 0:
            raise ValueError(f"weight_decay and warmup_steps must be >= 0, got {self.weight_decay}, "
                             f"{self.warmup_steps}")
        if self.lr <= 0 or (self.grad_clip is not None and self.grad_clip <= 0):
            raise ValueError(f"lr and grad_clip must be positive, got lr={self.lr}, grad_clip={self.grad_clip}")


def _mix_seed(*values: int) -> int:
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class EpochSampler(Sampler[int]):
    """Indices of one epoch: a permutation fixed by ``(seed, epoch)``, sharded over ranks, resumable mid-epoch.

    Like ``DistributedSampler``, every rank gets ``ceil(n / world_size)`` indices (the permutation is padded by
    wrapping around, or cut with ``drop_last``) so all ranks run the same number of steps.
    """

    def __init__(self, num_samples: int, *, shuffle: bool = True, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, drop_last: bool = False) -> None:
        if num_samples < 1:
            raise ValueError(f"EpochSampler needs at least one sample, got {num_samples}")
        self.num_samples, self.shuffle, self.seed, self.drop_last = num_samples, shuffle, seed, drop_last
        self.rank = distributed.get_rank() if rank is None else rank
        self.world_size = distributed.get_world_size() if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world of size {self.world_size}")
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and skip its first ``start`` indices of this rank's shard."""
        self.epoch, self.start = int(epoch), int(start)

    def _shard(self) -> torch.Tensor:
        if self.shuffle:
            order = torch.randperm(self.num_samples, generator=make_generator(_mix_seed(self.seed, self.epoch)))
        else:
            order = torch.arange(self.num_samples)
        if self.world_size > 1:
            if self.drop_last:
                order = order[: self.num_samples - self.num_samples % self.world_size]
            else:
                pad = -self.num_samples % self.world_size
                order = torch.cat([order, order.repeat(math.ceil(pad / self.num_samples))[:pad]])
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._shard()[self.start :].tolist())

    def __len__(self) -> int:
        return max(len(self._shard()) - self.start, 0)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor) or (hasattr(batch, "to") and not isinstance(batch, type)):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [_to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", distributed.get_local_rank())
    return device


class _StopAtStepBoundary:
    """Ctrl-C during training: the first one lets the step in flight finish (the loop then writes a checkpoint and
    raises ``KeyboardInterrupt``), a second one interrupts at once. A step cut in half (say, between the optimizer
    update and the EMA update) must never be saved. Only where Python's own SIGINT handler is in place (main thread,
    nobody else handling Ctrl-C) and in one process: under DDP every rank would have to stop at the same step."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False

    def __enter__(self) -> _StopAtStepBoundary:
        if self.enabled and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, self._handle)
        else:
            self.enabled = False
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        sys.stderr.write("\ninterrupt: stopping after this step to save a checkpoint (Ctrl-C again to stop now)\n")

    def __exit__(self, *exc) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, signal.default_int_handler)


class Trainer:
    """Train ``model`` for ``config.max_steps`` optimizer steps of ``loss_fn(model, batch, generator)``.

    ``loss_fn`` returns a scalar loss or ``(loss, {name: value})`` extra logs; it receives the wrapped model
    (DDP / compiled) and must draw all its noise from ``generator``. ``eval_fn(trainer) -> dict`` runs every
    ``eval_every`` steps on every rank (use ``trainer.ema.swap()`` to evaluate the EMA weights). Outputs in
    ``run_dir``: ``log.jsonl`` (train and eval records), ``log.csv``, ``eval.csv``, ``checkpoints/``.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, train_loader: Iterable, config: TrainerConfig,
                 run_dir: str | Path, eval_fn: Callable[[Trainer], dict[str, Any]] | None = None,
                 optimizer: torch.optim.Optimizer | None = None) -> None:
        self.config, self.loss_fn, self.eval_fn = config, loss_fn, eval_fn
        self.run_dir, self.checkpoint_dir = Path(run_dir), Path(run_dir) / "checkpoints"
        self.rank, self.world_size = distributed.get_rank(), distributed.get_world_size()
        self.device = _resolve_device(config.device)
        self.model = model.to(self.device)
        if optimizer is None:
            optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, betas=config.betas,
                                          weight_decay=config.weight_decay)
        self.optimizer = optimizer
        self.scheduler = build_lr_scheduler(self.optimizer, config.lr_schedule, warmup_steps=config.warmup_steps,
                                            total_steps=config.max_steps, gamma=config.lr_gamma,
                                            min_lr_ratio=config.min_lr_ratio)
        use_scaler = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.train_model: nn.Module = self.model
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if config.compile:
            self.train_model = torch.compile(self.train_model)
        # after the DDP wrap, which broadcasts rank 0's weights: every rank's average starts from the same point
        self.ema = EMA(self.model, config.ema_decay, config.ema_warmup) if config.ema_decay is not None else None
        seed = distributed.shard_seed(config.seed) if self.world_size > 1 else config.seed
        self.generator = make_generator(seed, self.device)
        self.loader, self.sampler = self._prepare_loader(train_loader)
        self.step = self.epoch = self.batches_in_epoch = 0
        self.nonfinite_total = self.nonfinite_streak = 0
        self._iter: Iterator | None = None
        self._window: dict[str, list[float]] = {}
        self._window_start = time.perf_counter()
        self._last_saved: int | None = None
        self.log = JSONLLogger(self.run_dir / "log.jsonl")
        self.csv = CSVLogger(self.run_dir / "log.csv", enabled=distributed.is_main() and config.csv_log)
        self.eval_csv = CSVLogger(self.run_dir / "eval.csv", enabled=distributed.is_main() and config.csv_log)

    # ---------------------------------------------------------------- data
    def _prepare_loader(self, loader: Iterable) -> tuple[Iterable, EpochSampler | None]:
        if isinstance(loader, DataLoader) and isinstance(loader.sampler, EpochSampler):
            if loader.generator is None:  # else each new iterator draws its worker seed from the global RNG
                loader.generator = torch.Generator()
            return loader, loader.sampler
        rebuildable = (isinstance(loader, DataLoader) and type(loader.batch_sampler) is BatchSampler
                       and (type(loader.sampler) is SequentialSampler or (
                           type(loader.sampler) is RandomSampler and not loader.sampler.replacement
                           and loader.sampler._num_samples is None)))
        if not rebuildable:
            if self.world_size > 1 and not hasattr(getattr(loader, "sampler", None), "set_epoch"):
                warnings.warn("distributed training with a loader the trainer cannot shard: each rank must "
                              "receive its own part of the data", stacklevel=3)
            return loader, None
        sampler = EpochSampler(len(loader.dataset), shuffle=isinstance(loader.sampler, RandomSampler),
                               seed=self.config.seed, rank=self.rank, world_size=self.world_size)
        extra = {"prefetch_factor": loader.prefetch_factor} if loader.num_workers > 0 else {}
        rebuilt = DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                             num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                             pin_memory=loader.pin_memory, drop_last=loader.drop_last, timeout=loader.timeout,
                             worker_init_fn=loader.worker_init_fn, persistent_workers=loader.persistent_workers,
                             generator=torch.Generator(), **extra)
        return rebuilt, sampler

    def _open_epoch(self) -> None:
        skip = self.batches_in_epoch
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch, start=skip * self.loader.batch_size)
            if isinstance(self.loader, DataLoader) and self.loader.generator is not None:
                self.loader.generator.manual_seed(_mix_seed(self.config.seed, self.epoch, 1))
            self._iter = iter(self.loader)
            return
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        self._iter = iter(self.loader)
        for _ in range(skip):
            if next(self._iter, None) is None:
                raise ValueError(f"cannot resume: the data loader has fewer than {skip} batches in epoch {self.epoch}")

    def _next_batch(self) -> Any:
        if self._iter is None:
            self._open_epoch()
        try:
            batch = next(self._iter)
        except StopIteration:
            self.epoch, self.batches_in_epoch = self.epoch + 1, 0
            self._open_epoch()
            try:
                batch = next(self._iter)
            except StopIteration:
                raise ValueError("the training data loader yielded no batch in a whole epoch") from None
        self.batches_in_epoch += 1
        return batch

    # ---------------------------------------------------------------- one step
    def _autocast(self):
        if not self.config.amp:
            return nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _grad_norm(self) -> torch.Tensor:
        params = [p for p in self.model.parameters() if p.grad is not None]
        if not params:
            return torch.zeros((), device=self.device)
        if self.config.grad_clip is not None:
            return nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))

    def _skip(self, what: str) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_total += 1
        self.nonfinite_streak += 1
        if self.nonfinite_streak >= self.config.max_nonfinite:
            raise FloatingPointError(f"{what} was non-finite for {self.nonfinite_streak} consecutive steps "
                                     f"(step {self.step + 1}); stopping")

    def _all_ranks_true(self, flag: bool) -> bool:
        if self.world_size == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
        return bool(value.item())

    def _train_step(self, batch: Any) -> dict[str, float] | None:
        self.train_model.train()
        with self._autocast():
            out = self.loss_fn(self.train_model, _to_device(batch, self.device), self.generator)
        loss, logs = out if isinstance(out, tuple) else (out, {})
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar tensor (or (loss, logs)), got {type(loss).__name__}"
                             f"{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}")
        loss_value = float(loss.detach())
        stats = None
        # every rank must agree, or DDP's gradient all-reduce would wait forever for the skipping rank
        if not self._all_ranks_true(math.isfinite(loss_value)):
            self._skip("loss")
        else:
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            grad_norm = float(self._grad_norm())
            if self.scaler is not None:  # the scaler skips inf/nan gradients itself and lowers the scale
                self.scaler.step(self.optimizer)
                self.scaler.update()
            elif not math.isfinite(grad_norm):
                self._skip("gradient norm")
            else:
                self.optimizer.step()
            if self.scaler is not None or math.isfinite(grad_norm):
                self.nonfinite_streak = 0
                self.optimizer.zero_grad(set_to_none=True)
                if self.ema is not None:
                    self.ema.update()
                stats = {"loss": loss_value, "grad_norm": grad_norm}
                stats.update({k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
                              for k, v in logs.items()})
        # the LR follows the step count, skipped steps included (torch warns when the first step was skipped)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            self.scheduler.step()
        return stats

    # ---------------------------------------------------------------- loop
    def train(self, steps: int | None = None) -> dict[str, Any]:
        """Run ``steps`` more steps (default: up to ``max_steps``); checkpoints at the end. Returns a summary."""
        cfg = self.config
        end = cfg.max_steps if steps is None else min(self.step + steps, cfg.max_steps)
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not (cfg.progress and distributed.is_main()),
                   dynamic_ncols=True, desc="train")
        self._window, self._window_start = {}, time.perf_counter()
        stop = _StopAtStepBoundary(self.world_size == 1)
        with stop:
            try:
                while self.step < end and not stop.requested:
                    stats = self._train_step(self._next_batch())
                    self.step += 1
                    for key, value in (stats or {}).items():
                        self._window.setdefault(key, []).append(value)
                    bar.update(1)
                    if self.step % cfg.log_every == 0:
                        record = self._log_window()
                        bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4g}")
                    if cfg.eval_every and self.step % cfg.eval_every == 0:
                        self.evaluate()
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                if self._window:
                    self._log_window()
                if self._last_saved != self.step:
                    self.save_checkpoint()
            finally:
                bar.close()
        if stop.requested:
            sys.stderr.write(f"interrupt: checkpoint of step {self.step} saved in {self.checkpoint_dir}; "
                             "rerun the same command to resume\n")
            raise KeyboardInterrupt
        return {"step": self.step, "epoch": self.epoch, "nonfinite_skipped": self.nonfinite_total}

    def _log_window(self) -> dict[str, Any]:
        keys = sorted(self._window)
        means = torch.tensor([sum(self._window[k]) / len(self._window[k]) for k in keys], dtype=torch.float64,
                             device=self.device)
        if self.world_size > 1:  # ranks see different data: report the mean over all of them
            means = distributed.all_reduce_mean(means)
        elapsed = time.perf_counter() - self._window_start
        record = {"step": self.step, "split": "train", "epoch": self.epoch,
                  "lr": self.optimizer.param_groups[0]["lr"], **dict(zip(keys, means.tolist())),
                  "nonfinite_skipped": self.nonfinite_total,
                  "steps_per_sec": len(self._window.get("loss", [])) / max(elapsed, 1e-9)}
        self.log.log(record)
        self.csv.log(record)
        self._window, self._window_start = {}, time.perf_counter()
        return record

    def evaluate(self) -> dict[str, Any]:
        """Call ``eval_fn`` in eval mode with all RNG states preserved; log and return its metrics."""
        if self.eval_fn is None:
            return {}
        rng, generator_state = capture_rng_state(), self.generator.get_state()
        self.model.eval()
        try:
            metrics = dict(self.eval_fn(self))
        finally:
            self.model.train()
            restore_rng_state(rng)
            self.generator.set_state(generator_state)
        record = {"step": self.step, "split": "eval", **metrics}
        self.log.log(record)
        self.eval_csv.log(record)
        return metrics

    # ---------------------------------------------------------------- checkpoints
    def _checkpoint_extra(self) -> dict[str, Any]:
        local = {"generator": self.generator.get_state(), "rng": capture_rng_state()}
        return {"epoch": self.epoch, "batches_in_epoch": self.batches_in_epoch,
                "nonfinite_total": self.nonfinite_total, "nonfinite_streak": self.nonfinite_streak,
                "world_size": self.world_size, "rank_states": distributed.all_gather_object(local),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/ckpt-<step>.pt`` (rank 0) and drop all but the ``keep_last`` newest."""
        extra = self._checkpoint_extra()  # collective: every rank takes part
        path = checkpoint_path(self.checkpoint_dir, self.step)
        if distributed.is_main():
            save_checkpoint(path, model=self.model, ema=self.ema, optimizer=self.optimizer,
                            scheduler=self.scheduler, step=self.step, config=self.config, rng=True, extra=extra)
            prune_checkpoints(self.checkpoint_dir, self.config.keep_last)
        distributed.barrier()
        self._last_saved = self.step
        return path

    def resume(self, source: str | Path | None = None) -> int:
        """Restore everything from a checkpoint file or the newest one of a run directory; returns the step."""
        source = Path(self.run_dir if source is None else source)
        path = latest_checkpoint(source) if source.is_dir() else source
        if path is None:
            raise FileNotFoundError(f"no checkpoint (ckpt-*.pt) in {source} or {source / 'checkpoints'}")
        payload = load_checkpoint(path, map_location="cpu")
        saved_config = payload.get("config")
        if isinstance(saved_config, dict) and saved_config != config_to_dict(self.config):
            changed = sorted(k for k in saved_config if saved_config.get(k) != config_to_dict(self.config).get(k))
            warnings.warn(f"resuming {path} with a changed trainer config: {changed}", stacklevel=2)
        restore_checkpoint(payload, model=self.model, ema=self.ema, optimizer=self.optimizer,
                           scheduler=self.scheduler, rng=False)
        extra = payload["extra"]
        self.step = int(payload["step"])
        self.epoch, self.batches_in_epoch = int(extra["epoch"]), int(extra["batches_in_epoch"])
        self.nonfinite_total, self.nonfinite_streak = int(extra["nonfinite_total"]), int(extra["nonfinite_streak"])
        states = extra["rank_states"]
        if len(states) == self.world_size:
            self.generator.set_state(states[self.rank]["generator"])
            restore_rng_state(states[self.rank]["rng"])
        else:  # data shards and noise streams cannot continue exactly; start fresh streams for this step
            warnings.warn(f"checkpoint was written by {len(states)} ranks, now {self.world_size}: data order and "
                          f"noise will not continue exactly", stacklevel=2)
            self.generator.manual_seed(_mix_seed(self.config.seed, self.step, self.rank))
        if self.scaler is not None and extra.get("scaler") is not None:
            self.scaler.load_state_dict(extra["scaler"])
        self._iter, self._last_saved = None, self.step
        # records logged after this checkpoint (a crashed run) would be duplicated
        for logger in (self.log, self.csv, self.eval_csv):
            logger.truncate_after(self.step)
        return self.step
