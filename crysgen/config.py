"""The crysgen run configuration and the denoiser it describes: what training and checkpoint loading share.

:class:`CrysgenConfig` (data, U-Net, EDM diffusion, trainer) and :func:`build_denoiser` live here, below both
:mod:`crysgen.train` and :mod:`crysgen.checkpoint`, so that neither imports the other to build a model
(``crysgen.train`` re-exports these names).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from crysgen.diffusion import CrystalDenoiser, DiffusionConfig
from crysgen.model import UNet1D, UNetConfig
from crysgen.representation import CrystalEncoder
from shared.config import load_config
from shared.training import TrainerConfig

__all__ = ["CrysgenConfig", "DataConfig", "build_denoiser", "load_train_config"]


@dataclass
class DataConfig:
    dataset: str = "perov_5"
    split: str = "val"  # only val/test of perov-5 are available here: train on val, evaluate on test
    n_elements: int = 5
    max_sites: int = 5
    properties: list[str] = field(default_factory=list)  # CSV columns to condition on (classifier-free guidance)
    cache_dir: str | None = None  # parsed-CSV cache; None: ~/.cache/scoregen
    workers: int = 1


@dataclass
class CrysgenConfig:
    name: str = "perov5"
    batch_size: int = 64
    data: DataConfig = field(default_factory=DataConfig)
    model: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def load_train_config(source: str | os.PathLike | dict | None = None, overrides=()) -> CrysgenConfig:
    """A :class:`CrysgenConfig` from YAML (or dict) plus ``key=value`` overrides."""
    return load_config(CrysgenConfig, source, overrides)


def build_denoiser(config: CrysgenConfig, encoder: CrystalEncoder) -> CrystalDenoiser:
    net = UNet1D(encoder.width, config.model, cond_dim=len(config.data.properties))
    return CrystalDenoiser(net, torch.as_tensor(encoder.padding_mask()), config.diffusion.sigma_data)
