"""run_hook: caching, resume after interruption, failures, executors, ordering, atomic and corrupted cache files."""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.hooks import Hook, HookResult, content_hash, run_hook


@dataclass
class SquareHook:
    """Module level, so it pickles into worker processes. Every compute leaves a file in ``log_dir``
    (counts calls across processes); negative items fail; ``interrupt_at`` raises KeyboardInterrupt there;
    ``die_at`` kills the worker process."""

    log_dir: str
    name: str = "square"
    version: str = "1"
    interrupt_at: int | None = None
    die_at: int | None = None
    delay_s: float = 0.0

    def key(self, item: int) -> str:
        return content_hash(self.name, self.version, item)

    def compute_one(self, item: int) -> dict:
        if item == self.interrupt_at:
            raise KeyboardInterrupt
        if item == self.die_at:
            os._exit(3)
        Path(self.log_dir, f"{item}.{os.getpid()}.{time.perf_counter_ns()}").touch()
        if item < 0:
            raise ValueError(f"negative item {item}")
        if self.delay_s:
            time.sleep(self.delay_s * (item % 3))  # uneven durations: completion order differs from input order
        return {"square": item * item, "as_numpy": np.float64(item) / 2}


def calls(log_dir: Path) -> list[int]:
    return sorted(int(p.name.split(".")[0]) for p in log_dir.iterdir())


@pytest.fixture
def logs(tmp_path):
    path = tmp_path / "calls"
    path.mkdir()
    return path


def test_hook_satisfies_protocol(logs):
    assert isinstance(SquareHook(str(logs)), Hook)


def test_serial_results_in_order_without_cache(logs):
    results = run_hook(SquareHook(str(logs)), [3, 1, 2])
    assert [r.values["square"] for r in results] == [9, 1, 4]
    assert all(r.status == "ok" and not r.cached and r.reason is None for r in results)
    assert results[0].values["as_numpy"] == 1.5 and type(results[0].values["as_numpy"]) is float


def test_cache_hit_skips_recomputation_and_marks_cached(logs, tmp_path):
    hook, cache = SquareHook(str(logs)), tmp_path / "cache"
    first = run_hook(hook, [1, 2, 3], cache_dir=cache)
    second = run_hook(hook, [3, 2, 1, 4], cache_dir=cache)
    assert calls(logs) == [1, 2, 3, 4]  # only 4 was new on the second run
    assert [r.values["square"] for r in second] == [9, 4, 1, 16]
    assert [r.cached for r in second] == [True, True, True, False]
    assert [r.values for r in first] == [r.values for r in second][2::-1]  # fresh == cached after JSON
    files = sorted(p.name for p in (cache / "square").iterdir())
    assert files == sorted(f"{hook.key(i)}.json" for i in [1, 2, 3, 4])


def test_duplicate_items_computed_once(logs):
    results = run_hook(SquareHook(str(logs)), [5, 5, 2, 5])
    assert calls(logs) == [2, 5]
    assert [r.values["square"] for r in results] == [25, 25, 4, 25]


def test_interrupted_batch_resumes_without_recomputing(logs, tmp_path):
    cache, items = tmp_path / "cache", list(range(10))
    with pytest.raises(KeyboardInterrupt):
        run_hook(SquareHook(str(logs), interrupt_at=4), items, cache_dir=cache)
    assert calls(logs) == [0, 1, 2, 3]
    leftovers = [p for p in (cache / "square").iterdir() if not p.name.endswith(".json")]
    assert leftovers == []  # atomic writes: no temporary files left behind
    for path in (cache / "square").iterdir():
        json.loads(path.read_text())  # and every entry is complete JSON
    for path in logs.iterdir():
        path.unlink()
    results = run_hook(SquareHook(str(logs)), items, cache_dir=cache)
    assert calls(logs) == [4, 5, 6, 7, 8, 9]
    assert [r.values["square"] for r in results] == [i * i for i in items]
    assert [r.cached for r in results] == [True] * 4 + [False] * 6


def test_failure_recorded_with_reason_and_retried_only_on_request(logs, tmp_path):
    cache, hook = tmp_path / "cache", SquareHook(str(logs))
    results = run_hook(hook, [2, -1], cache_dir=cache)
    assert results[0].ok and results[1].status == "failed" and results[1].values == {}
    assert results[1].reason == "ValueError: negative item -1"
    again = run_hook(hook, [2, -1], cache_dir=cache)
    assert again[1].cached and again[1].reason == "ValueError: negative item -1"
    assert calls(logs) == [-1, 2]
    retried = run_hook(hook, [2, -1], cache_dir=cache, retry_failed=True)
    assert calls(logs) == [-1, -1, 2]  # only the failed one was computed again
    assert not retried[1].cached and retried[1].status == "failed" and retried[0].cached


def test_version_change_invalidates_cache(logs, tmp_path):
    cache = tmp_path / "cache"

    class SameKeyHook(SquareHook):  # a careless hook whose key ignores the version
        def key(self, item):
            return content_hash(item)

    run_hook(SameKeyHook(str(logs), version="1"), [2], cache_dir=cache)
    run_hook(SameKeyHook(str(logs), version="1"), [2], cache_dir=cache)
    run_hook(SameKeyHook(str(logs), version="2"), [2], cache_dir=cache)
    assert calls(logs) == [2, 2]


