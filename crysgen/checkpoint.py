"""The crysgen sampling checkpoint: one file with everything needed to generate crystals.

Contents (plain containers and tensors only, so it loads with ``torch.load(weights_only=True)``):
``format``/``version``, ``config`` (the training :class:`~crysgen.config.CrysgenConfig` as a dict),
``encoder`` (``n_elements``, ``max_sites``, ``origin``, ``lattice``; files without the last two are the paper's
layout), ``scaler`` (``MatrixScaler.state_dict``), ``properties`` (names and the mean/std used to normalise them),
``weights`` (the EMA weights of the denoiser, float32, or
float16 for shipped models: they are cast back to float32 on loading) and ``meta`` (how it was trained).

Sampler defaults may live beside the binary: ``NAME.sampler.yaml`` next to ``NAME.pt`` holds keys of
:data:`SAMPLER_KEYS` (e.g. ``S_churn: 40``) that replace the stored ``config.diffusion`` values on loading. A
better sampler setting then changes a text file, not the weights file (and not the repository's history).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from crysgen.config import CrysgenConfig, build_denoiser, load_train_config
from crysgen.diffusion import CrystalDenoiser
from crysgen.representation import CrystalEncoder, MatrixScaler
from shared.model_file import read_model_file, write_model_file
from shared.conditions import check_target_range
from shared.config import config_to_dict

__all__ = ["CrystalModel", "PRETRAINED_DIR", "SAMPLER_KEYS", "default_checkpoint", "export_run", "load_model",
           "sampler_defaults_path", "save_model"]

FORMAT = "crysgen-model"
VERSION = 1
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
# the DiffusionConfig fields that only the sampler reads (the others define what the network was trained on)
SAMPLER_KEYS = ("steps", "sigma_min", "sigma_max", "rho", "S_churn", "S_min", "S_max", "S_noise")
_WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16}


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
        for k, n in enumerate(names):
            check_target_range(n, values[n], *self.property_range(k), stacklevel=4)
        return torch.tensor([(float(values[n]) - m) / s for n, m, s in
                             zip(names, self.properties["mean"], self.properties["std"])], dtype=torch.float32)


    def property_range(self, k: int) -> tuple[float, float, float]:
        """(low, high, OOD margin) of the k-th conditioned property: recorded at training time; checkpoints
        from before that know only mean and std, and get mean -+ 4 std with a margin of 3 std (generous: perov-5's
        heat_ref is skewed, its q99 - median is 3.1 std)."""
        p = self.properties
        if "min" in p:
            return float(p["min"][k]), float(p["max"][k]), float(p["ood_margin"][k])
        mean, std = float(p["mean"][k]), float(p["std"][k])
        return mean - 4 * std, mean + 4 * std, 3 * std


def default_checkpoint() -> Path:
    """The embedded perov-5 model shipped in ``crysgen/pretrained``."""
    return PRETRAINED_DIR / "perov5.pt"


def save_model(path: str | os.PathLike, *, weights: dict[str, torch.Tensor], config: CrysgenConfig,
               encoder: CrystalEncoder, scaler: MatrixScaler, properties: dict[str, Any],
               meta: dict[str, Any] | None = None, weights_dtype: str = "float32") -> Path:
    """Write a sampling checkpoint atomically, floating-point weights on CPU as ``weights_dtype``.

    ``float16`` halves the file (for shipped models); loading casts back to float32, and the rounding moves a
    weight by at most 2**-11 of its size.
    """
    if weights_dtype not in _WEIGHT_DTYPES:
        raise ValueError(f"weights_dtype must be one of {sorted(_WEIGHT_DTYPES)}, got {weights_dtype!r}")
    dtype = _WEIGHT_DTYPES[weights_dtype]
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor.float()).all()):
            raise ValueError(f"weight {name} has NaN or infinite values; not writing {path}")
        if dtype == torch.float16 and tensor.is_floating_point() and \
                float(tensor.detach().abs().max()) > float(torch.finfo(torch.float16).max):
            raise ValueError(f"weight {name} exceeds the float16 range; save it as float32")
    payload = {
        "config": config_to_dict(config),
        "encoder": {"n_elements": encoder.n_elements, "max_sites": encoder.max_sites, "origin": encoder.origin,
                    "lattice": encoder.lattice},
        "scaler": scaler.state_dict(), "properties": dict(properties),
        "weights": {k: v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()
                    for k, v in weights.items()},
        "meta": config_to_dict(meta or {}),
    }
    return write_model_file(path, payload, format=FORMAT, version=VERSION, domain="crysgen")


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> CrystalModel:
    """Load a sampling checkpoint (default: the embedded perov-5 model) onto ``device``, in eval mode."""
    path = Path(path) if path is not None else default_checkpoint()
    if path.is_dir():  # a training run directory
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"crysgen checkpoint not found: {path}")
    payload = read_model_file(path, format=FORMAT, max_version=VERSION, what="crysgen model file",
                              hint="a trainer checkpoint? use the run directory's model.pt")
    config = load_train_config(payload["config"])
    meta = dict(payload["meta"])
    sidecar = sampler_defaults_path(path)
    if sidecar.is_file():
        config = dataclasses.replace(config, diffusion=_with_sampler_defaults(config.diffusion, sidecar))
        meta["sampler_defaults"] = sidecar.name
    encoder = CrystalEncoder(**payload["encoder"])
    denoiser = build_denoiser(config, encoder)
    denoiser.load_state_dict(payload["weights"])  # copies into the float32 parameters (casts float16)
    denoiser.to(device).eval()
    return CrystalModel(denoiser=denoiser, encoder=encoder, scaler=MatrixScaler.from_state_dict(payload["scaler"]),
                        config=config, properties=payload["properties"], meta=meta, path=path)


def sampler_defaults_path(checkpoint: str | os.PathLike) -> Path:
    """``NAME.sampler.yaml`` beside ``NAME.pt``: sampler settings that replace the checkpoint's own."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".sampler.yaml")


