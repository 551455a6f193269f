"""The bad-input matrix: every command that reads a user file, fed each kind of malformed file.

For each (command, input) the expected exit code and the words of its one-line message; where the file mixes good
and bad records, that the good ones were processed (and the bad ones named by their position, counted from 1); where
the command fails, that an earlier result at its output path is untouched. No case may print a traceback.

The convention (README, "Bad input"): molecule and crystal files stop at the first unreadable record with exit code 2
unless ``--skip-unreadable`` is given, then the rest is processed and each skipped record is reported; SMILES sample
files count unreadable lines as invalid molecules (GDSS's validity) with a warning naming the lines, except
``graphgen dft``, which computes something per line and so follows the molecule-file rule. Configs and campaign
specs are all-or-nothing. Model files are covered by test_model_files.py.
"""

from __future__ import annotations

import csv
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

OLD = "earlier result, must survive\n"
BINARY = bytes(range(256)) * 4
WATER = "3\nwater\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n"
AMMONIA = "4\nammonia\nN 0.0 0.0 0.1\nH 0.0 0.94 -0.27\nH 0.81 -0.47 -0.27\nH -0.81 -0.47 -0.27\n"


def _frame(first_atom_line: str) -> str:
    return f"3\nbad\n{first_atom_line}\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n"


def _molblock(smiles: str) -> str:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    return Chem.MolToMolBlock(mol) + "$$$$\n"


def _cif(structure) -> str:
    from crysgen.representation import structure_to_cif

    return structure_to_cif(structure)


def _copper():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(3.61), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def _perovskite():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


BAD_CIFS = {  # file name -> (contents, words of the reason)
    "empty_loop.cif": ("data_x\nloop_\n_atom_site_label\n_atom_site_fract_x\n", "malformed CIF"),
    "plain.cif": ("this is not a crystal\n", "not a CIF"),
    "binary.cif": (BINARY, "binary file"),
    "nan_cell.cif": (None, "non-finite cell"),
    "unknown.cif": (None, "unknown element 'Xx'"),
}


def _bad_cif(name: str) -> str | bytes:
    text, _ = BAD_CIFS[name]
    if text is not None:
        return text
    good = _cif(_perovskite())
    if name == "nan_cell.cif":
        return good.replace("_cell_length_a", "_cell_length_a nan #")
    return good.replace("Ti  Ti1", "Xx  Xx1").replace("Ti ", "Xx ")


# ----------------------------------------------------------------------------------------------------- cases
@dataclass
class Case:
    program: str
    argv: list[str]  # "{in}" is the input path, "{out}" the output path, "{dir}" the working directory
    files: dict[str, str | bytes | Callable[[], str | bytes]]  # name -> contents (the first is "{in}")
    code: int
    words: list[str]  # in stderr, in this order
    out: str | None = None  # output path (relative) that must keep OLD when the command fails
    check: Callable[[Path], None] | None = None  # what the good records produced
    env: dict[str, str] = field(default_factory=dict)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _graphgen_metrics(valid_fraction: float, n: int):
    def check(work: Path) -> None:
        metrics = _json(work / "metrics.json")
        assert metrics["num_samples"] == n and metrics["validity_wo_correction"] == pytest.approx(valid_fraction)
    return check


def _dft_rows(name: str, statuses: list[str]):
    def check(work: Path) -> None:
        assert [row["status"] for row in _csv_rows(work / name)] == statuses
    return check


def _molgen_metrics(n_molecules: int, skipped_records: list[int]):
    def check(work: Path) -> None:
        report = _json(work / "mols.metrics.json")
        assert report["n_molecules"] == n_molecules
        assert [s["record"] for s in report["skipped_records"]] == skipped_records
    return check


def _crysgen_metrics(n_generated: int):
    def check(work: Path) -> None:
        report = _json(work / "metrics.json")
        assert report["protocol"]["n_generated"] == n_generated, report["protocol"]
    return check


def _relaxed(n: int):
    def check(work: Path) -> None:
        assert len(list((work / "relaxed").glob("*.cif"))) == n
    return check


