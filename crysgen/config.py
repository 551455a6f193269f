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
    dataset: str = "perov_5"  # benchmark name, directory of split CSVs, or one CDVAE CSV (crysgen.data)
    split: str | None = None  # None: the CSV itself, else "train" (perov5.yaml trains on val: no train split here)
    elements: list[str] | None = None  # None: every element of the training split; else others are skipped
    n_elements: int | None = None  # element slots per crystal; None: the most distinct elements in one crystal
    max_sites: int | None = None  # None: the largest number of sites in one training crystal
    properties: list[str] = field(default_factory=list)  # CSV columns to condition on (classifier-free guidance)
    origin: str = "cell"  # "site": each crystal translated so an anchor site is at the origin (CrystalEncoder)
    permute_sites: bool = False  # train on a random order of each crystal's sites (augmentation)
    lattice: str = "abc"  # "log-cos": lattice rows hold ln(lengths) and cos(angles) (CrystalEncoder)
    cache_dir: str | None = None  # parsed-CSV cache; None: ~/.cache/scoregen
    workers: int = 1

    def __post_init__(self) -> None:
        for name in ("n_elements", "max_sites"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"data.{name} must be >= 1 or empty (inferred from the data), got {value}")
        if self.origin not in CrystalEncoder.ORIGINS:
            raise ValueError(f"data.origin must be one of {CrystalEncoder.ORIGINS}, got {self.origin!r}")
        if self.lattice not in CrystalEncoder.LATTICES:
            raise ValueError(f"data.lattice must be one of {CrystalEncoder.LATTICES}, got {self.lattice!r}")
        if self.elements is not None and not self.elements:
            raise ValueError("data.elements must name at least one element, or be empty (inferred from the data)")


@dataclass
class CrysgenConfig:
    name: str | None = None  # None: the dataset's name (crysgen.train.run_name)
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
    from shared.config import TRAINER_SECTION_ALIASES

    return load_config(CrysgenConfig, source, overrides, aliases=TRAINER_SECTION_ALIASES)


def build_denoiser(config: CrysgenConfig, encoder: CrystalEncoder) -> CrystalDenoiser:
    net = UNet1D(encoder.width, config.model, cond_dim=len(config.data.properties))
    return CrystalDenoiser(net, torch.as_tensor(encoder.padding_mask()), config.diffusion.sigma_data)
