"""The generator's model file: network config and (EMA) weights, flow and sampler settings, atom-count statistics.

Written atomically and read with ``torch.load(weights_only=True)``: plain tensors, numbers, strings, lists and
dicts only, so loading a file never runs code from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from molgen.atom_counts import AtomCountDistribution
from molgen.flow import FlowConfig, SamplerConfig
from molgen.model import FlowNetConfig, MolFlowNet
from shared.model_file import read_model_file, write_model_file
from shared.config import config_from_dict, config_to_dict

__all__ = ["FORMAT", "Generator", "save_generator", "load_generator"]

FORMAT = "molgen-generator-v1"  # the name predates the shared header's format_version
FORMAT_VERSION = 1


@dataclass
class Generator:
    """A loaded generator: the network (eval mode) and everything sampling needs."""

    model: MolFlowNet
    flow: FlowConfig
    sampler: SamplerConfig
    atom_counts: AtomCountDistribution
    num_classes: dict[str, int]
    metadata: dict[str, Any]

    @property
    def properties(self) -> list[str]:
        return list(self.model.config.conditioning.properties)

    @property
    def conditional_screen(self) -> int:
        """Candidates per molecule that conditional sampling screens by default (``molgen.screening``; 1 = none).

        A measured choice stored in the model file's metadata (the embedded generator's manifest says how it was
        chosen); files without it screen nothing."""
        value = self.metadata.get("conditional_screen", 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"model file metadata conditional_screen must be an integer >= 1, got {value!r}")
        return value

    @property
    def property_range(self) -> dict[str, tuple[float, float]]:
        return {k: tuple(v) for k, v in self.metadata.get("property_range", {}).items()}


def save_generator(path: str | os.PathLike, model: MolFlowNet, flow: FlowConfig, sampler: SamplerConfig,
                   atom_counts: AtomCountDistribution, state_dict: dict | None = None, **metadata: Any) -> Path:
    state = {k: v.detach().cpu() for k, v in (state_dict or model.state_dict()).items()}
    payload = {"model_config": config_to_dict(model.config), "flow": config_to_dict(flow),
               "sampler": config_to_dict(sampler), "state_dict": state, "atom_counts": atom_counts.state_dict(),
               "metadata": metadata}
    return write_model_file(path, payload, format=FORMAT, version=FORMAT_VERSION, domain="molgen")


def load_generator(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Generator:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"generator file not found: {path}")
    payload = read_model_file(path, format=FORMAT, max_version=FORMAT_VERSION, what="molgen generator file",
                              hint="molgen train writes generators (RUN/model.pt)", map_location=map_location)
    config = config_from_dict(FlowNetConfig, payload["model_config"])
    model = MolFlowNet(config)
    model.load_state_dict(payload["state_dict"])
    model.to(map_location).eval()
    c = config
    return Generator(model=model, flow=config_from_dict(FlowConfig, payload["flow"]),
                     sampler=config_from_dict(SamplerConfig, payload["sampler"]),
                     atom_counts=AtomCountDistribution.from_state_dict(payload["atom_counts"]),
                     num_classes={"atom_types": c.num_atom_types, "charges": c.num_charges,
                                  "bonds": c.num_bond_types},
                     metadata=dict(payload.get("metadata", {})))
