"""Atom and molecule stability from bond orders, vectorised over a ``MolBatch``.

Valence of an atom = sum of its bond orders, single/double/triple = 1/2/3 and aromatic = 1.5. For atoms with
``k`` aromatic bonds the 1.5's are an average over Kekule structures: in any one Kekule structure at most one of
an atom's aromatic bonds is double, so its integer valence is ``v_rest + k`` or ``v_rest + k + 1`` (``v_rest`` =
its non-aromatic bonds). The atom passes if either candidate is allowed. This keeps pyrrole N-H (1.5+1.5+1),
furan O and ring-fusion carbons (3 x 1.5) correct, which a plain "1.5-sum equals valence" test would reject and a
cast of aromatic to 1 would get wrong the other way. (Whether a global Kekule structure exists is RDKit
sanitisation's job: see ``molgen.metrics.chemistry``.)

Two tables:

* ``STRICT_VALENCES`` (headline): closed-shell valences, i.e. the element's default valence adjusted by the formal
  charge: N+ 4, N- 2, O+ 3, O- 1, C+ and C- 3 (carbocation, carbanion), B- 4; hypervalent P (5) and S (4, 6)
  are closed-shell too. Neutral 3-valent C or 2-valent N (radicals) fail.
* ``LENIENT_VALENCES``: the MiDi / FlowMol ``allowed_bonds`` table, which also accepts neutral 3-valent C and
  2-valent N, N+ with 2-4 bonds, etc. Plain (charge-free) entries of that table are taken for charge 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from molgen.representation import BOND_AROMATIC, MolBatch

__all__ = ["STRICT_VALENCES", "LENIENT_VALENCES", "valence_table", "atom_stability", "stability_metrics"]

# (atomic number, formal charge) -> allowed valences
STRICT_VALENCES: dict[tuple[int, int], tuple[int, ...]] = {
    (1, 0): (1,),
    (5, 0): (3,), (5, -1): (4,),
    (6, 0): (4,), (6, 1): (3,), (6, -1): (3,),
    (7, 0): (3,), (7, 1): (4,), (7, -1): (2,),
    (8, 0): (2,), (8, 1): (3,), (8, -1): (1,),
    (9, 0): (1,),
    (14, 0): (4,),
    (15, 0): (3, 5), (15, 1): (4,),
    (16, 0): (2, 4, 6), (16, 1): (3,), (16, -1): (1,),
    (17, 0): (1,), (35, 0): (1,), (53, 0): (1,),
}

# MiDi / FlowMol allowed_bonds
LENIENT_VALENCES: dict[tuple[int, int], tuple[int, ...]] = {
    (1, 0): (1,), (1, 1): (0,), (1, -1): (0,),
    (5, 0): (3,),
    (6, 0): (3, 4), (6, 1): (3,), (6, -1): (3,),
    (7, 0): (2, 3), (7, 1): (2, 3, 4), (7, -1): (2,),
    (8, 0): (2,), (8, 1): (3,), (8, -1): (1,),
    (9, 0): (1,), (9, -1): (0,),
    (13, 0): (3,), (14, 0): (4,),
    (15, 0): (3, 5), (15, 1): (4,),
    (16, 0): (2, 6), (16, 1): (2, 3), (16, 2): (4,), (16, 3): (5,), (16, -1): (3,),
    (17, 0): (1,), (33, 0): (3,), (35, 0): (1,), (35, 1): (2,), (53, 0): (1,),
    (80, 0): (1, 2), (83, 0): (3, 5),
}

_MAX_Z, _MAX_CHARGE, _MAX_VALENCE = 86, 3, 8
_TWICE_ORDER = (0, 2, 4, 6, 3)  # bond orders doubled, so aromatic sums stay exact integers


def valence_table(table: dict[tuple[int, int], tuple[int, ...]], device=None) -> Tensor:
    """Boolean lookup ``allowed[Z, charge + 3, valence]`` built from a (Z, charge) -> valences dict."""
    allowed = torch.zeros(_MAX_Z + 1, 2 * _MAX_CHARGE + 1, _MAX_VALENCE + 1, dtype=torch.bool, device=device)
    for (z, q), valences in table.items():
        for v in valences:
            allowed[z, q + _MAX_CHARGE, v] = True
    return allowed


def atom_stability(batch: MolBatch, table: dict[tuple[int, int], tuple[int, ...]] = STRICT_VALENCES) -> Tensor:
    """(B, N) bool: each real atom's valence is allowed for its element and formal charge (False on padding)."""
    bonds = batch.bonds.long()
    if bonds.min() < 0 or bonds.max() > BOND_AROMATIC:
        raise ValueError(f"bond categories must be in 0..{BOND_AROMATIC}, got {int(bonds.min())}..{int(bonds.max())}")
    twice = torch.tensor(_TWICE_ORDER, device=bonds.device)[bonds].sum(-1)  # (B, N)
    n_aromatic = (bonds == BOND_AROMATIC).sum(-1)
    rest = (twice - 3 * n_aromatic) // 2  # non-aromatic bonds are integer
    low = torch.where(n_aromatic > 0, rest + n_aromatic, rest)
    high = torch.where(n_aromatic > 0, low + 1, low)

    allowed = valence_table(table, device=bonds.device)
    z = batch.numbers.long()
    q = batch.charges.long()
    known = (z >= 0) & (z <= _MAX_Z) & (q.abs() <= _MAX_CHARGE)
    zi = z.clamp(0, _MAX_Z)
    qi = (q + _MAX_CHARGE).clamp(0, 2 * _MAX_CHARGE)

    def ok(valence: Tensor) -> Tensor:
        inside = (valence >= 0) & (valence <= _MAX_VALENCE)
        return inside & allowed[zi, qi, valence.clamp(0, _MAX_VALENCE)]

    return (ok(low) | ok(high)) & known & batch.mask


def stability_metrics(batch: MolBatch, table: dict = STRICT_VALENCES, prefix: str = "") -> dict[str, float]:
    """``atom_stability`` (fraction of real atoms) and ``mol_stability`` (fraction of molecules, all atoms ok)."""
    stable = atom_stability(batch, table)
    n_atoms = batch.mask.sum()
    if len(batch) == 0 or int(n_atoms) == 0:
        raise ValueError("stability_metrics: the batch holds no atoms")
    per_mol = (stable | ~batch.mask).all(-1)
    return {
        f"{prefix}atom_stability": float(stable.sum() / n_atoms),
        f"{prefix}mol_stability": float(per_mol.float().mean()),
    }
