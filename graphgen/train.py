"""Train a GDSS model with the shared Trainer.

Faithful to GDSS: Adam (L2 weight decay) at ``train.lr``, exponential LR decay ``lr_decay`` per epoch (applied
smoothly per step, equal at epoch boundaries), EMA with GDSS's warm-up (``min(decay, (1+n)/(10+n))``), train
eps 1e-5, the loss of :func:`graphgen.diffusion.gdss_loss`. Deviations: one optimiser over both networks (Adam
is element-wise, so this equals GDSS's two optimisers) and one *global* gradient-norm clip over both networks
(GDSS clips each network to ``grad_norm`` separately; the shared Trainer clips globally).

Run directory: ``config.yaml``, ``node_counts.json`` (node-count histogram of the training set, so sampling
needs no data), ``checkpoints/`` (resumable trainer checkpoints), ``log.jsonl`` / ``log.csv`` and, at the end,
``model.pt`` (:mod:`graphgen.checkpoint` format with EMA weights).

Under ``torchrun`` (after ``shared.training.distributed.init``, as ``graphgen train`` does) every rank trains on
its shard of each epoch with ``data.batch_size`` graphs per step (DDP averages the gradients); rank 0 alone writes
the run directory's files and shows progress, and every rank returns once ``model.pt`` exists.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from graphgen.checkpoint import save_model
from graphgen.datasets import SYNTHETIC, load_test_data, load_training_data, node_count_histogram  # noqa: F401
from graphgen.diffusion import GraphGenConfig, build_model, build_system, make_loss_fn
from shared.config import config_to_dict, load_config, save_config
from shared.io import atomic_write_json
from shared.training import Trainer, TrainerConfig, distributed, latest_checkpoint

# the data helpers live in graphgen.datasets (so graphgen.checkpoint needs no import of this module); re-exported
__all__ = ["train", "load_training_data", "load_test_data", "node_count_histogram"]


def _trainer_config(cfg: GraphGenConfig, steps_per_epoch: int, device: str, progress: bool) -> TrainerConfig:
    t = cfg.train
    max_steps = t.max_steps if t.max_steps is not None else t.num_epochs * steps_per_epoch
    return TrainerConfig(
        max_steps=max_steps, lr=t.lr, weight_decay=t.weight_decay, grad_clip=t.grad_clip, ema_decay=t.ema,
        ema_warmup=True, lr_schedule="constant" if t.lr_decay is None else "exponential",
        lr_gamma=1.0 if t.lr_decay is None else t.lr_decay ** (1.0 / steps_per_epoch),
        log_every=t.log_every, checkpoint_every=t.checkpoint_every, keep_last=t.keep_last, seed=t.seed,
        device=device, progress=progress)


def train(config: GraphGenConfig, run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None, *,
          dataset: Dataset | None = None, device: str = "auto", progress: bool = True,
          steps: int | None = None) -> Path:
    """Train (or resume the run in ``run_dir``) and write ``run_dir/model.pt``; returns its path.

    ``dataset`` replaces the configured training data; ``steps`` stops after that many more steps (the
    model file then holds the weights so far).
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        saved = load_config(GraphGenConfig, config_path)
        if config_to_dict(saved) != config_to_dict(config):
            raise ValueError(f"{run_dir} holds a run with a different config; use a new --run-dir")
    distributed.barrier()  # every rank has checked the saved config before rank 0 (re)writes it
    if dataset is None:  # rank 0 first: it builds any data cache, the others then read it
        if distributed.is_main():
            try:
                dataset = load_training_data(config.data, data_dir)
            finally:  # also when it fails: the others then fail the same way instead of waiting forever
                distributed.barrier()
        else:
            distributed.barrier()
            dataset = load_training_data(config.data, data_dir)
    counts = node_count_histogram(dataset, config.data.max_node_num)
    if distributed.is_main():
        if not config_path.is_file():
            save_config(config, config_path)
        atomic_write_json(run_dir / "node_counts.json", counts.tolist())
    distributed.barrier()

    with torch.random.fork_rng(devices=[]):  # initial weights from train.seed, global RNG untouched
        torch.manual_seed(config.train.seed)
        model = build_model(config)
    for param in model.unused_parameters():  # never get a gradient; frozen, or DDP would wait for one forever
        param.requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    # under torchrun the Trainer shards this loader over the ranks (each rank: batch_size graphs per step) and
    # wraps the model in DDP; rank 0 alone logs, checkpoints and shows progress
    loader = DataLoader(dataset, batch_size=config.data.batch_size, shuffle=True)
    per_rank = math.ceil(len(dataset) / distributed.get_world_size())  # the Trainer's shard of one epoch
    tcfg = _trainer_config(config, math.ceil(per_rank / config.data.batch_size), device, progress)
    trainer = Trainer(model, make_loss_fn(build_system(config), config.train.eps), loader, tcfg, run_dir,
                      optimizer=optimizer)
    if latest_checkpoint(run_dir) is not None:
        trainer.resume()
    trainer.train(steps)
    ema = dict(trainer.ema.shadow) if trainer.ema is not None else None
    path = run_dir / "model.pt"
    if distributed.is_main():
        save_model(path, config, model, ema_state=ema, node_counts=counts,
                   source=f"trained in {run_dir} for {trainer.step} steps")
    distributed.barrier()  # no rank returns before the model file exists
    return path
