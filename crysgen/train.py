"""Train the crystal-matrix EDM model: ``train(config, run_dir, data_dir)``.

Run directory (self-describing, resumable): ``config.yaml``, ``data.json`` (dataset, split, encoded/skipped
counts, property normalisation), ``scaler.json``, ``checkpoints/``, ``log.jsonl``/``log.csv`` (Trainer), and at
the end ``model.pt`` (the sampling checkpoint: EMA weights + config + encoder + scaler, see ``checkpoint.py``).
Calling ``train`` again on the same run directory resumes from the newest checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crysgen.config import CrysgenConfig, DataConfig, build_denoiser, load_train_config  # noqa: F401 (re-exported)
from crysgen.diffusion import make_loss_fn
from crysgen.representation import CrystalEncoder, MatrixScaler
from shared.config import config_to_dict, save_config
from shared.io import atomic_write_json
from shared.training import Trainer, latest_checkpoint

__all__ = ["CrysgenConfig", "DataConfig", "build_denoiser", "default_cache_dir", "default_run_dir", "load_train_config",
           "train"]

# keys that may change between a run and its resumption
_RESUMABLE_CHANGES = {"trainer.max_steps", "trainer.progress", "trainer.device", "data.cache_dir", "data.workers"}


def default_cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where parsed dataset CSVs are cached: ``explicit`` or ``~/.cache/scoregen``."""
    return Path(explicit or Path.home() / ".cache" / "scoregen").expanduser()


def default_run_dir(config: CrysgenConfig, root: str | os.PathLike = "runs") -> Path:
    """``runs/<date>-crysgen-<name>-<config hash>`` (same config on the same day -> same dir -> resume)."""
    digest = hashlib.sha256(json.dumps(config_to_dict(config), sort_keys=True).encode()).hexdigest()[:8]
    return Path(root) / f"{time.strftime('%Y%m%d')}-crysgen-{config.name}-{digest}"


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
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in _RESUMABLE_CHANGES)
    if changed:
        raise ValueError(f"{run_dir} holds a run with a different config ({changed}); use another run directory")


def prepare_data(config: CrysgenConfig, data_dir=None, log=print) -> dict[str, Any]:
    """Load and encode the training split; fit the scaler and the property normalisation on it."""
    from crysgen.data import load_dataset

    cache = default_cache_dir(config.data.cache_dir)
    dataset = load_dataset(config.data.dataset, config.data.split, data_dir, workers=config.data.workers,
                           cache_dir=cache)
    encoder = CrystalEncoder(config.data.n_elements, config.data.max_sites)
    encoded = encoder.encode_many(dataset.structures)
    if len(encoded.indices) == 0:
        raise ValueError(f"no structure of {config.data.dataset}/{config.data.split} fits n_elements="
                         f"{encoder.n_elements}, max_sites={encoder.max_sites}: {encoded.skip_counts}")
    log(f"encoded {len(encoded.indices)} of {len(dataset)} structures of {config.data.dataset}/"
        f"{config.data.split}; skipped {len(encoded.skipped)} {encoded.skip_counts}; "
        f"{len(dataset.errors)} unparsable rows")
    scaler = MatrixScaler().fit(encoded.matrices, encoder.padding_mask())
    cond = np.zeros((len(encoded.indices), 0))
    mean, std = [], []
    for name in config.data.properties:
        if name not in dataset.properties:
            raise ValueError(f"property {name!r} is not a column of {dataset.source}; "
                             f"columns: {sorted(dataset.properties)}")
        values = np.asarray([dataset.properties[name][i] for i in encoded.indices], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"property {name!r} has non-numeric or missing values in {dataset.source}")
        mean.append(float(values.mean()))
        std.append(float(values.std()) or 1.0)
        cond = np.concatenate([cond, ((values - mean[-1]) / std[-1])[:, None]], axis=1)
    return {
        "encoder": encoder, "scaler": scaler,
        "x": torch.as_tensor(scaler.transform(encoded.matrices), dtype=torch.float32),
        "cond": torch.as_tensor(cond, dtype=torch.float32),
        "properties": {"names": list(config.data.properties), "mean": mean, "std": std},
        "summary": {"dataset": config.data.dataset, "split": config.data.split, "source": dataset.source,
                    "n_structures": len(dataset), "n_encoded": len(encoded.indices),
                    "skipped": encoded.skip_counts, "unparsable_rows": len(dataset.errors)},
    }


def train(config: CrysgenConfig, run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
          log=print) -> Path:
    """Train (or resume) in ``run_dir``; returns the path of the exported sampling checkpoint ``model.pt``."""
    from crysgen.checkpoint import save_model

    run_dir = Path(run_dir)
    _check_resumable(run_dir, config)
    data = prepare_data(config, data_dir, log)
    save_config(config, run_dir / "config.yaml")
    atomic_write_json(run_dir / "scaler.json", data["scaler"].state_dict(), indent=None)
    atomic_write_json(run_dir / "data.json", {**data["summary"], "properties": data["properties"]})

    dataset = torch.utils.data.TensorDataset(data["x"], data["cond"])
    loader = torch.utils.data.DataLoader(dataset, batch_size=min(config.batch_size, len(dataset)), shuffle=True,
                                         drop_last=True)
    with torch.random.fork_rng(devices=[]):  # initial weights from the config's seed, global RNG untouched
        torch.manual_seed(config.trainer.seed)
        model = build_denoiser(config, data["encoder"])
    trainer = Trainer(model, make_loss_fn(config.diffusion, model.padding_mask), loader, config.trainer, run_dir)
    if latest_checkpoint(run_dir) is not None:
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
    path = save_model(run_dir / "model.pt", weights=weights, config=config, encoder=data["encoder"],
                      scaler=data["scaler"], properties=data["properties"], meta=meta)
    log(f"wrote {path}")
    return path
