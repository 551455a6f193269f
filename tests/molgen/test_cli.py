"""``molgen evaluate``, ``molgen dft`` and ``molgen train-regressor`` end to end on tiny inputs."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest

from molgen.cli import main

Chem = pytest.importorskip("rdkit.Chem")
from rdkit.Chem import AllChem  # noqa: E402


def write_sdf(path, smiles_list):
    writer = Chem.SDWriter(str(path))
    for k, smiles in enumerate(smiles_list):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        assert AllChem.EmbedMolecule(mol, randomSeed=k) == 0
        AllChem.MMFFOptimizeMolecule(mol)
        mol.SetProp("_Name", smiles)
        writer.write(mol)
    writer.close()
    return path


def test_evaluate_prints_the_table_and_writes_json_next_to_the_file(tmp_path, capsys):
    path = write_sdf(tmp_path / "gen.sdf", ["CCO", "c1ccncc1", "CC(=O)N"])
    (tmp_path / "train.smi").write_text("CCO\nCCC\n")
    assert main(["evaluate", str(path), "--reference", str(tmp_path / "train.smi")]) == 0
    out = capsys.readouterr().out
    assert "mol_stability" in out and "3 molecules" in out
    record = json.loads((tmp_path / "gen.metrics.json").read_text())
    metrics = record["metrics"]
    assert metrics["mol_stability"] == 1.0 and metrics["geometry_ok"] == 1.0
    assert metrics["novelty"] == pytest.approx(2 / 3)  # ethanol is in the reference set
    assert "property_mae" in record["skipped"]


def test_evaluate_plots(tmp_path):
    path = write_sdf(tmp_path / "gen.sdf", ["CCO", "c1ccncc1", "CC(=O)N"])
    assert main(["evaluate", str(path), "--plots", str(tmp_path / "figs")]) == 0
    for name in ("atoms.png", "elements.png", "bond_lengths.png"):
        assert (tmp_path / "figs" / name).stat().st_size > 2000, name
    record = json.loads((tmp_path / "gen.metrics.json").read_text())
    assert len(record["plots"]) == 3


def test_evaluate_errors_are_one_line(tmp_path, capsys):
    path = write_sdf(tmp_path / "cl.sdf", ["CCl"])
    assert main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unsupported element(s) Cl" in err
    assert main(["evaluate", str(tmp_path / "missing.xyz")]) == 2
    assert "molecule file not found" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("tblite") is None, reason="tblite not installed")
def test_dft_xtb_writes_csv_and_json_and_resumes_from_the_cache(tmp_path, capsys):
    (tmp_path / "m.xyz").write_text(
        "3\nwater\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n"
        "2\nH2\nH 0 0 0\nH 0 0 0.74\n")
    assert main(["dft", str(tmp_path / "m.xyz"), "--method", "xtb"]) == 0
    rows = list(csv.DictReader((tmp_path / "m.xtb.csv").open()))
    assert [r["name"] for r in rows] == ["water", "H2"] and all(r["status"] == "ok" for r in rows)
    water = rows[0]
    assert float(water["gap_eV"]) > 5 and 1.5 < float(water["dipole_D"]) < 3.0  # GFN2: ~2.2 D, exp. 1.85 D
    assert float(rows[1]["dipole_D"]) < 1e-6  # H2 has no dipole by symmetry
    capsys.readouterr()
    assert main(["dft", str(tmp_path / "m.xyz"), "--method", "xtb"]) == 0
    assert "2 from cache" in capsys.readouterr().out
    data = json.loads((tmp_path / "m.xtb.json").read_text())
    assert data["results"][0]["values"]["energy_eV"] == pytest.approx(float(water["energy_eV"]))


@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")
def test_train_regressor_command(tmp_path, capsys):
    from molgen.data import prepare_qm9

    data = prepare_qm9(tmp_path / "qm9", limit=300, workers=0)
    code = main(["train-regressor", "--property", "alpha", "--qm9", str(data), "--run-dir", str(tmp_path / "run"),
                 "--device", "cpu", "model.hidden=8", "model.num_interactions=1", "trainer.max_steps=10",
                 "trainer.eval_every=5", "trainer.progress=false", "batch_size=8"])
    assert code == 0
    assert "test MAE" in capsys.readouterr().out and "Bohr^3" in (tmp_path / "run" / "summary.json").read_text()
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "config.yaml").is_file()
    assert main(["train-regressor", "--property", "nope", "--qm9", str(data), "--run-dir", str(tmp_path)]) == 2
