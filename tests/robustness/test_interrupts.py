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
from pathlib import Path

import pytest

EXIT_INTERRUPTED = 130
OLD = "previous contents, must survive\n"


def _default_sigint() -> None:
    # a shell that starts jobs in the background sets SIGINT to "ignored", which children inherit and Python then
    # keeps: give the command the ordinary disposition an interactive user's process has
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run_until(cmd: list[str], cwd: Path, marker: str, sig: int, env: dict | None = None,
               startup_s: float = 60.0) -> tuple[int, str, str]:
    """Start ``cmd``, wait until its stderr shows ``marker``, send ``sig``; ``(returncode, stdout, stderr)``."""
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
            while marker not in err_path.read_text(errors="replace"):
                if proc.poll() is not None:
                    pytest.fail(f"{cmd[2:4]} ended (code {proc.returncode}) before showing {marker!r}: "
                                f"{err_path.read_text()[-1500:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"{cmd[2:4]} did not show {marker!r} within {startup_s} s")
                time.sleep(0.1)
            time.sleep(0.5)  # well inside the computation
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


# -------------------------------------------------------------------------- interrupted while the file is written
def test_interrupt_while_writing_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    """Ctrl-C in the middle of writing samples: the final name keeps its old contents, the temporary is removed."""
    from rdkit import Chem

    from graphgen.sample import write_samples

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
