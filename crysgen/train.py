"""Train the crystal-matrix EDM model: ``train(config, run_dir, data_dir)``.

Run directory (self-describing, resumable): ``config.yaml``, ``data.json`` (dataset, split, encoded/skipped
counts, property normalisation), ``scaler.json``, ``checkpoints/``, ``log.jsonl``/``log.csv`` (Trainer), and at
the end ``model.pt`` (the sampling checkpoint: EMA weights + config + encoder + scaler, see ``checkpoint.py``).
Calling ``train`` again on the same run directory resumes from the newest checkpoint.

The dataset is a benchmark name, a directory of split CSVs or one CDVAE CSV (``crysgen.data.resolve_dataset``);
``data.elements``, ``data.n_elements`` and ``data.max_sites`` left empty are inferred from the training split and
the run's ``config.yaml`` holds the inferred values. Nothing is written before the settings, the data and the
trainer have been checked, so a failed start leaves no run directory behind (none that it created); a directory
holding only files of an earlier start that saved no checkpoint is started afresh, whatever its config said.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crysgen.config import CrysgenConfig, DataConfig, build_denoiser, load_train_config  # noqa: F401 (re-exported)
from crysgen.diffusion import make_loss_fn
from crysgen.representation import CrystalEncoder, MatrixScaler
from shared.conditions import training_range
from shared.config import config_to_dict, save_config
from shared.io import atomic_write_json
from shared.training import Trainer, latest_checkpoint

__all__ = ["CrysgenConfig", "DataConfig", "build_denoiser", "check_trainer_settings", "default_cache_dir",
           "default_run_dir", "load_train_config", "prepare_data", "run_name", "train"]

# keys that may change between a run and its resumption (the sampler settings do not touch training)
_RESUMABLE_CHANGES = {"trainer.max_steps", "trainer.progress", "trainer.device", "data.cache_dir", "data.workers",
                      "diffusion.steps", "diffusion.S_churn", "diffusion.S_min", "diffusion.S_max", "diffusion.S_noise"}
# keys filled in from the data when a config leaves them empty
_INFERRED = {"name", "data.split", "data.elements", "data.n_elements", "data.max_sites"}


def default_cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where parsed dataset CSVs are cached: ``explicit`` or ``~/.cache/scoregen``."""
    from shared.paths import cache_dir

    return Path(explicit).expanduser() if explicit else cache_dir()


def default_run_dir(config: CrysgenConfig, root: str | os.PathLike = "runs") -> Path:
    """``runs/<date>-crysgen-<name>-<config hash>`` (same config on the same day -> same dir -> resume)."""
    digest = hashlib.sha256(json.dumps(config_to_dict(config), sort_keys=True).encode()).hexdigest()[:8]
    return Path(root) / f"{time.strftime('%Y%m%d')}-crysgen-{run_name(config)}-{digest}"


def run_name(config: CrysgenConfig) -> str:
    """``config.name``, or the dataset's name (a benchmark name, or the stem of its folder or CSV)."""
    if config.name:
        return config.name
    path = Path(config.data.dataset)
    stem = path.parent.name if path.suffix.lower() == ".csv" and path.stem in ("train", "val", "test") else path.stem
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in stem) or "crysgen"


def check_trainer_settings(config: CrysgenConfig) -> None:
    """The trainer settings that only fail once training starts (learning-rate schedule vs max_steps), checked
    before any data is read or file written; ValueError naming the config keys."""
    from shared.training.schedules import lr_factor

    trainer = config.trainer
    try:
        lr_factor(trainer.lr_schedule, warmup_steps=trainer.warmup_steps, total_steps=trainer.max_steps,
                  gamma=trainer.lr_gamma, min_lr_ratio=trainer.min_lr_ratio)
    except ValueError as err:
        raise ValueError(f"trainer settings: {err} (trainer.lr_schedule={trainer.lr_schedule}, "
                         f"trainer.max_steps={trainer.max_steps}, trainer.warmup_steps={trainer.warmup_steps}); "
                         f"raise trainer.max_steps or lower trainer.warmup_steps") from None


def _flat(data: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_resumable(run_dir: Path, config: CrysgenConfig) -> None:
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    old, new = _flat(config_to_dict(load_train_config(saved))), _flat(config_to_dict(config))
    # runs saved before these were inferred hold None (or no key) there: the values in use are the inferred ones
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in _RESUMABLE_CHANGES
                     and not (k in _INFERRED and old.get(k) is None))
    if changed:
        raise ValueError(f"{run_dir} holds a run with a different config ({changed}); use another run directory")


_RUN_FILES = ("config.yaml", "data.json", "scaler.json", "log.jsonl", "log.csv", "eval.csv")


