"""Bond-length and bond-angle windows derived from QM9 itself, the tolerances of ``molgen.metrics.geometry``.

How the packaged windows (``qm9_windows.json``) were derived (``derive_windows``; rerun with
``python -m molgen.metrics.windows QM9_FILE``):

* data: the ``train_generator`` half of QM9 (50,000 molecules, B3LYP/6-31G(2df,p) minima, bonds and orders as
  ``molgen.data`` perceives them from QM9's SMILES); test molecules are never used, so QM9 test is a fair ceiling;
* bond classes: (element, element, bond category single/double/triple/aromatic); angle classes: (centre element,
  number of bonded neighbours, the small ring the angle closes: 3, 4 or none), every angle between two bonds of
  the centre atom (without the ring split, cyclopropanes would open every sp3 window down to 52 degrees);
* window = [q(0.01 %) - margin, q(99.99 %) + margin] of the class's values in the data: the quantiles drop the
  handful of pathological DFT minima (QM9 #59827's 1.25 A C-H) and the margin lets a geometry sit one vibration
  away from a minimum. For a bond it is the zero-point RMS amplitude of its stretch, sqrt(hbar / (2 mu omega))
  with the pair's reduced mass mu and a textbook stretching wavenumber (``STRETCH_WAVENUMBERS``): 0.079 A for
  C-H, 0.070 A for O-H, 0.053 A for C-C, 0.041 A for C=C, 0.036 A for C#C. For an angle it is 5 degrees (about a
  bending mode's zero-point amplitude);
* a class seen fewer than ``min_count`` (20) times has no window of its own: its bonds get the element pair's
  window over all categories, then the Pyykko radius sum +- the median relative half-width of the classes that
  have windows; an angle class without a window falls back to the centre element's window over all classes.

Per-pair windows (``pairs``: one window per element pair, bond category ignored) give a looser second view that
does not trust the generated bond orders.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import torch

__all__ = ["WINDOWS_FILE", "STRETCH_WAVENUMBERS", "ANGLE_MARGIN_DEG", "zero_point_amplitude", "derive_windows",
           "load_windows", "bond_window_tables", "angle_window_table", "bonded_distance_limits", "perceived_bonds"]

WINDOWS_FILE = Path(__file__).with_name("qm9_windows.json")
ANGLE_MARGIN_DEG = 5.0
# typical stretching wavenumbers (cm^-1) by (Z_low, Z_high, bond category); the category's default otherwise
STRETCH_WAVENUMBERS = {(1, 6, 1): 2950.0, (1, 7, 1): 3350.0, (1, 8, 1): 3650.0, (1, 9, 1): 4000.0,
                       (6, 8, 2): 1730.0, (6, 7, 3): 2250.0}
_CATEGORY_WAVENUMBER = {1: 1050.0, 2: 1650.0, 3: 2150.0, 4: 1500.0}
_MASSES = {1: 1.008, 6: 12.011, 7: 14.007, 8: 15.999, 9: 18.998}


def zero_point_amplitude(z_a: int, z_b: int, category: int) -> float:
    """RMS zero-point displacement (Angstrom) of a harmonic bond stretch, sqrt(hbar / (2 mu omega))."""
    hbar, amu, c_cm = 1.054571817e-34, 1.66053906660e-27, 2.99792458e10
    a, b = min(z_a, z_b), max(z_a, z_b)
    mu = _MASSES[a] * _MASSES[b] / (_MASSES[a] + _MASSES[b]) * amu
    omega = 2.0 * math.pi * c_cm * STRETCH_WAVENUMBERS.get((a, b, category), _CATEGORY_WAVENUMBER[category])
    return math.sqrt(hbar / (2.0 * mu * omega)) * 1e10
_QUANTILES = (1e-4, 1.0 - 1e-4)
_MAX_Z = 10  # QM9 elements are H C N O F; other elements have no window (their bonds fail)
_MAX_DEGREE = 6
# Pyykko & Atsumi (2009) single/double/triple covalent radii (Angstrom), for classes QM9 never shows
_PYYKKO = {1: (0.32, 0.32, 0.32), 6: (0.75, 0.67, 0.60), 7: (0.71, 0.60, 0.54), 8: (0.63, 0.57, 0.53),
           9: (0.64, 0.59, 0.53)}


def _window(values: torch.Tensor, margin: float) -> dict:
    values = values.double()
    lo, hi = torch.quantile(values, torch.tensor(_QUANTILES, dtype=torch.float64)).tolist()
    return {"n": int(values.numel()), "median": round(float(values.median()), 4),
            "q_lo": round(lo, 4), "q_hi": round(hi, 4), "lo": round(lo - margin, 4), "hi": round(hi + margin, 4)}


def _padded_bonds_and_angles(path, split: str, chunk: int = 1024):
    """Yield per chunk: bond (z_a, z_b, category, length) and angle (z_centre, degree, angle_deg) tensors."""
    from molgen.data import QM9Dataset
    from molgen.representation import MolBatch

    dataset = QM9Dataset(path, split)
    for start in range(0, len(dataset), chunk):
        batch = MolBatch.from_tensors([dataset.tensors(i) for i in range(start, min(start + chunk, len(dataset)))])
        yield bond_records(batch), angle_records(batch)


def bond_records(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every bond (i < j) of a ``MolBatch``: (z_low, z_high, category, length in Angstrom)."""
    pos = batch.positions.double()
    b, i, j = torch.triu((batch.bonds > 0) & batch.mask.unsqueeze(-1) & batch.mask.unsqueeze(-2), 1).nonzero(
        as_tuple=True)
    za, zb = batch.numbers[b, i], batch.numbers[b, j]
    length = (pos[b, i] - pos[b, j]).norm(dim=-1)
    return torch.minimum(za, zb), torch.maximum(za, zb), batch.bonds[b, i, j], length


