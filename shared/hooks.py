"""Hooks: expensive per-item computations (xTB, DFT, relaxations) run in batches, cached on disk, resumable.

A hook turns one item (a molecule, a structure, ...) into a small dict of JSON-serialisable values. ``run_hook``
computes what is not yet cached through any ``concurrent.futures.Executor`` and writes every finished result
(ok or failed) to ``cache_dir/<hook.name>/<key>.json`` as soon as it arrives, so an interrupted batch resumes
where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import time
import warnings
from collections.abc import Iterable
from concurrent.futures import Executor, Future, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from shared.io import _json_default, atomic_write_json, write_cache

__all__ = ["Hook", "HookResult", "content_hash", "run_hook"]

STATUS_OK = "ok"
STATUS_FAILED = "failed"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class HookResult:
    key: str
    status: str
    values: dict = field(default_factory=dict)
    reason: str | None = None
    elapsed_s: float = 0.0
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


@runtime_checkable
class Hook(Protocol):
    name: str
    version: str

    def key(self, item: Any) -> str: ...

    def compute_one(self, item: Any) -> dict: ...


def content_hash(*parts: Any) -> str:
    """SHA-256 hex digest of a canonical encoding of ``parts``.

    Equal content gives an equal hash regardless of dict order or container type (tuple vs list); ``bytes``,
    numpy arrays and torch tensors are hashed by dtype, shape and raw bytes. Unsupported types raise TypeError.
    """
    canonical = json.dumps(
        [_canonical(part) for part in parts], sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def run_hook(
    hook: Hook,
    items: Iterable[Any],
    *,
    executor: Executor | None = None,
    cache_dir: str | Path | None = None,
    retry_failed: bool = False,
    progress: bool = False,
) -> list[HookResult]:
    """One ``HookResult`` per item, in input order; cached results are reused, the rest computed.

    ``executor=None`` computes serially in this process; otherwise the hook and items are pickled to the
    executor's workers. Items with equal keys are computed once. An exception raised by ``compute_one`` is a
    "failed" result (cached; retried only with ``retry_failed=True``); an exception from the executor itself
    (a worker that died, an unpicklable item) is a "failed" result that is *not* cached, so a rerun tries again.
    """
    items = list(items)
    _check_name(hook.name, "hook.name")
    keys = [hook.key(item) for item in items]
    for key in keys:
        _check_name(key, f"key of hook {hook.name!r}")
    folder = Path(cache_dir) / hook.name if cache_dir is not None else None

    first_index: dict[str, int] = {}
    for index, key in enumerate(keys):
        first_index.setdefault(key, index)
    done: dict[str, HookResult] = {}
    if folder is not None:
        for key in first_index:
            cached = _read_cache(folder / f"{key}.json", hook)
            if cached is not None and (cached.ok or not retry_failed):
                done[key] = cached
    todo = [(key, items[index]) for key, index in first_index.items() if key not in done]

    bar = _progress_bar(len(todo), hook.name) if progress else None
    results = _compute_all(hook, todo, executor)
    try:
        for result in results:
            done[result.key] = result
            if folder is not None and not result.reason_is_executor_error:
                record = _cache_record(hook, result)
                write_cache(folder / f"{result.key}.json", lambda p: atomic_write_json(p, record),
                            f"{hook.name} result cache")
            if bar is not None:
                bar.update(1)
    finally:
        results.close()  # cancels queued work if we stop early (interrupt, failed cache write)
        if bar is not None:
            bar.close()
    return [_public(done[key]) for key in keys]


# --- computing ----------------------------------------------------------------------------------------------


@dataclass
class _Computed(HookResult):
    # executor failures are reported but never cached
    reason_is_executor_error: bool = False


def _compute_one(hook: Hook, key: str, item: Any) -> _Computed:
    """Runs in the worker: never raises for an ``Exception`` from the hook (KeyboardInterrupt still stops)."""
    start = time.perf_counter()
    try:
        values = hook.compute_one(item)
        if not isinstance(values, dict):
            raise TypeError(f"compute_one returned {type(values).__name__}, expected a dict")
        # a JSON round trip makes fresh results identical to cached ones (numpy scalars become floats, ...)
        values = json.loads(json.dumps(values, default=_json_default))
    except Exception as exc:  # noqa: BLE001 - any hook failure is data, recorded with its reason
        return _Computed(key, STATUS_FAILED, {}, _describe(exc), time.perf_counter() - start)
    return _Computed(key, STATUS_OK, values, None, time.perf_counter() - start)


def _compute_all(hook: Hook, todo: list[tuple[str, Any]], executor: Executor | None):
    if executor is None:
        for key, item in todo:
            yield _compute_one(hook, key, item)
        return
    futures: dict[Future, str] = {}
    try:
        for key, item in todo:
            futures[executor.submit(_compute_one, hook, key, item)] = key
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # noqa: BLE001 - infrastructure failure of this one item
                yield _Computed(
                    futures[future], STATUS_FAILED, {}, f"executor error: {_describe(exc)}",
                    reason_is_executor_error=True,
                )
    finally:
        # on interruption, do not leave queued work running behind the caller's back
        for future in futures:
            future.cancel()


def _describe(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _public(result: HookResult) -> HookResult:
    return HookResult(result.key, result.status, result.values, result.reason, result.elapsed_s, result.cached)


# --- cache --------------------------------------------------------------------------------------------------


def _cache_record(hook: Hook, result: HookResult) -> dict:
    record = {"hook": hook.name, "version": str(hook.version)}
    record.update(asdict(_public(result)))
    del record["cached"]
    return record


def _read_cache(path: Path, hook: Hook) -> HookResult | None:
    """The cached result at ``path``; None when absent, stale (other hook version) or corrupted (warned)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record["version"] != str(hook.version):
            return None
        result = HookResult(
            key=record["key"], status=record["status"], values=record["values"], reason=record.get("reason"),
            elapsed_s=float(record.get("elapsed_s", 0.0)), cached=True,
        )
        if result.key != path.stem or result.status not in (STATUS_OK, STATUS_FAILED):
            raise ValueError("key or status does not match")
        if not isinstance(result.values, dict):
            raise TypeError("values is not an object")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(f"corrupted hook cache entry {path} ({_describe(exc)}); recomputing", stacklevel=3)
        return None
    return result


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise ValueError(f"{what} must be a non-empty string of letters, digits, '.', '_' or '-', got {name!r}")


