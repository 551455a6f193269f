"""The embedded default QM9 model: manifest, loading, and ``graphgen sample`` without a checkpoint argument."""

from __future__ import annotations

import json

import pytest
import torch

from graphgen import pretrained
from graphgen.checkpoint import load_model
from graphgen.cli import main

MANIFEST = pretrained.PRETRAINED_DIR / "manifest.json"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(MANIFEST.read_text())


def test_manifest_describes_a_small_embedded_file(manifest):
    path = pretrained.PRETRAINED_DIR / manifest["file"]
    assert path.is_file() and path.stat().st_size < 5 * 1024 * 1024
    assert {"training", "scores", "weights"} <= set(manifest)
    training = manifest["training"]
    assert training["steps"] > 0 and training["batch_size"] == 1024 and training["wall_seconds"] > 0
    assert 0.0 <= manifest["scores"]["validity_wo_correction"] <= 1.0


def test_embedded_model_loads_as_qm9_with_finite_weights(manifest):
    bundle = load_model(pretrained.PRETRAINED_DIR / manifest["file"])
    assert bundle.config.data.name == "QM9" and bundle.config.atom_types == ("C", "N", "O", "F")
    counts = bundle.node_counts
    # node-count histogram of the QM9 training split ships with the model: sampling needs no data
    assert counts is not None and counts.shape == (10,) and int(counts.sum()) == manifest["training"]["train_size"]
    assert all(torch.isfinite(p).all() for p in bundle.model.parameters())


def test_sample_without_checkpoint_uses_embedded_model(tmp_path, capsys):
    outs = [tmp_path / "a.smi", tmp_path / "b.smi"]
    for out in outs:
        code = main(["sample", "-n", "8", "--steps", "20", "--out", str(out), "--device", "cpu", "--seed", "3",
                     "--no-progress"])
        assert code == 0
    assert "wrote 8 molecules" in capsys.readouterr().out
    lines = outs[0].read_text().splitlines()
    assert len(lines) == 8
    # same seed, same molecules: the default model is used deterministically
    assert outs[1].read_text() == outs[0].read_text()


def test_missing_embedded_model_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    assert main(["sample", "-n", "2", "--out", str(tmp_path / "x.smi"), "--device", "cpu"]) == 2
    assert "no embedded default model yet" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text(json.dumps({"file": "gone.pt"}))
    assert main(["sample", "-n", "2", "--out", str(tmp_path / "x.smi"), "--device", "cpu"]) == 2
    assert "gone.pt" in capsys.readouterr().err
