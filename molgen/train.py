"""Train the 3D generator on QM9's ``train_generator`` half with the shared Trainer (EMA, atomic resumable
checkpoints, torchrun DDP).

Run directory: ``config.yaml``, ``checkpoints/`` (trainer checkpoints), ``log.jsonl`` / ``log.csv`` and, at the
end of every ``train`` call, ``model.pt`` (:mod:`molgen.checkpoint` format, EMA weights, atom-count statistics,
property normalisation and range). Conditioning: every property the model knows is given to each training molecule,
then hidden independently with ``conditioning.dropout`` and all at once with ``conditioning.drop_all``, so the
same network is unconditional, single- and multi-property conditional.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset

from molgen.atom_counts import AtomCountDistribution
from molgen.checkpoint import save_generator
from molgen.flow import FlowConfig, SamplerConfig, flow_loss
from molgen.model import FlowNetConfig, MolFlowNet
from molgen.representation import dense_batch, to_pyg
from shared.config import config_to_dict, load_config, save_config
from shared.training import Trainer, TrainerConfig, distributed, latest_checkpoint, unwrap_model

__all__ = ["GeneratorTrainerConfig", "GeneratorTrainConfig", "GeneratorDataset", "MolListDataset", "default_qm9_path",
           "build_generator", "make_loss_fn", "train_generator"]


@dataclass
class GeneratorTrainerConfig(TrainerConfig):
    max_steps: int = 200_000
    lr: float = 5e-4
    ema_decay: float | None = 0.999
    ema_warmup: bool = True
    lr_schedule: Literal["constant", "linear_warmup", "cosine", "exponential"] = "linear_warmup"
    warmup_steps: int = 500
    checkpoint_every: int | None = 500
    keep_last: int = 2
    log_every: int = 50


@dataclass
class GeneratorTrainConfig:
    data: str = ""  # prepared QM9 file (molgen.data.prepare_qm9); "" = ~/.cache/scoregen/qm9 (prepared if absent)
    split: str = "train_generator"
    limit: int | None = None  # first molecules of the split only (tests, smoke runs)
    batch_size: int = 64
    model: FlowNetConfig = field(default_factory=FlowNetConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    trainer: GeneratorTrainerConfig = field(default_factory=GeneratorTrainerConfig)
    max_time_s: float | None = None  # wall-clock budget of this call (a checkpoint is written when it runs out)
    num_workers: int = 0
    init_from: str | None = None  # warm start: a generator file (model.pt) whose weights initialise a new run


def default_qm9_path() -> Path:
    from molgen.data import prepare_qm9

    from shared.paths import cache_dir

    return prepare_qm9(cache_dir("qm9"), progress=True)


class GeneratorDataset(Dataset):
    """A QM9 split as torch-geometric molecules with the model's properties as ``y``."""

    def __init__(self, path: str | os.PathLike, split: str, properties: list[str], limit: int | None = None):
        from molgen.data import QM9Dataset

        self.qm9 = QM9Dataset(path, split)
        unknown = sorted(set(properties) - set(self.qm9.property_names))
        if unknown:
            raise ValueError(f"unknown QM9 properties {unknown}; choose from {self.qm9.property_names}")
        self.properties = list(properties)
        self.size = len(self.qm9) if limit is None else min(limit, len(self.qm9))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int):
        return to_pyg(self.qm9[i], self.properties, self.qm9.property_names)

    def num_atoms(self) -> torch.Tensor:
        return self.qm9.num_atoms()[: self.size]

    def property_values(self) -> torch.Tensor:
        if not self.properties:
            return torch.zeros(self.size, 0, dtype=torch.float64)
        return torch.stack([self.qm9.property(p)[: self.size] for p in self.properties], 1)


class MolListDataset(Dataset):
    """Molecules given as RDKit ``Mol``s with explicit H and a 3D conformer (e.g. read from an SDF), with optional
    per-molecule property values ``{name: sequence}``: train the generator on your own set."""

    def __init__(self, mols, properties: dict[str, list[float]] | None = None):
        from molgen.representation import atom_type_index, mol_to_tensors

        properties = dict(properties or {})
        self.properties = list(properties)
        self.items = []
        for k, mol in enumerate(mols):
            t = mol_to_tensors(mol)
            self.items.append({"numbers": t.numbers, "atom_types": atom_type_index(t.numbers), "charges": t.charges,
                               "positions": t.positions, "bond_index": t.bond_index, "bond_types": t.bond_types,
                               "properties": torch.tensor([float(properties[p][k]) for p in self.properties])})
        if not self.items:
            raise ValueError("MolListDataset needs at least one molecule")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return to_pyg(self.items[i], self.properties, self.properties)

    def num_atoms(self) -> torch.Tensor:
        return torch.tensor([item["numbers"].shape[0] for item in self.items])

    def property_values(self) -> torch.Tensor:
        return torch.stack([item["properties"].double() for item in self.items]) if self.properties else \
            torch.zeros(len(self.items), 0, dtype=torch.float64)


def build_generator(config: FlowNetConfig, seed: int = 0) -> MolFlowNet:
    with torch.random.fork_rng(devices=[]):  # initial weights from the seed, global RNG untouched
        torch.manual_seed(seed)
        return MolFlowNet(config)


def _condition(properties: torch.Tensor, model_cfg: FlowNetConfig, embedding, generator: torch.Generator):
    """Normalised targets with per-property and all-at-once dropout (the unconditional model)."""
    c = model_cfg.conditioning
    values = embedding.normalise(properties).to(properties.device)
    keep = torch.rand(values.shape, generator=generator, device=values.device) >= c.dropout
    keep &= (torch.rand(values.shape[0], 1, generator=generator, device=values.device) >= c.drop_all)
    present = keep.to(values.dtype)
    return {"values": values * present, "present": present}