def angle_records(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every angle j-i-k (j < k bonded to i): (z_centre, degree of the centre, small ring, angle in degrees,
    molecule). ``small ring`` is 3 when j-k are bonded, 4 when j and k share a neighbour besides i, else 0."""
    pos = batch.positions.double()
    bonded = (batch.bonds > 0) & batch.mask.unsqueeze(-1) & batch.mask.unsqueeze(-2)
    degree = bonded.sum(-1)
    n = bonded.shape[1]
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=bonded.device), 1)
    triple = bonded.unsqueeze(-1) & bonded.unsqueeze(-2) & upper  # (B, i, j, k), j < k
    b, i, j, k = triple.nonzero(as_tuple=True)
    u, v = pos[b, j] - pos[b, i], pos[b, k] - pos[b, i]
    cos = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1)).clamp_min(1e-12)
    angle = torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))
    adj = bonded.double()
    common = torch.bmm(adj, adj)[b, j, k]  # neighbours shared by j and k, i among them
    ring = torch.where(bonded[b, j, k], 3, torch.where(common > 1.5, 4, 0))
    return batch.numbers[b, i], degree[b, i], ring, angle, b


def derive_windows(path, split: str = "train_generator", min_count: int = 20) -> dict:
    """The windows (see the module docstring) from a prepared QM9 file's ``split``."""
    bonds, angles = [], []
    for bond, angle in _padded_bonds_and_angles(path, split):
        bonds.append(torch.stack([bond[0].double(), bond[1].double(), bond[2].double(), bond[3]], 1))
        angles.append(torch.stack([angle[0].double(), angle[1].double(), angle[2].double(), angle[3]], 1))
    bond_table, angle_table = torch.cat(bonds), torch.cat(angles)
    out = {"source": f"QM9 {split} ({Path(path).name})", "quantiles": list(_QUANTILES),
           "bond_margin": "zero-point RMS stretch amplitude", "angle_margin_deg": ANGLE_MARGIN_DEG,
           "min_count": min_count,
           "bonds": {}, "pairs": {}, "angles": {}, "centres": {}}
    za, zb, cat, length = bond_table.T
    for key in sorted({(int(a), int(b_), int(c)) for a, b_, c in zip(za.tolist(), zb.tolist(), cat.tolist())}):
        sel = (za == key[0]) & (zb == key[1]) & (cat == key[2])
        if int(sel.sum()) >= min_count:
            margin = zero_point_amplitude(*key)
            out["bonds"][f"{key[0]}-{key[1]}:{key[2]}"] = {**_window(length[sel], margin), "margin": round(margin, 4)}
    for a, b_ in sorted({(int(a), int(b_)) for a, b_ in zip(za.tolist(), zb.tolist())}):
        sel = (za == a) & (zb == b_)
        if int(sel.sum()) >= min_count:  # the loosest margin among the pair's bond categories in the data
            margin = max(zero_point_amplitude(a, b_, int(c)) for c in cat[sel].unique().tolist())
            out["pairs"][f"{a}-{b_}"] = {**_window(length[sel], margin), "margin": round(margin, 4)}
    relative = [(w["hi"] - w["lo"]) / 2 / w["median"] for w in out["bonds"].values()]
    out["fallback_relative_half_width"] = round(float(torch.tensor(relative).median()), 4)
    zc, deg, ring, ang = angle_table.T
    for key in sorted({(int(a), int(d), int(r)) for a, d, r in zip(zc.tolist(), deg.tolist(), ring.tolist())}):
        sel = (zc == key[0]) & (deg == key[1]) & (ring == key[2])
        if int(sel.sum()) >= min_count:
            out["angles"][f"{key[0]}:{key[1]}:{key[2]}"] = _window(ang[sel], ANGLE_MARGIN_DEG)
    for z in sorted({int(a) for a in zc.tolist()}):
        sel = zc == z
        out["centres"][str(z)] = _window(ang[sel], ANGLE_MARGIN_DEG)
    return out


@lru_cache(maxsize=4)
def load_windows(path: str | None = None) -> dict:
    """The packaged windows (or those in ``path``, a JSON written from ``derive_windows``)."""
    file = Path(path) if path else WINDOWS_FILE
    if not file.is_file():
        raise FileNotFoundError(f"geometry windows file not found: {file}")
    return json.loads(file.read_text())


@lru_cache(maxsize=8)
def _tables(path: str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    windows = load_windows(path)
    nan = float("nan")
    by_order = torch.full((_MAX_Z + 1, _MAX_Z + 1, 5, 2), nan, dtype=torch.float64)
    by_pair = torch.full((_MAX_Z + 1, _MAX_Z + 1, 2), nan, dtype=torch.float64)
    for key, w in windows["pairs"].items():
        a, b = (int(x) for x in key.split("-"))
        by_pair[a, b] = by_pair[b, a] = torch.tensor([w["lo"], w["hi"]], dtype=torch.float64)
    half = windows["fallback_relative_half_width"]
    for a, radii_a in _PYYKKO.items():  # fallbacks first, then the data's own windows over them
        for b, radii_b in _PYYKKO.items():
            for cat in range(1, 5):
                if not math.isnan(float(by_pair[a, b, 0])):
                    by_order[a, b, cat] = by_pair[a, b]
                    continue
                if cat == 4:
                    ref = 0.5 * (radii_a[0] + radii_b[0] + radii_a[1] + radii_b[1])
                else:
                    ref = radii_a[cat - 1] + radii_b[cat - 1]
                by_order[a, b, cat] = torch.tensor([ref * (1 - half), ref * (1 + half)], dtype=torch.float64)
    for key, w in windows["bonds"].items():
        pair, cat = key.split(":")
        a, b = (int(x) for x in pair.split("-"))
        by_order[a, b, int(cat)] = by_order[b, a, int(cat)] = torch.tensor([w["lo"], w["hi"]], dtype=torch.float64)
    angles = torch.full((_MAX_Z + 1, _MAX_DEGREE + 1, 5, 2), nan, dtype=torch.float64)
    for key, w in windows["centres"].items():
        angles[int(key), :, :] = torch.tensor([w["lo"], w["hi"]], dtype=torch.float64)
    for key, w in windows["angles"].items():
        z, degree, ring = (int(x) for x in key.split(":"))
        if degree <= _MAX_DEGREE:
            angles[z, degree, ring] = torch.tensor([w["lo"], w["hi"]], dtype=torch.float64)
    return by_order, by_pair, angles, torch.tensor(_MAX_Z)


def bond_window_tables(path: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """((Z+1, Z+1, 5, 2) window by element pair and bond category, (Z+1, Z+1, 2) by pair); NaN: no window."""
    by_order, by_pair, _, _ = _tables(path)
    return by_order, by_pair


def angle_window_table(path: str | None = None) -> torch.Tensor:
    """(Z+1, MAX_DEGREE+1, 5, 2) angle window (degrees) by centre element, its number of bonds and the small ring
    the angle closes (0, 3 or 4); NaN: none."""
    return _tables(path)[2]


def max_z() -> int:
    return _MAX_Z


@lru_cache(maxsize=4)
def bonded_distance_limits(path: str | None = None) -> torch.Tensor:
    """(Z+1, Z+1) longest distance (Angstrom) at which a pair still counts as bonded: the upper end of the pair's
    QM9 window; for pairs QM9 never bonds (H-H, O-O, ...) the Pyykko single-bond radius sum widened by the
    fallback half-width. NaN for unknown elements."""
    _, by_pair = bond_window_tables(path)
    half = load_windows(path)["fallback_relative_half_width"]
    limits = by_pair[..., 1].clone()
    for a, radii_a in _PYYKKO.items():
        for b, radii_b in _PYYKKO.items():
            if math.isnan(float(limits[a, b])):
                limits[a, b] = (radii_a[0] + radii_b[0]) * (1 + half)
    return limits


def perceived_bonds(numbers, positions, path: str | None = None) -> set[tuple[int, int]]:
    """Pairs (i < j) of one molecule closer than their bonded-distance limit (``bonded_distance_limits``): the
    connectivity its coordinates show, judged by QM9's own bond lengths. (RDKit's covalent-radius rule, x 1.3,
    calls the 1.8-1.97 A transannular C...C contacts of bicyclic cages bonds: it disagrees with 5 % of QM9.)"""
    import numpy as np  # per molecule, called in worker processes: plain numpy, no torch thread pool

    z = np.asarray(numbers, dtype=np.int64)
    pos = np.asarray(positions, dtype=np.float64)
    limits = bonded_distance_limits(path).numpy()
    zc = np.where((z >= 1) & (z <= _MAX_Z), z, 0)
    limit = limits[zc[:, None], zc[None, :]]
    distance = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1))
    with np.errstate(invalid="ignore"):
        close = np.triu(distance <= limit, 1)  # NaN limit: never bonded
    return {(int(i), int(j)) for i, j in zip(*np.nonzero(close))}


if __name__ == "__main__":
    import sys

    from shared.io import atomic_write_json

    windows = derive_windows(sys.argv[1])
    atomic_write_json(Path(sys.argv[2]) if len(sys.argv) > 2 else WINDOWS_FILE, windows)
    print(json.dumps({k: windows[k] for k in ("bonds", "angles")}, indent=1)[:4000])
