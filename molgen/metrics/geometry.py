"""Geometry checks of 3D molecules against QM9's own geometry, vectorised over a padded ``MolBatch``.

* ``bond_lengths_ok``: every bond lies inside the window of its (element pair, bond category) class;
  ``bond_lengths_in_pair_windows``: the looser view that ignores the generated bond orders (one window per element
  pair); ``bond_length_fraction``: the share of all bonds inside their class window;
* ``bond_angles_ok``: every angle between two bonds of an atom lies inside the window of its (centre element,
  number of bonds, small ring closed: 3, 4 or none) class;
* ``no_clash``: no pair of atoms more than two bonds apart (or in different fragments) is closer than
  ``clash_scale`` times the sum of their van der Waals radii (Bondi); a hydrogen bond (a hydrogen on N/O/F facing
  an N/O/F acceptor) clashes only below ``hbond_clash_scale`` times that sum.

``geometry_ok`` is all three. The windows come from QM9's own DFT minima (``molgen.metrics.windows``: the
0.01-99.99 % quantiles of the generator's training half, widened by 0.05 A / 5 degrees, about one vibrational
amplitude); an element or class QM9 does not know fails. QM9 test molecules pass 99.9+ %
(``benchmarks/results/molgen_geometry.md``). The earlier check, +-25 % around covalent radius sums, passed
molecules a chemist would reject (it called 90 % of a sample file's molecules fine where these windows call 29 %)
and is gone.
"""

from __future__ import annotations

import torch
from torch import Tensor

from molgen.metrics.windows import angle_records, angle_window_table, bond_window_tables, max_z
from molgen.representation import MolBatch

__all__ = ["VDW_RADII", "geometry_checks", "geometry_metrics"]

# Bondi (1964) van der Waals radii (Angstrom); H 1.20 as in Bondi
VDW_RADII: dict[int, float] = {1: 1.20, 5: 1.92, 6: 1.70, 7: 1.55, 8: 1.52, 9: 1.47, 14: 2.10, 15: 1.80,
                               16: 1.80, 17: 1.75, 35: 1.85, 53: 1.98}
_MAX_Z = 86
_HBOND_ATOMS = (7, 8, 9)  # donors' heavy atoms and acceptors


def geometry_checks(
    batch: MolBatch,
    clash_scale: float = 0.55,
    chunk_size: int = 256,
    hbond_clash_scale: float = 0.45,
    windows: str | None = None,
) -> dict[str, Tensor]:
    """Per-molecule (B,) tensors: bools ``bond_lengths_ok``, ``bond_lengths_in_pair_windows``, ``bond_angles_ok``,
    ``no_clash``, ``geometry_ok``; counts ``n_bonds`` and ``n_bonds_in_window``.

    ``windows``: a JSON file from ``molgen.metrics.windows.derive_windows`` (default: the packaged QM9 windows).
    Molecules are processed ``chunk_size`` at a time: the angle test holds a (chunk, N, N, N) tensor.
    """
    if len(batch) == 0:
        raise ValueError("geometry_checks: empty batch")
    parts = []
    for start in range(0, len(batch), chunk_size):
        stop = start + chunk_size
        chunk = MolBatch(batch.numbers[start:stop], batch.charges[start:stop], batch.positions[start:stop],
                         batch.bonds[start:stop], batch.mask[start:stop])
        parts.append(_checks(chunk, clash_scale, hbond_clash_scale, windows))
    return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}


