"""The campaign engine: deterministic shards, same result on every executor, exact resume after SIGKILL,
recorded verification failures, strict specs, status."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.campaign import CampaignSpec, campaign_status, funnel, load_spec, run_campaign, shard_seed
from shared.campaign_toy import ToyDomain
from shared.config import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _spec(**changes):
    base = dict(target={"square": 400.0}, n_candidates=30, batch_size=7, filters={"even": True, "unique": True},
                verify=["square"], rank_by="square", top_k=4, seed=3, executor="serial")
    base.update(changes)
    return CampaignSpec(**base)


def _rows(out_dir):
    with open(Path(out_dir) / "candidates.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_serial_campaign_outputs(tmp_path):
    result = run_campaign(ToyDomain(), _spec(), tmp_path / "c", progress=False)
    rows = _rows(tmp_path / "c")
    assert len(rows) == 30 and result.shards_computed == 5  # 7+7+7+7+2
    values = [int(r["value"]) for r in rows]
    # filters: even, then the first occurrence of each value among the even ones
    firsts = {v for i, v in enumerate(values) if v % 2 == 0 and v not in values[:i]}
    passed = [r for r in rows if r["passed_filters"] == "True"]
    assert {int(r["value"]) for r in passed} == firsts and len(passed) == len(firsts)
    # multiples of 7 fail verification with their reason and are not ranked; the rest are ranked by |v^2 - 400|
    for r in passed:
        if int(r["value"]) % 7 == 0:
            assert r["square_status"] == "failed" and "multiple of 7" in r["square_reason"] and r["rank"] == ""
        else:
            assert r["square_status"] == "ok" and int(r["square_square"]) == int(r["value"]) ** 2
    ranked = sorted((int(r["rank"]), abs(int(r["value"]) ** 2 - 400)) for r in rows if r["rank"])
    assert [d for _, d in ranked] == sorted(d for _, d in ranked)
    assert (tmp_path / "c" / "top.txt").read_text().count("\n") == 4
    stages = dict(funnel(_spec(), result.candidates))
    assert stages["generated"] == 30 and stages["filter: unique"] == len(firsts)
    assert stages["verified: square"] == sum(v % 7 != 0 for v in firsts)
    for name in ("report.md", "report.html", "funnel.png", "target_square.png", "spec.yaml", "versions.json"):
        assert (tmp_path / "c" / name).stat().st_size > 100, name
    assert "data:image/png;base64," in (tmp_path / "c" / "report.html").read_text()
    assert "## Failed verifications" in (tmp_path / "c" / "report.md").read_text()
    assert "finished: 30 candidates" in campaign_status(tmp_path / "c")


def test_shard_seeds_are_distinct_and_fixed():
    seeds = [shard_seed(3, i) for i in range(1000)]
    assert len(set(seeds)) == 1000 and seeds == [shard_seed(3, i) for i in range(1000)]
    assert shard_seed(4, 0) != shard_seed(3, 0)


@pytest.mark.parametrize("executor", ["local", "dask"])
def test_every_executor_gives_the_same_campaign(tmp_path, executor):
    if executor == "dask":
        pytest.importorskip("distributed")
    run_campaign(ToyDomain(), _spec(), tmp_path / "serial", progress=False)
    run_campaign(ToyDomain(), _spec(executor=executor, workers=2), tmp_path / executor, progress=False)
    assert (tmp_path / "serial" / "candidates.csv").read_text() == (tmp_path / executor / "candidates.csv").read_text()


def test_rerun_recomputes_nothing_and_where_it_runs_may_change(tmp_path):
    run_campaign(ToyDomain(), _spec(), tmp_path / "c", progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "c" / "shards").iterdir()}
    again = run_campaign(ToyDomain(), _spec(executor="local", workers=2), tmp_path / "c", progress=False)
    assert again.shards_computed == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "c" / "shards").iterdir()} == before
    with pytest.raises(ValueError, match="different campaign.*n_candidates"):
        run_campaign(ToyDomain(), _spec(n_candidates=31), tmp_path / "c", progress=False)


def test_killed_campaign_resumes_to_the_uninterrupted_result(tmp_path):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text("target: {square: 400}\nn_candidates: 40\nbatch_size: 5\nfilters: {even: true}\n"
                         "verify: [square]\nrank_by: square\nseed: 5\nexecutor: serial\n")
    script = ("import sys; from shared.campaign import load_spec, run_campaign; from shared.campaign_toy import "
              "ToyDomain; run_campaign(ToyDomain(pause_s=float(sys.argv[3])), load_spec(sys.argv[1]), sys.argv[2], "
              "progress=False)")
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, str(spec_path), str(out), "0.05"], cwd=REPO, env=env)
    cache = out / "verify_cache" / "toy-square"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list(cache.glob("*.json"))) < 3:
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.skip("the campaign finished before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    verified_before = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.json")}
    shards_before = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.json")}
    assert not (out / "candidates.csv").exists() and len(shards_before) == 8
    assert "not finished" in campaign_status(out)
    subprocess.run([sys.executable, "-c", script, str(spec_path), str(out), "0"], cwd=REPO, env=env, check=True)
    run_campaign(ToyDomain(), load_spec(spec_path), tmp_path / "clean", progress=False)
    assert (out / "candidates.csv").read_text() == (tmp_path / "clean" / "candidates.csv").read_text()
    # nothing finished was computed again
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.json") if p.name in verified_before} == verified_before
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.json")} == shards_before


def test_spec_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_candidates: 10\ntargte: {gap: 1}\n")
    with pytest.raises(ConfigError, match="targte"):
        load_spec(bad)
    bad.write_text("n_candidates: many\n")
    with pytest.raises(ConfigError, match="n_candidates"):
        load_spec(bad)
    bad.write_text("n_candidates: 0\n")
    with pytest.raises(ConfigError, match="n_candidates must be >= 1"):
        load_spec(bad)
    bad.write_text("executor: slurm\n")
    with pytest.raises(ConfigError, match="executor"):
        load_spec(bad)
    with pytest.raises(ValueError, match="cannot be negative"):  # the domain's check, before any work
        run_campaign(ToyDomain(), _spec(target={"square": -1.0}), tmp_path / "neg", progress=False)
    assert not (tmp_path / "neg").exists()
    with pytest.raises(FileNotFoundError):
        campaign_status(tmp_path / "nothing")