SMILES_EVAL = ["evaluate", "{in}", "--dataset", "QM9", "--no-fcd", "--out", "{out}"]
GRAPHGEN_DFT = ["dft", "{in}", "--method", "xtb", "--out", "{dir}/mols.xtb"]
MOLGEN_EVAL = ["evaluate", "{in}", "--out", "{dir}/mols.metrics.json"]
MOLGEN_DFT = ["dft", "{in}", "--method", "xtb", "--out", "{dir}/mols.xtb"]
CRYS_EVAL = ["evaluate", "{in}", "--dataset", "{dir}/reference", "--train-split", "none", "--out", "{out}"]


def _reference_csv() -> str:
    from pymatgen.core import Lattice, Structure

    rows = [("ref-1", _perovskite()), ("ref-2", _copper()),
            ("ref-3", Structure(Lattice.cubic(4.0), ["Ba", "Zr", "O", "O", "O"], _perovskite().frac_coords))]
    lines = ["material_id,cif"] + [f'{mid},"{_cif(s)}"' for mid, s in rows]
    return "\n".join(lines) + "\n"


def _cif_dir(*bad: str) -> dict:
    files = {"good_1.cif": lambda: _cif(_perovskite()), "good_2.cif": lambda: _cif(_copper())}
    files.update({name: (lambda n=name: _bad_cif(n)) for name in bad})
    return {f"cifs/{name}": value for name, value in files.items()}


