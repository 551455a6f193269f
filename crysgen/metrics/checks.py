"""Per-crystal quantities of the CDVAE protocol: structural and compositional (SMACT, smact14) validity, the
CrystalNN "ops" site fingerprints and magpie composition fingerprint, and the spglib space group.

Each function takes one pymatgen ``Structure`` (``None`` = failed to decode) and is what ``CrystalBatch`` maps over a
set of crystals (module-level, so that a process pool can pickle it).
"""

from __future__ import annotations

import itertools
import threading
import warnings
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np

from shared.evaluation import require_package

__all__ = [
    "OXIDATION_STATES_SET",
    "SYMPREC",
    "composition_validity",
    "site_fingerprints",
    "structure_validity",
]

OXIDATION_STATES_SET = "smact14"
SYMPREC = 0.1


# --- validity -----------------------------------------------------------------------------------------------


def structure_validity(structure, cutoff: float = 0.5, min_volume: float = 0.1) -> bool:
    """CDVAE: no two sites closer than ``cutoff`` A (periodic minimum image) and volume >= ``min_volume``."""
    if structure is None:
        return False
    distances = np.array(structure.distance_matrix, dtype=float)
    np.fill_diagonal(distances, np.inf)
    return bool(structure.volume >= min_volume and distances.min() >= cutoff)


def composition_validity(composition) -> bool:
    """CDVAE's ``smact_validity`` with the smact14 oxidation states (``composition``: pymatgen Composition)."""
    amounts = composition.get_el_amt_dict()
    symbols = tuple(sorted(amounts, key=lambda s: _atomic_number(s)))
    counts = np.array([round(amounts[s]) for s in symbols], dtype=np.int64)
    counts = counts // np.gcd.reduce(counts)
    return _smact_valid(symbols, tuple(int(c) for c in counts))


@lru_cache(maxsize=100_000)
def _smact_valid(symbols: tuple[str, ...], counts: tuple[int, ...]) -> bool:
    smact = require_package("smact", extra="chem")
    from smact.screening import pauling_test

    if len(symbols) == 1:
        return True
    if all(symbol in smact.metals for symbol in symbols):  # alloys count as valid
        return True
    elements = [smact.Element(symbol) for symbol in symbols]
    ox_sets = [getattr(e, f"oxidation_states_{OXIDATION_STATES_SET}") or [] for e in elements]
    electronegativities = [e.pauling_eneg for e in elements]
    stoichs = [(c,) for c in counts]
    for ox_states in itertools.product(*ox_sets):
        if not smact.neutral_ratios(ox_states, stoichs=stoichs, threshold=max(counts)):
            continue
        try:
            if pauling_test(ox_states, electronegativities):
                return True
        except TypeError:  # no electronegativity data: CDVAE counts the test as passed
            return True
    return False


def _atomic_number(symbol: str) -> int:
    from pymatgen.core import Element

    return Element(symbol).Z


def _checks(structure) -> tuple[bool, bool]:
    if structure is None:
        return False, False
    return structure_validity(structure), composition_validity(structure.composition)


# --- fingerprints -------------------------------------------------------------------------------------------

_FEATURIZERS: dict[str, Any] = {}


def _featurizer(kind: str):
    if kind not in _FEATURIZERS:
        require_package("matminer", extra="chem")
        if kind == "structure":
            from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

            _FEATURIZERS[kind] = CrystalNNFingerprint.from_preset("ops")
        else:
            from matminer.featurizers.composition.composite import ElementProperty

            _FEATURIZERS[kind] = ElementProperty.from_preset("magpie", impute_nan=False)
    return _FEATURIZERS[kind]


def _fingerprints(structure) -> tuple[list[float] | None, list[float] | None]:
    """(mean CrystalNN ops site fingerprint, magpie composition fingerprint); (None, None) on failure."""
    if structure is None:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CrystalNN warns about missing oxidation states on every site
        try:
            site_fps = site_fingerprints(structure)
            comp_fp = _featurizer("composition").featurize(structure.composition)
        except Exception:  # noqa: BLE001 - CDVAE: a crystal whose fingerprint fails is treated as invalid
            return None, None
    return np.mean(site_fps, axis=0).tolist(), list(map(float, comp_fp))


_VORONOI_PATCH_LOCK = threading.Lock()


def site_fingerprints(structure, tessellate_once: bool = True) -> list[list[float]]:
    """matminer's CrystalNN "ops" fingerprint of every site of ``structure``.

    CrystalNN asks pymatgen's VoronoiNN for one site at a time, and each call tessellates that site's
    neighbourhood anew (a third of the fingerprint's cost). With ``tessellate_once`` the structure is tessellated
    once for all its sites (``VoronoiNN.get_all_nn_info``), which gives the same neighbours and the same
    fingerprints to the last bits (P1 cells: identical; symmetric cells: ~1e-17 apart, from the order of float
    operations; tests/crysgen/test_evaluate.py) in about 15 % less time. That path needs every site inside the unit cell
    (the all-sites tessellation wraps the centres; matminer's vectors start at the unwrapped site), so other
    structures, one-site cells and any failure of the path are done site by site, as matminer does.
    """
    featurizer = _featurizer("structure")
    sites = range(len(structure))
    frac = np.asarray(structure.frac_coords)
    if tessellate_once and len(structure) > 1 and bool(np.all((frac >= 0.0) & (frac < 1.0))):
        try:
            with _voronoi_once_for(structure):
                return [featurizer.featurize(structure, i) for i in sites]
        except Exception:  # noqa: BLE001 - redone site by site below, where a real failure raises again
            pass
    return [featurizer.featurize(structure, i) for i in sites]


@contextmanager
def _voronoi_once_for(structure):
    """While active, pymatgen's VoronoiNN answers ``get_nn_info(structure, n)`` for this one structure from a
    single all-sites tessellation (per setting of weight, cutoff, targets); any other call is answered as usual.
    CrystalNN builds its VoronoiNN inside ``get_nn_data``, so the class is swapped in the module it looks it up
    in (under a lock: threads of one process would otherwise restore each other's swap)."""
    from pymatgen.core import local_env

    cells: dict[tuple, list] = {}
    with _VORONOI_PATCH_LOCK:  # taken before the class is read: a waiting thread must not take a swap for it
        original = local_env.VoronoiNN

        class _TessellateOnce(original):
            def get_nn_info(self, s, n):
                if s is not structure:
                    return super().get_nn_info(s, n)
                key = (self.weight, self.cutoff, self.tol, self.extra_nn_info, self.compute_adj_neighbors,
                       None if self.targets is None else tuple(map(str, self.targets)))
                if key not in cells:
                    cells[key] = super().get_all_nn_info(s)
                return [dict(entry) for entry in cells[key][n]]  # CrystalNN rescales the weights in place

        local_env.VoronoiNN = _TessellateOnce
        try:
            yield
        finally:
            local_env.VoronoiNN = original


# --- space groups -------------------------------------------------------------------------------------------


def _space_group(structure) -> int:
    """International space-group number from spglib at symprec 0.1; 0 when spglib finds none."""
    spglib = require_package("spglib", extra="chem")
    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # spglib 2.x: notice about its error handling
        data = spglib.get_symmetry_dataset(cell, symprec=SYMPREC)
    return 0 if data is None else int(data.number)


def _space_group_or_none(structure) -> int:
    return -1 if structure is None else _space_group(structure)
