"""The crysgen sampling checkpoint: one file with everything needed to generate crystals.

Contents (plain containers and tensors only, so it loads with ``torch.load(weights_only=True)``):
``format``/``version``, ``config`` (the training :class:`~crysgen.config.CrysgenConfig` as a dict),
``encoder`` (``n_elements``, ``max_sites``), ``scaler`` (``MatrixScaler.state_dict``), ``properties``
(names and the mean/std used to normalise them), ``weights`` (the EMA weights of the denoiser, float32) and
``meta`` (how it was trained).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from crysgen.config import CrysgenConfig, build_denoiser, load_train_config
from crysgen.diffusion import CrystalDenoiser
from crysgen.representation import CrystalEncoder, MatrixScaler
from shared.config import config_to_dict
from shared.io import atomic_torch_save
from shared.safe_load import safe_torch_load

__all__ = ["CrystalModel", "PRETRAINED_DIR", "default_checkpoint", "export_run", "load_model", "save_model"]

FORMAT = "crysgen-model"
VERSION = 1
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


@dataclass
class CrystalModel:
    """A loaded checkpoint: denoiser (eval mode), encoder, scaler, config, property normalisation, metadata."""

    denoiser: CrystalDenoiser
    encoder: CrystalEncoder
    scaler: MatrixScaler
    config: CrysgenConfig
    properties: dict[str, Any] = field(default_factory=lambda: {"names": [], "mean": [], "std": []})
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def normalise_condition(self, values: dict[str, float]) -> torch.Tensor:
        """``{property: raw value}`` -> normalised ``(P,)`` condition; every conditioned property is required."""
        names = self.properties["names"]
        if not names:
            raise ValueError(f"model {self.path} was trained without conditioning; guidance is not available")
        unknown, missing = sorted(set(values) - set(names)), sorted(set(names) - set(values))
        if unknown or missing:
            raise ValueError(f"guidance must give exactly the properties {names}; unknown {unknown}, "
                             f"missing {missing}")
        return torch.tensor([(float(values[n]) - m) / s for n, m, s in
                             zip(names, self.properties["mean"], self.properties["std"])], dtype=torch.float32)


def default_checkpoint() -> Path:
    """The embedded perov-5 model shipped in ``crysgen/pretrained``."""
    return PRETRAINED_DIR / "perov5.pt"


def save_model(path: str | os.PathLike, *, weights: dict[str, torch.Tensor], config: CrysgenConfig,
               encoder: CrystalEncoder, scaler: MatrixScaler, properties: dict[str, Any],
               meta: dict[str, Any] | None = None) -> Path:
    """Write a sampling checkpoint atomically (weights stored as float32 on CPU)."""
    payload = {
        "format": FORMAT, "version": VERSION, "config": config_to_dict(config),
        "encoder": {"n_elements": encoder.n_elements, "max_sites": encoder.max_sites, "origin": encoder.origin},
        "scaler": scaler.state_dict(), "properties": dict(properties),
        "weights": {k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()
                    for k, v in weights.items()},
        "meta": config_to_dict(meta or {}),
    }
    return atomic_torch_save(payload, path)


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> CrystalModel:
    """Load a sampling checkpoint (default: the embedded perov-5 model) onto ``device``, in eval mode."""
    path = Path(path) if path is not None else default_checkpoint()
    if path.is_dir():  # a training run directory
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"crysgen checkpoint not found: {path}")
    payload = safe_torch_load(path, "crysgen model file")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a crysgen model checkpoint (a trainer checkpoint? use the run "
                         f"directory's model.pt)")
    if payload["version"] > VERSION:
        raise ValueError(f"{path} has version {payload['version']}; this crysgen reads up to {VERSION}")
    config = load_train_config(payload["config"])
    encoder = CrystalEncoder(**payload["encoder"])
    denoiser = build_denoiser(config, encoder)
    denoiser.load_state_dict(payload["weights"])
    denoiser.to(device).eval()
    return CrystalModel(denoiser=denoiser, encoder=encoder, scaler=MatrixScaler.from_state_dict(payload["scaler"]),
                        config=config, properties=payload["properties"], meta=payload["meta"], path=path)


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """A sampling checkpoint from the newest trainer checkpoint of a run directory (e.g. an interrupted run).

    Uses the EMA weights when the run kept them; writes ``out`` (default ``run_dir/model.pt``).
    """
    import json

    from shared.training import latest_checkpoint, load_checkpoint

    run_dir = Path(run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"no trainer checkpoint in {run_dir}/checkpoints")
    for name in ("config.yaml", "scaler.json", "data.json"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name} missing: not a crysgen run directory")
    config = load_train_config(run_dir / "config.yaml")
    data = json.loads((run_dir / "data.json").read_text(encoding="utf-8"))
    payload = load_checkpoint(ckpt)
    weights = dict(payload["model"])
    if payload.get("ema") is not None:
        weights.update(payload["ema"]["shadow"])
    meta = {"step": int(payload["step"]), "weights": "ema" if payload.get("ema") is not None else "raw",
            "data": {k: v for k, v in data.items() if k != "properties"}, "source_checkpoint": str(ckpt),
            "trained_with": config_to_dict(config.trainer) | {"batch_size": config.batch_size}}
    scaler = MatrixScaler.from_state_dict(json.loads((run_dir / "scaler.json").read_text(encoding="utf-8")))
    encoder = CrystalEncoder(config.data.n_elements, config.data.max_sites, config.data.origin)
    return save_model(out or run_dir / "model.pt", weights=weights, config=config, encoder=encoder, scaler=scaler,
                      properties=data["properties"], meta=meta)
