"""crysgen on a dataset it has not seen (issue 12): a one-element CDVAE-style set of carbon polymorphs (6-24
atoms per cell) made here, found by name, directory or CSV; element set and site count inferred; --split;
failed starts leave nothing behind and a retry in the same directory works."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pymatgen")

from crysgen.cli import main  # noqa: E402
from crysgen.data import load_cdvae_csv, load_dataset, resolve_dataset, write_cdvae_csv  # noqa: E402
from crysgen.testing import carbon_set  # noqa: E402
from shared.config import load_config  # noqa: E402

TINY = ["model.channels=8", "model.channel_mult=[1, 2]", "model.num_res_blocks=1", "model.emb_dim=16",
        "model.attn_heads=2", "model.groups=4", "batch_size=8", "trainer.max_steps=2",
        "trainer.lr_schedule=constant", "trainer.warmup_steps=0", "trainer.log_every=1"]
SIZES = {"train": 20, "val": 6, "test": 6}


def write_carbon_dataset(folder, seed: int = 0):
    """train/val/test CSVs of perturbed carbon polymorph supercells, with an energy_per_atom column."""
    folder.mkdir(parents=True, exist_ok=True)
    for offset, (split, n) in enumerate(SIZES.items()):
        structures = carbon_set(n, seed=seed + offset)
        energies = [-9.0 + 0.01 * len(s) for s in structures]
        write_cdvae_csv(folder / f"{split}.csv", structures, [f"{split}-{i}" for i in range(n)],
                        {"energy_per_atom": energies})
    return folder


@pytest.fixture(scope="module", autouse=True)
def private_home(tmp_path_factory):
    """Parsed-CSV and fingerprint caches (~/.cache/scoregen) go to a temporary home, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        yield


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A data directory with crystals/carbon_24/{train,val,test}.csv (the real carbon-24 is not available here)."""
    root = tmp_path_factory.mktemp("carbon_data")
    write_carbon_dataset(root / "crystals" / "carbon_24")
    return root


def test_written_csv_reads_back_as_the_same_crystals(tmp_path):
    structures = carbon_set(5, seed=3)
    path = write_cdvae_csv(tmp_path / "c.csv", structures, properties={"energy_per_atom": [1.0] * 5})
    read = load_cdvae_csv(path)
    assert read.errors == [] and read.material_ids == [f"crystal-{i}" for i in range(5)]
    assert [len(s) for s in read.structures] == [len(s) for s in structures]
    assert read.properties["energy_per_atom"] == [1.0] * 5
    assert [round(s.volume, 4) for s in read.structures] == [round(s.volume, 4) for s in structures]
    with pytest.raises(ValueError, match="2 values for 5 structures"):
        write_cdvae_csv(tmp_path / "bad.csv", structures, properties={"e": [1, 2]})


def test_datasets_by_name_directory_and_csv(data_dir, tmp_path):
    folder = data_dir / "crystals" / "carbon_24"
    by_name = resolve_dataset("carbon_24", "val", data_dir)
    assert (by_name.name, by_name.split, by_name.path) == ("carbon_24", "val", (folder / "val.csv").resolve())
    assert resolve_dataset("carbon_24", None, data_dir).split == "train"
    by_dir = resolve_dataset(str(folder), "test")
    assert (by_dir.name, by_dir.path) == ("carbon_24", (folder / "test.csv").resolve())
    by_file = resolve_dataset(str(folder / "train.csv"))
    assert (by_file.name, by_file.split) == ("carbon_24", "train")
    sibling = resolve_dataset(str(folder / "train.csv"), "val")  # a split CSV's siblings are its other splits
    assert sibling.path == (folder / "val.csv").resolve()
    loose = write_cdvae_csv(tmp_path / "my_carbon.csv", carbon_set(3))
    assert resolve_dataset(str(loose)).name == "my_carbon" and len(load_dataset(str(loose), None)) == 3
    # any folder under <data_dir>/crystals is a dataset name
    write_carbon_dataset(tmp_path / "crystals" / "my_set")
    assert resolve_dataset("my_set", "test", tmp_path).path == (tmp_path / "crystals/my_set/test.csv").resolve()

    with pytest.raises(FileNotFoundError, match="has no extra.csv"):
        resolve_dataset(str(folder), "extra")
    with pytest.raises(FileNotFoundError, match="its folder has no extra.csv"):
        resolve_dataset(str(loose), "extra")
    with pytest.raises(FileNotFoundError, match="no such CSV file or directory"):
        resolve_dataset(str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="unknown crystal dataset 'graphene'.*no folder"):
        resolve_dataset("graphene", "train", data_dir)
    with pytest.raises(FileNotFoundError, match="download it from"):
        resolve_dataset("mp_20", "train", data_dir)


def test_train_by_packaged_name_on_the_carbon_set(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "carbon24", *TINY, "--run-dir", str(run), "--data-dir", str(data_dir),
                 "--device", "cpu", "--no-progress"]) == 0
    summary = json.loads((run / "data.json").read_text())
    assert summary["name"] == "carbon_24" and summary["split"] == "train"
    assert summary["n_encoded"] == SIZES["train"] and summary["elements"] == ["C"]
    assert summary["source"] == str((data_dir / "crystals/carbon_24/train.csv").resolve())
    assert "encoded 20 of 20 structures of carbon_24/train" in capsys.readouterr().out


def test_a_config_of_only_the_dataset_path_infers_elements_and_sites(data_dir, tmp_path):
    from crysgen.checkpoint import load_model
    from crysgen.train import CrysgenConfig

    csv_path = data_dir / "crystals" / "carbon_24" / "train.csv"
    config = tmp_path / "mine.yaml"
    config.write_text(f"data:\n  dataset: {csv_path}\n")
    run = tmp_path / "run"
    assert main(["train", str(config), *TINY, "--run-dir", str(run), "--device", "cpu", "--no-progress"]) == 0
    saved = load_config(CrysgenConfig, run / "config.yaml")
    largest = max(len(s) for s in load_cdvae_csv(csv_path).structures)
    assert (saved.data.elements, saved.data.n_elements, saved.data.max_sites) == (["C"], 1, largest)
    assert saved.data.split == "train" and saved.name == "carbon_24"
    model = load_model(run)
    assert (model.encoder.n_elements, model.encoder.max_sites) == (1, largest)

    # --split picks another split of the same dataset without editing the YAML
    val_run = tmp_path / "val_run"
    assert main(["train", str(config), *TINY, "--split", "val", "--run-dir", str(val_run), "--device", "cpu",
                 "--no-progress"]) == 0
    summary = json.loads((val_run / "data.json").read_text())
    assert summary["split"] == "val" and summary["n_encoded"] == SIZES["val"]
    assert load_config(CrysgenConfig, val_run / "config.yaml").data.split == "val"


def test_a_csv_or_directory_trains_with_default_settings(data_dir, tmp_path):
    run = tmp_path / "run"
    folder = data_dir / "crystals" / "carbon_24"
    assert main(["train", str(folder), *TINY, "--split", "test", "--run-dir", str(run), "--device", "cpu",
                 "--no-progress"]) == 0
    assert json.loads((run / "data.json").read_text())["n_encoded"] == SIZES["test"]


def test_a_given_element_set_skips_other_crystals(tmp_path):
    from pymatgen.core import Lattice, Structure

    from crysgen.train import load_train_config, prepare_data

    structures = carbon_set(4) + [Structure(Lattice.cubic(3.6), ["Si", "C"], [[0, 0, 0], [0.25, 0.25, 0.25]])]
    path = write_cdvae_csv(tmp_path / "mixed.csv", structures)
    inferred = prepare_data(load_train_config({"data": {"dataset": str(path), "cache_dir": str(tmp_path)}}),
                            log=lambda *a: None)
    assert inferred["config"].data.elements == ["C", "Si"] and inferred["config"].data.n_elements == 2
    only_c = prepare_data(load_train_config({"data": {"dataset": str(path), "elements": ["C"],
                                                      "cache_dir": str(tmp_path)}}), log=lambda *a: None)
    assert only_c["summary"]["n_encoded"] == 4
    assert only_c["summary"]["skipped"] == {"element not in data.elements": 1}
    assert only_c["config"].data.n_elements == 1


def test_too_few_steps_for_the_warm_up_leaves_nothing_and_the_retry_works(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--run-dir", str(run), "--data-dir", str(data_dir), "--device", "cpu", "--no-progress"]
    model = TINY[:7]  # the tiny network, the config's own cosine schedule with 1000 warm-up steps
    assert main(["train", "carbon24", *model, "trainer.max_steps=5", *common]) == 2
    err = capsys.readouterr().err
    assert "trainer.max_steps=5" in err and "trainer.warmup_steps=1000" in err and err.count("\n") == 1
    assert not run.exists()
    # corrected retry in the same directory, with another warm-up (a key that may not change on resumption)
    assert main(["train", "carbon24", *model, "trainer.max_steps=3", "trainer.warmup_steps=1", *common]) == 0
    assert (run / "model.pt").is_file()


def test_a_trainer_that_fails_to_start_leaves_no_directories(data_dir, tmp_path, monkeypatch):
    from shared.training import Trainer

    original = Trainer.__init__
    seen = []

    def failing_init(self, *args, **kwargs):  # the Trainer creates the run directory, then something fails
        original(self, *args, **kwargs)
        seen.append(run.is_dir())
        raise ValueError("simulated failure while the trainer starts")

    monkeypatch.setattr(Trainer, "__init__", failing_init)
    run = tmp_path / "runs" / "nested" / "run"
    assert main(["train", "carbon24", *TINY, "--run-dir", str(run), "--data-dir", str(data_dir), "--device", "cpu",
                 "--no-progress"]) == 2
    assert seen == [True] and not (tmp_path / "runs").exists()


def test_a_failed_start_inside_an_existing_directory_is_retried(data_dir, tmp_path, capsys, monkeypatch):
    from shared.training import Trainer

    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    common = ["train", "carbon24", *TINY, "--run-dir", str(run), "--data-dir", str(data_dir), "--device", "cpu",
              "--no-progress"]

    class Boom(ValueError):
        pass

    def failing_train(self, steps=None):  # fails after the run files are written, before any checkpoint
        raise Boom("simulated failure in the first training step")

    monkeypatch.setattr(Trainer, "train", failing_train)
    assert main([*common, "trainer.warmup_steps=0"]) == 2
    assert {"config.yaml", "data.json", "scaler.json"} <= {p.name for p in run.iterdir()}
    monkeypatch.undo()
    # the retry changes a key that a resumption may not change: accepted, since nothing was trained
    assert main([*common, "model.channels=16", "model.groups=8"]) == 0
    out = capsys.readouterr().out
    assert "of an earlier start that saved no checkpoint; starting afresh" in out
    assert (run / "notes.txt").read_text() == "mine"
    from crysgen.checkpoint import load_model

    assert load_model(run).config.model.channels == 16


def test_a_directory_that_is_not_a_run_is_not_cleared(data_dir, tmp_path, capsys):
    run = tmp_path / "project"
    run.mkdir()
    (run / "config.yaml").write_text("something: else\n")
    assert main(["train", "carbon24", *TINY, "--run-dir", str(run), "--data-dir", str(data_dir), "--device", "cpu",
                 "--no-progress"]) == 2
    assert "is not a crysgen run directory" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == "something: else\n"


# --- crysgen evaluate knows the dataset of the samples ------------------------------------------------------


@pytest.fixture(scope="module")
def carbon_samples(data_dir, tmp_path_factory):
    """A tiny carbon model (trained on val via --split) and 6 samples of it."""
    root = tmp_path_factory.mktemp("carbon_samples")
    assert main(["train", "carbon24", *TINY, "--split", "val", "--run-dir", str(root / "run"), "--data-dir",
                 str(data_dir), "--device", "cpu", "--no-progress"]) == 0
    assert main(["sample", str(root / "run"), "-n", "6", "--steps", "3", "--out", str(root / "samples"),
                 "--no-progress"]) == 0
    return root


def test_sample_records_the_training_data(carbon_samples, data_dir):
    settings = json.loads((carbon_samples / "samples" / "sampling.json").read_text())
    assert settings["training_data"] == {"dataset": "carbon_24", "name": "carbon_24", "split": "val",
                                         "source": str((data_dir / "crystals/carbon_24/val.csv").resolve())}
    assert settings["symmetrize"] is None  # off by default


@pytest.mark.parametrize("with_data_dir", [True, False])
def test_evaluate_infers_the_dataset_and_training_split(carbon_samples, data_dir, tmp_path, monkeypatch, capsys,
                                                        with_data_dir):
    monkeypatch.setenv("HOME", str(tmp_path))  # fingerprint cache
    monkeypatch.delenv("SCOREGEN_DATA", raising=False)
    samples = carbon_samples / "samples"
    out = tmp_path / "metrics.json"
    extra = ["--data-dir", str(data_dir)] if with_data_dir else []  # without: found next to the training CSV
    assert main(["evaluate", str(samples), "--out", str(out), "--no-progress", *extra]) == 0
    err = capsys.readouterr().err
    assert f"dataset: {'carbon_24' if with_data_dir else data_dir / 'crystals' / 'carbon_24'} (the model's " \
           f"training data, from {samples / 'sampling.json'})" in err
    protocol = json.loads(out.read_text())["protocol"]
    folder = (data_dir / "crystals" / "carbon_24").resolve()
    assert protocol["reference_csv"] == str(folder / "test.csv")
    assert protocol["train_split"] == "val" and protocol["train_csv"] == str(folder / "val.csv")  # not perov_5
    assert protocol["cov_cutoffs"] == [0.2, 4.0]  # carbon-24's


def test_evaluate_of_crystals_without_metadata_needs_the_dataset(data_dir, tmp_path, monkeypatch, capsys):
    from crysgen.representation import write_cifs

    monkeypatch.setenv("HOME", str(tmp_path))
    folder = tmp_path / "cifs"
    write_cifs(carbon_set(3, seed=9), folder)
    assert main(["evaluate", str(folder), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "which dataset do these crystals belong to?" in err
    assert "holds no sampling.json" in err and "pass --dataset" in err
    # named explicitly: the training split defaults to train (it exists here); --train-split none skips novelty
    dataset = str(data_dir / "crystals" / "carbon_24")
    assert main(["evaluate", str(folder), "--dataset", dataset, "--no-progress"]) == 0
    report = json.loads((folder / "metrics.json").read_text())
    assert report["protocol"]["train_split"] == "train" and "novel" in report["metrics"]
    assert report["protocol"]["dataset_from"] == "--dataset"
    assert main(["evaluate", str(folder), "--dataset", dataset, "--train-split", "none", "--no-progress"]) == 0
    report = json.loads((folder / "metrics.json").read_text())
    assert report["protocol"]["train_split"] is None and report["skipped"]["crystal_novelty"]
    capsys.readouterr()
    # a dataset without COV cut-offs: coverage is skipped and says why; --cov-cutoffs gives it
    mine = write_carbon_dataset(tmp_path / "my_carbon")
    assert main(["evaluate", str(folder), "--dataset", str(mine), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "skipped crystal_coverage: no COV cut-offs for dataset 'my_carbon'" in out
    assert main(["evaluate", str(folder), "--dataset", str(mine), "--cov-cutoffs", "0.2", "4", "--no-progress"]) == 0
    assert "cov_recall: " in capsys.readouterr().out


def test_evaluate_prints_progress_unless_told_not_to(data_dir, tmp_path, monkeypatch, capsys):
    from crysgen.representation import write_cifs

    monkeypatch.setenv("HOME", str(tmp_path))
    folder = tmp_path / "cifs"
    write_cifs(carbon_set(3, seed=9), folder)
    dataset = str(data_dir / "crystals" / "carbon_24")
    assert main(["evaluate", str(folder), "--dataset", dataset, "--workers", "2"]) == 0
    err = capsys.readouterr().err
    assert "reference fingerprints" in err and "novelty" in err  # bars for the reference set and the matching
    assert main(["evaluate", str(folder), "--dataset", dataset]) == 0
    assert "reference fingerprints" not in capsys.readouterr().err  # now read from the cache


def test_evaluate_plots(carbon_samples, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # fingerprint cache
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(carbon_samples / "samples"), "--out", str(out), "--no-progress",
                 "--data-dir", str(data_dir), "--plots", str(tmp_path / "figs")]) == 0
    names = sorted(p.name for p in (tmp_path / "figs").glob("*.png"))
    assert names == ["density.png", "elements.png", "space_groups.png", "volume_per_atom.png"]
    assert all((tmp_path / "figs" / n).stat().st_size > 2000 for n in names)
    assert len(json.loads(out.read_text())["plots"]) == 4