def _checks(batch: MolBatch, clash_scale: float, hbond_clash_scale: float, windows: str | None):
    mask = batch.mask
    pos = batch.positions.double()
    bonded = (batch.bonds > 0) & mask.unsqueeze(-1) & mask.unsqueeze(-2)
    dist = torch.cdist(pos, pos)
    n = mask.shape[1]
    distinct = ~torch.eye(n, dtype=torch.bool, device=mask.device)

    by_order, by_pair = (t.to(mask.device) for t in bond_window_tables(windows))
    z = batch.numbers.long()
    known = (z >= 1) & (z <= max_z())
    zc = torch.where(known, z, torch.zeros_like(z))
    z_i, z_j = zc.unsqueeze(-1).expand_as(batch.bonds), zc.unsqueeze(-2).expand_as(batch.bonds)
    window = by_order[z_i, z_j, batch.bonds.long().clamp(0, 4)]  # (B, N, N, 2); NaN: no window -> fails
    in_window = (dist >= window[..., 0]) & (dist <= window[..., 1])
    pair = by_pair[z_i, z_j]
    in_pair = (dist >= pair[..., 0]) & (dist <= pair[..., 1])
    upper = torch.triu(bonded, 1)
    lengths_ok = ~(upper & ~in_window).flatten(1).any(-1)
    pair_ok = ~(upper & ~in_pair).flatten(1).any(-1)
    n_bonds = upper.flatten(1).sum(-1)
    n_good = (upper & in_window).flatten(1).sum(-1)

    # every angle j-i-k against its (centre element, degree, small ring) window
    table = angle_window_table(windows).to(mask.device)
    centre_z, degree, ring, angle, molecule = angle_records(batch)
    centre_z = torch.where((centre_z >= 1) & (centre_z <= max_z()), centre_z, torch.zeros_like(centre_z))
    limits = table[centre_z.long(), degree.clamp(max=table.shape[1] - 1), ring]
    bad_angle = ~((angle >= limits[:, 0]) & (angle <= limits[:, 1]))
    angles_ok = torch.ones(len(batch), dtype=torch.bool, device=mask.device)
    angles_ok[molecule[bad_angle]] = False

    # pairs more than two bonds apart: not bonded, no common neighbour, not the same atom
    adj = bonded.double()
    two_step = torch.bmm(adj, adj) > 0
    far = mask.unsqueeze(-1) & mask.unsqueeze(-2) & distinct & ~bonded & ~two_step
    vdw = torch.full((_MAX_Z + 1,), 1.7, dtype=torch.float64, device=mask.device)
    for z, radius in VDW_RADII.items():
        vdw[z] = radius
    r = vdw[batch.numbers.long().clamp(0, _MAX_Z)]
    polar = torch.zeros_like(mask)
    for element in _HBOND_ATOMS:
        polar = polar | (z == element)
    polar_h = (z == 1) & (bonded & polar.unsqueeze(-2)).any(-1)  # hydrogens bonded to N/O/F
    hbond = (polar_h.unsqueeze(-1) & polar.unsqueeze(-2)) | (polar.unsqueeze(-1) & polar_h.unsqueeze(-2))
    scale = torch.where(hbond, hbond_clash_scale, clash_scale)
    clash = far & (dist < scale * (r.unsqueeze(-1) + r.unsqueeze(-2)))
    no_clash = ~clash.flatten(1).any(-1)
    return {
        "bond_lengths_ok": lengths_ok,
        "bond_lengths_in_pair_windows": pair_ok,
        "bond_angles_ok": angles_ok,
        "no_clash": no_clash,
        "geometry_ok": lengths_ok & angles_ok & no_clash,
        "n_bonds": n_bonds,
        "n_bonds_in_window": n_good,
    }


def geometry_metrics(batch: MolBatch, **kwargs) -> dict[str, float]:
    """Fraction of molecules passing each geometry check, and ``bond_length_fraction``, the share of all bonds
    inside their window (keyword arguments as in ``geometry_checks``)."""
    checks = geometry_checks(batch, **kwargs)
    n_bonds, n_good = checks.pop("n_bonds"), checks.pop("n_bonds_in_window")
    out = {name: float(ok.double().mean()) for name, ok in checks.items()}
    out["bond_length_fraction"] = float(n_good.sum()) / max(int(n_bonds.sum()), 1)
    return out
