"""EDM-style bond inference from interatomic distances, for generators that output only atoms + positions.

EDM (Hoogeboom et al. 2022) assigns a bond of order 1/2/3 when the distance is below a typical single/double/
triple bond length plus a margin (10, 5, 3 pm). Lengths (pm) are EDM's ``bond_analyze`` values for H C N O F
(standard tabulated bond lengths). Pairs without a tabulated length never bond. EDM's molecule stability then
asks every atom to have exactly the neutral default valence: use ``edm_stability_metrics``, which is
``stability_metrics`` on the inferred bonds with all formal charges set to 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from molgen.metrics.stability import STRICT_VALENCES, stability_metrics
from molgen.representation import MolBatch

__all__ = ["EDM_SINGLE_PM", "EDM_DOUBLE_PM", "EDM_TRIPLE_PM", "EDM_MARGINS_PM", "edm_bond_orders",
           "edm_stability_metrics"]

_SYMBOLS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
EDM_SINGLE_PM = {
    ("H", "H"): 74, ("H", "C"): 109, ("H", "N"): 101, ("H", "O"): 96, ("H", "F"): 92,
    ("C", "C"): 154, ("C", "N"): 147, ("C", "O"): 143, ("C", "F"): 135,
    ("N", "N"): 145, ("N", "O"): 140, ("N", "F"): 136,
    ("O", "O"): 148, ("O", "F"): 142,
    ("F", "F"): 142,
}
EDM_DOUBLE_PM = {("C", "C"): 134, ("C", "N"): 129, ("C", "O"): 120, ("N", "N"): 125, ("N", "O"): 121,
                 ("O", "O"): 121}
EDM_TRIPLE_PM = {("C", "C"): 120, ("C", "N"): 116, ("C", "O"): 113, ("N", "N"): 110}
EDM_MARGINS_PM = (10, 5, 3)


def _threshold_matrix(lengths: dict, margin: float, device) -> Tensor:
    """(10, 10) distance thresholds in Angstrom indexed by atomic number; -inf where no bond is tabulated."""
    out = torch.full((10, 10), float("-inf"), dtype=torch.float64, device=device)
    for (a, b), pm in lengths.items():
        za, zb = _SYMBOLS[a], _SYMBOLS[b]
        out[za, zb] = out[zb, za] = (pm + margin) / 100.0
    return out


def edm_bond_orders(numbers: Tensor, positions: Tensor, mask: Tensor) -> Tensor:
    """(B, N, N) bond categories 0-3 from distances (Angstrom); elements outside H C N O F never bond."""
    device = positions.device
    z = torch.where(mask & (numbers >= 0) & (numbers < 10), numbers.long(), torch.zeros_like(numbers.long()))
    dist = torch.cdist(positions.double(), positions.double())
    za, zb = z.unsqueeze(-1), z.unsqueeze(-2)
    orders = torch.zeros(dist.shape, dtype=torch.long, device=device)
    for order, (lengths, margin) in enumerate(
        zip((EDM_SINGLE_PM, EDM_DOUBLE_PM, EDM_TRIPLE_PM), EDM_MARGINS_PM), start=1
    ):
        thresholds = _threshold_matrix(lengths, margin, device)[za, zb]
        # a higher order applies only inside the lower order's range, as in EDM's nested test
        orders = torch.where((dist < thresholds) & (orders == order - 1), order, orders)
    pair = mask.unsqueeze(-1) & mask.unsqueeze(-2)
    pair &= ~torch.eye(dist.shape[-1], dtype=torch.bool, device=device)
    return orders * pair


def edm_stability_metrics(numbers: Tensor, positions: Tensor, mask: Tensor) -> dict[str, float]:
    """EDM's atom/molecule stability: inferred bonds, neutral atoms, exact default valence."""
    bonds = edm_bond_orders(numbers, positions, mask)
    batch = MolBatch(numbers.long(), torch.zeros_like(numbers.long()), positions, bonds, mask)
    neutral_table = {key: v for key, v in STRICT_VALENCES.items() if key[1] == 0}
    return stability_metrics(batch, neutral_table, prefix="edm_")