def _progress_bar(total: int, name: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress is a nicety, never a reason to fail
        return None
    return tqdm(total=total, desc=name, file=sys.stderr)


# --- canonical encoding for content_hash --------------------------------------------------------------------


def _canonical(obj: Any) -> Any:
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}  # JSON has no nan/inf
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"__bytes__": hashlib.sha256(bytes(obj)).hexdigest()}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError("content_hash: dict keys must be strings")
        return {k: _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        encoded = [_canonical(v) for v in obj]
        return {"__set__": sorted(encoded, key=lambda v: json.dumps(v, sort_keys=True))}
    if isinstance(obj, Path):
        return {"__path__": str(obj)}
    array = _array_signature(obj)
    if array is not None:
        return {"__array__": array}
    raise TypeError(f"content_hash: cannot encode object of type {type(obj).__name__}")


def _array_signature(obj: Any) -> list | None:
    """[dtype, shape, sha256 of the raw bytes] of a numpy array/scalar or torch tensor; None otherwise."""
    import numpy as np

    if isinstance(obj, (np.ndarray, np.generic)):
        array = np.ascontiguousarray(obj)
        return [str(array.dtype), list(array.shape), hashlib.sha256(array.tobytes()).hexdigest()]
    torch = sys.modules.get("torch")  # a tensor can only exist if torch is already imported
    if torch is not None and isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu().contiguous()
        raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()  # every dtype, bfloat16 included
        dtype = str(tensor.dtype).removeprefix("torch.")  # same spelling as numpy: equal content, equal hash
        return [dtype, list(tensor.shape), hashlib.sha256(raw).hexdigest()]
    return None
