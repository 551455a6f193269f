"""molgen campaigns through the CLI with the embedded generator: outputs, filters, ranking, resume, spec errors."""

import csv

import pytest

from molgen.cli import main

SPEC = """target: {gap: 6.5}
n_candidates: 8
batch_size: 4
steps: 8
filters: {valid: true, unique: true, max_atoms: 30, elements: [H, C, N, O, F]}
verify: [regressor]
rank_by: regressor:gap
top_k: 3
seed: 2
executor: serial
"""


def _write(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_campaign_runs_resumes_and_reports(tmp_path, capsys):
    spec = _write(tmp_path, SPEC)
    out = tmp_path / "run"
    assert main(["campaign", str(spec), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "generated                8" in printed and "(2 of 2 shards computed now)" in printed
    with open(out / "candidates.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and {"filter_valid", "filter_unique", "filter_max_atoms", "filter_elements",
                               "regressor_status", "regressor_gap", "rank"} <= set(rows[0])
    passed = [r for r in rows if r["passed_filters"] == "True"]
    assert all(r["regressor_status"] == "ok" for r in passed)
    ranked = sorted((int(r["rank"]), abs(float(r["regressor_gap"]) - 6.5)) for r in rows if r["rank"])
    assert ranked and [d for _, d in ranked] == sorted(d for _, d in ranked)
    top = (out / "top_k.sdf").read_text()
    assert top.count("$$$$") == min(3, len(ranked)) and "<regressor_gap>" in top
    for name in ("funnel.png", "target_gap.png", "top_k.png", "report.md", "report.html"):
        assert (out / name).stat().st_size > 500, name
    # candidates are MMFF-relaxed by default: strain beside every relaxed one, and a named filter for the rest
    assert {"filter_relaxed_intact", "relax_energy_eV", "relax_heavy_rmsd_A", "relax_status"} <= set(rows[0])
    for row in rows:
        assert (row["filter_relaxed_intact"] == "True") == (row["relax_status"] == "ok" and
                                                           row["relax_bonding_changed"] == "0")
        if row["relax_status"] == "ok":
            assert float(row["relax_energy_eV"]) >= -1e-6 and float(row["relax_heavy_rmsd_A"]) >= 0
    assert all(r["filter_relaxed_intact"] == "True" for r in passed)
    report = (out / "report.md").read_text()
    assert "MMFF94-relaxed geometries" in report and "relax_energy_eV" in report
    assert "filter: relaxed_intact" in report and "<relax_energy_eV>" in top

    # rerun: nothing recomputed, same candidates; overrides after options are accepted and checked
    before = (out / "candidates.csv").read_text()
    assert main(["campaign", str(spec), "--out", str(out), "--no-progress"]) == 0
    assert "(0 of 2 shards computed now)" in capsys.readouterr().out
    assert (out / "candidates.csv").read_text() == before
    assert main(["campaign", str(spec), "--out", str(out), "--no-progress", "n_candidates=9"]) == 2
    assert "holds a different campaign (changed: n_candidates)" in capsys.readouterr().err
    assert main(["campaign", "status", str(out)]) == 0
    assert "shards: 2/2 done" in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    ("filters: {valid: true, pretty: true}", "unknown filter(s) ['pretty']"),
    ("target: {gap: 60.0}", "outside the training range"),
    ("target: {bandgap: 6.0}", "unknown property 'bandgap'"),
    ("verify: [dft9]", "unknown verifier(s) ['dft9']"),
    ("rank_by: xtb:gap", "not in verify"),
    ("colour: blue", "colour"),
    ("n_candidates: -3", "n_candidates must be >= 1"),
    ("relax: uff", "relax: 'uff'; molgen relaxes with mmff, xtb, none"),
])
def test_bad_specs_fail_before_any_work(tmp_path, capsys, change, message):
    key = change.split(":")[0]
    lines = [line for line in SPEC.splitlines() if not line.startswith(key + ":")] + [change]
    spec = _write(tmp_path, "\n".join(lines) + "\n")
    assert main(["campaign", str(spec), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "shards").exists()


def test_novel_filter_needs_qm9(tmp_path, capsys):
    spec = _write(tmp_path, SPEC.replace("unique: true", "unique: true, novel: true"))
    assert main(["campaign", str(spec), "--out", str(tmp_path / "run"), "--qm9", str(tmp_path / "no.pt")]) == 2
    assert "filters.novel needs the prepared QM9" in capsys.readouterr().err
