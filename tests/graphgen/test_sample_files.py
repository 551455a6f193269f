"""``read_samples`` / ``graphgen evaluate`` on damaged sample files: garbage SMILES lines count as invalid
molecules and are named in one warning; empty and binary files are one-line errors naming the file."""

from __future__ import annotations

import json

import pytest

from graphgen.cli import main
from graphgen.sampling import read_samples

pytest.importorskip("rdkit")


def evaluate(path, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SCOREGEN_DATA", raising=False)  # validity needs no reference data
    code = main(["evaluate", str(path), "--dataset", "QM9", "--out", str(tmp_path / "metrics.json")])
    out, err = capsys.readouterr()
    return code, out, err


def test_garbage_lines_are_invalid_molecules_and_named_in_a_warning(tmp_path, capsys, monkeypatch):
    path = tmp_path / "mixed.smi"
    # lines 1, 3, 5 are molecules; 2 is prose, 4 holds a NUL byte, 6 is invalid UTF-8 and long binary junk
    path.write_bytes(b"CCO\nthis is not smiles at all, it is a sentence\nc1ccccc1\nC\x00C\nCCN\n\xff\xfe" +
                     b"\x01" * 50 + b"\n")
    code, out, err = evaluate(path, tmp_path, capsys, monkeypatch)
    assert code == 0
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warning == [f"warning: {path}: 3 of 6 lines are not SMILES and count as invalid molecules: "
                       "line 2 'this is not smiles at all, it ...', line 4 'C\\x00C', "
                       "line 6 '\ufffd\ufffd" + "\\x01" * 28 + "...'"]
    assert "SMILES Parse Error" not in err  # RDKit's own per-line noise is silenced
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_samples"] == 6
    assert metrics["validity_wo_correction"] == pytest.approx(3 / 6)  # the good lines were evaluated


def test_many_bad_lines_name_the_first_five(tmp_path):
    path = tmp_path / "junk.smi"
    path.write_text("CCO\n" + "".join(f"garbage{k}\n" for k in range(8)))
    warnings = []
    items, is_molecule = read_samples(path, warn=warnings.append)
    assert is_molecule and len(items) == 9 and items[0] == "CCO"
    assert len(warnings) == 1
    assert "8 of 9 lines are not SMILES" in warnings[0]
    assert "line 2 'garbage0'" in warnings[0] and "line 6 'garbage4'" in warnings[0]
    assert "line 7" not in warnings[0] and warnings[0].endswith("and 3 more")


def test_blank_and_chemically_invalid_lines_are_not_garbage(tmp_path):
    """An empty line (a molecule the sampler could not write) and an over-valent SMILES are invalid molecules,
    not damage to the file: they count against validity without a warning."""
    path = tmp_path / "samples.smi"
    path.write_text("CCO\n\nC(C)(C)(C)(C)C\nc1ccccc1 name\n")
    warnings = []
    items, _ = read_samples(path, warn=warnings.append)
    assert items == ["CCO", "", "C(C)(C)(C)(C)C", "c1ccccc1"] and warnings == []


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "is empty: no samples to evaluate"),
    (b"\n  \n\n", "is empty: no samples to evaluate"),
    (bytes(range(256)) * 8, "is a binary file, not SMILES text"),
    (b"PK\x03\x04\x00\x00\x08\x00" + b"\x00" * 40 + b"\nCCO\n", "is a binary file, not SMILES text (1 of 2 lines"),
])
def test_empty_and_binary_files_are_one_line_errors(content, expected, tmp_path, capsys, monkeypatch):
    path = tmp_path / "samples.smi"
    path.write_bytes(content)
    code, out, err = evaluate(path, tmp_path, capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"graphgen: error: {path} {expected}"), err
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("g.json", b'{"graphs": [{"num_nodes": 2, "edges": [[0, 1]]}, ', "not valid JSON (line 1, column"),
    ("g.json", b'{"graphs": [{"num_nodes": 2, "edges": [[0, 1]]}, {"edges": []}]}', "graph 2 is not"),
    ("g.json", b"\x00\x01\x02", "is a binary file (NUL bytes or invalid UTF-8)"),
    ("g.graphml", b"<graphml><graph", "not a readable GraphML file"),
    ("g.sdf", b"no records in here\n", "no readable SDF record"),
    ("g.smi", b"x,y,z\n1.0,2.0,oops\n", "none of its 2 lines is SMILES (line 1 'x,y,z'); is it a SMILES file?"),
])
def test_damaged_graph_and_sdf_files_name_the_problem(name, content, expected, tmp_path):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        read_samples(path)
    assert str(info.value).startswith(f"{path}") and expected in str(info.value), str(info.value)


def test_sdf_records_that_are_not_sdf_are_named(tmp_path):
    from rdkit import Chem

    good = Chem.MolToMolBlock(Chem.MolFromSmiles("CCO")) + "$$$$\n"
    overvalent = Chem.MolFromSmiles("C(C)(C)(C)(C)C", sanitize=False)
    invalid = Chem.MolToMolBlock(overvalent, kekulize=False) + "$$$$\n"
    path = tmp_path / "samples.sdf"
    path.write_text(good + "garbage\nnot a mol block\n$$$$\n" + invalid + good)
    warnings = []
    items, is_molecule = read_samples(path, warn=warnings.append)
    assert is_molecule and items == ["CCO", "", "", "CCO"]  # the damaged and the over-valent record are invalid
    assert warnings == [f"{path}: 1 of 4 records are not readable SDF and count as invalid molecules: record(s) 2"]