CASES = {
    # ---- graphgen evaluate: SMILES lines (unreadable lines are invalid molecules, with a warning)
    "graphgen-evaluate-empty": Case("graphgen", SMILES_EVAL, {"mols.smi": ""}, 2, ["mols.smi is empty"],
                                    out="metrics.json"),
    "graphgen-evaluate-binary": Case("graphgen", SMILES_EVAL, {"mols.smi": BINARY}, 2, ["binary file"],
                                     out="metrics.json"),
    "graphgen-evaluate-wrong-format": Case("graphgen", SMILES_EVAL, {"mols.smi": lambda: _molblock("CCO")}, 2,
                                           ["none of its", "is it a SMILES file?"], out="metrics.json"),
    "graphgen-evaluate-mixed": Case("graphgen", SMILES_EVAL, {"mols.smi": "CCO\nC1CC(\n\x00\x00\nc1ccccc1\n"}, 0,
                                    ["2 of 4 lines are not SMILES", "line 2", "line 3"],
                                    check=_graphgen_metrics(0.5, 4)),
    "graphgen-evaluate-unknown-element": Case("graphgen", SMILES_EVAL, {"mols.smi": "[Xx]C\nCCO\n"}, 0,
                                              ["line 1 '[Xx]C'"], check=_graphgen_metrics(0.5, 2)),
    "graphgen-evaluate-huge": Case("graphgen", SMILES_EVAL, {"mols.smi": "C" * 3000 + "\nCCO\n"}, 0, [],
                                   check=_graphgen_metrics(1.0, 2)),
    "graphgen-evaluate-sdf-mixed": Case("graphgen", SMILES_EVAL,  # the good record after a broken one is kept
                                        {"mols.sdf": lambda: _molblock("CCO") + "garbage\n\n\n$$$$\n" + _molblock("N")},
                                        0, ["1 of 3 records", "record(s) 2"], check=_graphgen_metrics(2 / 3, 3)),
    # ---- graphgen dft: one result per line, so unreadable lines stop it unless skipped
    "graphgen-dft-mixed": Case("graphgen", GRAPHGEN_DFT, {"mols.smi": "O\nC1CC(\nN\n"}, 2,
                               ["line 2", "--skip-unreadable"], out="mols.xtb.csv"),
    "graphgen-dft-mixed-skipped": Case("graphgen", [*GRAPHGEN_DFT, "--skip-unreadable"],
                                       {"mols.smi": "O\nC1CC(\nN\n"}, 0, [],
                                       check=_dft_rows("mols.xtb.csv", ["ok", "unreadable", "ok"])),
    "graphgen-dft-binary": Case("graphgen", GRAPHGEN_DFT, {"mols.smi": BINARY}, 2, ["binary file"],
                                out="mols.xtb.csv"),
    "graphgen-dft-empty": Case("graphgen", GRAPHGEN_DFT, {"mols.smi": "\n"}, 2, ["empty"], out="mols.xtb.csv"),
    # ---- configs and specs (all-or-nothing)
    "graphgen-train-empty": Case("graphgen", ["train", "{in}", "--run-dir", "{dir}/run"], {"c.yaml": ""}, 2,
                                 ["c.yaml", "holds no settings"]),
    "graphgen-train-binary": Case("graphgen", ["train", "{in}", "--run-dir", "{dir}/run"], {"c.yaml": BINARY}, 2,
                                  ["c.yaml", "binary file"]),
    "graphgen-train-truncated": Case("graphgen", ["train", "{in}", "--run-dir", "{dir}/run"],
                                     {"c.yaml": "train:\n  lr: [1,\n"}, 2, ["c.yaml", "invalid YAML"]),
    "graphgen-train-nan": Case("graphgen", ["train", "community_small", "train.lr=.nan", "--run-dir", "{dir}/run"],
                               {}, 2, ["train.lr must be a finite number"]),
    "graphgen-train-not-a-number": Case("graphgen", ["train", "community_small", "train.lr=fast",
                                                     "--run-dir", "{dir}/run"], {}, 2, ["train.lr", "expected float"]),
    "graphgen-train-huge": Case("graphgen", ["train", "community_small", "train.max_steps=1e400",
                                             "--run-dir", "{dir}/run"], {}, 2, ["max_steps"]),
    "graphgen-import-gdss-binary": Case("graphgen", ["import-gdss", "{in}", "{out}"],
                                        {"gdss.pth": BINARY}, 2, ["gdss.pth"], out="model.pt"),
    "graphgen-import-gdss-empty": Case("graphgen", ["import-gdss", "{in}", "{out}"],
                                       {"gdss.pth": b""}, 2, ["gdss.pth"], out="model.pt"),
    "graphgen-campaign-empty": Case("graphgen", ["campaign", "{in}", "--out", "{dir}/camp"], {"s.yaml": ""}, 2,
                                    ["s.yaml", "holds no settings"]),
    "graphgen-campaign-binary": Case("graphgen", ["campaign", "{in}", "--out", "{dir}/camp"], {"s.yaml": BINARY},
                                     2, ["binary file"]),
    # ---- molgen evaluate: XYZ and SDF records
    "molgen-evaluate-empty": Case("molgen", MOLGEN_EVAL, {"mols.xyz": ""}, 2, ["empty XYZ file"],
                                  out="mols.metrics.json"),
    "molgen-evaluate-binary": Case("molgen", MOLGEN_EVAL, {"mols.xyz": BINARY}, 2, ["frame 1, line 1"],
                                   out="mols.metrics.json"),
    "molgen-evaluate-truncated": Case("molgen", MOLGEN_EVAL, {"mols.xyz": WATER + AMMONIA + "3\nwater\nO 0 0 0\n"},
                                      2, ["frame 3, line 12", "ends early", "--skip-unreadable"],
                                      out="mols.metrics.json"),
    "molgen-evaluate-truncated-skipped": Case("molgen", [*MOLGEN_EVAL, "--skip-unreadable"],
                                              {"mols.xyz": WATER + AMMONIA + "3\nwater\nO 0 0 0\n"}, 0,
                                              ["skipped 1 unreadable", "frame 3, line 12"],
                                              check=_molgen_metrics(2, [3])),
    "molgen-evaluate-nan": Case("molgen", MOLGEN_EVAL, {"mols.xyz": WATER + _frame("O nan 0.0 0.1173")}, 2,
                                ["frame 2, line 8", "non-finite coordinate"], out="mols.metrics.json"),
    "molgen-evaluate-inf-skipped": Case("molgen", [*MOLGEN_EVAL, "--skip-unreadable"],
                                        {"mols.xyz": _frame("O inf 0.0 0.1173") + WATER}, 0,
                                        ["frame 1, line 3", "non-finite coordinate"], check=_molgen_metrics(1, [1])),
    "molgen-evaluate-huge": Case("molgen", MOLGEN_EVAL, {"mols.xyz": _frame("O 1e30 0.0 0.1173") + WATER}, 0, [],
                                 check=_molgen_metrics(2, [])),
    "molgen-evaluate-unknown-element": Case("molgen", [*MOLGEN_EVAL, "--skip-unreadable"],
                                            {"mols.xyz": _frame("Xx 0.0 0.0 0.1") + WATER}, 0,
                                            ["frame 1, line 3", "unknown element symbol 'Xx'"],
                                            check=_molgen_metrics(1, [1])),
    "molgen-evaluate-wrong-format": Case("molgen", MOLGEN_EVAL, {"mols.xyz": "CCO\nc1ccccc1\n"}, 2,
                                         ["frame 1, line 1", "expected an atom count"], out="mols.metrics.json"),
    "molgen-evaluate-sdf-mixed": Case("molgen", [*MOLGEN_EVAL, "--skip-unreadable"],
                                      {"mols.sdf": lambda: _molblock("CCO") + "garbage\n\n\n$$$$\n" + _molblock("N")},
                                      0, ["molecule 2"], check=_molgen_metrics(2, [2])),
    "molgen-evaluate-sdf-binary": Case("molgen", MOLGEN_EVAL, {"mols.sdf": BINARY}, 2, ["molecule 1, line 1"],
                                       out="mols.metrics.json"),
    # ---- molgen dft
    "molgen-dft-nan": Case("molgen", MOLGEN_DFT, {"mols.xyz": WATER + _frame("O nan 0.0 0.1173")}, 2,
                           ["frame 2", "non-finite coordinate"], out="mols.xtb.csv"),
    "molgen-dft-nan-skipped": Case("molgen", [*MOLGEN_DFT, "--skip-unreadable"],
                                   {"mols.xyz": WATER + _frame("O nan 0.0 0.1173")}, 0, ["skipped 1 unreadable"],
                                   check=_dft_rows("mols.xtb.csv", ["ok", "skipped"])),
    "molgen-dft-empty": Case("molgen", MOLGEN_DFT, {"mols.xyz": ""}, 2, ["empty XYZ file"], out="mols.xtb.csv"),
    # ---- molgen configs
    "molgen-train-empty": Case("molgen", ["train", "{in}", "--run-dir", "{dir}/run"], {"c.yaml": "# nothing\n"}, 2,
                               ["c.yaml", "holds no settings"]),
    "molgen-train-binary": Case("molgen", ["train", "{in}", "--run-dir", "{dir}/run"], {"c.yaml": BINARY}, 2,
                                ["binary file"]),
    "molgen-train-nan": Case("molgen", ["train", "qm9_cpu", "trainer.lr=.nan", "--run-dir", "{dir}/run"], {}, 2,
                             ["lr must be a finite number"]),
    "molgen-campaign-truncated": Case("molgen", ["campaign", "{in}", "--out", "{dir}/camp"],
                                      {"s.yaml": "target: {gap: 6.5\n"}, 2, ["s.yaml", "invalid YAML"]),
    "molgen-campaign-nan-target": Case("molgen", ["campaign", "{in}", "--out", "{dir}/camp"],
                                       {"s.yaml": "target: {gap: .nan}\n"}, 2, ["gap"]),
    # ---- crysgen evaluate: CIF folders and CSVs
    "crysgen-evaluate-cif-dir": Case("crysgen", CRYS_EVAL, {"cifs": None, **_cif_dir(*BAD_CIFS)}, 2,
                                     ["binary.cif", "--skip-unreadable"], out="metrics.json"),
    "crysgen-evaluate-cif-dir-skipped": Case("crysgen", [*CRYS_EVAL, "--skip-unreadable"],
                                             {"cifs": None, **_cif_dir(*BAD_CIFS)}, 0,
                                             ["skipped 5 unreadable", "binary.cif", "empty_loop.cif", "nan_cell.cif",
                                              "plain.cif", "unknown.cif"], check=_crysgen_metrics(2)),
    "crysgen-evaluate-csv-mixed": Case("crysgen", [*CRYS_EVAL, "--skip-unreadable"],
                                       {"gen.csv": lambda: f'cif\n"{_cif(_copper())}"\ngarbage\n'
                                                           f'"{_bad_cif("nan_cell.cif")}"\n'},
                                       0, ["row 2", "row 3", "non-finite cell"], check=_crysgen_metrics(1)),
    "crysgen-evaluate-csv-binary": Case("crysgen", CRYS_EVAL, {"gen.csv": BINARY}, 2, ["gen.csv"],
                                        out="metrics.json"),
    "crysgen-evaluate-csv-no-cif-column": Case("crysgen", CRYS_EVAL, {"gen.csv": "a,b\n1,2\n"}, 2,
                                               ["no 'cif' column"], out="metrics.json"),
    "crysgen-evaluate-empty-dir": Case("crysgen", CRYS_EVAL, {"cifs": None}, 2, ["no summary.csv and no *.cif"],
                                       out="metrics.json"),
    # ---- crysgen relax
    "crysgen-relax-mixed": Case("crysgen", ["relax", "{in}", "--calculator", "emt", "--steps", "3", "--out",
                                            "{dir}/relaxed"], {"cifs": None, **_cif_dir("plain.cif")}, 2,
                                ["plain.cif", "not a CIF"]),
    "crysgen-relax-mixed-skipped": Case("crysgen", ["relax", "{in}", "--calculator", "emt", "--steps", "200",
                                                    "--skip-unreadable", "--out", "{dir}/relaxed"],
                                        {"cifs": None, **_cif_dir("plain.cif", "unknown.cif")}, 0,
                                        ["skipped 2 unreadable", "plain.cif", "unknown.cif"]),
    # ---- crysgen training data and configs
    "crysgen-train-csv-binary": Case("crysgen", ["train", "{in}", "--run-dir", "{dir}/run"], {"data.csv": BINARY},
                                     2, ["data.csv", "not a text CSV"]),
    "crysgen-train-csv-empty": Case("crysgen", ["train", "{in}", "--run-dir", "{dir}/run"], {"data.csv": ""}, 2,
                                    ["data.csv", "empty file"]),
    "crysgen-train-csv-columns": Case("crysgen", ["train", "{in}", "--run-dir", "{dir}/run"],
                                      {"data.csv": "cif\nx\n"}, 2, ["data.csv", "missing column", "material_id"]),
    "crysgen-train-yaml-nan": Case("crysgen", ["train", "{in}", "--run-dir", "{dir}/run"],
                                   {"c.yaml": "trainer:\n  lr: .nan\n"}, 2, ["lr must be a finite number"]),
    "crysgen-campaign-binary": Case("crysgen", ["campaign", "{in}", "--out", "{dir}/camp"], {"s.yaml": BINARY}, 2,
                                    ["binary file"]),
}