def make_loss_fn(config: GeneratorTrainConfig):
    m = config.model
    num_classes = {"atom_types": m.num_atom_types, "charges": m.num_charges, "bonds": m.num_bond_types}

    def loss_fn(model, batch, generator):
        cond = None
        if m.conditioning.properties:
            core = unwrap_model(model)
            cond = _condition(batch["properties"], m, core.cond, generator)
        return flow_loss(model, batch, num_classes, config.flow, generator, cond=cond)

    return loss_fn


def _check_run_dir(config: GeneratorTrainConfig, run_dir: Path) -> None:
    path = run_dir / "config.yaml"
    if path.is_file():
        saved = config_to_dict(load_config(GeneratorTrainConfig, path))
        now = config_to_dict(config)
        ignore = {"max_time_s", "num_workers", "sampler"}  # budgets and sampler defaults do not change training
        changed = sorted(k for k in set(saved) | set(now) if k not in ignore and saved.get(k) != now.get(k)
                         and k != "trainer")
        changed += [f"trainer.{k}" for k in now["trainer"]
                    if k not in ("max_steps", "progress", "device") and saved["trainer"].get(k) != now["trainer"][k]]
        if changed:
            raise ValueError(f"{run_dir} holds a run with a different config ({', '.join(changed)}); "
                             f"use a new run directory")


def _start(config: GeneratorTrainConfig, run_dir: Path, dataset: Dataset):
    """Model (initial weights), trainer, atom-count distribution and property values of a new or resumed run."""
    model = build_generator(config.model, config.trainer.seed)
    props = config.model.conditioning.properties
    values = dataset.property_values()
    if props:
        model.cond.set_normalisation(values.mean(0), values.std(0))
    if config.init_from and latest_checkpoint(run_dir) is None:
        from molgen.checkpoint import load_generator

        start_from = load_generator(config.init_from).model
        if start_from.config != model.config:
            raise ValueError(f"init_from={config.init_from} holds a network of another shape than this config's model")
        model.load_state_dict(start_from.state_dict())
    counts = AtomCountDistribution.fit(dataset.num_atoms(), values if props else None, props)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, collate_fn=dense_batch,
                        num_workers=config.num_workers, drop_last=len(dataset) > config.batch_size)
    trainer = Trainer(model, make_loss_fn(config), loader, config.trainer, run_dir)
    return model, trainer, counts, values


def train_generator(config: GeneratorTrainConfig, run_dir: str | os.PathLike, *, dataset: Dataset | None = None,
                    steps: int | None = None) -> Path:
    """Train, or resume the run in ``run_dir``; writes and returns ``run_dir/model.pt``.

    ``steps`` stops after that many more steps; ``max_time_s`` after that much wall time (both checkpoint).
    A run directory that holds a different config is refused (only ``trainer.max_steps``, the device, progress
    bars and budgets may change on resume).
    """
    run_dir = Path(run_dir)
    if dataset is None:
        if not config.data and distributed.is_main():
            default_qm9_path()  # rank 0 prepares the cache once; the others wait and then open it
        distributed.barrier()
        data = config.data or str(default_qm9_path())
        dataset = GeneratorDataset(data, config.split, config.model.conditioning.properties, config.limit)
    _check_run_dir(config, run_dir)
    created = next((p for p in (run_dir, *run_dir.parents) if p.parent.exists() and not p.exists()), None)
    try:
        model, trainer, counts, values = _start(config, run_dir, dataset)
    except BaseException:
        if created is not None and distributed.is_main():  # a failed start leaves no half-made run directory
            shutil.rmtree(created, ignore_errors=True)
        raise
    if distributed.is_main():
        save_config(config, run_dir / "config.yaml")
    distributed.barrier()
    props = config.model.conditioning.properties
    if latest_checkpoint(run_dir) is not None:
        trainer.resume()
    start = time.perf_counter()
    remaining = steps
    chunk = config.trainer.checkpoint_every or 500
    while trainer.step < config.trainer.max_steps and (remaining is None or remaining > 0):
        todo = chunk if remaining is None else min(chunk, remaining)
        before = trainer.step
        trainer.train(todo)
        if remaining is not None:
            remaining -= trainer.step - before
        out_of_time = config.max_time_s is not None and time.perf_counter() - start >= config.max_time_s
        if distributed.get_world_size() > 1:  # every rank must stop at the same step, or DDP waits forever
            flag = torch.tensor([float(out_of_time)], device=trainer.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            out_of_time = bool(flag.item())
        if out_of_time:
            break
    state = {**model.state_dict(), **trainer.ema.shadow} if trainer.ema is not None else None  # buffers too
    metadata = {
        "source": f"trained in {run_dir} for {trainer.step} steps ({trainer.epoch} epochs of {len(dataset)} "
                  f"molecules, batch {config.batch_size})",
        "steps": trainer.step, "epochs": trainer.epoch, "n_train": len(dataset), "split": config.split,
        "property_range": {p: [float(values[:, k].min()), float(values[:, k].max())] for k, p in enumerate(props)},
        "property_std": {p: float(values[:, k].std()) for k, p in enumerate(props)},
        # PropMolFlow's OOD task targets the 99th percentile: targets this far beyond the extremes are refused
        "ood_margin": {p: float(values[:, k].quantile(0.99) - values[:, k].median()) for k, p in enumerate(props)},
        "train_config": config_to_dict(config),
    }
    path = run_dir / "model.pt"
    if distributed.is_main():
        save_generator(path, model, config.flow, config.sampler, counts, state_dict=state, **metadata)
    distributed.barrier()
    return path
