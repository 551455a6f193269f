"""``CrystalBatch``: a set of crystals with each per-crystal quantity (validity checks, fingerprints, space groups)
computed once, optionally through an Executor with a progress bar, and optionally kept on disk keyed by the
structures' content hash, so that several evaluators (and several runs) share the work.

The quantities themselves are defined in ``crysgen.metrics.checks``; this module only caches and maps them.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from crysgen.metrics.checks import _checks, _fingerprints, _space_group_or_none
from shared.io import atomic_write_json, write_cache

__all__ = ["CrystalBatch", "structures_digest"]

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

