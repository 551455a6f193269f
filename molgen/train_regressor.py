"""Train a property regressor on the ``train_regressor`` half of QM9 (PropMolFlow/EDM protocol).

The shared ``Trainer`` runs the loop (EMA, clipping, schedule, checkpoints); its ``eval_fn`` computes the
validation MAE of the EMA weights, keeps the best model in ``run_dir/best.pt`` and counts evaluations without
improvement; training stops after ``patience`` of them, at ``trainer.max_steps`` or after ``max_time_s``.
``evaluate_regressor`` reports the test MAE in the reporting units of the literature (``REPORTING_UNITS``).
The defaults are a CPU-sized model; a GPU run to reference quality only needs a bigger config, e.g.
``model.hidden=256 model.num_interactions=6 trainer.max_steps=1000000 batch_size=128 valid_limit=null``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, TensorDataset

from molgen.data import QM9Dataset
from molgen.regressor import PropertyRegressor, RegressorConfig, fit_normalisation, load_regressor, \
    save_regressor, type_counts
from molgen.representation import atom_type_index
from shared.config import config_to_dict, save_config
from shared.io import atomic_write_json
from shared.training import Trainer, TrainerConfig

__all__ = ["REPORTING_UNITS", "RegressorTrainConfig", "RegressorTrainerConfig", "PaddedSplit", "load_split",
           "train_regressor", "evaluate_regressor", "regressor_mae", "regressor_predictions"]

# property -> (unit the literature reports MAEs in, factor from molgen's unit); molgen stores orbital energies in eV
REPORTING_UNITS: dict[str, tuple[str, float]] = {
    "alpha": ("Bohr^3", 1.0),
    "gap": ("meV", 1000.0),
    "homo": ("meV", 1000.0),
    "lumo": ("meV", 1000.0),
    "mu": ("D", 1.0),
    "Cv": ("cal/(mol K)", 1.0),
}
# intensive orbital energies average over atoms; the dipole is |sum q_i r_i|; the rest grow with the molecule
_DEFAULT_READOUT = {"gap": "mean", "homo": "mean", "lumo": "mean", "mu": "dipole"}


@dataclass
class RegressorTrainerConfig(TrainerConfig):
    """The shared trainer's settings with regressor defaults (a subclass, so YAML/overrides keep them).

    No EMA by default: with these short CPU runs the averaged weights scored ~3x worse on validation than the
    raw ones; the cosine decay does the smoothing instead."""

    max_steps: int = 100_000
    lr: float = 5e-4
    ema_decay: float | None = None
    lr_schedule: Literal["constant", "linear_warmup", "cosine", "exponential"] = "cosine"
    min_lr_ratio: float = 0.05
    eval_every: int | None = 500
    checkpoint_every: int | None = None
    keep_last: int = 1


@dataclass
class RegressorTrainConfig:
    property: str = "gap"
    data: str = ""  # prepared QM9 file from molgen.data.prepare_qm9
    model: RegressorConfig = field(default_factory=RegressorConfig)
    readout: str | None = None  # overrides model.readout; None: "mean" for homo/lumo/gap (intensive), else "sum"
    trainer: RegressorTrainerConfig = field(default_factory=RegressorTrainerConfig)
    batch_size: int = 64
    patience: int = 20  # evaluations without a better validation MAE before stopping
    valid_limit: int | None = 2000  # validation molecules used for early stopping (None: all)
    train_limit: int | None = None  # first molecules of the regressor half (None: all; for tests)
    max_time_s: float | None = None  # wall-clock budget of the training loop
    init_from: str | None = None  # warm start: a regressor file of the same property and architecture

    def __post_init__(self) -> None:
        if self.property not in REPORTING_UNITS:
            raise ValueError(f"unknown property {self.property!r}; choose from {sorted(REPORTING_UNITS)}")
        if self.batch_size < 1 or self.patience < 1:
            raise ValueError("batch_size and patience must be >= 1")


@dataclass
class PaddedSplit:
    """Molecules of one split padded to a common size: types (M, N), positions (M, N, 3), mask, values (M,)."""

    atom_types: torch.Tensor
    positions: torch.Tensor
    mask: torch.Tensor
    values: torch.Tensor

    def __len__(self) -> int:
        return int(self.values.shape[0])


def load_split(path: str | os.PathLike, split: str, prop: str, limit: int | None = None) -> PaddedSplit:
    """One split of a prepared QM9 file as padded tensors with the property ``prop`` (molgen units)."""
    dataset = QM9Dataset(path, split)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise ValueError(f"split {split!r} of {path} is empty")
    mols = [dataset.tensors(i) for i in range(count)]
    numbers = pad_sequence([m.numbers for m in mols], batch_first=True)
    mask = pad_sequence([torch.ones(m.num_atoms, dtype=torch.bool) for m in mols], batch_first=True)
    types = torch.where(mask, atom_type_index(torch.where(mask, numbers, 1)), 0)
    positions = pad_sequence([m.positions.float() for m in mols], batch_first=True)
    return PaddedSplit(types, positions, mask, dataset.property(prop)[:count].double())


def _trim(types, positions, mask):
    """Drop padding columns no molecule of the batch uses (batches are usually smaller than 29 atoms)."""
    n = int(mask.sum(-1).max())
    return types[:, :n], positions[:, :n], mask[:, :n]


@torch.no_grad()
def regressor_predictions(model: PropertyRegressor, data: PaddedSplit, batch_size: int = 512) -> torch.Tensor:
    device = model.offset.device
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        t, p, m = _trim(data.atom_types[sl], data.positions[sl], data.mask[sl])
        out.append(model(t.to(device), p.to(device), m.to(device)).cpu())
    return torch.cat(out)


def regressor_mae(model: PropertyRegressor, data: PaddedSplit, batch_size: int = 512) -> float:
    """MAE in molgen units over ``data``."""
    return float((regressor_predictions(model, data, batch_size) - data.values).abs().mean())


def train_regressor(config: RegressorTrainConfig, run_dir: str | os.PathLike, resume: bool = False) -> dict:
    """Train; writes ``best.pt`` (best validation MAE; EMA weights if enabled), ``config.yaml``, ``summary.json``.

    ``resume=True`` continues from the newest checkpoint in ``run_dir`` (one is written after every evaluation).
    """
    run_dir = Path(run_dir)
    if not config.data:
        raise ValueError("RegressorTrainConfig.data: path of the prepared QM9 file is required")
    readout = config.readout or _DEFAULT_READOUT.get(config.property, "sum")
    model_config = dataclasses.replace(config.model, readout=readout)
    config = dataclasses.replace(config, model=model_config)
    save_config(config, run_dir / "config.yaml")
    train = load_split(config.data, "train_regressor", config.property, config.train_limit)
    valid = load_split(config.data, "valid", config.property, config.valid_limit)

    model = PropertyRegressor(model_config)
    if config.init_from:
        start_model = load_regressor(config.init_from)
        if start_model.metadata.get("property") != config.property or start_model.config != model_config:
            raise ValueError(f"init_from {config.init_from}: a {start_model.metadata.get('property')} regressor with "
                             f"{start_model.config}, not {config.property} with {model_config}")
        model.load_state_dict(start_model.state_dict())
    if readout == "dipole":  # the dipole head predicts Debye directly; the loss is scaled by the data's spread
        scale = float(train.values.std())
    elif config.init_from:  # keep the warm start's normalisation (it travels in the state dict)
        scale = float(model.scale)
    else:
        offset, atomref, scale = fit_normalisation(
            type_counts(train.atom_types, train.mask, model_config.num_types), train.values)
        model.set_normalisation(offset, atomref, scale)
    loader = DataLoader(TensorDataset(train.atom_types, train.positions, train.mask, train.values),
                        batch_size=config.batch_size, shuffle=True, drop_last=True)

    def loss_fn(net, batch, generator):
        types, pos, mask, y = batch
        pred = net(*_trim(types, pos, mask))
        return ((pred - y).abs() / scale).mean().float()

    best = {"mae": math.inf, "step": 0, "bad": 0}
    unit, factor = REPORTING_UNITS[config.property]

    def eval_fn(trainer: Trainer) -> dict:
        swap = trainer.ema.swap() if trainer.ema is not None else nullcontext(trainer.model)
        with swap as net:
            mae = regressor_mae(net, valid)
            if mae < best["mae"]:
                best.update(mae=mae, step=trainer.step, bad=0)
                save_regressor(net, run_dir / "best.pt", property=config.property, unit=unit,
                               valid_mae=mae * factor, step=trainer.step, model_config=config_to_dict(model_config))
            else:
                best["bad"] += 1
        return {"valid_mae": mae * factor, "best_valid_mae": best["mae"] * factor}

    trainer = Trainer(model, loss_fn, loader, config.trainer, run_dir, eval_fn=eval_fn)
    if resume and (run_dir / "checkpoints").is_dir():
        trainer.resume()
        if (run_dir / "best.pt").is_file():  # continue the early-stopping record of the interrupted run
            saved = load_regressor(run_dir / "best.pt").metadata
            best.update(mae=saved["valid_mae"] / factor, step=saved["step"])
    chunk = config.trainer.eval_every or config.trainer.max_steps
    start, stop_reason = time.perf_counter(), "max_steps"
    while trainer.step < config.trainer.max_steps:
        # the trainer evaluates every eval_every steps; chunks end exactly on those evaluations
        trainer.train(steps=chunk - trainer.step % chunk)
        if best["bad"] >= config.patience:
            stop_reason = "patience"
            break
        if config.max_time_s is not None and time.perf_counter() - start >= config.max_time_s:
            stop_reason = "time"
            break
    if not (run_dir / "best.pt").is_file():  # no evaluation happened (very short run): evaluate now
        trainer.evaluate()
    summary = {"property": config.property, "unit": unit, "steps": trainer.step, "stop_reason": stop_reason,
               "train_seconds": time.perf_counter() - start, "best_step": best["step"],
               "best_valid_mae": best["mae"] * factor, "n_train": len(train), "n_valid": len(valid)}
    atomic_write_json(run_dir / "summary.json", summary)
    return summary


def evaluate_regressor(model: PropertyRegressor | str | os.PathLike, data: str | os.PathLike,
                       prop: str | None = None, split: str = "test", limit: int | None = None) -> dict:
    """Test MAE of a regressor in the reporting units (alpha Bohr^3, gap/HOMO/LUMO meV, mu D, Cv cal/(mol K))."""
    if not isinstance(model, PropertyRegressor):
        model = load_regressor(model)
    prop = prop or getattr(model, "metadata", {}).get("property")
    if prop not in REPORTING_UNITS:
        raise ValueError(f"cannot tell which property the regressor predicts (got {prop!r}); pass prop=")
    unit, factor = REPORTING_UNITS[prop]
    subset = load_split(data, split, prop, limit)
    return {"property": prop, "unit": unit, "split": split, "n": len(subset),
            "mae": regressor_mae(model, subset) * factor}

