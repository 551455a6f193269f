"""graphgen model files: config + both networks + EMA weights + node-count statistics, and GDSS import.

A model file is a ``torch.save`` dict of tensors and plain data (loads with ``weights_only=True``):
``{"format": "scoregen.graphgen.model", "format_version", "config", "model", "ema", "node_counts", "source"}``.
``model`` / ``ema`` are state dicts of :class:`graphgen.diffusion.GraphScoreModel` (``x_net.*``, ``adj_net.*``);
``node_counts[k]`` is how many training graphs have k nodes (sampling draws node masks from it).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from graphgen.diffusion import GraphGenConfig, GraphScoreModel, build_model
from graphgen.gdss_import import GDSSImportError, read_gdss_checkpoint
from graphgen.pretrained import default_model_path  # noqa: F401  (re-exported: the embedded model)
from shared.model_file import read_model_file, write_model_file
from shared.numerics import flush_denormals_
from shared.config import ConfigError, config_from_dict, config_to_dict, load_config

__all__ = ["ModelBundle", "save_model", "load_model", "import_gdss", "gdss_config_to_config", "GDSS_SAMPLERS"]

FORMAT = "scoregen.graphgen.model"
FORMAT_VERSION = 1

# GDSS sample_<dataset>.yaml settings for checkpoints whose file holds no sampler block
GDSS_SAMPLERS: dict[str, dict[str, Any]] = {
    "QM9": {"predictor": "Reverse", "corrector": "Langevin", "snr": 0.2, "scale_eps": 0.7, "n_steps": 1,
            "use_ema": False, "eps": 1e-4},
    "ZINC250k": {"predictor": "Reverse", "corrector": "Langevin", "snr": 0.2, "scale_eps": 0.9, "n_steps": 1,
                 "use_ema": False, "eps": 1e-4},
}
# GDSS's train-block defaults, for checkpoints whose stored config predates a key (the published ZINC250k ones
# have no ``ema``: they were trained without EMA and carry no EMA weights)
GDSS_TRAIN_DEFAULTS: dict[str, Any] = {"lr": 5e-3, "weight_decay": 1e-4, "lr_decay": 0.999, "lr_schedule": True,
                                       "grad_norm": 1.0, "ema": None, "eps": 1e-5, "num_epochs": 1}
_PREDICTORS = {"Reverse": "reverse_diffusion", "Euler": "euler_maruyama", "S4": "s4"}
_DATA_NAMES = {"qm9": "QM9", "zinc250k": "ZINC250k", "community_small": "community_small", "grid": "grid",
               "ego_small": "ego_small", "enzymes": "ENZYMES"}


@dataclass
class ModelBundle:
    """A model ready to sample: ``model`` carries the sampling weights (EMA if ``used_ema``)."""

    config: GraphGenConfig
    model: GraphScoreModel
    node_counts: torch.Tensor | None
    used_ema: bool
    source: str = ""


def save_model(path: str | os.PathLike, config: GraphGenConfig, model: GraphScoreModel, *,
               ema_state: dict[str, torch.Tensor] | None = None, node_counts: torch.Tensor | None = None,
               source: str = "") -> Path:
    """Write a model file atomically; ``ema_state`` maps parameter names to EMA weights."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if ema_state is not None:
        unknown = sorted(set(ema_state) - set(state))
        if unknown:
            raise ValueError(f"EMA weights for unknown parameters {unknown[:3]}")
        ema_state = {k: v.detach().cpu() for k, v in ema_state.items()}
    payload = {"config": config_to_dict(config), "model": state, "ema": ema_state,
               "node_counts": None if node_counts is None else node_counts.detach().cpu().to(torch.int64),
               "source": str(source)}
    return write_model_file(path, payload, format=FORMAT, version=FORMAT_VERSION, domain="graphgen")


def _read_model_file(path: Path) -> dict[str, Any]:
    return read_model_file(path, format=FORMAT, max_version=FORMAT_VERSION, what="graphgen model file",
                           hint="for a GDSS .pth use 'graphgen import-gdss'")


def _from_run_dir(run_dir: Path) -> dict[str, Any]:
    """A model payload from a (possibly unfinished) training run: config.yaml, node_counts.json, latest ckpt."""
    from shared.training import latest_checkpoint, load_checkpoint

    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir} holds neither model.pt nor a training checkpoint")
    config = load_config(GraphGenConfig, run_dir / "config.yaml")
    counts_path = run_dir / "node_counts.json"
    counts = torch.tensor(json.loads(counts_path.read_text())) if counts_path.is_file() else None
    payload = load_checkpoint(ckpt)
    ema = payload["ema"]["shadow"] if payload.get("ema") else None
    return {"config": config_to_dict(config), "model": payload["model"], "ema": ema, "node_counts": counts,
            "source": str(ckpt)}


def load_model(path: str | os.PathLike, *, use_ema: bool | None = None,
               device: str | torch.device = "cpu") -> ModelBundle:
    """Load a model file or a training run directory. ``use_ema=None`` follows ``config.sampler.use_ema``."""
    path = Path(path)
    if path.is_dir():
        payload = _read_model_file(path / "model.pt") if (path / "model.pt").is_file() else _from_run_dir(path)
    elif path.is_file():
        payload = _read_model_file(path)
    else:
        raise FileNotFoundError(f"model file or run directory not found: {path}")
    try:
        config = config_from_dict(GraphGenConfig, payload["config"])
    except ConfigError as err:
        raise ValueError(f"{path}: invalid stored config: {err}") from err
    model = build_model(config)
    state = dict(payload["model"])
    want_ema = config.sampler.use_ema if use_ema is None else use_ema
    used_ema = bool(want_ema and payload.get("ema"))
    if used_ema:
        state.update(payload["ema"])
    model.load_state_dict(state)
    flush_denormals_(model)  # exact to 1e-38; GDSS's QM9 weights have subnormal heads that slow CPUs 20x
    model.to(device).eval()
    return ModelBundle(config, model, payload.get("node_counts"), used_ema, payload.get("source") or str(path))


