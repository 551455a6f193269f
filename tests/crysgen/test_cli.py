"""The crysgen CLI end to end in a temporary directory: train -> sample -> relax, the embedded model, errors."""

import csv
import json

import pytest

from crysgen.checkpoint import default_checkpoint, load_model
from crysgen.cli import main
from crysgen.io import read_structures

TINY = ["model.channels=8", "model.channel_mult=[1, 2]", "model.num_res_blocks=1", "model.emb_dim=16",
        "model.attn_heads=2", "model.groups=4", "batch_size=32", "trainer.max_steps=2",
        "trainer.lr_schedule=constant", "trainer.warmup_steps=0", "trainer.log_every=1"]


@pytest.fixture(scope="module")
def cli_run(reference_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("crysgen_cli")
    code = main(["train", "crysgen/configs/perov5.yaml", *TINY, "--run-dir", str(root / "run"),
                 "--data-dir", str(reference_data), "--device", "cpu", "--no-progress"])
    assert code == 0
    return root


def test_train_then_sample_then_relax(cli_run):
    run, out = cli_run / "run", cli_run / "samples"
    assert load_model(run / "model.pt").meta["step"] == 2
    assert main(["sample", str(run), "-n", "4", "--out", str(out), "--steps", "3", "--seed", "1",
                 "--no-progress", "--guidance", "heat_ref=1.5", "--scale", "2"]) == 0
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [int(r["index"]) for r in rows] == [0, 1, 2, 3]
    settings = json.loads((out / "sampling.json").read_text())
    assert settings["guidance"] == {"heat_ref": 1.5} and settings["guidance_scale"] == 2.0
    structures = read_structures(out).structures
    assert len(structures) == 4
    assert sum(s is not None for s in structures) == len(list(out.glob("sample_*.cif")))
    if any(s is not None for s in structures):
        code = main(["relax", str(out), "--calculator", "emt", "--steps", "5", "--limit", "1"])
        report = json.loads((out / "relaxed" / "energies.json").read_text())
        # a toy model's crystal may hold elements EMT lacks: 0 of N relaxed is exit 1, never a silent 0
        assert code == (0 if any(r["status"] == "ok" for r in report["results"]) else 1)
        assert report["calculator"] == "emt" and len(report["results"]) == 1


def test_sample_with_the_embedded_model(tmp_path):
    assert default_checkpoint().is_file(), "the embedded perov-5 model is missing from crysgen/pretrained"
    assert main(["sample", "-n", "3", "--out", str(tmp_path), "--steps", "4", "--no-progress"]) == 0
    settings = json.loads((tmp_path / "sampling.json").read_text())
    assert settings["checkpoint"].endswith("perov5.pt") and settings["n"] == 3
    manifest = json.loads((default_checkpoint().parent / "manifest.json").read_text())
    assert manifest["training"]["data"]["split"] == "val"


def test_the_embedded_model_names_its_data_without_a_machine_path(tmp_path, reference_data):
    import argparse

    from crysgen.cli import _evaluation_dataset

    assert main(["sample", "-n", "2", "--out", str(tmp_path), "--steps", "2", "--no-progress"]) == 0
    trained = json.loads((tmp_path / "sampling.json").read_text())["training_data"]
    assert {k: trained[k] for k in ("dataset", "split", "source")} == \
        {"dataset": "perov_5", "split": "val", "source": "<data_dir>/crystals/perov_5/val.csv"}
    assert trained.get("name", "perov_5") == "perov_5"
    for dataset in ("perov_5", None):  # named by the user, or taken from sampling.json: novelty against val
        args = argparse.Namespace(source=str(tmp_path), dataset=dataset, train_split=None, reference="test",
                                  data_dir=str(reference_data))
        choice = _evaluation_dataset(args)
        assert choice["name"] == "perov_5" and choice["train_split"] == "val"


def test_user_errors_exit_with_code_2(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "nope.pt"), "-n", "2", "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["sample", "-n", "0", "--out", str(tmp_path)]) == 2
    assert main(["sample", "-n", "2", "--out", str(tmp_path), "--guidance", "heat_ref"]) == 2
    assert main(["sample", "-n", "2", "--out", str(tmp_path), "--guidance", "band_gap=1", "--steps", "2"]) == 2
    assert "guidance must give exactly" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert main(["evaluate", str(tmp_path / "empty")]) == 2


def test_read_structures_from_a_cdvae_style_csv(tmp_path, reference_data):
    source = reference_data / "crystals" / "perov_5" / "test.csv"
    # header + the first two records (CIFs span several lines inside quotes)
    with source.open(newline="") as handle:
        rows = [row for _, row in zip(range(2), csv.DictReader(handle))]
    small = tmp_path / "two.csv"
    with small.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    structures = read_structures(small).structures
    assert len(structures) == 2 and all(len(s) == 5 for s in structures)


@pytest.mark.slow
def test_evaluate_against_the_test_split(cli_run, reference_data):
    out = cli_run / "samples"
    if not (out / "summary.csv").is_file():
        pytest.skip("sampling test did not run")
    assert main(["evaluate", str(out), "--data-dir", str(reference_data), "--workers", "2"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["protocol"]["reference_split"] == "test" and "valid" in report["metrics"]


def test_the_embedded_model_is_perov5_yaml_as_shipped():
    """`crysgen train perov5` reproduces the embedded model's recipe: every setting but the inferred element list
    and the progress bar (the manifest's command) is the packaged config's."""
    from crysgen.checkpoint import load_model
    from crysgen.config import load_train_config
    from shared.config import config_to_dict

    shipped = config_to_dict(load_model().config)
    recipe = config_to_dict(load_train_config("crysgen/configs/perov5.yaml"))
    for config in (shipped, recipe):
        config["data"].pop("elements")
        config["trainer"].pop("progress")
    assert shipped == recipe
    manifest = json.loads((default_checkpoint().parent / "manifest.json").read_text())
    assert manifest["parameters"] == sum(p.numel() for p in load_model().denoiser.parameters())
    assert manifest["size_bytes"] == default_checkpoint().stat().st_size
