"""Ctrl-C and kill -9 in the middle of a command: exit 130 with one line, and never a half-written output file.

Each command runs as a real process on a job large enough to be interrupted while it computes (the moment is
recognised from what it prints to stderr: a progress bar or a note). Outputs are written atomically (a temporary
file beside the target, renamed into place), so after an interruption the final name holds either nothing or
what was there before, and no temporary file is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

EXIT_INTERRUPTED = 130
OLD = "previous contents, must survive\n"


def _default_sigint() -> None:
    # a shell that starts jobs in the background sets SIGINT to "ignored", which children inherit and Python then
    # keeps: give the command the ordinary disposition an interactive user's process has
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run_until(cmd: list[str], cwd: Path, marker: str | Callable[[], bool], sig: int, env: dict | None = None,
               startup_s: float = 60.0) -> tuple[int, str, str]:
    """Start ``cmd``, wait until its stderr shows ``marker`` (or ``marker()`` is true), send ``sig``;
    ``(returncode, stdout, stderr)``."""
    out_path, err_path = cwd / "stdout.txt", cwd / "stderr.txt"
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    for key in [k for k, v in full_env.items() if v is None]:
        del full_env[key]
    full_env.pop("SCOREGEN_DEBUG", None)
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, env=full_env, preexec_fn=_default_sigint,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + startup_s
            ready = marker if callable(marker) else lambda: marker in err_path.read_text(errors="replace")
            while not ready():
                if proc.poll() is not None:
                    pytest.fail(f"{cmd[2:4]} ended (code {proc.returncode}) before showing {marker!r}: "
                                f"{err_path.read_text()[-1500:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"{cmd[2:4]} did not show {marker!r} within {startup_s} s")
                time.sleep(0.1)
            time.sleep(0.5 if isinstance(marker, str) else 0.05)  # well inside the computation
            assert proc.poll() is None, "the job was too small to be interrupted"
            proc.send_signal(sig)
            code = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return code, out_path.read_text(errors="replace"), err_path.read_text(errors="replace")


def _message_lines(stderr: str, *noise: str) -> list[str]:
    """stderr without progress-bar redraws and the notes the command printed before it was interrupted."""
    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines()]
    return [line for line in lines if line and not any(n in line for n in noise)]


def _leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}.") and p.name.endswith(".tmp"))


def _assert_one_line_interrupt(code: int, stderr: str, program: str, *noise: str) -> None:
    assert code == EXIT_INTERRUPTED, (code, stderr[-2000:])
    assert "Traceback" not in stderr, stderr[-2000:]
    assert _message_lines(stderr, *noise) == [f"{program}: interrupted"], stderr[-2000:]


# ------------------------------------------------------------------------------------------- graphgen sample
SAMPLE = [sys.executable, "-m", "graphgen.cli", "sample", "-n", "2000", "--steps", "1000", "--batch-size", "1000",
          "--seed", "0", "--threads", "1"]  # the embedded QM9 model; minutes of work


@pytest.mark.timeout(90)
def test_graphgen_sample_sigint(tmp_path):
    code, out, err = _run_until([*SAMPLE, "--out", "mols.smi"], tmp_path, "sampling:", signal.SIGINT)
    _assert_one_line_interrupt(code, err, "graphgen", "sampling:")
    assert not (tmp_path / "mols.smi").exists() and not _leftovers(tmp_path, "mols.smi")
    assert "wrote" not in out


@pytest.mark.timeout(90)
def test_graphgen_sample_sigkill_keeps_the_previous_file(tmp_path):
    (tmp_path / "mols.smi").write_text(OLD)
    code, out, _ = _run_until([*SAMPLE, "--out", "mols.smi"], tmp_path, "sampling:", signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert (tmp_path / "mols.smi").read_text() == OLD and not _leftovers(tmp_path, "mols.smi")


# ------------------------------------------------------------------------------------- molgen, crysgen sample
MOLGEN_SAMPLE = [sys.executable, "-m", "molgen.cli", "sample", "-n", "2000", "--seed", "0", "--threads", "1",
                 "--out", "mols.sdf"]  # the embedded generator; minutes of work
CRYSGEN_SAMPLE = [sys.executable, "-m", "crysgen.cli", "sample", "-n", "5000", "--seed", "0", "--threads", "1",
                  "--out", "crystals"]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_molgen_sample_interrupted_keeps_the_previous_file(tmp_path, sig):
    (tmp_path / "mols.sdf").write_text(OLD)
    code, out, err = _run_until(MOLGEN_SAMPLE, tmp_path, "molgen sample:", sig)
    if sig == signal.SIGINT:
        _assert_one_line_interrupt(code, err, "molgen", "molgen sample:")
    else:
        assert code == -signal.SIGKILL
    assert (tmp_path / "mols.sdf").read_text() == OLD and not _leftovers(tmp_path, "mols.sdf")
    assert "wrote" not in out


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_crysgen_sample_interrupted_keeps_the_previous_sample_set(tmp_path, sig):
    from crysgen.io import read_structures

    earlier = subprocess.run([*CRYSGEN_SAMPLE[:5], "3", *CRYSGEN_SAMPLE[6:], "--steps", "5", "--no-progress"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert earlier.returncode == 0, earlier.stderr[-2000:]
    before = {p.name: p.read_bytes() for p in (tmp_path / "crystals").iterdir()}
    code, out, err = _run_until(CRYSGEN_SAMPLE, tmp_path, "sampling:", sig)
    if sig == signal.SIGINT:
        _assert_one_line_interrupt(code, err, "crysgen", "sampling:")
    else:
        assert code == -signal.SIGKILL
    assert {p.name: p.read_bytes() for p in (tmp_path / "crystals").iterdir()} == before
    assert len(read_structures(tmp_path / "crystals").structures) == 3


# ----------------------------------------------------------------------------------------- graphgen evaluate
SMILES = ["CCO", "CC(=O)N", "c1ccccc1O", "CC(C)CN", "OC1CCCC1", "N#CCC(=O)O", "CC1=CC=CN1", "OCC(O)CO"]
NO_DATA_NOTE = "novelty and FCD skipped"  # printed once the samples are read, before the metrics are computed


def _graphgen_evaluate(tmp_path: Path) -> list[str]:
    (tmp_path / "mols.smi").write_text("\n".join(SMILES[i % len(SMILES)] for i in range(20000)) + "\n")
    return [sys.executable, "-m", "graphgen.cli", "evaluate", "mols.smi", "--dataset", "QM9", "--out",
            "metrics.json", "--threads", "1"]


@pytest.mark.timeout(90)
def test_graphgen_evaluate_sigint(tmp_path):
    code, out, err = _run_until(_graphgen_evaluate(tmp_path), tmp_path, NO_DATA_NOTE, signal.SIGINT,
                                env={"SCOREGEN_DATA": None})
    _assert_one_line_interrupt(code, err, "graphgen", NO_DATA_NOTE)
    assert not (tmp_path / "metrics.json").exists() and not _leftovers(tmp_path, "metrics.json")
    assert "validity" not in out


@pytest.mark.timeout(90)
def test_graphgen_evaluate_sigkill_keeps_the_previous_file(tmp_path):
    cmd = _graphgen_evaluate(tmp_path)
    (tmp_path / "metrics.json").write_text(OLD)
    code, _, _ = _run_until(cmd, tmp_path, NO_DATA_NOTE, signal.SIGKILL, env={"SCOREGEN_DATA": None})
    assert code == -signal.SIGKILL
    assert (tmp_path / "metrics.json").read_text() == OLD and not _leftovers(tmp_path, "metrics.json")


# ------------------------------------------------------------------------------------------- molgen evaluate
SKIPPED_WARNING = "skipped 1 unreadable"  # printed once the file is read, before the metrics are computed


def _molgen_evaluate(tmp_path: Path, n: int = 5000) -> list[str]:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    blocks = []
    for smiles in SMILES[:6]:
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=1)
        blocks.append(Chem.MolToMolBlock(mol))
    # one damaged record first: with --skip-unreadable its warning marks the end of reading
    text = "garbage\nnot a molfile\n\n$$$$\n" + "".join(blocks[i % len(blocks)] + "$$$$\n" for i in range(n))
    (tmp_path / "mols.sdf").write_text(text)
    return [sys.executable, "-m", "molgen.cli", "evaluate", "mols.sdf", "--skip-unreadable", "--threads", "1"]


@pytest.mark.timeout(90)
def test_molgen_evaluate_sigint(tmp_path):
    code, out, err = _run_until(_molgen_evaluate(tmp_path), tmp_path, SKIPPED_WARNING, signal.SIGINT)
    _assert_one_line_interrupt(code, err, "molgen", SKIPPED_WARNING)
    assert not (tmp_path / "mols.metrics.json").exists() and not _leftovers(tmp_path, "mols.metrics.json")
    assert "wrote" not in out


@pytest.mark.timeout(90)
def test_molgen_evaluate_sigkill_keeps_the_previous_file(tmp_path):
    cmd = _molgen_evaluate(tmp_path)
    (tmp_path / "mols.metrics.json").write_text(OLD)
    code, _, _ = _run_until(cmd, tmp_path, SKIPPED_WARNING, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert (tmp_path / "mols.metrics.json").read_text() == OLD and not _leftovers(tmp_path, "mols.metrics.json")


# ------------------------------------------------------------------------------------------ crysgen evaluate
def _crysgen_evaluate(tmp_path: Path) -> list[str]:
    """Carbon crystals against a small carbon dataset, with COV (CrystalNN fingerprints: about 0.3 s a crystal)."""
    from crysgen.data import write_cdvae_csv
    from crysgen.testing import carbon_set

    (tmp_path / "data").mkdir()
    for split, n, seed in [("train", 6, 0), ("test", 16, 1)]:
        names = [f"{split}-{i}" for i in range(n)]
        write_cdvae_csv(tmp_path / "data" / f"{split}.csv", carbon_set(n, seed=seed), names)
    (tmp_path / "gen").mkdir()
    for i, structure in enumerate(carbon_set(6, seed=7)):
        structure.to(filename=str(tmp_path / "gen" / f"c{i}.cif"))
    return [sys.executable, "-m", "crysgen.cli", "evaluate", "gen", "--dataset", "data", "--cov-cutoffs", "0.2", "4",
            "--out", "metrics.json", "--threads", "1"]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_crysgen_evaluate_interrupted_keeps_the_old_file_and_the_finished_quantities(tmp_path, sig):
    cmd = _crysgen_evaluate(tmp_path)
    (tmp_path / "metrics.json").write_text(OLD)
    env = {"HOME": str(tmp_path / "home")}  # a cold fingerprint cache
    cache = tmp_path / "home" / ".cache" / "scoregen" / "fingerprints"
    first_block = lambda: bool(list(cache.glob("crystal-fingerprints-*.part-0-8.json")))  # noqa: E731
    code, _, err = _run_until(cmd, tmp_path, first_block, sig, env=env, startup_s=120)
    if sig == signal.SIGINT:
        _assert_one_line_interrupt(code, err, "crysgen", "%|", "dataset: data")
    else:
        assert code == -signal.SIGKILL
    assert (tmp_path / "metrics.json").read_text() == OLD and not _leftovers(tmp_path, "metrics.json")
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    assert again.returncode == 0, again.stderr[-2000:]
    assert "cov_recall" in (tmp_path / "metrics.json").read_text()
    # the reference's first block of fingerprints (8 of 16) was finished before the interrupt: not computed again
    bars = [line for line in again.stderr.replace("\r", "\n").splitlines() if "reference fingerprints" in line]
    assert bars and " 8/16 " in bars[0], bars[:2]
    assert not list(cache.glob("*.part-*"))  # once the quantity is whole, its blocks are removed


# -------------------------------------------------------------------------- interrupted while the file is written
def test_interrupt_while_writing_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    """Ctrl-C in the middle of writing samples: the final name keeps its old contents, the temporary is removed."""
    from rdkit import Chem

    from graphgen.sampling import write_samples

    target = tmp_path / "mols.smi"
    target.write_text(OLD)
    real_fsync = os.fsync

    def interrupted_fsync(fd):  # the bytes are in the temporary file, not yet renamed into place
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        write_samples(target, [Chem.MolFromSmiles(s) for s in SMILES])
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert target.read_text() == OLD and not _leftovers(tmp_path, "mols.smi")
    write_samples(target, [Chem.MolFromSmiles(s) for s in SMILES])
    assert [Chem.CanonSmiles(s) for s in target.read_text().split()] == [Chem.CanonSmiles(s) for s in SMILES]


# ---------------------------------------------------------------------------------------------------- train
# Ctrl-C lets the step in flight finish and saves it; kill -9 loses what came after the last periodic checkpoint.
# Either way the rerun of the same command resumes from the newest checkpoint (its progress bar starts there), and
# model.pt, the mark of a finished run, exists only after the rerun.
FIRST_LOG = "loss="  # the progress bar shows a loss once the first log window (and its checkpoint) is done
TRAIN_NOTES = ("stopping after this step", "train:")


def _graphgen_train(tmp_path: Path) -> tuple[list[str], int]:
    steps = 300
    return [sys.executable, "-m", "graphgen.cli", "train", "community_small", "data.name=synthetic_community",
            "data.num_graphs=16", "data.max_node_num=12", "data.max_feat_num=6", "data.batch_size=8",
            f"train.max_steps={steps}", "train.checkpoint_every=25", "train.log_every=25", "model.depth=2",
            "model.nhid=8", "model.adim=8", "model.num_layers=2", "--run-dir", "run", "--threads", "1"], steps


def _molgen_train(tmp_path: Path) -> tuple[list[str], int]:
    import importlib.util

    if importlib.util.find_spec("qm9pack") is None:
        pytest.skip("qm9pack not installed")
    from molgen.data import prepare_qm9

    steps, data = 200, prepare_qm9(tmp_path / "qm9", limit=300, workers=0)
    return [sys.executable, "-m", "molgen.cli", "train", "qm9_cpu", "--qm9", str(data), "--run-dir", "run",
            "--threads", "1", "batch_size=8", "model.num_layers=1", "model.scalars=16", "model.vectors=4",
            "model.edge_features=8", "model.rbf=8", f"trainer.max_steps={steps}", "trainer.checkpoint_every=25",
            "trainer.log_every=25", "trainer.warmup_steps=0"], steps


def _crysgen_train(tmp_path: Path, data_dir: Path) -> tuple[list[str], int]:
    steps = 150
    return [sys.executable, "-m", "crysgen.cli", "train", "perov5", "--data-dir", str(data_dir), "--run-dir", "run",
            "--threads", "1", "model.channels=8", "model.channel_mult=[1, 2]", "model.num_res_blocks=1",
            "model.emb_dim=16", "model.attn_heads=2", "model.groups=4", "batch_size=16", f"trainer.max_steps={steps}",
            "trainer.lr_schedule=constant", "trainer.warmup_steps=0", "trainer.log_every=25",
            "trainer.checkpoint_every=25"], steps


def _checkpoint_steps(run: Path) -> list[int]:
    """Steps of the checkpoints; each one must be whole and readable. kill -9 during a save can leave only the
    temporary it was writing (``.ckpt-<step>.pt.<random>.tmp``), which is never taken for a checkpoint."""
    from shared.training.checkpoint import list_checkpoints, load_checkpoint

    others = {p.name for p in (run / "checkpoints").iterdir()} - {p.name for p in list_checkpoints(run / "checkpoints")}
    assert all(name.startswith(".ckpt-") and name.endswith(".tmp") for name in others), others
    return [int(load_checkpoint(p)["step"]) for p in list_checkpoints(run / "checkpoints")]


def _interrupt_train_then_resume(cmd: list[str], total: int, tmp_path: Path, sig: int, program: str) -> None:
    code, _, err = _run_until(cmd, tmp_path, FIRST_LOG, sig, startup_s=120)
    run = tmp_path / "run"
    assert not (run / "model.pt").exists(), "an interrupted run must not look finished"
    saved = max(_checkpoint_steps(run))
    assert 25 <= saved < total
    if sig == signal.SIGINT:
        assert code == EXIT_INTERRUPTED and "Traceback" not in err, err[-2000:]
        lines = _message_lines(err, *TRAIN_NOTES)
        assert lines == [f"interrupt: checkpoint of step {saved} saved in {Path('run', 'checkpoints')}; rerun the same "
                         "command to resume", f"{program}: interrupted"], err[-2000:]
    else:
        assert code == -signal.SIGKILL
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert again.returncode == 0, again.stderr[-2000:]
    assert (run / "model.pt").is_file()
    assert all(p.name.startswith("ckpt-") for p in (run / "checkpoints").iterdir())  # leftovers cleaned up
    bars = [line for line in again.stderr.replace("\r", "\n").splitlines() if line.startswith("train:")]
    assert bars and f" {saved}/{total} " in bars[0], bars[:2]  # the finished steps were not trained again
    steps = [(r["split"], r["step"]) for r in map(__import__("json").loads, (run / "log.jsonl").open())]
    assert len(steps) == len(set(steps)) and steps[-1][1] == total  # no step logged twice


@pytest.mark.timeout(150)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_graphgen_train_interrupted_resumes(tmp_path, sig):
    _interrupt_train_then_resume(*_graphgen_train(tmp_path), tmp_path, sig, "graphgen")


@pytest.mark.timeout(150)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_molgen_train_interrupted_resumes(tmp_path, sig):
    _interrupt_train_then_resume(*_molgen_train(tmp_path), tmp_path, sig, "molgen")


@pytest.mark.timeout(200)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_crysgen_train_interrupted_resumes(tmp_path, sig, reference_data):
    _interrupt_train_then_resume(*_crysgen_train(tmp_path, reference_data), tmp_path, sig, "crysgen")


# ------------------------------------------------------------------------------------------- dft and relax
# Results are cached one file per molecule/crystal as soon as each finishes: after Ctrl-C or kill -9 the rerun takes
# the finished ones from the cache (their files untouched) and computes only the rest; the output files appear only
# when everything is done.
def _cache_count(folder: Path, at_least: int) -> Callable[[], bool]:
    return lambda: len(list(folder.glob("*/[!.]*.json"))) >= at_least


def _interrupt_hook_then_resume(cmd: list[str], tmp_path: Path, outputs: list[str], sig: int, program: str,
                                total: int, done_line: str) -> None:
    for name in outputs:
        (tmp_path / name).write_text(OLD)
    cache = tmp_path / "cache"
    code, out, err = _run_until(cmd, tmp_path, _cache_count(cache, 2), sig, startup_s=120)
    finished = {p: p.stat().st_mtime_ns for p in cache.glob("*/[!.]*.json")}
    assert 2 <= len(finished) < total, "the job was too small to be interrupted part-way"
    if sig == signal.SIGINT:
        _assert_one_line_interrupt(code, err, program, "it/s", "%|")
    else:
        assert code == -signal.SIGKILL
    assert all((tmp_path / name).read_text() == OLD and not _leftovers(tmp_path, name) for name in outputs)
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert again.returncode == 0, again.stderr[-2000:]
    reused = int(again.stdout.split("(")[1].split(" from cache")[0]) if "from cache" in again.stdout else None
    assert done_line.format(total=total) in again.stdout, again.stdout
    assert reused is None or reused >= len(finished), again.stdout  # finished work was not redone...
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # ...and its cache files were not rewritten
    assert all((tmp_path / name).read_text() != OLD for name in outputs)


def _molecules_sdf(path: Path, n: int) -> None:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    with Chem.SDWriter(str(path)) as writer:
        # different molecules, one cache entry each; 12-20 heavy atoms, so that one xTB single point takes tens
        # of ms and the job cannot finish between the poll that sees two results and the signal (methanol-sized
        # molecules ran at ~170/s and sometimes did)
        for k in range(n):
            mol = Chem.AddHs(Chem.MolFromSmiles("C" * (k % 6 + 6) + "O" + "C" * (k // 6 + 5)))
            AllChem.EmbedMolecule(mol, randomSeed=k)
            writer.write(mol)


@pytest.mark.timeout(200)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_molgen_dft_interrupted_resumes(tmp_path, sig):
    pytest.importorskip("tblite")
    _molecules_sdf(tmp_path / "mols.sdf", 24)
    cmd = [sys.executable, "-m", "molgen.cli", "dft", "mols.sdf", "--method", "xtb", "--cache", "cache",
           "--threads", "1"]
    _interrupt_hook_then_resume(cmd, tmp_path, ["mols.xtb.json", "mols.xtb.csv"], sig, "molgen", 24,
                                "{total}/{total} ok")


@pytest.mark.timeout(200)
def test_graphgen_dft_sigint_resumes(tmp_path):  # kill -9: tests/graphgen/test_dft.py
    pytest.importorskip("tblite")
    # 24 different chains of 12-20 heavy atoms: each optimisation takes long enough that the job is still
    # running when the signal comes (alcohols and amines of 1-12 carbons sometimes all finished first on CI)
    smiles = ["C" * (k % 6 + 6) + "O" + "C" * (k // 6 + 5) for k in range(24)]
    (tmp_path / "mols.smi").write_text("\n".join(smiles) + "\n")
    cmd = [sys.executable, "-m", "graphgen.cli", "dft", "mols.smi", "--optimize", "--cache", "cache",
           "--threads", "1"]
    _interrupt_hook_then_resume(cmd, tmp_path, ["mols.xtb.json"], signal.SIGINT, "graphgen", 24,
                                "{total}/{total} ok")


def _crystals(folder: Path, n: int) -> None:
    import numpy as np
    from pymatgen.core import Lattice, Structure

    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(n):  # rattled fcc Cu cells (4 atoms): EMT relaxes each in a fraction of a second
        s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.5 + 0.02 * k), ["Cu"], [[0, 0, 0]])
        for i in range(len(s)):
            s.translate_sites([i], rng.normal(0, 0.02, 3), frac_coords=True)
        s.to(filename=str(folder / f"cu{k:02d}.cif"))


@pytest.mark.timeout(200)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_crysgen_relax_interrupted_resumes(tmp_path, sig):
    _crystals(tmp_path / "crystals", 6)
    cmd = [sys.executable, "-m", "crysgen.cli", "relax", "crystals", "--calculator", "emt", "--out", "relaxed",
           "--cache-dir", "cache", "--threads", "1", "--fmax", "0.001", "--steps", "100"]
    (tmp_path / "relaxed").mkdir()
    _interrupt_hook_then_resume(cmd, tmp_path, ["relaxed/energies.json"], sig, "crysgen", 6,
                                "relaxed with emt: {total}/{total} ok")
