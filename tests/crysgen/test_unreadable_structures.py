"""Damaged generated crystals (a CIF whose loop_ has no values, a text file named .cif, a garbage ``cif`` cell in a
CSV): without --skip-unreadable the first one stops the command in one line (exit 2) naming the file or row; with
it the good structures are processed and the bad ones reported by file name / row (counted from 1) with the
reason. Never a traceback."""

from __future__ import annotations

import csv
import json

import pytest

from crysgen.cli import main
from crysgen.io import parse_cif_text, read_structures

pymatgen = pytest.importorskip("pymatgen.core")

EMPTY_LOOP = "malformed CIF: a loop_ names its columns but holds no values"
NOT_A_CIF = "not a CIF (no data_ block; it begins 'these are my notes, not a crystal')"


def cu3au(a: float = 3.75):
    """L1_2 Cu3Au: four sites, elements EMT knows, so relaxing it takes milliseconds."""
    return pymatgen.Structure(pymatgen.Lattice.cubic(a), ["Au", "Cu", "Cu", "Cu"],
                              [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def good_cif(a: float = 3.75) -> str:
    return cu3au(a).to(fmt="cif")


def empty_loop_cif() -> str:
    """A CIF whose atom-site loop lists its columns and no rows (pymatgen: ZeroDivisionError)."""
    head = good_cif().split("loop_\n _atom_site_type_symbol")[0]
    return head + "loop_\n _atom_site_type_symbol\n _atom_site_label\n _atom_site_fract_x\n _atom_site_fract_y\n" \
                  " _atom_site_fract_z\n _atom_site_occupancy\n"


def cif_folder(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / "a_good.cif").write_text(good_cif(3.75))
    (folder / "b_empty_loop.cif").write_text(empty_loop_cif())
    (folder / "c_notes.cif").write_text("these are my notes, not a crystal\n")
    (folder / "d_good.cif").write_text(good_cif(3.8))
    return folder


def cif_csv(tmp_path):
    path = tmp_path / "generated.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["material_id", "cif"])
        writer.writeheader()
        writer.writerows([{"material_id": "m1", "cif": good_cif(3.75)},
                          {"material_id": "m2", "cif": "data_junk\n_cell_length_a banana\n"},
                          {"material_id": "m3", "cif": ""},  # an undecoded sample: None, not damage
                          {"material_id": "m4", "cif": good_cif(3.7)}])
    return path


def test_parse_cif_text_says_why():
    assert len(parse_cif_text(good_cif())) == 4
    for text, reason in [(empty_loop_cif(), EMPTY_LOOP), ("these are my notes, not a crystal\n", NOT_A_CIF),
                         ("  \n", "empty CIF")]:
        with pytest.raises(ValueError) as info:
            parse_cif_text(text)
        assert str(info.value) == reason


def test_cif_folder_skips_the_bad_files_by_name(tmp_path):
    folder = cif_folder(tmp_path)
    with pytest.raises(ValueError) as info:
        read_structures(folder)
    assert str(info.value) == f"{folder}: b_empty_loop.cif: {EMPTY_LOOP}"
    read = read_structures(folder, on_error="skip")
    assert read.names == ["a_good", "d_good"] and [len(s) for s in read.structures] == [4, 4]
    assert [s.to_dict() for s in read.skipped] == [{"source": "b_empty_loop.cif", "reason": EMPTY_LOOP},
                                                   {"source": "c_notes.cif", "reason": NOT_A_CIF}]


def test_csv_skips_the_bad_row_by_number(tmp_path):
    path = cif_csv(tmp_path)
    with pytest.raises(ValueError, match=r"generated\.csv: row 2 \(m2\): ValueError: Invalid CIF file"):
        read_structures(path)
    read = read_structures(path, on_error="skip")
    assert read.names == ["m1", "m3", "m4"]
    assert [None if s is None else len(s) for s in read.structures] == [4, None, 4]
    assert [s.source for s in read.skipped] == ["row 2 (m2)"]
    assert "banana" in read.skipped[0].reason  # pymatgen's warning says what it could not read


def test_sample_directory_with_a_damaged_cif(tmp_path):
    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / "summary.csv").write_text("index,decoded\n0,True\n1,True\n2,False\n3,True\n")
    (folder / "sample_00000.cif").write_text(good_cif())
    (folder / "sample_00001.cif").write_bytes(b"\x00\x01binary")
    (folder / "sample_00003.cif").write_text(empty_loop_cif())
    read = read_structures(folder / "summary.csv", on_error="skip")
    assert [s is not None for s in read.structures] == [True, False]  # sample 2 was never decoded
    assert [str(s) for s in read.skipped] == ["sample_00001.cif: a binary file, not a CIF",
                                              f"sample_00003.cif: {EMPTY_LOOP}"]


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "is empty: expected a header line"),
    (b"material_id,formula\nm1,CaTiO3\n", "no 'cif' column (header: material_id, formula)"),
    (b"\xff\xfe\x00garbage", "is not a text CSV file"),
])
def test_unusable_csv_files_are_one_line_errors(content, expected, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    assert main(["relax", str(path), "--calculator", "emt", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"crysgen: error: {path}") and expected in err, err


def test_nothing_readable_is_an_error_even_when_skipping(tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "x.cif").write_text(empty_loop_cif())
    assert main(["relax", str(folder), "--skip-unreadable", "--calculator", "emt", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{folder}: no readable structure (x.cif: {EMPTY_LOOP})" in err


@pytest.mark.parametrize("layout", ["folder", "csv"])
def test_evaluate_without_the_flag_stops_with_one_line(layout, tmp_path, capsys):
    source = cif_folder(tmp_path) if layout == "folder" else cif_csv(tmp_path)
    assert main(["evaluate", str(source)]) == 2
    out, err = capsys.readouterr()
    bad = "b_empty_loop.cif: " + EMPTY_LOOP if layout == "folder" else "row 2 (m2): ValueError: Invalid CIF file"
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"crysgen: error: {source}: {bad}") and "--skip-unreadable" in err, err


@pytest.mark.parametrize("layout", ["folder", "csv"])
def test_relax_skip_unreadable_relaxes_the_good_structures(layout, tmp_path, capsys):
    pytest.importorskip("ase")
    source = cif_folder(tmp_path) if layout == "folder" else cif_csv(tmp_path)
    out_dir = tmp_path / "relaxed"
    assert main(["relax", str(source), "--skip-unreadable", "--calculator", "emt", "--steps", "300", "--fmax", "0.2",
                 "--out", str(out_dir), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "relaxed with emt: 2/2 ok" in out
    report = json.loads((out_dir / "energies.json").read_text())
    assert len(report["results"]) == 2 and all(r["status"] == "ok" for r in report["results"])
    if layout == "folder":
        assert err.strip() == (f"warning: {source}: skipped 2 unreadable structure(s): b_empty_loop.cif: "
                               f"{EMPTY_LOOP}; c_notes.cif: {NOT_A_CIF}")
        assert [u["source"] for u in report["unreadable"]] == ["b_empty_loop.cif", "c_notes.cif"]
    else:
        assert err.startswith(f"warning: {source}: skipped 1 unreadable structure(s): row 2 (m2): ")
        assert [u["source"] for u in report["unreadable"]] == ["row 2 (m2)"]
    assert "Traceback" not in err


def test_evaluate_skip_unreadable_scores_the_good_structures(tmp_path, capsys, monkeypatch):
    """The reference split holds the two good structures themselves, so the metrics are known."""
    pytest.importorskip("matminer")
    from crysgen.data import write_cdvae_csv

    dataset = tmp_path / "perov_5"  # a folder named like the benchmark gets its COV cut-offs
    dataset.mkdir()
    write_cdvae_csv(dataset / "test.csv", [cu3au(3.75), cu3au(3.8)], ["r1", "r2"])
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the fingerprint cache goes to ~/.cache/scoregen
    folder = cif_folder(tmp_path)
    assert main(["evaluate", str(folder), "--skip-unreadable", "--threads", "1", "--dataset", str(dataset),
                 "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert err.startswith(f"warning: {folder}: skipped 2 unreadable structure(s): b_empty_loop.cif")
    assert "note: " in err and "no train split: novelty is not computed" in err
    assert "Traceback" not in err
    report = json.loads((folder / "metrics.json").read_text())
    assert report["metrics"]["struct_valid"] == 1.0 and report["protocol"]["n_generated"] == 2
    assert [u["source"] for u in report["unreadable"]] == ["b_empty_loop.cif", "c_notes.cif"]
    assert "cov_recall: 1.0000" in out
