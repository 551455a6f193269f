"""Damaged multi-XYZ files through ``molgen evaluate`` and ``molgen dft``: without --skip-unreadable the first bad
frame stops the command (exit 2, file, frame and line named); with it the good frames are processed and the bad
ones are reported with their frame and line numbers (counted from 1)."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest

from molgen.cli import main
from molgen.io import read_molecules

pytest.importorskip("rdkit")

METHANE = ["C 0.000 0.000 0.000", "H 0.629 0.629 0.629", "H -0.629 -0.629 0.629", "H -0.629 0.629 -0.629",
           "H 0.629 -0.629 -0.629"]


def frame(name: str, atoms=METHANE, count=None) -> str:
    return "\n".join([str(len(atoms) if count is None else count), name, *atoms]) + "\n"


def truncated_file(tmp_path):
    """Two methane frames (lines 1-14), then a third whose count line (15) announces 5 atoms; only 2 follow."""
    path = tmp_path / "trunc.xyz"
    path.write_text(frame("one") + frame("two") + frame("three")[: -len("\n".join(METHANE[2:])) - 1])
    assert path.read_text().count("\n") == 18
    return path


TRUNCATED_REASON = "frame announces 5 atoms but the file ends early (after 2 atom line(s))"


def test_evaluate_stops_at_a_truncated_frame_and_names_it(tmp_path, capsys):
    path = truncated_file(tmp_path)
    assert main(["evaluate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.strip() == (f"molgen: error: {path}: frame 3, line 15: {TRUNCATED_REASON} "
                           "(pass --skip-unreadable to skip it and read the rest)")
    assert not (tmp_path / "trunc.metrics.json").exists()


def test_evaluate_skip_unreadable_processes_the_good_frames(tmp_path, capsys):
    path = truncated_file(tmp_path)
    assert main(["evaluate", str(path), "--skip-unreadable"]) == 0
    out, err = capsys.readouterr()
    assert f"2 molecules from {path} (1 skipped)" in out
    assert err.strip() == f"warning: {path}: skipped 1 unreadable frame(s): frame 3, line 15: {TRUNCATED_REASON}"
    record = json.loads((tmp_path / "trunc.metrics.json").read_text())
    assert record["n_molecules"] == 2 and record["n_skipped"] == 1
    assert record["skipped_records"] == [{"record": 3, "line": 15, "reason": TRUNCATED_REASON}]
    assert "property_mae" in record["skipped"]  # the evaluators that could not run keep their own key
    assert record["metrics"]["mol_stability"] == 1.0  # both methanes were evaluated


@pytest.mark.parametrize(("middle", "number", "line", "reason"), [
    # a garbled coordinate: the count is right, the next frame is found where it says
    (frame("bad", [*METHANE[:2], "H -0.629 oops 0.629", *METHANE[3:]]), 2, 12, "expected 'symbol x y z', got"),
    # a frame that announces 6 atoms but has 5 runs into the next frame's count line, which is kept
    (frame("short", count=6), 2, 15, "expected 'symbol x y z', got '5'"),
    # a count line that is not a number: reading resumes at the next count line
    (frame("nocount").replace("5\n", "five\n", 1), 2, 8, "expected an atom count, got 'five'"),
])
def test_one_damaged_frame_costs_only_itself(tmp_path, middle, number, line, reason):
    path = tmp_path / "middle.xyz"
    path.write_text(frame("first") + middle + frame("last"))
    with pytest.raises(ValueError, match=rf"middle\.xyz: frame {number}, line {line}: "):
        read_molecules(path)
    read = read_molecules(path, on_error="skip")
    assert read.names == ["first", "last"] and [m.GetNumAtoms() for m in read.mols] == [5, 5]
    assert [(r.number, r.line, r.kind) for r in read.skipped] == [(number, line, "frame")]
    assert read.skipped[0].reason.startswith(reason)
    assert read.record_index == [0, 2] and read.record_lines == [1, line_of_last(path)]


def line_of_last(path) -> int:
    lines = path.read_text().splitlines()
    return max(k for k, text in enumerate(lines, start=1) if text == "5" and lines[k] == "last")


def test_unknown_element_is_reported_at_its_line(tmp_path):
    path = tmp_path / "el.xyz"
    path.write_text(frame("ok") + frame("xx", [*METHANE[:3], "Xx 1 1 1", METHANE[4]]))
    read = read_molecules(path, on_error="skip")
    assert len(read) == 1
    assert str(read.skipped[0]) == "frame 2, line 13: unknown element symbol 'Xx'"


def test_sdf_records_are_numbered_from_one_with_their_first_line(tmp_path):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    blocks = []
    for smiles in ("C", "CCl", "O"):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=0)
        blocks.append(Chem.MolToMolBlock(mol) + "$$$$\n")
    path = tmp_path / "m.sdf"
    path.write_text("".join(blocks))
    read = read_molecules(path, on_error="skip")
    second_start = blocks[0].count("\n") + 1
    assert len(read) == 2 and read.record_lines == [1, second_start + blocks[1].count("\n")]
    assert [(r.number, r.line) for r in read.skipped] == [(2, second_start)]
    assert str(read.skipped[0]).startswith(f"molecule 2, line {second_start}: unsupported element(s) Cl")


@pytest.mark.skipif(importlib.util.find_spec("tblite") is None, reason="tblite not installed")
def test_dft_skip_unreadable_computes_the_good_frames_and_lists_the_bad(tmp_path, capsys):
    path = truncated_file(tmp_path)
    cache = tmp_path / "cache"
    assert main(["dft", str(path), "--method", "xtb", "--cache", str(cache), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: frame 3, line 15: frame announces 5 atoms" in err and "--skip-unreadable" in err
    assert not (tmp_path / "trunc.xtb.json").exists()

    assert main(["dft", str(path), "--method", "xtb", "--cache", str(cache), "--no-progress",
                 "--skip-unreadable"]) == 0
    out, err = capsys.readouterr()
    assert "2/2 ok (0 from cache; 1 unreadable skipped)" in out
    assert "skipped 1 unreadable frame(s): frame 3, line 15" in err
    data = json.loads((tmp_path / "trunc.xtb.json").read_text())
    assert [(r["record"], r["name"], r["status"]) for r in data["results"]] == [(1, "one", "ok"), (2, "two", "ok")]
    assert data["results"][0]["values"]["energy_eV"] == pytest.approx(data["results"][1]["values"]["energy_eV"])
    assert data["skipped"] == [{"record": 3, "line": 15, "reason": TRUNCATED_REASON}]
    rows = list(csv.DictReader((tmp_path / "trunc.xtb.csv").open()))
    assert [(r["record"], r["status"]) for r in rows] == [("1", "ok"), ("2", "ok"), ("3", "skipped")]
    assert rows[2]["reason"] == f"frame 3, line 15: {TRUNCATED_REASON}" and rows[2]["energy_eV"] == ""
    assert float(rows[0]["gap_eV"]) > 5
