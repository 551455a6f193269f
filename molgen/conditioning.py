"""Property conditioning of the generator: any subset of QM9 properties, embedded and merged into atom scalars.

A condition is a dict of two (B, P) tensors over the model's property list: ``values`` (normalised:
``(raw - mean) / std`` of the training half) and ``present`` (1 where the property is given, 0 where not). Each
property ``p`` is embedded by its own small MLP (on the value, or on its Gaussian expansion); an absent property
contributes a learned "unknown" vector instead, and the embeddings of all properties are summed. So one network is
conditioned on any subset, with the all-absent condition as the unconditional model (what classifier-free guidance
and per-property condition dropout need).

How the embedding ``c`` (B, S) meets the atom scalars ``h`` (A, S) (PropMolFlow's five options):

=========================  ==========================================
``sum``                    ``h + c``
``multiply``               ``h * c``
``concatenate``            ``W [h, c]``
``concatenate_sum``        ``h + W [h, c]``
``concatenate_multiply``   ``h * W [h, c]`` (concatenate, then multiply; not an alias of ``multiply``)
=========================  ==========================================

``where``: ``input`` merges once before the first layer, ``every_layer`` before every layer (own ``W`` per layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["ConditioningConfig", "ConditionEmbedding", "EMBEDDINGS", "make_condition", "null_condition"]

EMBEDDINGS = ("sum", "multiply", "concatenate", "concatenate_sum", "concatenate_multiply")


@dataclass
class ConditioningConfig:
    properties: list[str] = field(default_factory=list)  # empty: unconditional network
    embedding: str = "sum"
    gaussian_expansion: bool = False
    gaussians: int = 32  # centres over [-4, 4] normalised units
    where: str = "input"  # "input" or "every_layer"
    dropout: float = 0.1  # per-property probability of hiding a property while training
    drop_all: float = 0.1  # per-molecule probability of hiding all of them (the unconditional model)

    def __post_init__(self) -> None:
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"conditioning.embedding must be one of {EMBEDDINGS}, got {self.embedding!r}")
        if self.where not in ("input", "every_layer"):
            raise ValueError(f"conditioning.where must be 'input' or 'every_layer', got {self.where!r}")
        if not (0.0 <= self.dropout <= 1.0 and 0.0 <= self.drop_all <= 1.0):
            raise ValueError("conditioning dropout probabilities must lie in [0, 1]")
        if len(set(self.properties)) != len(self.properties):
            raise ValueError(f"conditioning.properties has duplicates: {self.properties}")
        self.properties = list(self.properties)


class ConditionEmbedding(nn.Module):
    """Embeds a condition dict into (B, S) and merges it into atom scalars (see module docstring)."""

    def __init__(self, config: ConditioningConfig, scalars: int, num_merges: int = 1):
        super().__init__()
        self.config = config
        p = len(config.properties)
        width = config.gaussians if config.gaussian_expansion else 1
        self.register_buffer("centres", torch.linspace(-4.0, 4.0, config.gaussians))
        self.register_buffer("mean", torch.zeros(p, dtype=torch.float64))
        self.register_buffer("std", torch.ones(p, dtype=torch.float64))
        self.value_mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(width, scalars), nn.SiLU(), nn.Linear(scalars, scalars)) for _ in range(p))
        self.unknown = nn.Parameter(torch.zeros(p, scalars))
        if config.embedding.startswith("concatenate"):
            merges = num_merges if config.where == "every_layer" else 1
            self.merge = nn.ModuleList(nn.Linear(2 * scalars, scalars) for _ in range(merges))

    @property
    def properties(self) -> list[str]:
        return self.config.properties

    def set_normalisation(self, mean: Tensor, std: Tensor) -> None:
        std = torch.as_tensor(std, dtype=torch.float64)
        if std.shape != self.std.shape or not bool((std > 0).all()):
            raise ValueError(f"need {self.std.shape[0]} positive property stds, got {std}")
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float64))
        self.std.copy_(std)

    def normalise(self, raw: Tensor) -> Tensor:
        return ((raw.double() - self.mean) / self.std).float()

    def denormalise(self, values: Tensor) -> Tensor:
        return values.double() * self.std + self.mean

    def forward(self, cond: dict[str, Tensor] | None, batch: int, dtype, device) -> Tensor:
        p = len(self.properties)
        if cond is None:
            values = torch.zeros(batch, p, dtype=dtype, device=device)
            present = torch.zeros(batch, p, dtype=dtype, device=device)
        else:
            values, present = cond["values"].to(dtype), cond["present"].to(dtype)
            if values.shape != (batch, p) or present.shape != (batch, p):
                raise ValueError(f"condition tensors must have shape {(batch, p)} (molecules x properties "
                                 f"{self.properties}), got {tuple(values.shape)} and {tuple(present.shape)}")
        values = torch.where(present > 0, values, torch.zeros_like(values))  # hidden values never leak
        if self.config.gaussian_expansion:
            gap = float(self.centres[1] - self.centres[0]) if p and len(self.centres) > 1 else 1.0
            feats = torch.exp(-((values.unsqueeze(-1) - self.centres.to(dtype)) / gap) ** 2)  # (B, P, G)
        else:
            feats = values.unsqueeze(-1)
        out = torch.zeros(batch, self.unknown.shape[1], dtype=dtype, device=device)
        for k, mlp in enumerate(self.value_mlps):  # a loop over the (<= 6) properties, not over molecules
            here = present[:, k : k + 1]
            out = out + here * mlp(feats[:, k]) + (1 - here) * self.unknown[k]
        return out

    def combine(self, h: Tensor, c: Tensor, layer: int = 0) -> Tensor:
        """Merge the per-atom condition embedding ``c`` (A, S) into atom scalars ``h`` (A, S)."""
        mode = self.config.embedding
        if mode == "sum":
            return h + c
        if mode == "multiply":
            return h * c
        w = self.merge[min(layer, len(self.merge) - 1)](torch.cat([h, c], -1))
        if mode == "concatenate":
            return w
        if mode == "concatenate_sum":
            return h + w
        return h * w


def make_condition(raw: dict[str, float | Tensor], properties: list[str], batch: int,
                   embedding: ConditionEmbedding, device=None) -> dict[str, Tensor]:
    """The condition dict for raw-unit targets ``{name: value or (B,) values}``; unknown names are an error."""
    unknown = sorted(set(raw) - set(properties))
    if unknown:
        raise ValueError(f"the model is not conditioned on {unknown}; it knows {properties}")
    values = torch.zeros(batch, len(properties), dtype=torch.float64)
    present = torch.zeros(batch, len(properties))
    for name, value in raw.items():
        k = properties.index(name)
        values[:, k] = torch.as_tensor(value, dtype=torch.float64).expand(batch)
        present[:, k] = 1.0
    values = ((values - embedding.mean.cpu()) / embedding.std.cpu()) * present.double()
    return {"values": values.float().to(device), "present": present.to(device)}


def null_condition(batch: int, num_properties: int, device=None) -> dict[str, Tensor]:
    z = torch.zeros(batch, num_properties, device=device)
    return {"values": z, "present": z.clone()}
