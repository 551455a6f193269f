"""Training infrastructure: the step-based Trainer, EMA, LR schedules, checkpoints, metric logs, distributed."""

from shared.training import distributed
from shared.training.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)
from shared.training.ema import EMA, unwrap_model
from shared.training.logging import CSVLogger, JSONLLogger
from shared.training.schedules import build_lr_scheduler, lr_factor
from shared.training.trainer import EpochSampler, Trainer, TrainerConfig

__all__ = [
    "EMA",
    "CSVLogger",
    "CheckpointError",
    "EpochSampler",
    "JSONLLogger",
    "Trainer",
    "TrainerConfig",
    "build_lr_scheduler",
    "distributed",
    "latest_checkpoint",
    "load_checkpoint",
    "lr_factor",
    "prune_checkpoints",
    "restore_checkpoint",
    "save_checkpoint",
    "unwrap_model",
]