def _with_sampler_defaults(diffusion, sidecar: Path):
    import yaml

    try:
        values = yaml.safe_load(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{sidecar}: not a readable YAML file of sampler settings ({exc})") from None
    if values is None:
        return diffusion
    if not isinstance(values, dict):
        raise ValueError(f"{sidecar}: expected a mapping of sampler settings, got {type(values).__name__}")
    unknown = sorted(set(values) - set(SAMPLER_KEYS))
    if unknown:
        raise ValueError(f"{sidecar}: {unknown} are not sampler settings (allowed: {list(SAMPLER_KEYS)}); "
                         f"what the network was trained with cannot change after training")
    fields = {f.name: f for f in dataclasses.fields(diffusion)}
    cleaned = {}
    for key, value in values.items():
        if key == "S_max" and value is None:
            cleaned[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{sidecar}: {key} must be a number, got {value!r}")
        if key == "steps" and int(value) != value:
            raise ValueError(f"{sidecar}: steps must be an integer, got {value!r}")
        cleaned[key] = int(value) if fields[key].type in ("int", int) else float(value)
    try:
        return dataclasses.replace(diffusion, **cleaned)
    except ValueError as exc:
        raise ValueError(f"{sidecar}: {exc}") from None


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
               weights_dtype: str = "float32", meta: dict[str, Any] | None = None) -> Path:
    """A sampling checkpoint from the newest trainer checkpoint of a run directory (e.g. an interrupted run).

    Uses the EMA weights when the run kept them; writes ``out`` (default ``run_dir/model.pt``). ``meta`` entries
    replace the recorded ones (e.g. a portable ``data`` source and a training history for a shipped model).
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
            "trained_with": config_to_dict(config.trainer) | {"batch_size": config.batch_size}} | dict(meta or {})
    scaler = MatrixScaler.from_state_dict(json.loads((run_dir / "scaler.json").read_text(encoding="utf-8")))
    encoder = CrystalEncoder(config.data.n_elements, config.data.max_sites, config.data.origin, config.data.lattice)
    return save_model(out or run_dir / "model.pt", weights=weights, config=config, encoder=encoder, scaler=scaler,
                      properties=data["properties"], meta=meta, weights_dtype=weights_dtype)
