"""crysgen campaigns on the embedded perov-5 model: filters, CHGNet ranking, outputs, resume, spec errors."""

import csv
import importlib.util

import pytest

from crysgen.campaign import CrysgenCampaign
from shared.campaign import CampaignSpec, run_campaign


def _spec(**changes):
    base = dict(target={"heat_ref": -0.5}, n_candidates=6, batch_size=3, steps=30,
                filters={"valid": True, "unique": True, "max_sites": 10}, verify=["chgnet"],
                rank_by="chgnet:energy_per_atom", top_k=2, executor="serial")
    base.update(changes)
    return CampaignSpec(**base)


@pytest.mark.skipif(importlib.util.find_spec("chgnet") is None, reason="chgnet not installed")
def test_campaign_ranks_crystals_by_chgnet_energy_and_resumes(tmp_path):
    result = run_campaign(CrysgenCampaign(), _spec(), tmp_path / "c", progress=False)
    with open(tmp_path / "c" / "candidates.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {"formula", "spacegroup", "filter_valid", "chgnet_energy_per_atom_eV"} <= set(rows[0])
    ranked = sorted((int(r["rank"]), float(r["chgnet_energy_per_atom_eV"])) for r in rows if r["rank"])
    assert ranked and [e for _, e in ranked] == sorted(e for _, e in ranked)
    cifs = sorted((tmp_path / "c" / "top_k").glob("*.cif"))
    assert len(cifs) == len(result.top) == min(2, len(ranked))
    from pymatgen.core import Structure

    assert Structure.from_file(str(cifs[0])).composition.reduced_formula == result.top[0]["values"]["formula"]
    for name in ("funnel.png", "energy_chgnet.png", "spacegroups.png", "report.md"):
        assert (tmp_path / "c" / name).stat().st_size > 200, name
    assert result.top[0]["values"]["formula"] in (tmp_path / "c" / "top_k.md").read_text()
    before = (tmp_path / "c" / "candidates.csv").read_text()
    again = run_campaign(CrysgenCampaign(), _spec(), tmp_path / "c", progress=False)
    assert again.shards_computed == 0 and (tmp_path / "c" / "candidates.csv").read_text() == before


@pytest.mark.parametrize("changes, message", [
    ({"target": {"heat_ref": 100.0}}, "outside the training range"),
    ({"target": {"band_gap": 1.0}}, "unknown ['band_gap']"),
    ({"verify": ["vasp"]}, "unknown verifier(s) ['vasp']"),
    ({"rank_by": "chgnet:colour"}, "rank_by"),
    ({"filters": {"valid": True, "elements": ["Xx"]}}, "'Xx' is not an element symbol"),
])
def test_bad_specs_fail_before_any_work(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        run_campaign(CrysgenCampaign(), _spec(**changes), tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()


@pytest.mark.skipif(importlib.util.find_spec("chgnet") is None, reason="chgnet not installed")
def test_campaign_cli(tmp_path, capsys):
    from crysgen.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text("target: {heat_ref: -0.5}\nn_candidates: 4\nbatch_size: 2\nsteps: 20\n"
                    "filters: {valid: true, unique: true}\nverify: [chgnet]\nrank_by: chgnet:energy_per_atom\n"
                    "top_k: 2\nexecutor: serial\n")
    assert main(["campaign", str(spec), "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    assert "(2 of 2 shards computed now)" in capsys.readouterr().out
    assert main(["campaign", "status", str(tmp_path / "c")]) == 0
    assert "shards: 2/2 done" in capsys.readouterr().out
    assert main(["campaign", str(spec), "--out", str(tmp_path / "c"), "target.heat_ref=50"]) == 2
    assert "outside the training range" in capsys.readouterr().err


@pytest.mark.timeout(420)
@pytest.mark.skipif(importlib.util.find_spec("chgnet") is None, reason="chgnet not installed")
def test_crystal_campaign_killed_twice_resumes_to_the_uninterrupted_result(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    spec = tmp_path / "spec.yaml"
    spec.write_text("target: {heat_ref: -0.5}\nn_candidates: 12\nbatch_size: 3\nsteps: 20\n"
                    "filters: {valid: true, unique: true}\nverify: [chgnet]\nrank_by: chgnet:energy_per_atom\n"
                    "top_k: 3\nexecutor: serial\n")
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "crysgen.cli", "campaign", str(spec), "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}

    def kill_when(ready):
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.02)
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return killed

    shards = out / "shards"
    cache = out / "verify_cache" / "chgnet"
    first = kill_when(lambda: len(list(shards.glob("*.json"))) >= 1)  # during generation
    second = kill_when(lambda: len(list(cache.glob("*.json"))) >= 1)  # during verification
    if not (first and second):
        pytest.skip("the campaign finished before it could be killed twice")
    assert not (out / "candidates.csv").exists()
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    clean = subprocess.run([*cmd[:-3], "--out", str(tmp_path / "clean"), "--no-progress"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr[-2000:]
    assert (out / "candidates.csv").read_text() == (tmp_path / "clean" / "candidates.csv").read_text()