def _materialise(case: Case, work: Path) -> Path | None:
    first = None
    for name, contents in case.files.items():
        path = work / name
        first = first or path
        if contents is None:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        value = contents() if callable(contents) else contents
        path.write_bytes(value if isinstance(value, bytes) else value.encode())
    if case.program == "crysgen" and "--dataset" in case.argv:
        (work / "reference").mkdir()
        (work / "reference" / "test.csv").write_text(_reference_csv())
    return first


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCOREGEN_DEBUG", raising=False)
    monkeypatch.delenv("SCOREGEN_DATA", raising=False)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    source = _materialise(case, tmp_path)
    out_path = tmp_path / (case.out or "metrics.json")
    if case.out:
        out_path.write_text(OLD)
    argv = [a.replace("{in}", str(source)).replace("{out}", str(out_path)).replace("{dir}", str(tmp_path))
            for a in case.argv]
    code = importlib.import_module(f"{case.program}.cli").main([*argv, "--threads", "1", "--no-progress"])
    _, err = capsys.readouterr()
    assert code == case.code, err[-3000:]
    assert "Traceback" not in err and "Stacktrace" not in err, err[-3000:]
    position = 0
    for word in case.words:
        found = err.find(word, position)
        assert found >= 0, f"{word!r} not in (the rest of) stderr: {err[-3000:]}"
        position = found + len(word)
    if code != 0:
        errors = [line for line in err.splitlines() if line.startswith(f"{case.program}: error:")]
        assert len(errors) == 1, err[-3000:]
        if case.out:
            assert out_path.read_text() == OLD
        assert not (tmp_path / "run").exists(), "a failed start left a run directory"
    if case.check is not None:
        case.check(tmp_path)
