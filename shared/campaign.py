"""Campaigns: generate -> filter -> verify -> rank, cut into deterministic shards, resumable, on any executor.

A campaign is a YAML spec (:class:`CampaignSpec`) run by a *domain* (molgen, crysgen, graphgen) that knows how to
generate, filter, verify and rank its objects (:class:`CampaignDomain`). The engine knows none of that; it owns
the bookkeeping that makes a campaign trustworthy at any scale:

* the work is cut into shards of ``batch_size`` candidates; shard ``i`` is generated with seed
  ``shard_seed(spec.seed, i)``, so a shard's candidates depend on nothing but the spec and ``i``;
* every finished shard is written atomically to ``DIR/shards/shard_<i>.json`` and every verification result is
  cached per candidate by ``shared.hooks.run_hook`` in ``DIR/verify_cache``: a campaign killed at any point
  (SIGINT, SIGKILL, power loss) resumes with the same command, recomputes nothing finished, and ends with exactly
  the candidates of an uninterrupted run;
* shards and verifications run on a local process pool (default), a Dask cluster (``executor: dask`` with a
  ``scheduler`` address, or a ``LocalCluster`` when none is given) or in this process (``serial``);
* a failed verification is a recorded reason, never a stop.

Outputs in DIR: ``spec.yaml`` (as run), ``versions.json``, ``shards/``, ``candidates.csv`` (every candidate: id,
shard, seed, filters passed, verified values, rank), the domain's top-k files, ``report.md`` and ``report.html``
with the domain's figures, and ``progress.json`` for ``... campaign status DIR``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from shared.config import ConfigError, config_to_dict, load_config
from shared.io import atomic_write_json, atomic_write_text

__all__ = ["CampaignDomain", "CampaignSpec", "CampaignResult", "campaign_status", "load_spec", "rank_label",
           "run_campaign", "shard_seed"]

SHARDS = "shards"
VERIFY_CACHE = "verify_cache"
SCHEDULER_TIMEOUT_S = 5


@dataclass
class CampaignSpec:
    """What to make, how to judge it and where to run it. Units of ``target`` are the domain's raw units."""

    model: str = "default"  # "default" (the embedded model) or a checkpoint path
    target: dict[str, float] = field(default_factory=dict)  # property -> value, e.g. {gap: 6.5, mu: 2.0}
    guidance_scale: float = 1.0
    n_candidates: int = 100
    batch_size: int = 50  # candidates per shard
    steps: int | None = None  # sampler steps (None: the model's)
    filters: dict[str, Any] = field(default_factory=lambda: {"valid": True, "unique": True})
    verify: list[str] = field(default_factory=list)  # the domain's hooks, e.g. [xtb], [chgnet]
    rank_by: str | None = None  # e.g. "xtb:gap" (distance to the target) or "xtb:energy" (lowest first)
    relax: str | None = None  # the domain's relaxation before filters and verification (None: the domain's default)
    top_k: int = 10
    seed: int = 0
    executor: Literal["local", "dask", "serial"] = "local"
    workers: int = 1
    scheduler: str | None = None  # Dask scheduler address, e.g. tcp://host:8786 (None: a LocalCluster)

    def __post_init__(self) -> None:
        for name in ("n_candidates", "batch_size", "top_k", "workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if not (math.isfinite(float(self.guidance_scale)) and self.guidance_scale >= 0):
            raise ConfigError(f"guidance_scale must be a finite number >= 0, got {self.guidance_scale}")
        if not 0 <= int(self.seed) < 2**63:
            raise ConfigError(f"seed must be a whole number in [0, 2**63), got {self.seed}")
        for key, value in self.target.items():
            if not math.isfinite(float(value)):
                raise ConfigError(f"target.{key} must be a finite number, got {value}")
        if self.scheduler is not None and self.executor != "dask":
            raise ConfigError("scheduler is only used with executor: dask")

    @property
    def n_shards(self) -> int:
        return -(-self.n_candidates // self.batch_size)

    def shard_size(self, index: int) -> int:
        return min(self.batch_size, self.n_candidates - index * self.batch_size)


def load_spec(path: str | os.PathLike, overrides: list[str] | None = None) -> CampaignSpec:
    """The spec in a YAML file; unknown keys and wrong types are errors naming the key."""
    return load_config(CampaignSpec, path, overrides or [])


def shard_seed(seed: int, index: int) -> int:
    """The seed of shard ``index``: distinct per shard, fixed by the spec's seed alone."""
    return (int(seed) * 1_000_003 + 7919 * int(index)) % (2**31 - 1)


class CampaignDomain(Protocol):
    """What a domain supplies. It must pickle (it is sent to the workers) and load its model lazily."""

    name: str

    def validate(self, spec: CampaignSpec) -> None:
        """Raise ValueError for unknown filters/verifiers/rank keys or impossible targets, before any work."""

    def generate_shard(self, spec: CampaignSpec, index: int, seed: int, n: int) -> list[dict]:
        """``n`` candidates, each a JSON-able dict with at least ``record`` (the object as text), ``key`` (for
        uniqueness) and ``filters`` ({name: bool} of the per-candidate filters), optionally ``values``."""

    def verification(self, spec: CampaignSpec, method: str) -> tuple[Any, Callable[[dict], Any]]:
        """``(hook, item_of)``: a ``shared.hooks`` hook and how to turn a candidate into its item."""

    def rank_value(self, spec: CampaignSpec, candidate: dict) -> float | None:
        """Smaller is better; None: not rankable (e.g. its verification failed)."""

    def write_outputs(self, spec: CampaignSpec, candidates: list[dict], top: list[dict], out_dir: Path) -> list:
        """The top-k files and the figures (PNG paths for the report); returns the figure paths."""

    # optional: ``default_model_file() -> Path`` (the embedded model's file, hashed into the campaign's
    # provenance like any other model file), ``report_notes(spec) -> list[str]`` (lines under the report's
    # heading, e.g. on what geometry the values were verified) and ``report_columns(spec) -> list[str]``
    # (candidate values shown beside the top-k: names in ``values``, or ``METHOD:NAME`` for a verifier's value)


@dataclass
class CampaignResult:
    out_dir: Path
    candidates: list[dict]
    top: list[dict]
    shards_computed: int  # by this call (the rest came from disk)
    figures: list[Path]


# --- running ---------------------------------------------------------------------------------------------------


def run_campaign(domain: CampaignDomain, spec: CampaignSpec, out_dir: str | os.PathLike, *,
                 progress: bool = True) -> CampaignResult:
    """Run (or resume) the campaign in ``out_dir``; see the module docstring for what is written where."""
    out_dir = Path(out_dir)
    domain.validate(spec)
    with _executor(spec) as executor:  # first: an executor that cannot start leaves no campaign directory behind
        _claim_directory(spec, out_dir, domain)
        computed = _generate_shards(domain, spec, out_dir, executor, progress)
        candidates = _collect(spec, out_dir)
        _apply_uniqueness(spec, candidates)
        _verify(domain, spec, candidates, out_dir, executor, progress)
    _rank(domain, spec, candidates)
    top = sorted((c for c in candidates if c["rank"] is not None), key=lambda c: c["rank"])[: spec.top_k]
    figures = [Path(p) for p in domain.write_outputs(spec, candidates, top, out_dir)]
    atomic_write_text(out_dir / "candidates.csv", _candidates_csv(spec, candidates))
    _write_report(domain, spec, candidates, top, figures, out_dir)
    _write_progress(spec, out_dir, finished=True, verified=len(spec.verify))
    return CampaignResult(out_dir, candidates, top, computed, figures)


def _claim_directory(spec: CampaignSpec, out_dir: Path, domain: CampaignDomain) -> None:
    """A fresh DIR gets the spec; an existing one must hold the same spec (only where it runs may change)."""
    path = out_dir / "spec.yaml"
    mine = _work_defining(spec)
    model = model_provenance(spec, domain)
    if path.is_file():
        theirs = _work_defining(load_spec(path))
        if theirs != mine:
            changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ValueError(f"{out_dir} holds a different campaign (changed: {', '.join(changed)}); use another "
                             "--out or the same spec")
        recorded = _read_json(out_dir / "versions.json").get("model")
        if recorded and model and recorded.get("sha256") != model.get("sha256"):
            raise ValueError(f"{out_dir} was made with another model file ({recorded.get('file')} sha256 "
                             f"{str(recorded.get('sha256'))[:12]}, now {model['file']} sha256 {model['sha256'][:12]}): "
                             f"resuming would mix candidates of two models; use another --out")
    else:
        import yaml

        out_dir.mkdir(parents=True, exist_ok=True)
        header = f"# {domain.name} campaign spec, as run\n"
        atomic_write_text(path, header + yaml.safe_dump(config_to_dict(spec), sort_keys=False))
        atomic_write_json(out_dir / "versions.json", {**_versions(), "model": model})
    (out_dir / SHARDS).mkdir(parents=True, exist_ok=True)


def _work_defining(spec: CampaignSpec) -> dict:
    # the executor, the number of workers and the scheduler change where the work runs, not what it is
    return {k: v for k, v in config_to_dict(spec).items() if k not in ("executor", "workers", "scheduler")}


def model_provenance(spec: CampaignSpec, domain: CampaignDomain) -> dict | None:
    """``{"file", "sha256"}`` of the model the campaign samples (a run folder means its model.pt)."""
    import hashlib

    if spec.model == "default":
        default = getattr(domain, "default_model_file", None)
        path = Path(default()) if default is not None else None
    else:
        path = Path(spec.model)
        path = path / "model.pt" if path.is_dir() else path
    if path is None or not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return {"file": str(path), "sha256": digest.hexdigest()}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for package in ("scoregen", "torch", "rdkit", "pymatgen", "ase", "tblite", "pyscf", "chgnet", "dask",
                    "distributed"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out


@contextmanager
def _executor(spec: CampaignSpec) -> Iterator[Executor | None]:
    if spec.executor == "serial":
        yield None
        return
    if spec.executor == "local":
        from multiprocessing import get_context

        with ProcessPoolExecutor(spec.workers, mp_context=get_context("spawn"),
                                 initializer=_worker_init) as pool:
            yield pool
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ValueError("executor: dask needs the 'distributed' package (pip install 'scoregen[dask]')") from None
    cluster = None
    if spec.scheduler is None:
        cluster = LocalCluster(n_workers=spec.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        try:  # an unreachable scheduler is a user's mistake: say so within seconds, not after distributed's 30 s
            client = Client(spec.scheduler, timeout=SCHEDULER_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ValueError(f"cannot reach the Dask scheduler at {spec.scheduler} within {SCHEDULER_TIMEOUT_S} s "
                             f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); is it running?") from None
    try:
        client.run(_worker_init)
        yield client.get_executor(pure=False)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _worker_init() -> None:
    # one thread per worker: the workers are the parallelism, oversubscribed threads only slow them down
    import torch

    torch.set_num_threads(1)


def _shard_path(out_dir: Path, index: int) -> Path:
    return out_dir / SHARDS / f"shard_{index:05d}.json"


def _generate_shard_job(domain: CampaignDomain, spec: CampaignSpec, index: int) -> dict:
    seed = shard_seed(spec.seed, index)
    candidates = domain.generate_shard(spec, index, seed, spec.shard_size(index))
    return {"index": index, "seed": seed, "candidates": candidates}


def _generate_shards(domain, spec: CampaignSpec, out_dir: Path, executor, progress: bool) -> int:
    todo = [i for i in range(spec.n_shards) if not _shard_path(out_dir, i).is_file()]
    _write_progress(spec, out_dir)
    bar = _bar(len(todo), f"{domain.name} campaign: shards", progress)
    if executor is None:
        results = (_generate_shard_job(domain, spec, i) for i in todo)
    else:
        results = _as_completed(executor, [(_generate_shard_job, (domain, spec, i)) for i in todo])
    for shard in results:
        atomic_write_json(_shard_path(out_dir, shard["index"]), shard, indent=None)
        _write_progress(spec, out_dir)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return len(todo)


def _as_completed(executor: Executor, jobs: list) -> Iterator[Any]:
    futures: list[Future] = [executor.submit(fn, *args) for fn, args in jobs]
    try:
        for future in as_completed(futures):
            yield future.result()  # a shard that raises is a bug or bad input: stop, finished shards stay
    finally:
        for future in futures:
            future.cancel()


def _collect(spec: CampaignSpec, out_dir: Path) -> list[dict]:
    candidates = []
    for i in range(spec.n_shards):
        shard = json.loads(_shard_path(out_dir, i).read_text(encoding="utf-8"))
        for k, cand in enumerate(shard["candidates"]):
            cand = dict(cand)
            cand.update({"id": f"s{i:05d}-{k:04d}", "shard": i, "seed": shard["seed"], "index": k,
                         "filters": dict(cand.get("filters", {})), "values": dict(cand.get("values", {})),
                         "verified": {}, "rank": None})
            candidates.append(cand)
    return candidates


def _apply_uniqueness(spec: CampaignSpec, candidates: list[dict]) -> None:
    """``unique``: the first candidate (shard, index order) of each key that passed every other filter."""
    if not spec.filters.get("unique"):
        return
    seen = set()
    for cand in candidates:
        others = all(cand["filters"].values())
        first = others and cand.get("key") is not None and cand["key"] not in seen
        if first:
            seen.add(cand["key"])
        cand["filters"]["unique"] = bool(first)


def passed(candidate: dict) -> bool:
    return all(candidate["filters"].values())


def _verify(domain, spec: CampaignSpec, candidates: list[dict], out_dir: Path, executor, progress: bool) -> None:
    from shared.hooks import run_hook

    chosen = [c for c in candidates if passed(c)]
    for method in spec.verify:
        hook, item_of = domain.verification(spec, method)
        results = run_hook(hook, [item_of(c) for c in chosen], executor=executor,
                           cache_dir=out_dir / VERIFY_CACHE, progress=progress)
        for cand, result in zip(chosen, results):
            cand["verified"][method] = {"status": result.status, "reason": result.reason,
                                        "values": result.values}
        _write_progress(spec, out_dir, verified=spec.verify.index(method) + 1)


def _rank(domain, spec: CampaignSpec, candidates: list[dict]) -> None:
    scored = [(domain.rank_value(spec, c), i) for i, c in enumerate(candidates) if passed(c)]
    ordered = sorted((v, i) for v, i in scored if v is not None and math.isfinite(v))
    for position, (_, i) in enumerate(ordered, start=1):
        candidates[i]["rank"] = position
        candidates[i]["rank_value"] = ordered[position - 1][0]


# --- outputs ---------------------------------------------------------------------------------------------------


def _flat_verified(candidate: dict) -> dict:
    out = {}
    for method, result in candidate["verified"].items():
        out[f"{method}_status"] = result["status"]
        out[f"{method}_reason"] = result["reason"] or ""
        for name, value in result["values"].items():
            if isinstance(value, (int, float, str, bool)) or value is None:
                out[f"{method}_{name}"] = value
    return out


def _candidates_csv(spec: CampaignSpec, candidates: list[dict]) -> str:
    rows = []
    for cand in candidates:
        row = {"id": cand["id"], "shard": cand["shard"], "seed": cand["seed"], "index": cand["index"],
               "key": cand.get("key") or "", "passed_filters": passed(cand),
               **{f"filter_{k}": v for k, v in cand["filters"].items()},
               **{k: v for k, v in cand["values"].items() if not isinstance(v, (list, dict))},
               **_flat_verified(cand), "rank": cand["rank"] if cand["rank"] is not None else "",
               "rank_value": cand.get("rank_value", "")}
        rows.append(row)
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def rank_label(spec: CampaignSpec, units: dict[str, str]) -> str:
    """What a rank value is, for figure legends: ``|method prop - target| (unit)`` or ``method prop (unit)``."""
    method, _, prop = (spec.rank_by or "").partition(":")
    key = next((k for k in spec.target if k.lower() == prop.lower()), None)
    unit = units.get(key or prop, units.get(prop.lower(), ""))
    suffix = f" ({unit})" if unit else ""
    return f"|{method} {prop} - {spec.target[key]:g}|{suffix}" if key else f"{method} {prop}{suffix}"


def funnel(spec: CampaignSpec, candidates: list[dict]) -> list[tuple[str, int]]:
    """How many candidates survived each stage: generated, each filter in turn, each verification, ranked."""
    stages = [("generated", len(candidates))]
    alive = list(candidates)
    automatic = sorted({name for c in candidates for name in c["filters"]} - set(spec.filters))  # the domain's own
    names = [k for k in spec.filters if k != "unique"] + automatic + (["unique"] if spec.filters.get("unique") else [])
    for name in names:
        alive = [c for c in alive if c["filters"].get(name, True)]
        stages.append((f"filter: {name}", len(alive)))
    for method in spec.verify:
        alive = [c for c in alive if c["verified"].get(method, {}).get("status") == "ok"]
        stages.append((f"verified: {method}", len(alive)))
    if spec.rank_by:
        stages.append(("ranked", sum(c["rank"] is not None for c in candidates)))
    return stages


def plot_funnel(spec: CampaignSpec, candidates: list[dict], path: Path) -> Path:
    """Horizontal bars: candidates left after each stage (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = funnel(spec, candidates)
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(stages) + 1.2), dpi=120)
    labels, counts = zip(*stages)
    ax.barh(range(len(stages)), counts, color="tab:blue")
    ax.set_yticks(range(len(stages)), labels)
    ax.invert_yaxis()
    for y, count in enumerate(counts):
        ax.text(count, y, f" {count}", va="center", fontsize=8)
    ax.set_xlabel("candidates")
    ax.set_title("campaign funnel")
    fig.tight_layout()
    return _save(fig, path)


def plot_target_histograms(spec: CampaignSpec, achieved: dict[str, list[float]], units: dict[str, str],
                           out_dir: Path, judged_by: dict[str, str] | None = None) -> list[Path]:
    """Per targeted property: histogram of achieved (verified) values with the target as a vertical line;
    ``judged_by`` names the verifier of each property in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name, values in achieved.items():
        if not values:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
        ax.hist(values, bins=min(30, max(5, len(values) // 3)), color="tab:blue", alpha=0.8,
                label=f"achieved, {(judged_by or {}).get(name, 'verified')} (n={len(values)})")
        if name in spec.target:
            ax.axvline(spec.target[name], color="tab:red", linestyle="--", label=f"target {spec.target[name]:g}")
        ax.set_xlabel(f"{name} ({units.get(name, '')})".replace(" ()", ""))
        ax.set_ylabel("candidates")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(_save(fig, out_dir / f"target_{name}.png"))
    return paths


def _save(fig, path: Path) -> Path:
    from shared.plots import _save as save

    return save(fig, path)


def _write_report(domain, spec: CampaignSpec, candidates: list[dict], top: list[dict], figures: list[Path],
                  out_dir: Path) -> None:
    import base64
    import html

    lines = [f"# {domain.name} campaign", "", f"Target: {spec.target or 'none (unconditional)'}; guidance scale "
             f"{spec.guidance_scale}; {spec.n_candidates} candidates in {spec.n_shards} shards of {spec.batch_size}; "
             f"seed {spec.seed}; ranked by {spec.rank_by or 'nothing'}.", "", "## Funnel", "",
             "| stage | candidates |", "|---|---|"]
    lines += [f"| {name} | {count} |" for name, count in funnel(spec, candidates)]
    lines += ["", f"## Top {len(top)}", ""]
    notes = getattr(domain, "report_notes", None)
    if notes is not None:
        lines[3:3] = [line for line in notes(spec) if line] + [""]
    if top:
        columns = ["rank", "id", "key", "rank_value"]
        extra = list(getattr(domain, "report_columns", lambda _spec: [])(spec))
        lines += ["| " + " | ".join(columns + extra) + " |", "|" + "---|" * len(columns + extra)]
        for cand in top:
            cells = [_cell(cand.get(c, "")) for c in columns] + [_cell(_report_value(cand, c)) for c in extra]
            lines.append("| " + " | ".join(cells) + " |")
    else:
        lines.append("No candidate was ranked (no rank_by, or no candidate passed filters and verification).")
    failures: dict[str, int] = {}
    for cand in candidates:
        for method, result in cand["verified"].items():
            if result["status"] != "ok":
                why = f"{method}: {(result['reason'] or '').split(':')[0]}"
                failures[why] = failures.get(why, 0) + 1
    if failures:
        lines += ["", "## Failed verifications", "", "| reason | count |", "|---|---|"]
        lines += [f"| {why} | {n} |" for why, n in sorted(failures.items())]
    lines += ["", "## Figures", ""] + [f"![{p.stem}]({p.relative_to(out_dir)})" for p in figures]
    atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n")
    body = [f"<h1>{html.escape(domain.name)} campaign</h1>", f"<p>{html.escape(lines[2])}</p>",
            "<table border=1 cellpadding=4><tr><th>stage</th><th>candidates</th></tr>"]
    body += [f"<tr><td>{html.escape(n)}</td><td>{c}</td></tr>" for n, c in funnel(spec, candidates)]
    body.append("</table>")
    for path in figures:  # self-contained: the images are embedded
        data = base64.b64encode(path.read_bytes()).decode()
        body.append(f"<h3>{html.escape(path.stem)}</h3><img src='data:image/png;base64,{data}'>")
    atomic_write_text(out_dir / "report.html", "<html><body>" + "\n".join(body) + "</body></html>\n")


# --- status ----------------------------------------------------------------------------------------------------


def _report_value(candidate: dict, column: str):
    """A candidate value, or ``METHOD:NAME`` for a verifier's value ('' when absent or failed)."""
    method, sep, name = column.partition(":")
    if not sep:
        return candidate["values"].get(column, "")
    result = candidate["verified"].get(method)
    return result["values"].get(name, "") if result and result.get("status") == "ok" else ""


def _cell(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _write_progress(spec: CampaignSpec, out_dir: Path, *, finished: bool = False, verified: int = 0) -> None:
    done = sum(_shard_path(out_dir, i).is_file() for i in range(spec.n_shards))
    atomic_write_json(out_dir / "progress.json", {"shards_done": done, "shards_total": spec.n_shards,
                                                  "verifications_done": verified,
                                                  "verifications_total": len(spec.verify), "finished": finished})


def campaign_status(out_dir: str | os.PathLike) -> str:
    """A few lines on where the campaign in ``out_dir`` stands (read from disk only)."""
    out_dir = Path(out_dir)
    if not (out_dir / "spec.yaml").is_file():
        raise FileNotFoundError(f"{out_dir} holds no campaign (no spec.yaml)")
    spec = load_spec(out_dir / "spec.yaml")
    done = sum(_shard_path(out_dir, i).is_file() for i in range(spec.n_shards))
    cached = len(list((out_dir / VERIFY_CACHE).rglob("*.json"))) if (out_dir / VERIFY_CACHE).is_dir() else 0
    lines = [f"campaign {out_dir}: {spec.n_candidates} candidates, target {spec.target or 'none'}",
             f"shards: {done}/{spec.n_shards} done",
             f"verifications ({', '.join(spec.verify) or 'none'}): {cached} results cached"]
    if (out_dir / "candidates.csv").is_file():
        with open(out_dir / "candidates.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        lines.append(f"finished: {len(rows)} candidates, {sum(r['passed_filters'] == 'True' for r in rows)} passed "
                     f"the filters, {sum(bool(r['rank']) for r in rows)} ranked; see candidates.csv, report.md")
    else:
        lines.append("not finished: rerun the same command to resume")
    return "\n".join(lines)


def _bar(total: int, desc: str, enabled: bool):
    if not enabled or total == 0 or os.environ.get("CI"):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr)
