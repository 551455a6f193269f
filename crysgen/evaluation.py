"""CDVAE's generation metrics for crystals, re-implemented (definitions from CDVAE ``scripts/eval_utils.py`` and
``scripts/compute_metrics.py``), each exposed as a ``shared.evaluation`` Evaluator.

* Structural validity: every pairwise (minimum-image) distance >= 0.5 A and cell volume >= 0.1 A^3.
* Compositional validity: SMACT charge neutrality + Pauling electronegativity test over the **smact14**
  oxidation-state set (``Element.oxidation_states_smact14``, SMACT >= 3; the set CDVAE's SMACT 2.x used as its
  default). Single-element and all-metal compositions are valid. Counts are divided by their gcd first.
* COV-R / COV-P: structure fingerprint = mean over sites of matminer's CrystalNN "ops" site fingerprint;
  composition fingerprint = matminer magpie ElementProperty (no NaN imputation, as in CDVAE's matminer).
  Composition fingerprints are standardised with mean/std of the **reference set** (CDVAE hard-codes one
  set of constants, ``CompScalerMeans/Stds``, for every dataset; pass them as ``comp_scaler`` to match its
  published numbers exactly). NaN std -> 1, zero std -> 1, NaN after scaling -> 0, as its StandardScaler.
  Cut-offs: MP-20 0.4 / 10, perov-5 and carbon-24 0.2 / 4.
  Deviation, as the project requires: only *valid* generated crystals enter (CDVAE passes every crystal whose
  fingerprint could be built); precision still divides by the number of generated crystals, as CDVAE does.
* Wasserstein distances of density (g/cm^3) and number of distinct elements between up to ``n_samples``
  valid generated crystals (drawn with a seeded generator) and the whole reference set.
* Uniqueness (distinct StructureMatcher groups / valid), novelty (valid crystals matching no training
  crystal), computed by ``crysgen.matching``: the matcher's own answers, with exact pre-filters so that only
  pairs that could match are fitted.
* Space groups with spglib (symprec 0.1): P1 fraction of the valid generated crystals and of the reference set,
  number of distinct groups, total-variation distance between the two distributions; ``evaluate_crystals``
  reports both distributions (number, symbol, count, fraction) under ``space_groups``.

Decoding failures are passed as ``None`` and count as invalid. ``CrystalBatch`` computes each per-crystal
quantity once (optionally through an Executor, with a progress bar), so several evaluators share the work.
A dataset without COV cut-offs (not a CDVAE benchmark) gets no coverage unless ``cov_cutoffs`` are given; the
report says so under ``skipped``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
import warnings
from collections import Counter
from concurrent.futures import Executor
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from shared.evaluation import evaluator, require_package, run_evaluators
from shared.io import atomic_write_json, write_cache

__all__ = [
    "COV_CUTOFFS",
    "OXIDATION_STATES_SET",
    "CrystalBatch",
    "composition_validity",
    "comp_stats",
    "coverage",
    "evaluate_crystals",
    "make_evaluators",
    "space_group_distribution",
    "standardize",
    "structure_validity",
    "structures_digest",
]

OXIDATION_STATES_SET = "smact14"
COV_CUTOFFS = {"mp_20": (0.4, 10.0), "perov_5": (0.2, 4.0), "carbon_24": (0.2, 4.0)}
_DATASET_ALIASES = {"mp20": "mp_20", "perovskite": "perov_5", "perov": "perov_5", "carbon": "carbon_24"}
SYMPREC = 0.1


# --- per-crystal checks -------------------------------------------------------------------------------------


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


def _checks(structure) -> tuple[bool, bool]:
    if structure is None:
        return False, False
    return structure_validity(structure), composition_validity(structure.composition)


def _space_group(structure) -> int:
    """International space-group number from spglib at symprec 0.1; 0 when spglib finds none."""
    spglib = require_package("spglib", extra="chem")
    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # spglib 2.x: notice about its error handling
        data = spglib.get_symmetry_dataset(cell, symprec=SYMPREC)
    return 0 if data is None else int(data.number)


_DISK_CACHE_VERSION = "1"


def structures_digest(structures: Sequence[Any]) -> str:
    """Content hash of a list of structures (lattice, species, fractional coordinates rounded to 1e-6)."""
    import hashlib

    digest = hashlib.sha256()
    for s in structures:
        if s is None:
            digest.update(b"none;")
            continue
        digest.update(np.round(s.lattice.matrix, 6).astype(np.float64).tobytes())
        digest.update(np.asarray(s.atomic_numbers, dtype=np.int64).tobytes())
        digest.update(np.round(np.mod(s.frac_coords, 1.0), 6).astype(np.float64).tobytes())
        digest.update(b";")
    return digest.hexdigest()


def _library_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for package in ("pymatgen", "matminer", "smact", "spglib"):
        try:
            out.append(f"{package}={version(package)}")
        except PackageNotFoundError:
            out.append(f"{package}=none")
    return ",".join(out)


def _read_list(path: Path, length: int) -> list | None:
    """A cached JSON list of ``length`` values; None when missing, unreadable or truncated (then recomputed)."""
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return values if isinstance(values, list) and len(values) == length else None


class CrystalBatch:
    """A list of structures (None = failed to decode) with lazily computed, cached per-crystal quantities.

    With ``cache_dir``, each quantity (validity checks, fingerprints, space groups) is also stored on disk as
    JSON, keyed by the structures' content hash and the versions of the libraries that compute it, so a
    reference set (e.g. perov-5 test, ~7 CPU-minutes of CrystalNN fingerprints) is computed once. While a quantity
    is computed, every finished block of crystals (``block_size``; default about an eighth of the set, 8 to 128) is
    stored too, so an interrupted computation resumes from its last finished block.
    """

    block_size: int | None = None

    def __init__(self, structures: Iterable[Any], executor: Executor | None = None, chunksize: int = 16,
                 cache_dir: str | os.PathLike | None = None, progress: bool = False, label: str = ""):
        self.structures = list(structures)
        self.executor = executor
        self.chunksize = chunksize
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.progress = progress  # a tqdm bar (stderr) while a quantity is computed, not when read from the cache
        self.label = label
        self._cache: dict[str, Any] = {}
        self._digest: str | None = None

    def _disk_path(self, name: str) -> Path | None:
        if self.cache_dir is None:
            return None
        if self._digest is None:
            self._digest = structures_digest(self.structures)
        import hashlib

        key = hashlib.sha256(f"{_DISK_CACHE_VERSION}|{_library_versions()}|{self._digest}".encode()).hexdigest()
        return self.cache_dir / f"crystal-{name}-{key[:24]}.json"

    def __len__(self) -> int:
        return len(self.structures)

    @classmethod
    def of(cls, obj: Any) -> "CrystalBatch":
        return obj if isinstance(obj, CrystalBatch) else cls(obj)

    def _map(self, name: str, fn: Callable) -> list:
        if name in self._cache:
            return self._cache[name]
        path = self._disk_path(name)
        values = _read_list(path, len(self.structures)) if path is not None else None
        if values is not None:
            self._cache[name] = values
            return values
        n = len(self.structures)
        workers = getattr(self.executor, "_max_workers", 1) if self.executor is not None else 1
        block = self._block_size(n, workers) if path is not None else max(n, 1)
        chunksize = max(1, min(self.chunksize, block // (2 * workers)))
        starts = range(0, n, block)
        parts = [None if path is None else path.with_name(f"{path.stem}.part-{a}-{min(a + block, n)}.json")
                 for a in starts]
        blocks = [None if part is None else _read_list(part, min(block, n - a)) for a, part in zip(starts, parts)]
        bar = None
        if self.progress and n:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, initial=sum(len(b) for b in blocks if b is not None), unit="crystal",
                       desc=f"{self.label} {name}".strip())
        # one map over every missing block: the workers never wait for a block's slowest chunk before the next
        # block starts; each block is stored as soon as its last value is in
        missing = [k for k, b in enumerate(blocks) if b is None]
        todo = [s for k in missing for s in self.structures[starts[k]:starts[k] + block]]
        mapped = iter(map(fn, todo) if self.executor is None else self.executor.map(fn, todo, chunksize=chunksize))
        try:
            for k in missing:
                blocks[k] = []
                for _ in range(min(block, n - starts[k])):
                    blocks[k].append(next(mapped))
                    if bar is not None:
                        bar.update(1)
                if parts[k] is not None and k < len(parts) - 1:  # the last block goes straight into the whole file
                    part, values_k = parts[k], blocks[k]
                    write_cache(part, lambda p: atomic_write_json(p, values_k, indent=None), "evaluation cache")
        finally:  # also on Ctrl-C: the bar ends its line, and queued work is cancelled
            if hasattr(mapped, "close"):
                mapped.close()
            if bar is not None:
                bar.close()
        values = [value for b in blocks for value in b]
        self._cache[name] = values
        if path is not None:
            if write_cache(path, lambda p: atomic_write_json(p, values, indent=None), "evaluation cache"):
                for part in path.parent.glob(f"{path.stem}.part-*.json"):
                    part.unlink(missing_ok=True)
        return values

    def _block_size(self, n: int, workers: int) -> int:
        """Crystals per stored block: about an eighth of the set (8 to 128), so an interrupt loses at most that
        much work, and with several workers enough chunks to keep them all busy."""
        if self.block_size:
            return self.block_size
        size = min(128, max(8, -(-n // 8)))
        return max(size, 4 * workers * self.chunksize) if workers > 1 else size

    @property
    def valid_structures(self) -> list:
        """The structures that pass both validity checks, in input order."""
        return [s for s, ok in zip(self.structures, self.valid) if ok]

    @property
    def struct_valid(self) -> np.ndarray:
        return np.array([c[0] for c in self._map("checks", _checks)], dtype=bool)

    @property
    def comp_valid(self) -> np.ndarray:
        return np.array([c[1] for c in self._map("checks", _checks)], dtype=bool)

    @property
    def valid(self) -> np.ndarray:
        return self.struct_valid & self.comp_valid

    def fingerprints(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(structure fps (N, 61), composition fps (N, 132), ok mask); failed rows are NaN."""
        pairs = self._map("fingerprints", _fingerprints)
        ok = np.array([p[0] is not None for p in pairs], dtype=bool)
        if not ok.any():
            raise ValueError("no crystal in the batch has a fingerprint")
        dims = next((len(p[0]), len(p[1])) for p in pairs if p[0] is not None)
        struct = np.full((len(pairs), dims[0]), np.nan)
        comp = np.full((len(pairs), dims[1]), np.nan)
        struct[ok] = [p[0] for p in pairs if p[0] is not None]
        comp[ok] = [p[1] for p in pairs if p[1] is not None]
        return struct, comp, ok

    def space_groups(self) -> np.ndarray:
        return np.array(self._map("space_groups", _space_group_or_none), dtype=np.int64)


