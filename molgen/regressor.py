"""E(3)-invariant property regressor: a SchNet-style network on padded molecules.

Atoms (H C N O F) are embedded, then refined by continuous-filter convolutions whose filters are functions of
the interatomic distances only (Gaussian radial basis times a cosine cutoff). Pairs are found in plain torch
from the padded (B, N, N) distance matrix (QM9 molecules have <= 29 atoms) and processed as a flat edge list.
The per-atom outputs are summed (or averaged) and mapped back to the property's units:

    y = offset + sum_i atomref[type_i] + scale * readout_i(out_i)

For the dipole moment (``readout="dipole"``) the per-atom outputs are partial charges q_i (e), shifted so that
each molecule is neutral, and the prediction is |sum_i q_i r_i| in Debye, as in SchNet's and PaiNN's dipole
heads: the moment's dependence on geometry is built in instead of learned from a scalar sum.
``offset``/``atomref`` are a least-squares fit of the property on the element counts of the training set and
``scale`` the std of what that linear model leaves; they are buffers, so they travel with the state dict.
Distances, sums and the cutoff make the prediction invariant to rotations, translations, reflections and
atom permutations, and padded atoms are masked out everywhere.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from molgen.representation import ATOM_TYPES, MolBatch, atom_type_index
from molgen.units import E_ANGSTROM_TO_DEBYE
from shared.io import atomic_torch_save
from shared.safe_load import safe_torch_load

__all__ = ["RegressorConfig", "PropertyRegressor", "fit_normalisation", "type_counts", "save_regressor",
           "load_regressor"]

_FORMAT = "molgen-regressor-v1"


@dataclass
class RegressorConfig:
    hidden: int = 64
    num_interactions: int = 3
    num_rbf: int = 16
    filter_depth: int = 1  # 1: filters linear in the radial basis (cheap on CPU); 2: a small MLP (SchNet)
    cutoff: float = 5.0  # Angstrom
    readout: str = "sum"  # "sum" (extensive properties), "mean" (intensive) or "dipole" (|sum_i q_i r_i|, Debye)
    num_types: int = len(ATOM_TYPES)

    def __post_init__(self) -> None:
        if self.readout not in ("sum", "mean", "dipole"):
            raise ValueError(f"readout must be 'sum', 'mean' or 'dipole', got {self.readout!r}")
        if self.filter_depth not in (1, 2):
            raise ValueError(f"filter_depth must be 1 or 2, got {self.filter_depth}")
        if min(self.hidden, self.num_interactions, self.num_rbf, self.num_types) < 1 or self.cutoff <= 0:
            raise ValueError(f"invalid regressor config {self}")


class _ShiftedSoftplus(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.softplus(x) - math.log(2.0)


class _Interaction(nn.Module):
    """h_i += MLP(sum_j W(d_ij) * lin(h_j)) over the masked pairs."""

    def __init__(self, hidden: int, num_rbf: int, filter_depth: int):
        super().__init__()
        if filter_depth == 1:
            self.filter = nn.Linear(num_rbf, hidden)
        else:
            self.filter = nn.Sequential(nn.Linear(num_rbf, hidden), _ShiftedSoftplus(), nn.Linear(hidden, hidden))
        self.pre = nn.Linear(hidden, hidden, bias=False)
        self.post = nn.Sequential(nn.Linear(hidden, hidden), _ShiftedSoftplus(), nn.Linear(hidden, hidden))

    def forward(self, h: Tensor, rbf: Tensor, weight: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        """``h`` (A, H) flattened atoms; edge e carries a message from atom ``src[e]`` to ``dst[e]``."""
        w = self.filter(rbf) * weight.unsqueeze(-1)  # (E, H), vanishing smoothly at the cutoff
        message = torch.zeros_like(h).index_add_(0, dst, w * self.pre(h)[src])
        return h + self.post(message)


class PropertyRegressor(nn.Module):
    """Predict one scalar property from atom types (B, N), positions (B, N, 3) in Angstrom and a mask (B, N)."""

    def __init__(self, config: RegressorConfig | None = None):
        super().__init__()
        self.config = config or RegressorConfig()
        c = self.config
        self.embedding = nn.Embedding(c.num_types, c.hidden)
        self.interactions = nn.ModuleList(
            _Interaction(c.hidden, c.num_rbf, c.filter_depth) for _ in range(c.num_interactions))
        self.head = nn.Sequential(nn.Linear(c.hidden, c.hidden // 2 or 1), _ShiftedSoftplus(),
                                  nn.Linear(c.hidden // 2 or 1, 1))
        self.register_buffer("rbf_centres", torch.linspace(0.0, c.cutoff, c.num_rbf))
        self.rbf_gamma = 0.5 / (c.cutoff / (c.num_rbf - 1 or 1)) ** 2
        self.register_buffer("offset", torch.zeros((), dtype=torch.float64))
        self.register_buffer("atomref", torch.zeros(c.num_types, dtype=torch.float64))
        self.register_buffer("scale", torch.ones((), dtype=torch.float64))

    def set_normalisation(self, offset: float, atomref: Tensor, scale: float) -> None:
        if not scale > 0:
            raise ValueError(f"normalisation scale must be positive, got {scale}")
        self.offset.fill_(float(offset))
        self.atomref.copy_(torch.as_tensor(atomref, dtype=torch.float64))
        self.scale.fill_(float(scale))

    def _edges(self, positions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Pairs of real atoms of one molecule closer than the cutoff, as flat indices into (B * N) atoms.

        Returns ``rbf`` (E, num_rbf), cosine-cutoff ``weight`` (E,), ``src`` and ``dst`` (E,).
        """
        b, n = mask.shape
        cutoff = self.config.cutoff
        diff = positions.unsqueeze(2) - positions.unsqueeze(1)
        sq = (diff * diff).sum(-1)
        eye = torch.eye(n, dtype=torch.bool, device=mask.device)
        pair = mask.unsqueeze(-1) & mask.unsqueeze(-2) & ~eye & (sq.detach() < cutoff * cutoff)
        batch, i, j = pair.nonzero(as_tuple=True)
        # a sparse edge list: QM9 molecules average ~18 atoms, so this skips most of the padded (N, N) block
        dist = torch.sqrt(sq[batch, i, j].clamp_min(1e-10))  # clamp: finite gradients for coincident atoms
        weight = 0.5 * (torch.cos(math.pi * dist / cutoff) + 1.0)
        rbf = torch.exp(-self.rbf_gamma * (dist.unsqueeze(-1) - self.rbf_centres) ** 2)
        return rbf, weight, batch * n + j, batch * n + i

    def normalised(self, atom_types: Tensor, positions: Tensor, mask: Tensor) -> Tensor:
        """The network's (B,) output in normalised units (before scale, offset and atom references)."""
        mask = mask.bool()
        b, n = mask.shape
        types = torch.where(mask, atom_types.long(), torch.zeros_like(atom_types.long()))
        rbf, weight, src, dst = self._edges(positions, mask)
        h = self.embedding(types).reshape(b * n, -1)
        for block in self.interactions:
            h = block(h, rbf, weight, src, dst)
        out = self.head(h).reshape(b, n) * mask
        if self.config.readout == "dipole":
            return self._dipole(out, positions, mask)
        total = out.sum(-1)
        if self.config.readout == "mean":
            total = total / mask.sum(-1).clamp_min(1)
        return total

    @staticmethod
    def _dipole(charges: Tensor, positions: Tensor, mask: Tensor) -> Tensor:
        """|sum_i q_i r_i| in Debye from raw per-atom charges, made neutral per molecule (so origin-free)."""
        count = mask.sum(-1, keepdim=True).clamp_min(1)
        q = (charges - charges.sum(-1, keepdim=True) / count) * mask
        moment = (q.unsqueeze(-1) * positions).sum(1) * E_ANGSTROM_TO_DEBYE
        return torch.sqrt((moment * moment).sum(-1) + 1e-8)

    def baseline(self, atom_types: Tensor, mask: Tensor) -> Tensor:
        """(B,) composition-only part of the prediction: offset + sum of atom references (float64)."""
        counts = type_counts(atom_types, mask, self.config.num_types)
        return self.offset + counts @ self.atomref

    def forward(self, atom_types: Tensor, positions: Tensor, mask: Tensor) -> Tensor:
        """(B,) predictions in the property's units (float64)."""
        if self.config.readout == "dipole":  # already in Debye: no composition baseline for a vector's norm
            return self.normalised(atom_types, positions, mask).double()
        return self.baseline(atom_types, mask) + self.scale * self.normalised(atom_types, positions, mask).double()

    @torch.no_grad()
    def predict_batch(self, batch: MolBatch, chunk_size: int = 512) -> Tensor:
        """Predictions for a ``MolBatch`` (atomic numbers mapped to H C N O F), in chunks, on the model's device."""
        device = self.offset.device
        was_training = self.training
        self.eval()
        try:
            out = []
            for start in range(0, len(batch), chunk_size):
                mask = batch.mask[start:start + chunk_size].to(device)
                numbers = batch.numbers[start:start + chunk_size].to(device)
                types = atom_type_index(torch.where(mask, numbers, torch.ones_like(numbers)))
                pos = batch.positions[start:start + chunk_size].to(device, torch.float32)
                out.append(self(types, pos, mask).cpu())
        finally:
            self.train(was_training)
        return torch.cat(out)


