"""How many atoms to generate: p(n) of the training half, and p(n | properties) from EDM-style joint histograms.

For each conditioning property the training values are cut into ``bins`` quantile bins and the joint histogram
``count[n, bin]`` is kept. ``p(n | c) ∝ p(n) prod_p p(bin_p(c_p) | n)`` (exact for one property, the naive-Bayes
product for several). Everything is plain tensors, so it is stored in the generator checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["AtomCountDistribution"]


class AtomCountDistribution:
    def __init__(self, counts: Tensor, properties: Sequence[str] = (), edges: Tensor | None = None,
                 joint: Tensor | None = None):
        self.counts = torch.as_tensor(counts, dtype=torch.float64)
        if self.counts.dim() != 1 or self.counts.sum() <= 0:
            raise ValueError("atom counts must be a non-empty 1-D histogram")
        self.properties = list(properties)
        self.edges = edges if edges is not None else torch.zeros(len(self.properties), 0, dtype=torch.float64)
        self.joint = joint if joint is not None else torch.zeros(len(self.properties), len(self.counts), 0)

    @classmethod
    def fit(cls, num_atoms: Tensor, values: Tensor | None = None, properties: Sequence[str] = (),
            bins: int = 20, max_atoms: int | None = None) -> "AtomCountDistribution":
        num_atoms = torch.as_tensor(num_atoms).long()
        size = int(max_atoms or num_atoms.max()) + 1
        counts = torch.bincount(num_atoms, minlength=size).double()
        if not properties:
            return cls(counts)
        values = torch.as_tensor(values, dtype=torch.float64).reshape(len(num_atoms), len(properties))
        q = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
        edges = torch.stack([torch.quantile(values[:, k], q) for k in range(len(properties))])
        joint = torch.zeros(len(properties), size, bins, dtype=torch.float64)
        for k in range(len(properties)):
            idx = cls._bin(edges[k], values[:, k])
            joint[k].index_put_((num_atoms, idx), torch.ones(len(idx), dtype=torch.float64), accumulate=True)
        return cls(counts, properties, edges, joint)

    @staticmethod
    def _bin(edges: Tensor, values: Tensor) -> Tensor:
        inner = edges[1:-1].contiguous()
        return torch.bucketize(values.double().contiguous(), inner, right=True).clamp(0, len(edges) - 2)

    def probabilities(self, condition: dict[str, float] | None = None) -> Tensor:
        """p(n) or p(n | condition) as a (N_max + 1,) vector."""
        p = self.counts / self.counts.sum()
        for name, value in (condition or {}).items():
            if name not in self.properties:
                raise ValueError(f"no atom-count statistics for property {name!r}; have {self.properties}")
            k = self.properties.index(name)
            b = int(self._bin(self.edges[k], torch.tensor([float(value)]))[0])
            column = self.joint[k, :, b]
            likelihood = column / self.counts.clamp_min(1.0)  # p(bin | n)
            if float((p * likelihood).sum()) > 0:
                p = p * likelihood
        return p / p.sum()

    def sample(self, n: int, condition: dict[str, float] | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        return torch.multinomial(self.probabilities(condition), n, replacement=True, generator=generator)

    def state_dict(self) -> dict:
        return {"counts": self.counts, "properties": list(self.properties), "edges": self.edges, "joint": self.joint}

    @classmethod
    def from_state_dict(cls, state: dict) -> "AtomCountDistribution":
        return cls(state["counts"], state["properties"], state["edges"], state["joint"])
