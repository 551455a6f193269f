"""graphgen campaigns through the CLI with the embedded QM9 model: filters, xTB ranking, resume, spec errors."""

import csv
import importlib.util

import pytest

from graphgen.cli import main

SPEC = """target: {gap: 5.0}
n_candidates: 6
batch_size: 3
steps: 20
filters: {valid: true, unique: true, max_atoms: 9, elements: [C, N, O, F]}
verify: [xtb]
rank_by: xtb:gap
top_k: 2
executor: serial
"""


@pytest.mark.skipif(importlib.util.find_spec("tblite") is None, reason="tblite not installed")
def test_campaign_ranks_by_xtb_and_resumes(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "run"
    assert main(["campaign", str(spec), "--out", str(out), "--no-progress"]) == 0
    with open(out / "candidates.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and "xtb_gap_eV" in rows[0]
    ranked = sorted((int(r["rank"]), abs(float(r["xtb_gap_eV"]) - 5.0)) for r in rows if r["rank"])
    assert ranked and [d for _, d in ranked] == sorted(d for _, d in ranked)
    assert (out / "top_k.smi").read_text().count("\n") == min(2, len(ranked))
    assert (out / "top_k.sdf").read_text().count("$$$$") == min(2, len(ranked))
    before = (out / "candidates.csv").read_text()
    assert main(["campaign", str(spec), "--out", str(out), "--no-progress"]) == 0
    assert "(0 of 2 shards computed now)" in capsys.readouterr().out
    assert (out / "candidates.csv").read_text() == before


@pytest.mark.parametrize("extra, message", [
    ("guidance_scale: 2.0", "unconditional"),
    ("rank_by: xtb:mu", "target.mu"),
    ("filters: {valid: true, shiny: true}", "unknown filter(s) ['shiny']"),
])
def test_bad_specs(tmp_path, capsys, extra, message):
    key = extra.split(":")[0]
    spec = tmp_path / "spec.yaml"
    spec.write_text("\n".join([ln for ln in SPEC.splitlines() if not ln.startswith(key + ":")] + [extra]) + "\n")
    assert main(["campaign", str(spec), "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