def _clear_failed_start(run_dir: Path, log) -> None:
    """A run directory without trainer checkpoints holds at most the files of a start that failed before its
    first checkpoint: they describe nothing that can be resumed, so they are removed (and said so)."""
    stale = [name for name in _RUN_FILES if (run_dir / name).is_file()]
    if not stale:
        return
    if not all((run_dir / name).is_file() for name in _RUN_FILES[:3]) or not _is_run_summary(run_dir / "data.json"):
        raise ValueError(f"{run_dir} holds {', '.join(stale)} but is not a crysgen run directory (no checkpoints, "
                         f"config.yaml, data.json and scaler.json of a run); use another run directory")
    log(f"note: {run_dir} holds {', '.join(stale)} of an earlier start that saved no checkpoint; starting afresh")
    for name in stale:
        (run_dir / name).unlink()


def _first_missing(path: Path) -> Path | None:
    """The outermost of ``path`` and its parents that does not exist yet (None: ``path`` exists)."""
    if path.exists():
        return None
    path = path.absolute()
    while not path.parent.exists():
        path = path.parent
    return path


def _is_run_summary(path: Path) -> bool:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and {"n_encoded", "split", "properties"} <= set(summary)


def prepare_data(config: CrysgenConfig, data_dir=None, log=print) -> dict[str, Any]:
    """Load and encode the training split; fit the scaler and the property normalisation on it.

    Returns the tensors, encoder, scaler and summary, and ``config``: a copy of ``config`` with the dataset's
    split, name, element set, element slots and site count filled in where they were left empty.
    """
    from crysgen.data import load_cdvae_csv, resolve_dataset

    cache = default_cache_dir(config.data.cache_dir)
    where = resolve_dataset(config.data.dataset, config.data.split, data_dir)
    dataset = load_cdvae_csv(where.path, workers=config.data.workers, cache_dir=cache)
    label = f"{where.name}/{where.split}"
    if len(dataset) == 0:
        raise ValueError(f"{where.path}: no structure could be parsed ({len(dataset.errors)} unparsable rows)")
    config = _resolved_config(config, where, dataset.structures)
    encoder = CrystalEncoder(config.data.n_elements, config.data.max_sites, config.data.origin, config.data.lattice)
    allowed = set(config.data.elements)
    foreign = {i: sorted({e.symbol for e in s.composition} - allowed) for i, s in enumerate(dataset.structures)}
    foreign = {i: extra for i, extra in foreign.items() if extra}
    candidates = [i for i in range(len(dataset)) if i not in foreign]
    encoded = encoder.encode_many([dataset.structures[i] for i in candidates])
    encoded.indices = [candidates[i] for i in encoded.indices]
    encoded.skipped = [(candidates[i], reason) for i, reason in encoded.skipped] + \
        [(i, f"element not in data.elements: {', '.join(extra)}") for i, extra in sorted(foreign.items())]
    if len(encoded.indices) == 0:
        raise ValueError(f"no structure of {label} fits n_elements={encoder.n_elements}, "
                         f"max_sites={encoder.max_sites}, elements={config.data.elements}: {encoded.skip_counts}")
    log(f"encoded {len(encoded.indices)} of {len(dataset)} structures of {label} ({where.path}); "
        f"skipped {len(encoded.skipped)} {encoded.skip_counts}; {len(dataset.errors)} unparsable rows; "
        f"elements {' '.join(config.data.elements)}, n_elements={encoder.n_elements}, "
        f"max_sites={encoder.max_sites}")
    scaler = MatrixScaler().fit(encoded.matrices, encoder.padding_mask())
    cond = np.zeros((len(encoded.indices), 0))
    mean, std, ranges = [], [], []
    for name in config.data.properties:
        if name not in dataset.properties:
            raise ValueError(f"property {name!r} is not a column of {dataset.source}; "
                             f"columns: {sorted(dataset.properties)}")
        values = np.asarray([dataset.properties[name][i] for i in encoded.indices], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"property {name!r} has non-numeric or missing values in {dataset.source}")
        ranges.append(training_range(values))
        mean.append(float(values.mean()))
        std.append(float(values.std()) or 1.0)
        cond = np.concatenate([cond, ((values - mean[-1]) / std[-1])[:, None]], axis=1)
    return {
        "config": config, "encoder": encoder, "scaler": scaler,
        "x": torch.as_tensor(scaler.transform(encoded.matrices), dtype=torch.float32),
        "cond": torch.as_tensor(cond, dtype=torch.float32),
        "properties": {"names": list(config.data.properties), "mean": mean, "std": std,
                       **{key: [r[key] for r in ranges] for key in ("min", "max", "ood_margin")}},
        "summary": {"dataset": config.data.dataset, "name": where.name, "split": where.split,
                    "source": str(where.path), "n_structures": len(dataset), "n_encoded": len(encoded.indices),
                    "skipped": encoded.skip_counts, "unparsable_rows": len(dataset.errors),
                    "elements": list(config.data.elements)},
    }


