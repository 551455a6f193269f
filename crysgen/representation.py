"""DiffCrysGen's crystal-as-one-matrix representation, its row scaler, and CIF output.

Layout of one matrix (``rows = 94 + 2 + 2 * max_sites``, ``width = max(n_elements, 3)``), top to bottom:

* **E** (94 rows): column ``j`` is the one-hot atomic number (row ``Z - 1``) of element slot ``j``.
* **L** (2 rows): ``[a, b, c]`` in Angstrom and ``[alpha, beta, gamma]`` in degrees, in columns 0-2 (the paper's
  ``lattice="abc"``). ``lattice="log-cos"`` stores ``[ln a, ln b, ln c]`` and ``[cos alpha, cos beta, cos gamma]``
  instead: a length error is then relative, and the angle rows live on [-1, 1] (an ablation option).
* **C** (``max_sites`` rows): fractional coordinates ``[x, y, z]`` of each site, wrapped to [0, 1), columns 0-2.
* **O** (``max_sites`` rows): one-hot over element slots saying which element occupies the site; all-zero = empty.

With the paper's ``n_elements = 3`` every block is exactly three columns wide. When ``n_elements > 3`` the
L and C rows are zero-padded to the right; when ``n_elements < 3`` the E and O blocks are zero-padded. Padding
entries are never read by the decoder and the scaler maps them to -1 (see ``padding_mask``).

Canonical order (so encoding is deterministic): element slots by ascending Z; sites by element slot, then
by wrapped fractional x, y, z (rounded to 1e-8 so float noise cannot swap sites). With ``origin="site"`` the
crystal is first translated so that one site, the anchor, sits at the origin: the first site (in that order) of
the element with the fewest sites (ties: lowest Z). A crystal then encodes the same wherever its origin was put
(unless two anchor candidates are equally rare), which removes the translation freedom the model must otherwise
spread its density over.

Decoding follows the paper: element of slot ``j`` = argmax of E column ``j`` (no threshold); a site is occupied
when the largest entry of its O row exceeds 0.5 (unscaled; 0 on the scaler's [-1, 1] scale) and then belongs to
the argmax slot; empty sites are dropped; coordinates are wrapped to [0, 1); the lattice is built from
``(a, b, c, alpha, beta, gamma)``; the result is a P1 pymatgen ``Structure``.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from shared.io import atomic_write_text

__all__ = [
    "MAX_Z",
    "CrystalEncoder",
    "EncodedSet",
    "MatrixScaler",
    "structure_to_cif",
    "write_cifs",
]

MAX_Z = 94
OCCUPANCY_THRESHOLD = 0.5
MIN_CELL_THICKNESS = 0.01  # A; pymatgen's CifParser refuses thinner cells
_COORD_DECIMALS = 8


@dataclass
class EncodedSet:
    """Result of ``CrystalEncoder.encode_many``: matrices of the structures that fit, and why others did not."""

    matrices: np.ndarray  # (n_kept, rows, width)
    indices: list[int]  # input positions of the kept structures
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (input position, reason)

    @property
    def skip_counts(self) -> dict[str, int]:
        """Number of skipped structures per reason category (text before the first ':')."""
        return dict(Counter(reason.split(":")[0] for _, reason in self.skipped))


class CrystalEncoder:
    """Encode pymatgen Structures as DiffCrysGen matrices and decode matrices back (see module docstring)."""

    ORIGINS = ("cell", "site")
    LATTICES = ("abc", "log-cos")

    def __init__(self, n_elements: int = 3, max_sites: int = 20, origin: str = "cell", lattice: str = "abc"):
        if n_elements < 1 or max_sites < 1:
            raise ValueError(f"n_elements and max_sites must be >= 1, got {n_elements}, {max_sites}")
        if origin not in self.ORIGINS:
            raise ValueError(f"origin must be one of {self.ORIGINS}, got {origin!r}")
        if lattice not in self.LATTICES:
            raise ValueError(f"lattice must be one of {self.LATTICES}, got {lattice!r}")
        self.origin = origin
        self.lattice = lattice
        self.n_elements = int(n_elements)
        self.max_sites = int(max_sites)
        self.width = max(self.n_elements, 3)
        self.rows = MAX_Z + 2 + 2 * self.max_sites
        # row offsets of the four blocks
        self.lattice_row = MAX_Z
        self.coord_row = MAX_Z + 2
        self.occ_row = MAX_Z + 2 + self.max_sites

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.width)

    def padding_mask(self) -> np.ndarray:
        """Boolean (rows, width) mask of entries that carry no information in this layout."""
        mask = np.zeros(self.shape, dtype=bool)
        mask[:MAX_Z, self.n_elements:] = True
        mask[self.occ_row:, self.n_elements:] = True
        mask[self.lattice_row:self.occ_row, 3:] = True
        return mask

    # --- encoding -------------------------------------------------------------------------------------------

    def check(self, structure) -> str | None:
        """Why ``structure`` does not fit this layout, or None when it does."""
        if not structure.is_ordered:
            return "disordered: partial occupancies are not representable"
        if len(structure) == 0:
            return "empty: structure has no sites"
        if len(structure) > self.max_sites:
            return f"too many sites: {len(structure)} > max_sites={self.max_sites}"
        numbers = {site.specie.Z for site in structure}
        if max(numbers) > MAX_Z:
            return f"Z > {MAX_Z}: element {max(numbers)} not representable"
        if len(numbers) > self.n_elements:
            return f"too many elements: {len(numbers)} > n_elements={self.n_elements}"
        return None

    def encode(self, structure) -> np.ndarray:
        """The (rows, width) float64 matrix of ``structure``; ValueError when it does not fit."""
        problem = self.check(structure)
        if problem is not None:
            raise ValueError(f"cannot encode {structure.composition.reduced_formula}: {problem}")
        numbers = np.array([site.specie.Z for site in structure], dtype=np.int64)
        elements = np.unique(numbers)  # ascending Z = canonical slot order
        slots = np.searchsorted(elements, numbers)
        frac = _wrap(np.asarray(structure.frac_coords, dtype=np.float64))
        order = _canonical_order(frac, slots)
        if self.origin == "site":
            counts = np.bincount(slots)
            anchor = order[np.flatnonzero(slots[order] == np.argmin(counts))[0]]
            frac = _wrap(frac - frac[anchor])
            order = _canonical_order(frac, slots)
        n = len(numbers)

        matrix = np.zeros(self.shape, dtype=np.float64)
        matrix[elements - 1, np.arange(len(elements))] = 1.0
        lengths, angles = np.asarray(structure.lattice.abc), np.asarray(structure.lattice.angles)
        if self.lattice == "log-cos":
            lengths, angles = np.log(lengths), np.cos(np.radians(angles))
        matrix[self.lattice_row, :3] = lengths
        matrix[self.lattice_row + 1, :3] = angles
        matrix[self.coord_row:self.coord_row + n, :3] = frac[order]
        matrix[self.occ_row + np.arange(n), slots[order]] = 1.0
        return matrix

    def encode_many(self, structures: Iterable[Any]) -> EncodedSet:
        """Encode every structure that fits; the others are listed in ``skipped`` with the reason."""
        kept, indices, skipped = [], [], []
        for index, structure in enumerate(structures):
            problem = self.check(structure)
            if problem is not None:
                skipped.append((index, problem))
                continue
            kept.append(self.encode(structure))
            indices.append(index)
        matrices = np.stack(kept) if kept else np.zeros((0, *self.shape))
        return EncodedSet(matrices, indices, skipped)

    def permute_sites(self, matrices, generator=None):
        """A torch batch ``(B, rows, width)`` with each matrix's sites (its C and O rows together) in a random
        order: the same crystals, written in another of the ``max_sites!`` orders the decoder reads alike
        (training augmentation). Noise comes from ``generator``."""
        import torch

        batch, sites = matrices.shape[0], self.max_sites
        order = torch.argsort(torch.rand(batch, sites, generator=generator, device=matrices.device), dim=1)
        out = matrices.clone()
        for start in (self.coord_row, self.occ_row):
            block = matrices[:, start:start + sites]
            out[:, start:start + sites] = torch.gather(block, 1, order[:, :, None].expand_as(block))
        return out

    # --- decoding -------------------------------------------------------------------------------------------

    def decode(self, matrix) -> Any:
        """The P1 Structure of one unscaled matrix; ValueError when it describes no valid crystal."""
        return self._build(*self._read(_as_numpy(matrix)[None]), index=0)

    def decode_many(self, matrices, errors: str = "none") -> list:
        """Decode a (B, rows, width) batch. ``errors="none"`` gives None for undecodable matrices, "raise" raises."""
        if errors not in ("none", "raise"):
            raise ValueError(f"errors must be 'none' or 'raise', got {errors!r}")
        parts = self._read(_as_numpy(matrices))
        out = []
        for index in range(parts[0].shape[0]):
            try:
                out.append(self._build(*parts, index=index))
            except ValueError:
                if errors == "raise":
                    raise
                out.append(None)
        return out

    def _read(self, batch: np.ndarray):
        """Vectorised interpretation of a batch: Z per slot, lattice, coords, site slot, occupied flags."""
        if batch.ndim != 3 or batch.shape[1:] != self.shape:
            raise ValueError(f"expected matrices of shape (B, {self.rows}, {self.width}), got {batch.shape}")
        slot_z = batch[:, :MAX_Z, :self.n_elements].argmax(axis=1) + 1  # (B, n_elements)
        params = batch[:, self.lattice_row:self.lattice_row + 2, :3].reshape(-1, 6)
        if self.lattice == "log-cos":  # back to (a, b, c, alpha, beta, gamma); |cos| > 1 is clipped to 0/180 deg
            with np.errstate(over="ignore", invalid="ignore"):
                params = np.concatenate([np.exp(params[:, :3]),
                                         np.degrees(np.arccos(np.clip(params[:, 3:], -1.0, 1.0)))], axis=1)
        coords = _wrap(batch[:, self.coord_row:self.occ_row, :3])
        occupancy = batch[:, self.occ_row:, :self.n_elements]
        site_slot = occupancy.argmax(axis=2)
        occupied = occupancy.max(axis=2) > OCCUPANCY_THRESHOLD
        return slot_z, params, coords, site_slot, occupied

    def _build(self, slot_z, params, coords, site_slot, occupied, index: int):
        from pymatgen.core import Lattice, Structure

        keep = occupied[index]
        if not keep.any():
            raise ValueError(f"matrix {index}: no occupied site (all O rows <= {OCCUPANCY_THRESHOLD})")
        a, b, c, alpha, beta, gamma = params[index]
        if min(a, b, c) <= 0 or not np.all(np.isfinite(params[index])):
            raise ValueError(f"matrix {index}: non-positive or non-finite lattice lengths {params[index][:3]}")
        lattice = Lattice.from_parameters(a, b, c, alpha, beta, gamma)
        if not np.isfinite(lattice.volume) or lattice.volume <= 0:
            raise ValueError(f"matrix {index}: angles {params[index][3:]} give no valid cell")
        # spacing of the (100), (010), (001) planes: a flat cell would be written as a CIF nobody can read back
        thickness = 1.0 / np.asarray(lattice.reciprocal_lattice_crystallographic.abc)
        if thickness.min() < MIN_CELL_THICKNESS:
            raise ValueError(f"matrix {index}: a flat cell (plane spacings {np.round(thickness, 4).tolist()} A, "
                             f"below {MIN_CELL_THICKNESS} A)")
        species = slot_z[index][site_slot[index][keep]].tolist()
        return Structure(lattice, species, coords[index][keep], coords_are_cartesian=False)


class MatrixScaler:
    """Per-row min-max scaling to [-1, 1], fitted on training matrices only.

    A row's min and max are taken over all training matrices and the row's non-padding columns. A row with
    no spread (e.g. an element never seen in training) uses ``[min, min + 1]`` so a one-hot 0 still maps to -1.
    Padding entries (``padding_mask``) are mapped to -1 and back to 0.
    """

    def __init__(self, row_min: Sequence[float] | None = None, row_max: Sequence[float] | None = None,
                 padding_mask: np.ndarray | None = None):
        self.row_min = None if row_min is None else np.asarray(row_min, dtype=np.float64)
        self.row_max = None if row_max is None else np.asarray(row_max, dtype=np.float64)
        self.padding_mask = None if padding_mask is None else np.asarray(padding_mask, dtype=bool)

    @property
    def fitted(self) -> bool:
        return self.row_min is not None

    def fit(self, matrices, padding_mask: np.ndarray | None = None) -> "MatrixScaler":
        data = _as_numpy(matrices).astype(np.float64)
        if data.ndim != 3 or data.shape[0] == 0:
            raise ValueError(f"fit expects a non-empty (B, rows, width) batch, got shape {data.shape}")
        mask = np.zeros(data.shape[1:], dtype=bool) if padding_mask is None else np.asarray(padding_mask, bool)
        if mask.shape != data.shape[1:]:
            raise ValueError(f"padding_mask shape {mask.shape} does not match matrices {data.shape[1:]}")
        valid = np.broadcast_to(~mask, data.shape)
        row_min = np.where(valid, data, np.inf).min(axis=(0, 2))
        row_max = np.where(valid, data, -np.inf).max(axis=(0, 2))
        degenerate = ~(row_max - row_min > 1e-12)
        row_min = np.where(np.isfinite(row_min), row_min, 0.0)
        row_max = np.where(degenerate, row_min + 1.0, row_max)
        self.row_min, self.row_max, self.padding_mask = row_min, row_max, mask
        return self

    def transform(self, matrices):
        """Raw -> [-1, 1]; works on numpy arrays and torch tensors (dtype and device preserved)."""
        low, span, mask = self._params(matrices)
        out = 2.0 * (matrices - low) / span - 1.0
        return _masked_fill(out, mask, -1.0)

    def inverse_transform(self, matrices):
        """[-1, 1] -> raw units; padding entries become 0."""
        low, span, mask = self._params(matrices)
        out = (matrices + 1.0) * 0.5 * span + low
        return _masked_fill(out, mask, 0.0)

    def state_dict(self) -> dict:
        self._require_fitted()
        return {"row_min": self.row_min.tolist(), "row_max": self.row_max.tolist(),
                "padding_mask": self.padding_mask.astype(int).tolist()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "MatrixScaler":
        missing = {"row_min", "row_max", "padding_mask"} - set(state)
        if missing:
            raise ValueError(f"MatrixScaler state is missing {sorted(missing)}")
        return cls(state["row_min"], state["row_max"], np.asarray(state["padding_mask"], dtype=bool))

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise ValueError("MatrixScaler is not fitted: call fit(training_matrices) or from_state_dict first")

    def _params(self, matrices):
        self._require_fitted()
        if tuple(matrices.shape[-2:]) != self.padding_mask.shape:
            raise ValueError(f"matrix shape {tuple(matrices.shape[-2:])} does not match the scaler's "
                             f"{self.padding_mask.shape}")
        low, span, mask = self.row_min[:, None], (self.row_max - self.row_min)[:, None], self.padding_mask
        if _is_tensor(matrices):
            import torch

            def conv(array, dtype):
                return torch.as_tensor(array, dtype=dtype, device=matrices.device)

            return conv(low, matrices.dtype), conv(span, matrices.dtype), conv(mask, torch.bool)
        return low, span, mask


def structure_to_cif(structure) -> str:
    """CIF text of ``structure`` (P1, as written by pymatgen's CifWriter)."""
    from pymatgen.io.cif import CifWriter

    return str(CifWriter(structure))


def write_cifs(structures: Iterable[Any], directory: str | os.PathLike, prefix: str = "sample") -> list[Path]:
    """Write each non-None structure to ``directory/<prefix>_<index:05d>.cif`` atomically; returns the paths."""
    directory = Path(directory)
    paths = []
    for index, structure in enumerate(structures):
        if structure is None:
            continue
        paths.append(atomic_write_text(directory / f"{prefix}_{index:05d}.cif", structure_to_cif(structure)))
    return paths


# --- helpers ------------------------------------------------------------------------------------------------


def _canonical_order(frac: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Site order by element slot, then wrapped x, y, z (rounded so float noise cannot swap sites)."""
    rounded = np.round(frac, _COORD_DECIMALS)
    return np.lexsort((rounded[:, 2], rounded[:, 1], rounded[:, 0], slots))


def _wrap(frac: np.ndarray) -> np.ndarray:
    """Fractional coordinates in [0, 1); values that round up to 1.0 (e.g. -1e-17) become 0."""
    wrapped = frac - np.floor(frac)
    return np.where(wrapped >= 1.0, 0.0, wrapped)


def _is_tensor(obj) -> bool:
    return type(obj).__module__.startswith("torch")


def _as_numpy(matrices) -> np.ndarray:
    if _is_tensor(matrices):
        return matrices.detach().cpu().double().numpy()
    return np.asarray(matrices, dtype=np.float64)


def _masked_fill(values, mask, fill: float):
    if _is_tensor(values):
        return values.masked_fill(mask, fill)
    return np.where(mask, fill, values)
