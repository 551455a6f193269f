"""graphgen's DFT-hook evaluator: 3D embedding, xTB through molgen's hook, distributions, resume, CLI."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from graphgen.cli import main
from graphgen.dft import (EmbeddingSettings, GraphDFTHook, compare_distributions, embed_molecule, parse_molecule,
                          unpaired_electrons)

needs_xtb = pytest.mark.skipif(importlib.util.find_spec("tblite") is None, reason="tblite not installed")
REPO = Path(__file__).resolve().parents[2]

KNOWN = {"methane": "C", "water": "O", "benzene": "c1ccccc1", "glycine zwitterion": "[NH3+]CC(=O)[O-]"}


def _xtb_hook(**embedding):
    from molgen.hooks import MoleculeRecord, XTBHook

    return GraphDFTHook(XTBHook(), MoleculeRecord.from_mol, EmbeddingSettings(**embedding))


# --- embedding ----------------------------------------------------------------------------------------------


def test_embedding_adds_hydrogens_and_keeps_the_lowest_conformer():
    from rdkit.Chem import AllChem

    mol, info = embed_molecule(parse_molecule("CCCCO"), EmbeddingSettings(conformers=6, seed=1))
    assert mol.GetNumAtoms() == 5 + 10 and mol.GetNumConformers() == 1
    assert info["force_field"] == "mmff" and info["conformers_embedded"] == 6
    # the kept conformer's MMFF energy equals the reported minimum
    props = AllChem.MMFFGetMoleculeProperties(mol)
    energy = AllChem.MMFFGetMoleculeForceField(mol, props).CalcEnergy()
    assert energy == pytest.approx(info["force_field_energy_kcal_mol"], abs=1e-3)
    # bonded C-C distance is chemical
    pos = mol.GetConformer().GetPositions()
    assert 1.45 < np.linalg.norm(pos[0] - pos[1]) < 1.60


def test_embedding_is_deterministic_for_a_seed():
    a, _ = embed_molecule(parse_molecule("CC(C)CO"), EmbeddingSettings(seed=5))
    b, _ = embed_molecule(parse_molecule("CC(C)CO"), EmbeddingSettings(seed=5))
    np.testing.assert_array_equal(a.GetConformer().GetPositions(), b.GetConformer().GetPositions())


def test_cages_embed_through_a_feasible_stereoisomer():
    # a QM9 test molecule: plain ETKDG fails on the stereo assignment it draws for this unspecified cage
    from rdkit import Chem
    from rdkit.Chem import rdDistGeom

    from graphgen.dft import _embed_conformers

    params = rdDistGeom.ETKDGv3()
    params.randomSeed = 0
    assert not list(rdDistGeom.EmbedMultipleConfs(Chem.AddHs(parse_molecule("C1=CC23C=CC(O2)C3C1")), 3, params))
    mol, ids, tried = _embed_conformers(parse_molecule("C1=CC23C=CC(O2)C3C1"), EmbeddingSettings())
    assert ids and tried > 1 and mol.GetNumAtoms() == 9 + 8  # C8H8O


def test_parse_and_open_shell_detection():
    assert unpaired_electrons(parse_molecule("[CH3]")) == 1
    assert unpaired_electrons(parse_molecule("[NH3+]CC(=O)[O-]")) == 0
    assert unpaired_electrons(parse_molecule("[O][O]")) == 2  # triplet oxygen as RDKit writes it
    with pytest.raises(ValueError, match="invalid molecule: Explicit valence"):
        parse_molecule("C(C)(C)(C)(C)C")
    with pytest.raises(ValueError, match="unreadable SMILES"):
        parse_molecule("not a smiles")


def test_embedding_failure_is_a_reason(monkeypatch):
    from rdkit.Chem import rdDistGeom

    monkeypatch.setattr(rdDistGeom, "EmbedMultipleConfs", lambda *args, **kwargs: [])
    hook = GraphDFTHook(backend=None, make_record=None)
    with pytest.raises(RuntimeError, match="embedding failed"):
        hook.compute_one("CCO")


def test_compare_distributions_matches_scipy_and_a_known_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=500)
    out = compare_distributions({"gap_eV": ref + 0.7, "homo_eV": []}, {"gap_eV": ref})
    assert out["gap_eV"]["wasserstein"] == pytest.approx(0.7, abs=1e-12)  # a pure shift moves W1 by the shift
    assert out["gap_eV"]["mean"] == pytest.approx(ref.mean() + 0.7)
    assert out["homo_eV"] == {"n": 0, "mean": None, "std": None}  # nothing computed, no reference: no numbers
    sample = rng.normal(1.0, 2.0, size=300)
    out = compare_distributions({"gap_eV": sample}, {"gap_eV": ref})
    assert out["gap_eV"]["wasserstein"] == pytest.approx(wasserstein_distance(sample, ref))
    assert compare_distributions({"x": [np.nan, 1.0]}, {})["x"] == {"n": 1, "mean": 1.0, "std": 0.0}


# --- xTB on known molecules ---------------------------------------------------------------------------------


@needs_xtb
def test_known_molecules_through_xtb():
    hook = _xtb_hook()
    values = {name: hook.compute_one(smiles) for name, smiles in KNOWN.items()}
    assert values["methane"]["dipole_D"] < 0.01 and values["benzene"]["dipole_D"] < 0.01  # symmetric
    assert 1.5 < values["water"]["dipole_D"] < 2.6  # GFN2-xTB ~2.2 D at an MMFF geometry (experiment 1.85 D)
    assert values["glycine zwitterion"]["dipole_D"] > 6.0  # separated charges
    # gaps: saturated > lone pairs > aromatic
    assert values["methane"]["gap_eV"] > values["water"]["gap_eV"] > values["benzene"]["gap_eV"] > 2.0
    assert len(values["benzene"]["numbers"]) == 12 and values["methane"]["numbers"].count(1) == 4
    with pytest.raises(ValueError, match="open shell: 1 unpaired"):
        hook.compute_one("[CH3]")


@needs_xtb
def test_xtb_optimisation_lowers_the_xtb_energy():
    from molgen.hooks import MoleculeRecord, XTBHook

    plain = _xtb_hook().compute_one("CCO")
    optimized = GraphDFTHook(XTBHook(), MoleculeRecord.from_mol, EmbeddingSettings(),
                             optimizer=XTBHook(optimize=True)).compute_one("CCO")
    assert optimized["optimized"] and optimized["optimizer_converged"]
    assert optimized["energy_eV"] < plain["energy_eV"]


# --- the CLI ------------------------------------------------------------------------------------------------


@needs_xtb
def test_cli_writes_results_and_reports_failures(tmp_path, capsys):
    smi = tmp_path / "mols.smi"
    smi.write_text("\n".join([*KNOWN.values(), "[CH3]", "C(C)(C)(C)(C)C", "CCO.Cl"]) + "\n")
    code = main(["dft", str(smi), "--method", "xtb", "--no-progress", "--plots", str(tmp_path / "plots")])
    assert code == 0  # the batch ran: failures are results, reported in the outputs
    payload = json.loads((tmp_path / "mols.xtb.json").read_text())
    status = [r["status"] for r in payload["results"]]
    assert status == ["ok"] * 4 + ["failed", "failed", "failed"]
    assert "open shell" in payload["results"][4]["reason"]
    assert "valence" in payload["results"][5]["reason"]
    assert "2 disconnected fragments" in payload["results"][6]["reason"]  # never embedded on top of each other
    csv_lines = (tmp_path / "mols.xtb.csv").read_text().splitlines()
    assert len(csv_lines) == 8 and csv_lines[0].startswith("index,line,smiles,status")
    sdf = (tmp_path / "mols.xtb.sdf").read_text()
    assert sdf.count("$$$$") == 4 and "<gap_eV>" in sdf
    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert len(pngs) == 4 and all(p.stat().st_size > 1000 for p in pngs)
    out = capsys.readouterr().out
    assert "4/7 ok" in out and "1 open shell" in out and "1 refused geometry" in out and "1 invalid molecule" in out

    # rerun: everything from the cache; a reference run compared with itself has W1 = 0
    code = main(["dft", str(smi), "--no-progress", "--reference", str(tmp_path / "mols.xtb.json"),
                 "--out", str(tmp_path / "again"), "--strict"])
    assert code == 1  # --strict: any failure fails the command
    again = json.loads((tmp_path / "again.json").read_text())
    assert "7 from cache" in capsys.readouterr().out
    assert all(row["wasserstein"] == 0.0 for row in again["summary"].values())
    assert again["reference"] == "xtb on mols.xtb.json"


@needs_xtb
def test_cli_unreadable_records(tmp_path, capsys):
    smi = tmp_path / "mixed.smi"
    smi.write_text("CCO\n%%garbage\nC\n")
    assert main(["dft", str(smi), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "--skip-unreadable" in err and not (tmp_path / "mixed.xtb.json").exists()
    assert main(["dft", str(smi), "--no-progress", "--skip-unreadable"]) == 0  # skipped lines are not failures
    captured = capsys.readouterr()
    assert "skipped 1 unreadable line(s): line 2" in captured.err and "2/2 ok" in captured.out
    results = json.loads((tmp_path / "mixed.xtb.json").read_text())["results"]
    assert [r["status"] for r in results] == ["ok", "unreadable", "ok"] and results[1]["line"] == 2


@needs_xtb
def test_cli_qm9_reference_and_evaluate_dft(tmp_path, capsys, reference_data):
    smi = tmp_path / "s.smi"
    smi.write_text("CCO\nCC(=O)O\nc1ccncc1\n")
    assert main(["dft", str(smi), "--no-progress", "--dataset", "QM9", "--data-dir", str(reference_data)]) == 0
    payload = json.loads((tmp_path / "s.xtb.json").read_text())
    assert payload["reference"] == "QM9 labels (GDSS train split)"
    assert payload["summary"]["gap_eV"]["reference_n"] > 100_000
    assert 6.0 < payload["summary"]["gap_eV"]["reference_mean"] < 7.5  # QM9's B3LYP gap mean is 6.86 eV
    assert "xTB's orbital energies differ" in capsys.readouterr().err

    metrics_path = tmp_path / "metrics.json"
    code = main(["evaluate", str(smi), "--dataset", "QM9", "--data-dir", str(reference_data), "--no-fcd",
                 "--dft", "xtb", "--out", str(metrics_path), "--no-progress"])
    assert code == 0
    metrics = json.loads(metrics_path.read_text())
    assert metrics["dft_xtb_ok_fraction"] == 1.0
    assert metrics["dft_xtb_gap_eV_mean"] == pytest.approx(payload["summary"]["gap_eV"]["mean"])
    assert metrics["dft_xtb_gap_eV_w1"] == pytest.approx(payload["summary"]["gap_eV"]["wasserstein"])


@needs_xtb
def test_killed_run_resumes_without_recomputation(tmp_path):
    # xTB geometry optimisations make each molecule take long enough to kill the run part-way
    smiles = [("C" * k) + "O" for k in range(1, 13)] + [("C" * k) + "N" for k in range(1, 13)]
    smi = tmp_path / "chain.smi"
    smi.write_text("\n".join(smiles) + "\n")
    cache = tmp_path / "cache" / "graphgen-embedded"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "graphgen.cli", "dft", str(smi), "--optimize", "--no-progress",
           "--cache", str(tmp_path / "cache")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list(cache.glob("*.json"))) < 3:
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.json")}
    assert 3 <= len(finished) < len(smiles) and not (tmp_path / "chain.xtb.json").exists()
    assert not list(cache.glob("*.tmp*"))  # atomic writes leave no half-written result

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"{len(smiles)}/{len(smiles)} ok ({len(finished)} from cache)" in done.stdout
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.json") if p.name in finished} == finished


def test_dft_runs_library_functions(tmp_path, monkeypatch):
    """The pipeline behind `graphgen dft` as public functions: bad input is a ValueError, rows join back."""
    from types import SimpleNamespace

    from graphgen.dft_runs import dft_reference, dft_table, make_dft_hook, run_dft, write_dft_table

    with pytest.raises(ValueError, match="unknown DFT method"):
        make_dft_hook("hf")
    with pytest.raises(ValueError, match="only for QM9"):
        dft_reference("ZINC250k", None, None, "xtb")
    assert dft_reference(None, None, None, "xtb") is None
    foreign = tmp_path / "foreign.json"
    foreign.write_text("{}")
    with pytest.raises(ValueError, match="not a JSON written by 'graphgen dft'"):
        dft_reference(None, foreign, None, "xtb")
    with pytest.raises(ValueError, match="workers"):
        run_dft(None, ["C"], None, workers=0)
    ok = SimpleNamespace(status="ok", reason=None, cached=False, elapsed_s=0.5, ok=True,
                         values={"gap_eV": 10.0, "homo_eV": -7.0, "lumo_eV": 3.0, "dipole_D": 0.0, "energy_eV": -1.0,
                                 "smiles": "C", "force_field": "mmff", "conformers_embedded": 1, "molblock": None})
    failed = SimpleNamespace(status="failed", reason="open shell", cached=True, elapsed_s=0.1, ok=False, values={})
    monkeypatch.setattr("graphgen.dft_runs.molblock", lambda values: "M  END\n")  # no 3D geometry here
    table = dft_table(["C", "bad(", "[CH3]"], [ok, failed], [0, 2], "line", None)
    assert [r["status"] for r in table.rows] == ["ok", "unreadable", "failed"]
    assert table.rows[1]["reason"] == "unreadable line" and table.rows[2]["line"] == 3
    assert len(table.sdf_blocks) == 1 and table.summary["gap_eV"]["n"] == 1
    paths = write_dft_table(tmp_path / "out", table, method="xtb")
    assert [p.name for p in paths] == ["out.csv", "out.sdf", "out.json"]
    assert json.loads(paths[2].read_text())["method"] == "xtb"
