"""Faults a real machine and a real user bring, one test per class over every command the class applies to.

The classes and their rules are listed in the README ("Errors and faults"). Each case runs the command in process
(``main(argv)``) and checks the exit code, that the message is one line naming the option, path or record, and,
where something was written before, that it survived.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
from pathlib import Path

import pytest
import torch

PROGRAMS = ("molgen", "crysgen", "graphgen")


def main(program: str, argv: list[str]) -> int:
    return importlib.import_module(f"{program}.cli").main(argv)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error message"
    last = err[-1]
    assert "Traceback" not in "\n".join(err)
    assert ": error: " in last
    return last


# the cheapest real sampling call of each domain: (argv without --out, output name)
SAMPLE = {
    "molgen": (["sample", "-n", "2", "--steps", "2", "--no-progress"], "out.sdf"),
    "crysgen": (["sample", "-n", "2", "--steps", "2", "--no-progress"], "crystals"),
    "graphgen": (["sample", "-n", "2", "--steps", "2", "--no-progress"], "out.smi"),
}


# --- 1. the machine's faults on output -------------------------------------------------------------------------


@pytest.mark.parametrize("program", PROGRAMS)
def test_an_output_below_a_file_is_one_line_with_the_path(program, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    argv, name = SAMPLE[program]
    assert main(program, [*argv, "--out", str(blocker / name)]) == 2
    line = one_line_error(capsys)
    assert str(blocker) in line and ("Not a directory" in line or "a folder is needed" in line)
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("program", PROGRAMS)
def test_disk_full_while_writing_is_one_line_and_keeps_the_earlier_output(program, tmp_path, capsys, monkeypatch):
    argv, name = SAMPLE[program]
    out = tmp_path / name
    assert main(program, [*argv, "--out", str(out), "--seed", "1"]) == 0
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert main(program, [*argv, "--out", str(out), "--seed", "2"]) == 2
    line = one_line_error(capsys)
    assert "No space left on device" in line and name in line and "free some space" in line
    after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # the finished earlier output is intact, and nothing half-written is left


def test_a_cache_that_cannot_be_written_warns_and_the_work_goes_on(tmp_path, monkeypatch):
    from graphgen.data import _cached_molecules

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    source = tmp_path / "table.csv"
    source.write_text("smiles\nCCO\n")
    with pytest.warns(UserWarning, match="could not write the .*SCOREGEN_CACHE"):
        data = _cached_molecules("toy", [source], ("C", "N", "O", "F"), 9, lambda: ([0], ["CCO"]), blocker / "c")
    assert data.smiles == ["CCO"]


def test_the_cache_folder_follows_scoregen_cache(tmp_path, monkeypatch):
    from shared.paths import cache_dir

    monkeypatch.setenv("SCOREGEN_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir("qm9") == tmp_path / "elsewhere" / "qm9"
    monkeypatch.delenv("SCOREGEN_CACHE")
    assert cache_dir() == Path("~/.cache/scoregen").expanduser()


# --- 2. replacing a finished result ----------------------------------------------------------------------------


def test_crysgen_sample_replaces_a_set_only_when_the_new_one_is_complete(tmp_path, capsys, monkeypatch):
    from crysgen.io import read_structures

    out = tmp_path / "set"
    assert main("crysgen", ["sample", "-n", "3", "--steps", "2", "--out", str(out), "--no-progress"]) == 0
    old = sorted(p.name for p in out.iterdir())
    old_formulas = [None if s is None else s.formula for s in read_structures(out).structures]
    calls = {"n": 0}
    real = os.fsync

    def full_after_two(fd):  # two CIFs of the new set fit, the third does not
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", full_after_two)
    assert main("crysgen", ["sample", "-n", "5", "--steps", "2", "--seed", "9", "--out", str(out),
                            "--no-progress"]) == 2
    assert "No space left on device" in one_line_error(capsys)
    monkeypatch.setattr(os, "fsync", real)
    assert sorted(p.name for p in out.iterdir()) == old  # no staging folder, no marker, the old files
    assert [None if s is None else s.formula for s in read_structures(out).structures] == old_formulas


# --- 3. numbers ------------------------------------------------------------------------------------------------


NUMERIC_CASES = [
    ("molgen", ["sample", "--out", "x.sdf", "--eta", "nan"], "--eta"),
    ("molgen", ["sample", "--out", "x.sdf", "--temperature", "inf"], "--temperature"),
    ("molgen", ["sample", "--out", "x.sdf", "--temperature", "0"], "--temperature"),
    ("molgen", ["sample", "--out", "x.sdf", "--guidance-scale", "nan"], "--guidance-scale"),
    ("molgen", ["sample", "--out", "x.sdf", "--steps", "0"], "--steps"),
    ("molgen", ["sample", "--out", "x.sdf", "-n", "-3"], "-n"),
    ("molgen", ["sample", "--out", "x.sdf", "--seed", str(2**64)], "--seed"),
    ("molgen", ["sample", "--out", "x.sdf", "--workers", "0"], "--workers"),
    ("molgen", ["evaluate", "x.sdf", "--workers", "nan"], "--workers"),
    ("crysgen", ["sample", "--out", "d", "--steps", "0"], "--steps"),
    ("crysgen", ["sample", "--out", "d", "--scale", "nan"], "--scale"),
    ("crysgen", ["sample", "--out", "d", "--batch-size", "0"], "--batch-size"),
    ("crysgen", ["evaluate", "d", "--cov-cutoffs", "nan", "-1"], "--cov-cutoffs"),
    ("crysgen", ["relax", "d", "--limit", "-1"], "--limit"),
    ("crysgen", ["relax", "d", "--fmax", "nan"], "--fmax"),
    ("crysgen", ["relax", "d", "--steps", "0"], "--steps"),
    ("graphgen", ["sample", "-n", "2", "--out", "x.smi", "--steps", "0"], "--steps"),
    ("graphgen", ["sample", "-n", "2", "--out", "x.smi", "--snr", "nan"], "--snr"),
    ("graphgen", ["sample", "-n", "2", "--out", "x.smi", "--scale-eps", "-1"], "--scale-eps"),
    ("graphgen", ["sample", "-n", "0", "--out", "x.smi"], "-n"),
    ("graphgen", ["dft", "x.smi", "--conformers", "0"], "--conformers"),
]


@pytest.mark.parametrize("program,argv,option", NUMERIC_CASES, ids=[" ".join(c[1]) for c in NUMERIC_CASES])
def test_numeric_options_are_checked_where_parsed(program, argv, option, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(program, argv) == 2
    line = one_line_error(capsys)
    assert f"argument {option}" in line or option in line
    assert not list(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("key,value", [("guidance_scale", ".nan"), ("seed", "-1"), ("steps", "0")])
def test_campaign_spec_numbers_are_checked_before_anything_is_made(program, key, value, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"n_candidates: 2\nbatch_size: 2\n{key}: {value}\n")
    assert main(program, ["campaign", str(spec), "--out", str(tmp_path / "camp")]) == 2
    assert key in one_line_error(capsys)
    assert not (tmp_path / "camp").exists()


# --- 4. property targets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv,words", [
    (["--condition", "gap=nan"], "finite"),
    (["--condition", "gap=1e9"], "outside the training range"),
    (["--condition", "gap=6", "--condition", "gap=7"], "twice"),
    (["--condition", "gap"], "PROP=VALUE"),
])
def test_molgen_conditions_follow_the_one_rule(argv, words, tmp_path, capsys):
    assert main("molgen", ["sample", "-n", "2", "--steps", "2", "--out", str(tmp_path / "x.sdf"), *argv]) == 2
    assert words in one_line_error(capsys)
    assert not (tmp_path / "x.sdf").exists()


@pytest.mark.parametrize("argv,words", [
    (["--guidance", "heat_ref=nan"], "finite"),
    (["--guidance", "heat_ref=1e9"], "outside the training range"),
    (["--guidance", "heat_ref=1", "--guidance", "heat_ref=2"], "twice"),
])
def test_crysgen_guidance_follows_the_one_rule(argv, words, tmp_path, capsys):
    assert main("crysgen", ["sample", "-n", "2", "--steps", "2", "--out", str(tmp_path / "d"), *argv]) == 2
    assert words in one_line_error(capsys)
    assert not (tmp_path / "d").exists()


def test_the_target_rule_itself():
    from shared.conditions import check_target_range, parse_targets, training_range

    assert parse_targets(["a=1", " b = 2.5"]) == {"a": 1.0, "b": 2.5}
    r = training_range(torch.arange(101.0))
    assert r["min"] == 0 and r["max"] == 100 and r["ood_margin"] == pytest.approx(99 - 50)
    check_target_range("a", 50.0, 0, 100, 10)
    with pytest.warns(UserWarning, match="outside the training range"):
        check_target_range("a", torch.tensor([105.0, 50.0]), 0, 100, 10)
    for bad in (111.0, -10.5, float("inf")):
        with pytest.raises(ValueError, match="target a="):
            check_target_range("a", bad, 0, 100, 10)


# --- 5. concurrent runs into one output ------------------------------------------------------------------------


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_second_run_into_a_busy_output_is_refused(program, tmp_path, capsys):
    from shared.io import exclusive_output

    argv, name = SAMPLE[program]
    out = tmp_path / name
    with exclusive_output(out, "test holder"):
        assert main(program, [*argv, "--out", str(out)]) == 2
        assert "is being written by another" in one_line_error(capsys)
        assert not out.exists()
    assert main(program, [*argv, "--out", str(out)]) == 0  # released: the next run goes ahead


def test_the_output_lock_works_across_processes(tmp_path):
    import subprocess
    import sys

    code = ("import sys, time; from shared.io import exclusive_output\n"
            "with exclusive_output(sys.argv[1]):\n    print('held', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        from shared.io import OutputBusy, exclusive_output

        with pytest.raises(OutputBusy, match="pid"):
            with exclusive_output(tmp_path / "out"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive_output(tmp_path / "out"):  # a killed holder's lock is gone with it
        pass


# --- 6. unsupported records and what reaches quantum chemistry ---------------------------------------------------


def _cu_au(tmp_path: Path, partial: bool) -> Path:
    from pymatgen.core import Lattice, Structure

    species = [{"Cu": 0.5, "Au": 0.5} if partial else "Cu", "Cu", "Cu", "Cu"]
    s = Structure(Lattice.cubic(3.61), species, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    path = tmp_path / ("partial.cif" if partial else "ordered.cif")
    s.to(filename=str(path))
    return path


def test_a_partially_occupied_site_is_unsupported_and_skippable(tmp_path, capsys):
    from crysgen.io import read_structures

    folder = tmp_path / "set"
    folder.mkdir()
    _cu_au(folder, partial=True)
    _cu_au(folder, partial=False)
    with pytest.raises(ValueError, match="partially occupied"):
        read_structures(folder)
    assert len(read_structures(folder, on_error="skip").structures) == 1
    assert main("crysgen", ["relax", str(folder), "--calculator", "emt", "--steps", "3", "--no-progress"]) == 2
    assert "partially occupied" in one_line_error(capsys)
    assert main("crysgen", ["relax", str(folder), "--calculator", "emt", "--steps", "100", "--no-progress",
                            "--skip-unreadable"]) == 0
    out = capsys.readouterr().out
    assert "1/1 ok" in out and "1 unreadable skipped" in out


def _sdf(smiles: str, three_d: bool = True) -> str:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    if three_d:
        AllChem.EmbedMolecule(mol, randomSeed=1)
    else:
        AllChem.Compute2DCoords(mol)
    return Chem.MolToMolBlock(mol) + "$$$$\n"


def test_molgen_dft_reports_what_it_must_not_compute_and_computes_nothing_of_it(tmp_path, capsys):
    path = tmp_path / "bad.sdf"
    path.write_text(_sdf("CCO", three_d=False) + _sdf("[CH3]") + _sdf("CCO.O"))
    assert main("molgen", ["dft", str(path), "--method", "xtb", "--no-progress"]) == 1  # none succeeded
    payload = json.loads((tmp_path / "bad.xtb.json").read_text())
    reasons = [r["reason"] for r in payload["results"]]
    assert all(r["status"] == "failed" for r in payload["results"])
    assert reasons[0].startswith("refused geometry: 2-D") and reasons[1].startswith("open shell")
    assert "2 disconnected fragments" in reasons[2]
    out = capsys.readouterr().out
    assert "0/3 ok" in out and "2 refused geometry" in out and "1 open shell" in out
    assert not (tmp_path / ".molgen-dft-cache").exists() or not list((tmp_path / ".molgen-dft-cache").rglob("*.json"))


def test_the_dft_gate_passes_qm9_like_geometries_and_names_broken_bonds():
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from molgen.hooks import dft_input_problem

    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)N"))
    AllChem.EmbedMolecule(mol, randomSeed=3)
    AllChem.MMFFOptimizeMolecule(mol)
    assert dft_input_problem(mol) is None
    conf = mol.GetConformer()
    p = conf.GetAtomPosition(0)
    conf.SetAtomPosition(0, (p.x + 1.0, p.y, p.z))  # stretch the C-C bond by ~1 A
    assert "refused geometry" in dft_input_problem(mol)


def test_graphgen_refuses_fragments_and_checked_geometries_before_the_backend():
    from graphgen.dft import GeometryRefused, GraphDFTHook

    class Backend:  # never reached
        def compute_one(self, record):
            raise AssertionError("a refused molecule reached the backend")

    hook = GraphDFTHook(Backend(), lambda mol: mol, check=lambda mol: "refused geometry: test check")
    with pytest.raises(GeometryRefused, match="2 disconnected fragments"):
        hook.compute_one("CCO.Cl")
    with pytest.raises(GeometryRefused, match="test check"):
        hook.compute_one("CCO")
    # the check is named in the cache key by its qualified name, not by its address in this process
    assert hook.key("CCO") == GraphDFTHook(hook.backend, lambda mol: mol, check=lambda mol: None).key("CCO")


# --- 7. batch exit status ----------------------------------------------------------------------------------------


def test_the_batch_convention():
    from shared.cli_common import batch_exit_code, batch_summary, failure_class
    from shared.hooks import HookResult

    ok = HookResult("a", "ok")
    bad = HookResult("b", "failed", reason="OpenShellMolecule: open shell: 1 unpaired electron")
    assert failure_class(bad.reason) == "open shell" and failure_class("SCF: not converged") == "SCF"
    assert batch_exit_code([ok, bad]) == 0 and batch_exit_code([ok, bad], strict=True) == 1
    assert batch_exit_code([bad]) == 1 and batch_exit_code([ok]) == 0
    assert batch_summary([ok, bad], skipped=2) == "1/2 ok (0 from cache; failed: 1 open shell; 2 unreadable skipped)"


# --- 8. campaign provenance ------------------------------------------------------------------------------------


def test_a_campaign_refuses_to_resume_with_another_model_file(tmp_path, capsys):
    from crysgen.checkpoint import default_checkpoint

    model = tmp_path / "model.pt"
    model.write_bytes(default_checkpoint().read_bytes())
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"model: {model}\nn_candidates: 2\nbatch_size: 2\nsteps: 2\nexecutor: serial\n"
                    f"filters: {{}}\nrelax: null\n")
    out = tmp_path / "camp"
    assert main("crysgen", ["campaign", str(spec), "--out", str(out), "--no-progress"]) == 0
    versions = json.loads((out / "versions.json").read_text())
    assert versions["model"]["file"] == str(model) and len(versions["model"]["sha256"]) == 64
    payload = torch.load(model, weights_only=False)
    payload["meta"]["note"] = "retrained"  # another model file at the same path
    torch.save(payload, model)
    assert main("crysgen", ["campaign", str(spec), "--out", str(out), "--no-progress"]) == 2
    assert "another model file" in one_line_error(capsys)


def test_an_unreachable_dask_scheduler_fails_fast_with_one_line(tmp_path, capsys):
    import time

    pytest.importorskip("distributed")
    spec = tmp_path / "spec.yaml"
    spec.write_text("n_candidates: 2\nbatch_size: 2\nexecutor: dask\nscheduler: tcp://127.0.0.1:9\n")
    start = time.perf_counter()
    assert main("crysgen", ["campaign", str(spec), "--out", str(tmp_path / "camp")]) == 2
    assert time.perf_counter() - start < 20
    assert "cannot reach the Dask scheduler" in one_line_error(capsys)
    assert not (tmp_path / "camp").exists()


# --- 9. resources ----------------------------------------------------------------------------------------------


def test_a_request_that_cannot_fit_in_memory_is_refused_up_front(tmp_path, capsys):
    assert main("graphgen", ["sample", "-n", str(10**9), "--batch-size", "1", "--out", str(tmp_path / "x.smi")]) == 2
    assert "sample in parts" in one_line_error(capsys)


# --- 10. messages that name the right thing ----------------------------------------------------------------------


def test_messages_name_the_right_thing(tmp_path, capsys):
    from graphgen.cli import dataset_name
    from molgen.data import QM9Dataset
    from molgen.pretrained import pretrained_path

    assert dataset_name("qm9") == "QM9" and dataset_name("Community-Small") == "community_small"
    (tmp_path / "x.smi").write_text("CCO\n")
    assert main("graphgen", ["evaluate", str(tmp_path / "x.smi"), "--dataset", "qm10"]) == 2
    assert "choose from community_small, ego_small, grid, ENZYMES, QM9, ZINC250k, synthetic" in one_line_error(capsys)
    with pytest.raises(ValueError, match="is not a prepared QM9 file .*molgen-regressor"):
        QM9Dataset(pretrained_path("gap"))