# ---------------------------------------------------------------------------------------------- GDSS import
def gdss_config_to_config(raw: dict[str, Any], params_x: dict[str, Any]) -> GraphGenConfig:
    """Translate a GDSS training config (plus the x network's constructor arguments) into ours."""
    try:
        data, sde, model = raw["data"], raw["sde"], raw["model"]
        train = {**GDSS_TRAIN_DEFAULTS, **(raw.get("train") or {})}
        name = _DATA_NAMES.get(str(data["data"]).lower(), str(data["data"]))
        sampler = dict(GDSS_SAMPLERS.get(name, {}))
        if "sampler" in raw:
            sampler.update(raw["sampler"])
        if "sample" in raw:
            sampler.update({k: raw["sample"][k] for k in ("use_ema", "eps") if k in raw["sample"]})
        ours = {
            "data": {"name": name, "max_node_num": data["max_node_num"], "max_feat_num": data["max_feat_num"],
                     "batch_size": data.get("batch_size", 1024)},
            "sde": {key: {k: sde[key][k] for k in ("type", "beta_min", "beta_max", "num_scales")}
                    for key in ("x", "adj")},
            "model": {"x": params_x["model_type"], "adj": model.get("adj", "ScoreNetworkA"),
                      **{k: model[k] for k in ("depth", "adim", "nhid", "num_layers", "num_linears", "c_init",
                                               "c_hid", "c_final")},
                      "conv": model.get("conv", "GCN"), "num_heads": model.get("num_heads", 4)},
            "train": {"num_epochs": train["num_epochs"], "lr": train["lr"], "weight_decay": train["weight_decay"],
                      "lr_decay": train["lr_decay"] if train.get("lr_schedule", True) else None,
                      "grad_clip": train["grad_norm"], "ema": train["ema"], "eps": train["eps"],
                      "seed": raw.get("seed", 0)},
        }
        if sampler:
            ours["sampler"] = {
                "predictor": _PREDICTORS[sampler["predictor"]],
                "corrector": "langevin" if sampler["corrector"] == "Langevin" else "none",
                "snr": sampler["snr"], "scale_eps": sampler["scale_eps"], "n_correct": sampler.get("n_steps", 1),
                "steps": sde["adj"]["num_scales"], "eps": sampler.get("eps", 1e-4),
                "use_ema": sampler.get("use_ema", False),
            }
        return config_from_dict(GraphGenConfig, ours)
    except (KeyError, TypeError, ConfigError) as err:
        raise GDSSImportError(f"GDSS config cannot be translated: {type(err).__name__}: {err}") from err


def _ema_by_name(shadow: list[torch.Tensor] | None, state: dict[str, torch.Tensor], prefix: str,
                 what: str) -> dict[str, torch.Tensor]:
    # GDSS stores EMA weights as a list in parameters() order; the networks have no buffers, so that is the
    # order of the state dict in the file
    if shadow is None:
        return {}
    names = list(state)
    if len(shadow) != len(names):
        raise GDSSImportError(f"{what}: {len(shadow)} EMA tensors for {len(names)} parameters")
    for name, tensor in zip(names, shadow):
        if tuple(tensor.shape) != tuple(state[name].shape):
            raise GDSSImportError(f"{what}: EMA tensor for {name} has shape {tuple(tensor.shape)}, "
                                  f"expected {tuple(state[name].shape)}")
    return {f"{prefix}.{n}": t for n, t in zip(names, shadow)}


def import_gdss(path: str | os.PathLike, data_dir: str | os.PathLike | None = None
                ) -> tuple[GraphGenConfig, GraphScoreModel, dict[str, torch.Tensor] | None, torch.Tensor | None]:
    """A published GDSS checkpoint as ``(config, model, ema_state, node_counts)``.

    ``node_counts`` is computed from the training split when ``data_dir`` is given, else None.
    """
    try:
        ckpt = read_gdss_checkpoint(path)
    except (IndexError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as err:
        # the weights-only unpickler fails with these on some non-checkpoint bytes
        raise GDSSImportError(f"{path} cannot be read as a GDSS checkpoint: {type(err).__name__}: {err}") from err
    config = gdss_config_to_config(ckpt.config, ckpt.params_x)
    model = build_model(config)
    try:
        model.x_net.load_state_dict(ckpt.x_state_dict)
        model.adj_net.load_state_dict(ckpt.adj_state_dict)
    except RuntimeError as err:
        raise GDSSImportError(f"{path}: network weights do not fit the configured networks: "
                              f"{str(err).splitlines()[0]}") from err
    ema = {**_ema_by_name(ckpt.ema_x, ckpt.x_state_dict, "x_net", f"{path} ema_x"),
           **_ema_by_name(ckpt.ema_adj, ckpt.adj_state_dict, "adj_net", f"{path} ema_adj")}
    counts = None
    if data_dir is not None:
        from graphgen.datasets import load_training_data, node_count_histogram

        counts = node_count_histogram(load_training_data(config.data, data_dir), config.data.max_node_num)
    return config, model, (ema or None), counts