def _space_group_or_none(structure) -> int:
    return -1 if structure is None else _space_group(structure)


# --- set-level metrics --------------------------------------------------------------------------------------


def comp_stats(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature nan-mean and nan-std of reference fingerprints, with CDVAE StandardScaler's fixes
    (NaN mean -> 0, NaN or zero std -> 1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        mean = np.nanmean(reference, axis=0)
        std = np.nanstd(reference, axis=0)
    return np.where(np.isnan(mean), 0.0, mean), np.where(np.isnan(std) | (std == 0), 1.0, std)


def standardize(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(features - mean) / std`` with NaN results set to 0, as CDVAE's StandardScaler."""
    scaled = (np.asarray(features, dtype=float) - mean) / std
    return np.where(np.isnan(scaled), 0.0, scaled)


def coverage(gen_struct: np.ndarray, gen_comp: np.ndarray, ref_struct: np.ndarray, ref_comp: np.ndarray,
             struct_cutoff: float, comp_cutoff: float, n_generated: int | None = None) -> dict[str, float]:
    """CDVAE's COV-R/COV-P and mean min distances; composition fps must already be standardised."""
    from scipy.spatial.distance import cdist

    if len(gen_struct) == 0:
        return {"cov_recall": 0.0, "cov_precision": 0.0}
    n_generated = len(gen_struct) if n_generated is None else n_generated
    struct_d = cdist(gen_struct, ref_struct)
    comp_d = cdist(gen_comp, ref_comp)
    recall_s, recall_c = struct_d.min(axis=0), comp_d.min(axis=0)
    precision_s, precision_c = struct_d.min(axis=1), comp_d.min(axis=1)
    return {
        "cov_recall": float(np.mean((recall_s <= struct_cutoff) & (recall_c <= comp_cutoff))),
        "cov_precision": float(np.sum((precision_s <= struct_cutoff) & (precision_c <= comp_cutoff))
                               / n_generated),
        "amsd_recall": float(recall_s.mean()), "amsd_precision": float(precision_s.mean()),
        "amcd_recall": float(recall_c.mean()), "amcd_precision": float(precision_c.mean()),
    }


def _cutoffs(dataset: str) -> tuple[float, float]:
    key = _DATASET_ALIASES.get(dataset, dataset)
    if key not in COV_CUTOFFS:
        raise ValueError(f"no COV cut-offs for dataset {dataset!r}; known: {sorted(COV_CUTOFFS)}")
    return COV_CUTOFFS[key]


def _matcher(kwargs: dict | None):
    require_package("pymatgen", extra="chem")
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(**(kwargs or {}))


def make_evaluators(*, n_samples: int = 1000, seed: int = 0, cov_cutoffs: tuple[float, float] | None = None,
                    comp_scaler: tuple[Sequence[float], Sequence[float]] | None = None,
                    matcher_kwargs: dict | None = None, executor: Executor | None = None, progress: bool = False,
                    match_stats: dict | None = None) -> list:
    """The crystal evaluators. Context keys: ``reference`` (test structures or CrystalBatch), ``train``
    (training structures), ``dataset`` (benchmark name for the COV cut-offs, unless ``cov_cutoffs`` given).
    ``comp_scaler=(means, stds)`` replaces the reference-set statistics for the composition fingerprints
    (e.g. with CDVAE's ``CompScalerMeans/Stds`` to match its published numbers exactly). ``executor`` and
    ``progress`` are used for novelty matching; ``match_stats`` (a dict) receives its pair counts."""

    @evaluator("crystal_validity")
    def validity(generated, context):
        batch = CrystalBatch.of(generated)
        return {"comp_valid": batch.comp_valid.mean(), "struct_valid": batch.struct_valid.mean(),
                "valid": batch.valid.mean()}

    @evaluator("crystal_coverage", requires={"reference"} if cov_cutoffs else {"reference", "dataset"})
    def cov(generated, context):
        batch, ref = CrystalBatch.of(generated), CrystalBatch.of(context["reference"])
        struct_cutoff, comp_cutoff = cov_cutoffs or _cutoffs(context["dataset"])
        if not batch.valid.any():  # nothing to cover with (e.g. a barely trained model): no fingerprints needed
            return {"cov_recall": 0.0, "cov_precision": 0.0}
        try:
            g_struct, g_comp, g_ok = batch.fingerprints()
        except ValueError:  # no generated crystal has a fingerprint
            return {"cov_recall": 0.0, "cov_precision": 0.0}
        r_struct, r_comp, r_ok = ref.fingerprints()
        keep = g_ok & batch.valid
        r_struct, r_comp = r_struct[r_ok], r_comp[r_ok]
        mean, std = comp_stats(r_comp) if comp_scaler is None else map(np.asarray, comp_scaler)
        return coverage(g_struct[keep], standardize(g_comp[keep], mean, std), r_struct,
                        standardize(r_comp, mean, std), struct_cutoff, comp_cutoff, n_generated=len(batch))

    @evaluator("crystal_property_wdist", requires={"reference"})
    def wdist(generated, context):
        from scipy.stats import wasserstein_distance

        batch, ref = CrystalBatch.of(generated), CrystalBatch.of(context["reference"])
        valid = batch.valid_structures
        if not valid:
            return {"wdist_density": math.nan, "wdist_num_elems": math.nan}
        if len(valid) > n_samples:
            chosen = np.random.default_rng(seed).choice(len(valid), n_samples, replace=False)
            valid = [valid[i] for i in chosen]
        reference = [s for s in ref.structures if s is not None]
        return {
            "wdist_density": wasserstein_distance([s.density for s in valid], [s.density for s in reference]),
            "wdist_num_elems": wasserstein_distance([len(s.composition) for s in valid],
                                                    [len(s.composition) for s in reference]),
        }

    @evaluator("crystal_uniqueness")
    def uniqueness(generated, context):
        batch = CrystalBatch.of(generated)
        valid = batch.valid_structures
        if not valid:
            return {"unique": math.nan}
        from crysgen.matching import group_structures

        groups = group_structures(valid, _matcher(matcher_kwargs), executor=executor, progress=progress)
        return {"unique": len(groups) / len(valid)}

    @evaluator("crystal_novelty", requires={"train"})
    def novelty(generated, context):
        batch = CrystalBatch.of(generated)
        valid = batch.valid_structures
        if not valid:
            return {"novel": math.nan}
        from crysgen.matching import novel_flags

        train = [s for s in CrystalBatch.of(context["train"]).structures if s is not None]
        novel = novel_flags(valid, train, _matcher(matcher_kwargs), executor=executor, progress=progress,
                            stats=match_stats)
        return {"novel": float(np.mean(novel))}

    @evaluator("crystal_space_groups")
    def space_groups(generated, context):
        batch = CrystalBatch.of(generated)
        groups = batch.space_groups()[batch.valid]
        if groups.size == 0:
            return {"sg_frac_p1": math.nan, "sg_n_unique": 0.0}
        out = {"sg_frac_p1": float(np.mean(groups == 1)), "sg_n_unique": float(len(set(groups.tolist())))}
        if context.get("reference") is not None:
            ref = CrystalBatch.of(context["reference"]).space_groups()
            ref = ref[ref >= 0]
            out["sg_tv_distance"] = _total_variation(groups, ref)
            out["sg_frac_p1_reference"] = float(np.mean(ref == 1)) if ref.size else math.nan
        return out

    return [validity, cov, wdist, uniqueness, novelty, space_groups]


def _total_variation(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance between the empirical distributions of two integer samples."""
    pa, pb = Counter(a.tolist()), Counter(b.tolist())
    return 0.5 * sum(abs(pa[k] / len(a) - pb[k] / len(b)) for k in set(pa) | set(pb))


def space_group_distribution(numbers: Iterable[int]) -> list[dict[str, Any]]:
    """``[{"number", "symbol", "count", "fraction"}]`` of spglib space-group numbers (0: none found), most
    frequent first."""
    numbers = [int(n) for n in numbers if int(n) >= 0]
    counts = Counter(numbers)
    total = len(numbers)
    return [{"number": number, "symbol": _space_group_symbol(number), "count": count,
             "fraction": count / total}
            for number, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


@lru_cache(maxsize=256)
def _space_group_symbol(number: int) -> str:
    if number < 1:
        return "none"
    from pymatgen.symmetry.groups import SpaceGroup

    return SpaceGroup.from_int_number(number).symbol


def evaluate_crystals(generated: Iterable[Any], *, reference: Iterable[Any] | None = None,
                      train: Iterable[Any] | None = None, dataset: str | None = None,
                      executor: Executor | None = None, n_samples: int = 1000, seed: int = 0,
                      comp_scaler: tuple[Sequence[float], Sequence[float]] | None = None,
                      matcher_kwargs: dict | None = None, cov_cutoffs: tuple[float, float] | None = None,
                      reference_cache_dir: str | os.PathLike | None = None, progress: bool = False) -> dict:
    """Run every crystal evaluator the inputs allow: ``{"metrics", "skipped", "protocol", "space_groups"}``.

    ``reference_cache_dir`` keeps the reference set's fingerprints and checks on disk between calls;
    ``progress`` draws a bar for each quantity computed (fingerprints, checks, space groups, matching).
    ``dataset`` names the COV cut-offs (a CDVAE benchmark); another name, without ``cov_cutoffs``, skips
    coverage with the reason in ``skipped``.
    """
    gen = CrystalBatch(generated, executor, progress=progress, label="generated")
    cutoffs, cutoff_problem = cov_cutoffs, None
    if cutoffs is None and dataset is not None:
        try:
            cutoffs = _cutoffs(dataset)
        except ValueError as err:
            cutoff_problem = f"{err}; pass cov_cutoffs (crysgen evaluate --cov-cutoffs STRUCT COMP)"
    context = {
        "reference": None if reference is None else CrystalBatch(reference, executor, cache_dir=reference_cache_dir,
                                                                 progress=progress, label="reference"),
        "train": None if train is None else list(train),
        "dataset": dataset,
    }
    match_stats: dict = {}
    evaluators = make_evaluators(n_samples=n_samples, seed=seed, comp_scaler=comp_scaler,
                                 matcher_kwargs=matcher_kwargs, cov_cutoffs=cutoffs, executor=executor,
                                 progress=progress, match_stats=match_stats)
    if cutoff_problem is not None:
        evaluators = [ev for ev in evaluators if ev.name != "crystal_coverage"]
    report = run_evaluators(evaluators, gen, context)
    skipped = dict(report.skipped)
    if cutoff_problem is not None:
        skipped["crystal_coverage"] = cutoff_problem
    protocol = {
        "n_generated": len(gen),
        "oxidation_states_set": OXIDATION_STATES_SET,
        "cov_cutoffs": None if cutoffs is None else list(cutoffs),
        "comp_fp_normalisation": "mean/std of the reference set" if comp_scaler is None else "given",
        "coverage_generated": "valid only",
        "wdist_n_samples": n_samples, "seed": seed, "spglib_symprec": SYMPREC,
        "structure_matcher": matcher_kwargs or "pymatgen defaults",
    }
    if match_stats:
        protocol["novelty_matching"] = match_stats
    groups: dict[str, Any] = {"symprec": SYMPREC}
    if "sg_frac_p1" in report.metrics and not math.isnan(report.metrics["sg_frac_p1"]):
        groups["generated"] = space_group_distribution(gen.space_groups()[gen.valid])
        if context["reference"] is not None:
            groups["reference"] = space_group_distribution(context["reference"].space_groups())
    return {"metrics": report.metrics, "skipped": skipped, "protocol": protocol, "space_groups": groups}
