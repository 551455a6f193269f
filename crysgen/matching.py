"""Novelty and uniqueness with pymatgen's ``StructureMatcher``, made to scale by exact pre-filters.

The answers are those of the matcher itself: ``novel_flags(g, t, m)[i]`` is ``not any(m.fit(g[i], x) for x in
t)`` and ``group_structures(s, m)`` gives the groups of ``m.group_structures(s)``, but a pair reaches
``StructureMatcher.fit`` only when it passes tests that ``fit`` would fail anyway (checked in
``tests/crysgen/test_matching.py`` against the brute-force answers):

1. **Reduction once per structure.** ``fit`` reduces both structures (Niggli, then primitive cell) on every
   call; its LRU cache holds 300 structures, so a 2,000-crystal training set is reduced again for every
   generated crystal (most of the ~20-50 ms a pair costs). Here each structure is reduced once, exactly as the
   matcher does it (``_process_species`` then ``_get_reduced_structure``, the path ``group_structures`` takes),
   and pairs are fitted with ``skip_structure_reduction=True``.
2. **Composition.** ``fit`` returns False unless ``comparator.get_hash`` of the two compositions are equal
   (not with ``allow_subset``); structures are bucketed by Python's ``hash`` of that value (equal values have
   equal hashes) and compared with ``==`` as ``fit`` does.
3. **Site count.** Without ``attempt_supercell``/``allow_subset`` the matcher maps sites one to one: reduced
   cells with different numbers of sites never match (``_strict_match`` returns None).
4. **Lattice lengths.** ``fit(s1, s2)`` needs three independent lattice vectors of ``s1`` (its cell rescaled to
   the volume of ``s2`` when ``scale=True``) whose lengths lie within a factor ``1 + ltol`` of the lengths of
   ``s2``'s reduced cell (``Lattice.find_all_mappings``). So the k-th successive minimum of ``s1``'s lattice
   (computed exactly by enumerating lattice points) is below ``(1 + ltol)`` times the k-th smallest cell length
   of ``s2``, all lengths divided by the cube root of the cell volume when ``scale=True``.
5. **Volume per atom (``scale=False`` only).** With ``scale=True`` (pymatgen's default, used by the CDVAE-style
   metrics here) the matcher rescales both cells to one volume, so volume and density are *no* criterion.
   With ``scale=False`` the mapped cell of ``s1`` has ``s1``'s volume, lengths within ``1 + ltol`` and angles
   within ``angle_tol`` of ``s2``'s cell: ``V1`` lies in ``[prod(L) / (1 + ltol)^3 sqrt(Gmin),
   prod(L) (1 + ltol)^3 sqrt(Gmax)]`` where ``G = 1 - cos^2 a - cos^2 b - cos^2 c + 2 cos a cos b cos c`` is
   bounded exactly over the box of allowed angles (its minimum lies at a corner, being concave along each
   axis; its maximum at a corner or one of its stationary points).

Bounds carry a relative safety margin of 1e-6 for rounding, so no pair that the matcher accepts is filtered
out. Structure fingerprints (CrystalNN) are not used: no distance between them bounds what the matcher decides.
Matching runs through an optional ``Executor`` (one task per bucket of generated crystals) with a progress bar.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["MatchFilter", "ReducedStructure", "group_structures", "novel_flags", "reduce_structures"]

_MARGIN = 1e-6  # relative slack on every bound (rounding); the filters stay necessary conditions


@dataclass
class ReducedStructure:
    """A structure as the matcher compares it, with what the pre-filters need."""

    structure: Any  # species processed and reduced (Niggli + primitive) exactly as StructureMatcher does
    raw_hash: Any  # comparator hash of the processed, unreduced composition (what fit(a, b) compares)
    reduced_hash: Any  # the same of the reduced structure (what fit(..., skip_structure_reduction=True) compares)
    n_sites: int
    minima: np.ndarray  # successive minima of the reduced lattice (A)
    lengths: np.ndarray  # the reduced cell's lengths, sorted (A)
    volume: float
    gram_bounds: tuple[float, float]  # (Gmin, Gmax) over the reduced cell's angles +- angle_tol

    @property
    def bucket(self) -> int:
        return _hash_or_zero(self.raw_hash)


class MatchFilter:
    """Which pre-filters are exact for ``matcher`` and the pair test they give (see the module docstring)."""

    def __init__(self, matcher):
        self.matcher = matcher
        subset, supercell = bool(matcher._subset), bool(matcher._supercell)
        self.composition = not subset
        self.site_count = not subset and not supercell
        self.lattice = self.site_count
        self.volume = self.site_count and not matcher._scale
        self.ltol = float(matcher.ltol)
        self.angle_tol = float(matcher.angle_tol)

    def describe(self) -> dict[str, Any]:
        return {"composition": self.composition, "site_count": self.site_count, "lattice_lengths": self.lattice,
                "volume": self.volume, "reduction_once": True, "margin": _MARGIN}

    def reduce(self, structure) -> ReducedStructure:
        matcher = self.matcher
        processed = matcher._process_species([structure])[0]
        reduced = matcher._get_reduced_structure(processed, matcher._primitive_cell, niggli=True)
        lattice = reduced.lattice
        return ReducedStructure(
            structure=reduced, raw_hash=matcher._comparator.get_hash(processed.composition),
            reduced_hash=matcher._comparator.get_hash(reduced.composition), n_sites=len(reduced),
            minima=successive_minima(lattice.matrix), lengths=np.sort(np.asarray(lattice.abc, dtype=float)),
            volume=float(lattice.volume), gram_bounds=gram_factor_bounds(lattice.angles, self.angle_tol))

    def key(self, item: ReducedStructure) -> tuple[int, int]:
        """Items with different keys never match (composition hash bucket, reduced site count)."""
        return (item.bucket if self.composition else 0, item.n_sites if self.site_count else 0)

    def candidates(self, first: ReducedStructure, others: Sequence[ReducedStructure],
                   arrays: dict[str, np.ndarray] | None = None, reduced: bool = False) -> list[int]:
        """Indices of ``others`` that ``fit(first, other)`` could accept; ``reduced``: compare the hashes of the
        reduced compositions (as ``group_structures`` does) instead of the unreduced ones."""
        if not others:
            return []
        arrays = arrays if arrays is not None else self.arrays(others)
        keep = np.ones(len(others), dtype=bool)
        if self.site_count:
            keep &= arrays["n_sites"] == first.n_sites
        if self.lattice:
            mine = first.minima / (first.volume ** (1 / 3) if self.matcher._scale else 1.0)
            theirs = arrays["lengths_scaled"] if self.matcher._scale else arrays["lengths"]
            keep &= np.all(mine[None, :] <= (1 + self.ltol) * theirs * (1 + _MARGIN), axis=1)
        if self.volume:
            keep &= (first.volume >= arrays["volume_low"] * (1 - _MARGIN)) & \
                (first.volume <= arrays["volume_high"] * (1 + _MARGIN))
        indices = np.flatnonzero(keep).tolist()
        if self.composition:
            mine_hash = first.reduced_hash if reduced else first.raw_hash
            indices = [i for i in indices
                       if (others[i].reduced_hash if reduced else others[i].raw_hash) == mine_hash]
        return indices

    def arrays(self, items: Sequence[ReducedStructure]) -> dict[str, np.ndarray]:
        """Per-item quantities of ``items`` as arrays (the targets of ``candidates``)."""
        lengths = np.array([item.lengths for item in items], dtype=float).reshape(-1, 3)
        volume = np.array([item.volume for item in items], dtype=float)
        prod = lengths.prod(axis=1)
        grow = (1 + self.ltol) ** 3
        gram = np.array([item.gram_bounds for item in items], dtype=float).reshape(-1, 2)
        return {
            "n_sites": np.array([item.n_sites for item in items], dtype=np.int64),
            "lengths": lengths, "lengths_scaled": lengths / np.cbrt(volume)[:, None],
            "volume_low": prod / grow * np.sqrt(np.clip(gram[:, 0], 0.0, None)),
            "volume_high": prod * grow * np.sqrt(np.clip(gram[:, 1], 0.0, 1.0)),
        }


def successive_minima(matrix: np.ndarray) -> np.ndarray:
    """The three successive minima of the lattice with row vectors ``matrix`` (A): lattice points within the
    longest basis vector are enumerated, then the shortest vector independent of those chosen is taken three
    times (linear independence is a matroid, so greedy gives the minima; it is decided on integer vectors)."""
    from pymatgen.core import Lattice

    lattice = Lattice(matrix)
    radius = max(lattice.abc) * (1 + 1e-9)
    frac, dist, _, _ = lattice.get_points_in_sphere([[0, 0, 0]], [0, 0, 0], radius, zip_results=False)
    images = np.rint(np.asarray(frac)).astype(np.int64)
    dist = np.asarray(dist, dtype=float)
    order = np.argsort(dist, kind="stable")
    chosen: list[np.ndarray] = []
    minima: list[float] = []
    for index in order:
        vector = images[index]
        if not vector.any():
            continue
        if len(chosen) == 1 and not np.cross(chosen[0], vector).any():
            continue
        if len(chosen) == 2 and int(np.dot(np.cross(chosen[0], chosen[1]), vector)) == 0:
            continue
        chosen.append(vector)
        minima.append(float(dist[index]))
        if len(chosen) == 3:
            return np.array(minima)
    raise ValueError("lattice points within the longest cell vector do not span three dimensions")


def gram_factor_bounds(angles: Sequence[float], angle_tol: float) -> tuple[float, float]:
    """Exact (min, max) of ``G = 1 - x^2 - y^2 - z^2 + 2xyz`` for ``x, y, z`` the cosines of angles within
    ``angle_tol`` degrees of ``angles`` (clipped to [0, 180])."""
    boxes = []
    for angle in angles:
        low, high = max(0.0, angle - angle_tol), min(180.0, angle + angle_tol)
        boxes.append((math.cos(math.radians(high)), math.cos(math.radians(low))))

    def g(x: float, y: float, z: float) -> float:
        return 1 - x * x - y * y - z * z + 2 * x * y * z

    corners = [g(*c) for c in itertools.product(*boxes)]
    candidates = list(corners)
    if any(low <= -1 + 1e-12 or high >= 1 - 1e-12 for low, high in boxes):
        return min(corners), 1.0  # a cosine of +-1 allowed: degenerate stationary sets; G <= 1 always
    for free in range(3):  # one free variable, the others at bounds: dG/dx = 0 <=> x = y z
        fixed = [boxes[i] for i in range(3) if i != free]
        for a, b in itertools.product(*fixed):
            value = a * b
            if boxes[free][0] <= value <= boxes[free][1]:
                point = [a, b]
                point.insert(free, value)
                candidates.append(g(*point))
    for fixed in range(3):  # two free: x = y z and y = x z force x = y = 0 (|z| < 1)
        free = [i for i in range(3) if i != fixed]
        if all(boxes[i][0] <= 0.0 <= boxes[i][1] for i in free):
            for value in boxes[fixed]:
                point = [0.0, 0.0]
                point.insert(fixed, value)
                candidates.append(g(*point))
    if all(low <= 0.0 <= high for low, high in boxes):
        candidates.append(1.0)  # all free: the only stationary point with |cos| < 1 is the origin
    return min(corners), min(max(candidates), 1.0)


def _hash_or_zero(value: Any) -> int:
    try:
        return hash(value)
    except TypeError:  # an unhashable comparator hash: one bucket, the exact comparison decides
        return 0


def _reduce_chunk(args) -> list[ReducedStructure]:
    matcher, structures = args
    import warnings

    flt = MatchFilter(matcher)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [flt.reduce(s) for s in structures]


def reduce_structures(structures: Sequence[Any], matcher, executor: Executor | None = None,
                      chunk_size: int = 32, progress: bool = False, desc: str = "reducing") -> list:
    """``MatchFilter(matcher).reduce`` of every structure, in order (through ``executor`` in chunks)."""
    chunks = [(matcher, list(structures[i:i + chunk_size])) for i in range(0, len(structures), chunk_size)]
    results = _run(_reduce_chunk, chunks, executor, progress, desc, [len(c[1]) for c in chunks])
    return [item for chunk in results for item in chunk]


def _novel_task(args) -> tuple[list[bool], int, int]:
    """(novel flag per generated item, candidate pairs after the filters, fit calls made)."""
    matcher, generated, references = args
    import warnings

    flt = MatchFilter(matcher)
    arrays = flt.arrays(references) if references else None
    out, n_candidates, n_fits = [], 0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for item in generated:
            candidates = flt.candidates(item, references, arrays) if references else []
            n_candidates += len(candidates)
            found = False
            for i in candidates:
                n_fits += 1
                if matcher.fit(item.structure, references[i].structure, skip_structure_reduction=True):
                    found = True
                    break
            out.append(not found)
    return out, n_candidates, n_fits


def novel_flags(generated: Sequence[Any], train: Sequence[Any], matcher=None, *, executor: Executor | None = None,
                progress: bool = False, chunk_size: int = 8, stats: dict | None = None) -> list[bool]:
    """For each generated structure, whether it matches no training structure (``matcher.fit(g, t)`` False
    for every ``t``); ``generated``/``train`` may be structures or ``ReducedStructure``s. ``stats`` (a dict)
    receives the number of pairs, of pairs with the same composition/site-count key, of pairs passing every
    filter, of fit calls made (stopping at a crystal's first match), the seconds spent reducing and matching,
    and which filters were exact for this matcher."""
    import time

    matcher = matcher or _default_matcher()
    flt = MatchFilter(matcher)
    began = time.perf_counter()
    gen = _reduced(generated, matcher, executor, progress, "reducing generated")
    ref = _reduced(train, matcher, executor, progress, "reducing training set")
    reduced_at = time.perf_counter()
    by_key: dict[tuple, list[ReducedStructure]] = defaultdict(list)
    for item in ref:
        by_key[flt.key(item)].append(item)
    tasks, positions = [], []
    groups: dict[tuple, list[int]] = defaultdict(list)
    for index, item in enumerate(gen):
        groups[flt.key(item)].append(index)
    for key, indices in groups.items():
        for start in range(0, len(indices), chunk_size):
            part = indices[start:start + chunk_size]
            tasks.append((matcher, [gen[i] for i in part], by_key.get(key, [])))
            positions.append(part)
    results = _run(_novel_task, tasks, executor, progress, "novelty", [len(p) for p in positions])
    flags = [True] * len(gen)
    for part, (values, _, _) in zip(positions, results):
        for index, value in zip(part, values):
            flags[index] = value
    if stats is not None:
        stats.update(pairs=len(gen) * len(ref), pairs_same_key=sum(len(t[1]) * len(t[2]) for t in tasks),
                     pairs_after_filters=sum(r[1] for r in results), fit_calls=sum(r[2] for r in results),
                     reduce_seconds=round(reduced_at - began, 3),
                     match_seconds=round(time.perf_counter() - reduced_at, 3), filters=flt.describe())
    return flags


def group_structures(structures: Sequence[Any], matcher=None, *, symmetric: bool = False,
                     executor: Executor | None = None, progress: bool = False) -> list[list[int]]:
    """Indices of ``structures`` grouped as ``matcher.group_structures(structures, symmetric=symmetric)`` groups
    them (same greedy order within each composition; pairs that cannot match are not fitted)."""
    matcher = matcher or _default_matcher()
    if matcher._subset:
        raise ValueError("allow_subset cannot be used with group_structures")
    flt = MatchFilter(matcher)
    items = _reduced(structures, matcher, executor, progress, "reducing")
    buckets: dict[tuple, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        key = (_hash_or_zero(item.reduced_hash), item.n_sites if flt.site_count else 0)
        buckets[key].append(index)
    groups = []
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for indices in buckets.values():
            unmatched = list(indices)
            while unmatched:
                first, rest = unmatched[0], unmatched[1:]
                others = [items[i] for i in rest]
                matched = {rest[j] for j in flt.candidates(items[first], others, reduced=True)
                           if matcher.fit(items[first].structure, others[j].structure, symmetric=symmetric,
                                          skip_structure_reduction=True)}
                groups.append([first, *(i for i in rest if i in matched)])
                unmatched = [i for i in rest if i not in matched]
    return groups


def _reduced(structures, matcher, executor, progress, desc) -> list[ReducedStructure]:
    structures = list(structures)
    if all(isinstance(s, ReducedStructure) for s in structures):
        return structures
    return reduce_structures(structures, matcher, executor, progress=progress and len(structures) > 0, desc=desc)


def _default_matcher():
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher()


def _run(fn, tasks: list, executor: Executor | None, progress: bool, desc: str, weights: Iterable[int]) -> list:
    """``[fn(t) for t in tasks]`` (through ``executor`` when given) with a tqdm bar counting ``weights``."""
    weights = list(weights)
    bar = None
    if progress and tasks:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(weights), desc=desc, unit="crystal")
    results = []
    mapped = map(fn, tasks) if executor is None else executor.map(fn, tasks)
    try:
        for weight, value in zip(weights, mapped):
            results.append(value)
            if bar is not None:
                bar.update(weight)
    finally:
        if bar is not None:
            bar.close()
    return results