def test_corrupted_cache_entry_recomputed_with_warning(logs, tmp_path):
    cache, hook = tmp_path / "cache", SquareHook(str(logs))
    run_hook(hook, [1, 2], cache_dir=cache)
    broken = cache / "square" / f"{hook.key(2)}.json"
    broken.write_text('{"key": "trunc')
    with pytest.warns(UserWarning, match="corrupted hook cache entry"):
        results = run_hook(hook, [1, 2], cache_dir=cache)
    assert [r.cached for r in results] == [True, False] and results[1].values["square"] == 4
    assert calls(logs) == [1, 2, 2]
    assert json.loads(broken.read_text())["values"]["square"] == 4  # repaired on disk


def test_process_pool_preserves_order_and_caches(logs, tmp_path):
    cache, items = tmp_path / "cache", [5, 4, 3, 2, 1, 0, -2]
    hook = SquareHook(str(logs), delay_s=0.05)
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = run_hook(hook, items, executor=pool, cache_dir=cache)
    assert [r.key for r in results] == [hook.key(i) for i in items]
    assert [r.values.get("square") for r in results] == [25, 16, 9, 4, 1, 0, None]
    assert results[-1].reason == "ValueError: negative item -2"
    assert len({p.name.split(".")[1] for p in logs.iterdir()} - {str(os.getpid())}) >= 1  # ran in workers
    assert all(r.elapsed_s >= 0 for r in results)
    assert len(list((cache / "square").glob("*.json"))) == len(items)


def test_thread_pool_matches_serial(logs):
    hook, items = SquareHook(str(logs)), list(range(-3, 12))
    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded = run_hook(hook, items, executor=pool)
    serial = run_hook(hook, items)
    strip = [(r.key, r.status, r.values, r.reason) for r in serial]
    assert [(r.key, r.status, r.values, r.reason) for r in threaded] == strip


def test_dead_worker_is_failed_but_not_cached(logs, tmp_path):
    cache = tmp_path / "cache"
    with ProcessPoolExecutor(max_workers=1) as pool:
        results = run_hook(SquareHook(str(logs), die_at=7), [1, 7], executor=pool, cache_dir=cache)
    dead = results[1]
    assert dead.status == "failed" and dead.reason.startswith("executor error: BrokenProcessPool")
    healed = run_hook(SquareHook(str(logs)), [1, 7], cache_dir=cache)
    assert healed[1].ok and healed[1].values["square"] == 49 and not healed[1].cached


def test_non_dict_and_non_json_values_fail_cleanly(tmp_path):
    class BadHook:
        name, version = "bad", "1"

        def key(self, item):
            return content_hash(item)

        def compute_one(self, item):
            return [1, 2] if item == 0 else {"obj": object()}

    results = run_hook(BadHook(), [0, 1], cache_dir=tmp_path)
    assert results[0].reason == "TypeError: compute_one returned list, expected a dict"
    assert results[1].status == "failed" and results[1].reason.startswith("TypeError")


def test_unsafe_keys_and_names_rejected(logs):
    class SlashKey(SquareHook):
        def key(self, item):
            return "../escape"

    with pytest.raises(ValueError, match="key of hook 'square'"):
        run_hook(SlashKey(str(logs)), [1])
    with pytest.raises(ValueError, match="hook.name"):
        run_hook(SquareHook(str(logs), name="a/b"), [1])


def test_content_hash_canonical_and_sensitive():
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": (1, 2), "a": 1})
    assert content_hash("CCO") != content_hash("OCC")
    assert content_hash(1) != content_hash(1.0) != content_hash(True)
    assert content_hash("a", "b") != content_hash("ab")
    assert content_hash({1, 2, 3}) == content_hash(frozenset([3, 2, 1]))
    assert content_hash(math.nan) == content_hash(float("nan"))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert content_hash(x) == content_hash(x.copy()) == content_hash(torch.arange(6.0).reshape(2, 3))
    assert content_hash(x) != content_hash(x.reshape(3, 2)) != content_hash(x.astype(np.float64))
    assert content_hash(torch.ones(2, dtype=torch.bfloat16)) != content_hash(torch.ones(2))
    assert content_hash(b"\x00\x01") != content_hash(b"\x00\x02")
    digest = content_hash("x")
    assert len(digest) == 64 and int(digest, 16) >= 0
    with pytest.raises(TypeError, match="cannot encode"):
        content_hash(object())


def test_content_hash_known_value():
    # sha256 of the canonical JSON '["abc"]' (computed independently with hashlib)
    import hashlib

    assert content_hash("abc") == hashlib.sha256(b'["abc"]').hexdigest()


def test_hook_result_defaults():
    result = HookResult(key="k", status="ok", values={"v": 1.0})
    assert result.ok and result.reason is None and result.elapsed_s == 0.0 and not result.cached


def test_progress_bar_counts_computed_items(logs, tmp_path, capsys):
    run_hook(SquareHook(str(logs)), [1, 2], cache_dir=tmp_path)
    results = run_hook(SquareHook(str(logs)), [1, 2, 3], cache_dir=tmp_path, progress=True)
    assert [r.values["square"] for r in results] == [1, 4, 9]
    assert "1/1" in capsys.readouterr().err  # only the uncached item is shown as work
