"""graphgen's run configuration: the data, the SDE pair, the networks, training and the sampler, as dataclasses
read from YAML (``graphgen/configs/``) and saved with every checkpoint. GDSS's layout and key names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from graphgen.dataset_registry import DATASETS

__all__ = ["SDEConfig", "SDEPairConfig", "DataConfig", "NetworkConfig", "TrainConfig", "SamplerConfig",
           "GraphGenConfig"]


@dataclass
class SDEConfig:
    """One component's SDE in GDSS notation (for VE, beta_min/beta_max are sigma_min/sigma_max)."""

    type: Literal["VP", "VE", "subVP"] = "VP"
    beta_min: float = 0.1
    beta_max: float = 1.0
    num_scales: int = 1000


@dataclass
class SDEPairConfig:
    x: SDEConfig = field(default_factory=SDEConfig)
    adj: SDEConfig = field(default_factory=SDEConfig)


@dataclass
class DataConfig:
    """``name``: a GDSS benchmark (community_small, ego_small, grid, ENZYMES, QM9, ZINC250k) or a generated set
    (``synthetic_community`` / ``synthetic_grid`` with ``num_graphs`` graphs drawn with ``seed``)."""

    name: str = "community_small"
    max_node_num: int = 20
    max_feat_num: int = 10
    batch_size: int = 128
    num_graphs: int = 100
    seed: int = 0


@dataclass
class NetworkConfig:
    x: Literal["ScoreNetworkX", "ScoreNetworkX_GMH"] = "ScoreNetworkX"
    adj: Literal["ScoreNetworkA"] = "ScoreNetworkA"
    conv: str = "GCN"
    num_heads: int = 4
    depth: int = 3
    adim: int = 32
    nhid: int = 32
    num_layers: int = 5
    num_linears: int = 2
    c_init: int = 2
    c_hid: int = 8
    c_final: int = 4
    time_conditioned: bool = False  # our opt-in addition: networks also see t
    time_dim: int = 16


@dataclass
class TrainConfig:
    """GDSS training hyper-parameters; ``max_steps`` (if set) overrides ``num_epochs``."""

    num_epochs: int = 5000
    max_steps: int | None = None
    lr: float = 1e-2
    weight_decay: float = 1e-4
    lr_decay: float | None = 0.999  # per epoch (GDSS ExponentialLR); None: constant
    grad_clip: float | None = 1.0
    ema: float | None = 0.999
    eps: float = 1e-5
    seed: int = 0
    log_every: int = 100
    checkpoint_every: int | None = 1000
    keep_last: int = 3

    def __post_init__(self) -> None:
        for name in ("lr", "weight_decay", "lr_decay", "grad_clip", "ema", "eps"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(float(value)):
                raise ValueError(f"train.{name} must be a finite number, got {value}")
        if self.lr <= 0 or self.eps <= 0 or self.weight_decay < 0:
            raise ValueError(f"train.lr and train.eps must be > 0 and weight_decay >= 0, got lr={self.lr}, "
                             f"eps={self.eps}, weight_decay={self.weight_decay}")
        if self.num_epochs < 1 or (self.max_steps is not None and self.max_steps < 1):
            raise ValueError(f"train.num_epochs and train.max_steps must be >= 1, got {self.num_epochs}, "
                             f"{self.max_steps}")


@dataclass
class SamplerConfig:
    predictor: Literal["reverse_diffusion", "euler_maruyama", "s4"] = "reverse_diffusion"
    corrector: Literal["langevin", "none"] = "langevin"
    snr: float = 0.2
    # the node-feature corrector's own snr (None: ``snr``); an under-trained node-feature score collapses onto the
    # majority atom type under GDSS's 0.2 (benchmarks/GRAPHGEN.md), while the adjacency keeps needing it
    snr_x: float | None = None
    scale_eps: float = 0.7
    n_correct: int = 1
    steps: int = 1000
    eps: float = 1e-4
    use_ema: bool = True


@dataclass
class GraphGenConfig:
    data: DataConfig = field(default_factory=DataConfig)
    sde: SDEPairConfig = field(default_factory=SDEPairConfig)
    model: NetworkConfig = field(default_factory=NetworkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    @property
    def atom_types(self) -> tuple[str, ...] | None:
        """Atom types of a molecule dataset, None for generic graphs."""
        spec = DATASETS.get(self.data.name)
        return None if spec is None else spec.atoms
