"""graphgen CLI: train -> sample -> evaluate round trip in a temporary directory, import-gdss, clear errors."""

import json

import pytest

from graphgen.cli import main
from graphgen.sampling import read_samples

TINY = ["data.name=synthetic_community", "data.num_graphs=16", "data.max_node_num=12", "data.max_feat_num=6",
        "data.batch_size=8", "train.max_steps=4", "model.depth=2", "model.nhid=8", "model.adim=8",
        "model.num_layers=2", "sampler.steps=6"]


def test_train_sample_evaluate_round_trip(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "community_small", *TINY, "--run-dir", str(run), "--device", "cpu", "--no-progress",
                 "--seed", "3"])
    assert code == 0 and (run / "model.pt").is_file()
    assert "train:\n" in (run / "config.yaml").read_text() and "seed: 3" in (run / "config.yaml").read_text()

    out = tmp_path / "samples.json"
    code = main(["sample", str(run), "-n", "5", "--out", str(out), "--device", "cpu", "--seed", "1",
                 "--batch-size", "2", "--no-progress"])
    assert code == 0
    graphs, is_mol = read_samples(out)
    assert len(graphs) == 5 and not is_mol
    assert "wrote 5 graphs" in capsys.readouterr().out

    again = tmp_path / "again.json"
    main(["sample", str(run / "model.pt"), "-n", "5", "--out", str(again), "--device", "cpu", "--seed", "1",
          "--batch-size", "2", "--no-progress"])
    assert again.read_text() == out.read_text()

    metrics_path = tmp_path / "metrics.json"
    code = main(["evaluate", str(out), "--dataset", "synthetic_community", "--out", str(metrics_path)])
    assert code == 0
    metrics = json.loads(metrics_path.read_text())
    assert {"degree", "cluster", "orbit"} <= set(metrics) and metrics["num_samples"] == 5
    assert all(metrics[k] >= -1e-9 for k in ("degree", "cluster", "orbit"))


def test_user_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00\x01 not a checkpoint")
    assert main(["import-gdss", str(bad), str(tmp_path / "out.pt")]) == 2
    assert "GDSS checkpoint" in capsys.readouterr().err
    assert main(["train", "no_such_config", "--run-dir", str(tmp_path / "r")]) == 2
    assert "packaged config" in capsys.readouterr().err
    assert main(["train", "community_small", "train.no_such_key=1", "--run-dir", str(tmp_path / "r")]) == 2
    assert "no_such_key" in capsys.readouterr().err


@pytest.mark.data
def test_import_gdss_then_sample(reference_data, tmp_path, capsys):
    model = tmp_path / "community.pt"
    src = reference_data / "gdss_checkpoints" / "gdss_community_small.pth"
    assert main(["import-gdss", str(src), str(model), "--data-dir", str(reference_data)]) == 0
    out = tmp_path / "g.graphml"
    assert main(["sample", str(model), "-n", "2", "--steps", "5", "--out", str(out), "--device", "cpu",
                 "--no-progress"]) == 0
    assert len(read_samples(out)[0]) == 2


def test_evaluate_molecules_without_reference_data(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SCOREGEN_DATA", raising=False)
    samples = tmp_path / "mols.smi"
    samples.write_text("CCO\nCCO\nc1ccccc1\nC(C)(C)(C)(C)C\n")  # the last one is over-valent
    assert main(["evaluate", str(samples), "--dataset", "QM9", "--out", str(tmp_path / "m.json")]) == 0
    captured = capsys.readouterr()
    assert "novelty and FCD" in captured.err
    assert "validity_wo_correction: 0.75" in captured.out
    assert "uniqueness: 0.666" in captured.out and "novelty" not in captured.out


def test_evaluate_zinc_without_its_csv_computes_what_it_can(tmp_path, capsys):
    samples = tmp_path / "zinc.smi"
    samples.write_text("CCO\nc1ccccc1.CC\nC(C)(C)(C)(C)C\nCCN\n")
    (tmp_path / "data").mkdir()  # a data directory without zinc250k/
    out = tmp_path / "m.json"
    code = main(["evaluate", str(samples), "--dataset", "ZINC250k", "--data-dir", str(tmp_path / "data"),
                 "--out", str(out)])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["validity_wo_correction"] == 0.75 and metrics["uniqueness"] == 1.0
    assert metrics["multi_fragment_fraction"] == pytest.approx(1 / 3)
    assert metrics["mean_heavy_atoms"] == pytest.approx((3 + 8 + 3) / 3)
    assert metrics["atom_fractions"]["C"] == pytest.approx(12 / 14)
    assert "novelty" not in metrics and "fcd" not in metrics
    assert "novelty and FCD skipped" in capsys.readouterr().err


def test_fast_preset_uses_s4_at_60_steps_and_explicit_options_win(tmp_path, capsys):
    out = tmp_path / "fast.smi"
    assert main(["sample", "-n", "2", "--out", str(out), "--preset", "fast", "--no-progress", "--device", "cpu"]) == 0
    assert "(NFE 60)" in capsys.readouterr().out  # S4: one network call per step
    assert main(["sample", "-n", "2", "--out", str(out), "--preset", "fast", "--steps", "30", "--no-progress",
                 "--device", "cpu"]) == 0
    assert "(NFE 30)" in capsys.readouterr().out


def test_evaluate_plots_molecules_and_graphs(tmp_path):
    samples = tmp_path / "mols.smi"
    samples.write_text("CCO\nc1ccccc1\nCCN\n")
    (tmp_path / "empty").mkdir()  # no QM9 split here: the samples alone are drawn
    assert main(["evaluate", str(samples), "--dataset", "QM9", "--plots", str(tmp_path / "mol_plots"),
                 "--data-dir", str(tmp_path / "empty")]) == 0
    pngs = sorted(p.name for p in (tmp_path / "mol_plots").glob("*.png"))
    assert pngs == ["elements.png", "heavy_atoms.png"]
    run = tmp_path / "run"
    assert main(["train", "community_small", *TINY, "--run-dir", str(run), "--device", "cpu", "--no-progress"]) == 0
    graphs = tmp_path / "g.json"
    assert main(["sample", str(run), "-n", "4", "--out", str(graphs), "--device", "cpu", "--no-progress"]) == 0
    assert main(["evaluate", str(graphs), "--dataset", "synthetic_community", "--plots", str(tmp_path / "gp")]) == 0
    for name in ("degree.png", "clustering.png"):
        assert (tmp_path / "gp" / name).stat().st_size > 2000