def type_counts(atom_types: Tensor, mask: Tensor, num_types: int) -> Tensor:
    """(B, num_types) float64 count of each atom type among the real atoms."""
    onehot = nn.functional.one_hot(atom_types.long().clamp(0, num_types - 1), num_types).double()
    return (onehot * mask.unsqueeze(-1).double()).sum(1)


def fit_normalisation(counts: Tensor, values: Tensor) -> tuple[float, Tensor, float]:
    """Least-squares ``values ~ offset + counts @ atomref``; returns (offset, atomref, residual std)."""
    counts, values = counts.double(), values.double().reshape(-1)
    if counts.shape[0] != values.shape[0] or counts.shape[0] < 2:
        raise ValueError(f"need >= 2 molecules with one value each, got {counts.shape[0]} and {values.shape[0]}")
    design = torch.cat([torch.ones(counts.shape[0], 1, dtype=torch.float64), counts], 1)
    # min-norm solution: element types absent from the data get atomref 0
    coef = torch.linalg.lstsq(design, values.unsqueeze(-1), driver="gelsd").solution.squeeze(-1)
    residual = values - design @ coef
    scale = float(residual.std())
    if scale <= 1e-9 * max(1.0, float(values.abs().max())):  # exactly linear data: keep a unit scale
        scale = 1.0
    return float(coef[0]), coef[1:], scale


def save_regressor(model: PropertyRegressor, path: str | os.PathLike, **metadata) -> Path:
    """Write the model (config, weights and normalisation) plus JSON-able ``metadata`` atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_torch_save({"format": _FORMAT, "config": asdict(model.config), "state_dict": state,
                              "metadata": metadata}, path)


def load_regressor(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> PropertyRegressor:
    """Load a model written by ``save_regressor``; its metadata is in ``model.metadata``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"regressor file not found: {path}")
    payload = safe_torch_load(path, f"molgen regressor file ({_FORMAT})", map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a molgen regressor ({_FORMAT})")
    model = PropertyRegressor(RegressorConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.metadata = dict(payload.get("metadata", {}))
    return model.to(map_location).eval()