def _resolved_config(config: CrysgenConfig, where, structures: list) -> CrysgenConfig:
    """``config`` with the split, name and the empty data fields filled in from the parsed training split."""
    from pymatgen.core import Element

    data = config.data
    elements = data.elements
    if elements is None:
        elements = sorted({e.symbol for s in structures for e in s.composition}, key=lambda x: Element(x).Z)
    else:
        unknown = [e for e in elements if not Element.is_valid_symbol(e)]
        if unknown:
            raise ValueError(f"data.elements: not element symbols: {unknown}")
    kept = [s for s in structures if {e.symbol for e in s.composition} <= set(elements)]
    n_elements = data.n_elements or max((len(s.composition) for s in kept), default=1)
    max_sites = data.max_sites or max((len(s) for s in kept), default=1)
    data = dataclasses.replace(data, split=where.split, elements=list(elements), n_elements=n_elements,
                               max_sites=max_sites)
    return dataclasses.replace(config, name=run_name(config), data=data)


def train(config: CrysgenConfig, run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
          log=print) -> Path:
    """Train (or resume) in ``run_dir``; returns the path of the exported sampling checkpoint ``model.pt``.

    ``config`` may leave the dataset's split, element set, slots and site count empty (see ``prepare_data``);
    the run directory's ``config.yaml`` holds the values used.
    """
    from crysgen.checkpoint import save_model
    from shared.training import distributed

    run_dir = Path(run_dir)
    check_trainer_settings(config)
    main = distributed.is_main()  # under torchrun only rank 0 prints and writes; a single process is rank 0
    if not main:
        log = _silent
        distributed.barrier()  # rank 0 reads (and caches) the data first
    try:
        data = prepare_data(config, data_dir, log)
    finally:
        if main:
            distributed.barrier()  # released even when rank 0 failed: the others then fail the same way
    config = data["config"]
    resuming = latest_checkpoint(run_dir) is not None
    if resuming:
        _check_resumable(run_dir, config)
    elif main:
        _clear_failed_start(run_dir, log)
    distributed.barrier()
    created = _first_missing(run_dir)
    try:
        dataset = torch.utils.data.TensorDataset(data["x"], data["cond"])
        loader = torch.utils.data.DataLoader(dataset, batch_size=min(config.batch_size, len(dataset)),
                                             shuffle=True, drop_last=True)
        with torch.random.fork_rng(devices=[]):  # initial weights from the config's seed, global RNG untouched
            torch.manual_seed(config.trainer.seed)
            model = build_denoiser(config, data["encoder"])
        loss_fn = make_loss_fn(config.diffusion, model.padding_mask)
        if config.data.permute_sites:
            loss_fn = _SitePermutedLoss(loss_fn, data["encoder"])
        trainer = Trainer(model, loss_fn, loader, config.trainer, run_dir)
    except BaseException:
        if created is not None:  # the Trainer makes the directory for its logs: a failed start leaves none
            shutil.rmtree(created, ignore_errors=True)
        raise
    if main:
        save_config(config, run_dir / "config.yaml")
        atomic_write_json(run_dir / "scaler.json", data["scaler"].state_dict(), indent=None)
        atomic_write_json(run_dir / "data.json", {**data["summary"], "properties": data["properties"]})
    distributed.barrier()
    if resuming:
        log(f"resuming from step {trainer.resume()}")
    start = time.perf_counter()
    summary = trainer.train()
    seconds = time.perf_counter() - start
    ema = trainer.ema
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if ema is not None:
        weights.update({k: v.detach().cpu().clone() for k, v in ema.shadow.items()})
    meta = {"step": int(summary["step"]), "epoch": int(summary["epoch"]), "train_seconds_this_call": seconds,
            "weights": "ema" if ema is not None else "raw", "data": data["summary"],
            "trained_with": config_to_dict(config.trainer) | {"batch_size": config.batch_size}}
    path = run_dir / "model.pt"
    if main:
        save_model(path, weights=weights, config=config, encoder=data["encoder"], scaler=data["scaler"],
                   properties=data["properties"], meta=meta)
        log(f"wrote {path}")
    distributed.barrier()  # every rank returns once model.pt exists
    return path


class _SitePermutedLoss:
    """``loss_fn`` on the batch with each crystal's sites in a random order drawn from the trainer's generator
    (so a resumed run draws the same orders)."""

    def __init__(self, loss_fn, encoder: CrystalEncoder):
        self.loss_fn, self.encoder = loss_fn, encoder

    def __call__(self, model, batch, generator):
        x, rest = (batch, ()) if torch.is_tensor(batch) else (batch[0], tuple(batch[1:]))
        x = self.encoder.permute_sites(x, generator)
        return self.loss_fn(model, x if not rest else (x, *rest), generator)


def _silent(*args, **kwargs) -> None:
    """The log of ranks other than 0."""
