"""Training (loss goes down, resumable run dir) -> model.pt -> sampling (seeded, decoded, written)."""

import csv
import json

import numpy as np
import pytest
import torch

from crysgen.checkpoint import load_model
from crysgen.diffusion import CrystalDenoiser, DiffusionConfig, make_loss_fn
from crysgen.model import UNet1D, UNetConfig
from crysgen.representation import CrystalEncoder
from crysgen.sampling import sample_crystals, write_samples
from crysgen.train import load_train_config, train
from shared.training import Trainer, TrainerConfig

TINY_OVERRIDES = [
    "model.channels=8", "model.channel_mult=[1, 2]", "model.num_res_blocks=1", "model.emb_dim=16",
    "model.attn_heads=2", "model.groups=4", "batch_size=32", "trainer.max_steps=4", "trainer.lr_schedule=constant",
    "trainer.warmup_steps=0", "trainer.log_every=2", "trainer.checkpoint_every=2", "trainer.progress=false",
    "trainer.device=cpu",
]


def test_tiny_model_loss_decreases():
    encoder = CrystalEncoder(n_elements=2, max_sites=3)
    pad = torch.as_tensor(encoder.padding_mask())
    g = torch.Generator().manual_seed(0)
    # a structured toy distribution: each matrix is one of two patterns plus a little noise
    patterns = torch.rand(2, *encoder.shape, generator=g) * 2 - 1
    x = patterns[torch.randint(0, 2, (256,), generator=g)] + 0.05 * torch.randn(256, *encoder.shape, generator=g)
    x[:, pad] = -1.0
    cond = torch.zeros(256, 0)
    torch.manual_seed(0)
    net = UNet1D(encoder.width, UNetConfig(channels=16, channel_mult=(1, 2), num_res_blocks=1, emb_dim=32))
    model = CrystalDenoiser(net, pad)
    loss_fn = make_loss_fn(DiffusionConfig(), pad)

    def held_out_loss():
        with torch.no_grad():
            return float(loss_fn(model, (x, cond), torch.Generator().manual_seed(123)))

    before = held_out_loss()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, cond), batch_size=64, shuffle=True)
    config = TrainerConfig(max_steps=40, lr=3e-3, ema_decay=None, progress=False, checkpoint_every=None,
                           log_every=20, device="cpu", csv_log=False)
    import tempfile

    with tempfile.TemporaryDirectory() as run_dir:
        Trainer(model, loss_fn, loader, config, run_dir).train()
    after = held_out_loss()
    assert after < 0.7 * before, (before, after)


@pytest.fixture(scope="module")
def tiny_run(reference_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("crysgen_run")
    config = load_train_config("crysgen/configs/perov5.yaml", TINY_OVERRIDES)
    path = train(config, run_dir, reference_data, log=lambda *a: None)
    return run_dir, path, config


def test_train_writes_a_self_describing_run_dir(tiny_run):
    run_dir, path, _ = tiny_run
    for name in ("config.yaml", "data.json", "scaler.json", "log.jsonl", "model.pt"):
        assert (run_dir / name).is_file(), name
    data = json.loads((run_dir / "data.json").read_text())
    assert data["split"] == "val" and data["n_encoded"] == data["n_structures"] == 3787
    assert data["properties"]["names"] == ["heat_ref"]
    model = load_model(path)
    assert model.meta["step"] == 4 and model.meta["weights"] == "ema"
    assert model.encoder.n_elements == 5 and model.encoder.max_sites == 5
    # the stored scaler is the one fitted on the training matrices
    assert json.loads((run_dir / "scaler.json").read_text()) == model.scaler.state_dict()


def test_resume_continues_and_config_changes_are_refused(tiny_run, reference_data):
    run_dir, _, config = tiny_run
    longer = load_train_config("crysgen/configs/perov5.yaml", TINY_OVERRIDES + ["trainer.max_steps=6"])
    messages = []
    with pytest.warns(UserWarning, match="changed trainer config"):
        train(longer, run_dir, reference_data, log=messages.append)
    assert any("resuming from step 4" in m for m in messages)
    resumed = load_model(run_dir)
    assert resumed.meta["step"] == 6
    # 4 steps + resume + 2 steps is bitwise the same as 6 steps in one go (CPU)
    straight = train(longer, run_dir.parent / "straight", reference_data, log=lambda *a: None)
    for name, tensor in load_model(straight).denoiser.state_dict().items():
        assert torch.equal(tensor, resumed.denoiser.state_dict()[name]), name
    other = load_train_config("crysgen/configs/perov5.yaml", TINY_OVERRIDES + ["model.channels=16"])
    with pytest.raises(ValueError, match="different config"):
        train(other, run_dir, reference_data)
    # sampler settings do not touch training: a finished run takes new ones and its model.pt samples with them
    resampled = load_train_config("crysgen/configs/perov5.yaml",
                                  TINY_OVERRIDES + ["trainer.max_steps=6", "diffusion.S_churn=7.5"])
    train(resampled, run_dir, reference_data, log=lambda *a: None)
    assert load_model(run_dir).config.diffusion.S_churn == 7.5 and load_model(run_dir).meta["step"] == 6


def test_sample_round_trip_is_seeded_and_writes_files(tiny_run, tmp_path):
    _, path, _ = tiny_run
    model = load_model(path)
    a = sample_crystals(model, 6, steps=3, seed=5, batch_size=4)
    b = sample_crystals(path, 6, steps=3, seed=5, batch_size=4)
    c = sample_crystals(model, 6, steps=3, seed=6, batch_size=4)
    assert a.matrices.shape == (6, *model.encoder.shape)
    assert (a.matrices == b.matrices).all() and not (a.matrices == c.matrices).all()
    assert a.nfe == 5 and len(a.structures) == 6
    assert [s is None for s in a.structures] == [s is None for s in b.structures]
    csv_path = write_samples(a, tmp_path)
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 6
    assert len(list(tmp_path.glob("sample_*.cif"))) == a.n_decoded
    assert json.loads((tmp_path / "sampling.json").read_text())["seed"] == 5


def test_an_interrupted_write_is_never_read_as_a_finished_sample_set(tiny_run, tmp_path, monkeypatch):
    import crysgen.representation
    from crysgen.io import UNFINISHED_MARKER, read_structures

    _, path, _ = tiny_run
    model = load_model(path)
    big = sample_crystals(model, 8, steps=3, seed=5)
    small = sample_crystals(model, 3, steps=3, seed=6)
    assert big.n_decoded > small.n_decoded >= 1
    write_samples(big, tmp_path)
    first = read_structures(tmp_path)
    assert len(first.structures) == 8

    real, calls = crysgen.representation.atomic_write_text, {"n": 0}

    def interrupted(target, text):  # Ctrl-C while the first CIF of the new set is written
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real(target, text)

    monkeypatch.setattr(crysgen.representation, "atomic_write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_samples(small, tmp_path)
    monkeypatch.setattr(crysgen.representation, "atomic_write_text", real)
    # the new set was being staged: the finished old set is intact, and no staging folder or marker is left
    assert not (tmp_path / UNFINISHED_MARKER).exists() and not list(tmp_path.glob(".incoming-*"))
    def as_dicts(structures):
        return [None if s is None else s.as_dict() for s in structures]

    assert as_dicts(read_structures(tmp_path).structures) == as_dicts(first.structures)
    # a write stopped during the final renames leaves the marker: readers refuse a mixture of two sets
    (tmp_path / UNFINISHED_MARKER).write_text("stopped")
    with pytest.raises(ValueError, match="unfinished sample set"):
        read_structures(tmp_path)

    (tmp_path / "metrics.json").write_text("{}")  # derived files of the user's are not the sample set's
    write_samples(small, tmp_path)  # sampling again into the directory repairs it
    assert (tmp_path / "metrics.json").is_file()
    again = read_structures(tmp_path)
    assert len(again.structures) == 3 and not (tmp_path / UNFINISHED_MARKER).exists()
    # the earlier set's extra CIFs are gone: the directory holds one sample set
    assert len(list(tmp_path.glob("sample_*.cif"))) == small.n_decoded


def test_guided_sampling_and_condition_errors(tiny_run):
    _, path, _ = tiny_run
    model = load_model(path)
    guided = sample_crystals(model, 2, steps=3, guidance={"heat_ref": 1.0}, guidance_scale=2.0)
    assert guided.settings["guidance"] == {"heat_ref": 1.0}
    mean, std = model.properties["mean"][0], model.properties["std"][0]
    torch.testing.assert_close(model.normalise_condition({"heat_ref": mean + 2 * std}), torch.tensor([2.0]))
    with pytest.raises(ValueError, match="unknown"):
        model.normalise_condition({"band_gap": 1.0})


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")
    torch.save({"step": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a crysgen model"):
        load_model(tmp_path / "other.pt")


def test_churn_is_seeded_changes_the_samples_and_leaves_the_model_config(tiny_run):
    _, path, _ = tiny_run
    model = load_model(path)
    configured = model.config.diffusion.S_churn  # perov5.yaml's default
    plain = sample_crystals(model, 4, steps=4, seed=1, churn=0.0)
    churned = sample_crystals(model, 4, steps=4, seed=1, churn=30.0)
    again = sample_crystals(model, 4, steps=4, seed=1, churn=30.0)
    default = sample_crystals(model, 4, steps=4, seed=1)
    assert np.array_equal(churned.matrices, again.matrices)
    assert not np.allclose(churned.matrices, plain.matrices)
    assert churned.settings["S_churn"] == 30.0 and plain.settings["S_churn"] == 0.0
    assert default.settings["S_churn"] == configured
    assert model.config.diffusion.S_churn == configured
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="churn"):
            sample_crystals(model, 1, steps=2, churn=bad)


def test_symmetry_options_train_resume_bitwise_and_reach_the_checkpoint(reference_data, tmp_path):
    """data.origin=site and data.permute_sites=true: the encoder setting travels with model.pt (and export_run);
    the site orders come from the trainer's generator, so 2 steps + resume + 2 steps equals 4 in one go."""
    from crysgen.checkpoint import export_run

    options = ["data.origin=site", "data.permute_sites=true"]
    short = load_train_config("crysgen/configs/perov5.yaml", TINY_OVERRIDES + options + ["trainer.max_steps=2"])
    train(short, tmp_path / "resumed", reference_data, log=lambda *a: None)
    longer = load_train_config("crysgen/configs/perov5.yaml", TINY_OVERRIDES + options)
    with pytest.warns(UserWarning, match="changed trainer config"):
        resumed = load_model(train(longer, tmp_path / "resumed", reference_data, log=lambda *a: None))
    straight = load_model(train(longer, tmp_path / "straight", reference_data, log=lambda *a: None))
    assert resumed.encoder.origin == straight.encoder.origin == "site"
    for name, tensor in straight.denoiser.state_dict().items():
        assert torch.equal(tensor, resumed.denoiser.state_dict()[name]), name
    plain = load_model(train(load_train_config("crysgen/configs/perov5.yaml", TINY_OVERRIDES + ["data.origin=site"]),
                             tmp_path / "plain", reference_data, log=lambda *a: None))
    assert any(not torch.equal(t, plain.denoiser.state_dict()[k]) for k, t in straight.denoiser.state_dict().items())
    assert load_model(export_run(tmp_path / "straight", tmp_path / "exported.pt")).encoder.origin == "site"
    # the training matrices really are re-anchored: in every perov-5 crystal the first site of its rarest
    # element (ties: lowest Z) is at the origin
    from crysgen.train import prepare_data

    data = prepare_data(longer, reference_data, log=lambda *a: None)
    enc = data["encoder"]
    m = data["scaler"].inverse_transform(data["x"].numpy()[:500])
    occupancy = m[:, enc.occ_row:, :enc.n_elements]
    slots = occupancy.argmax(axis=2)
    counts = occupancy.sum(axis=1)
    counts[counts == 0] = np.inf
    first = (slots == counts.argmin(axis=1)[:, None]).argmax(axis=1)
    anchors = m[np.arange(len(m)), enc.coord_row + first, :3]
    np.testing.assert_allclose(anchors, 0.0, atol=1e-5)
    result = sample_crystals(straight, 4, seed=0, steps=4)
    assert len(result.structures) == 4
    with pytest.raises(ValueError, match="data.origin"):
        load_train_config("crysgen/configs/perov5.yaml", ["data.origin=middle"])


def test_the_lattice_encoding_travels_with_the_checkpoint(reference_data, tmp_path):
    from crysgen.checkpoint import export_run

    config = load_train_config("crysgen/configs/perov5.yaml", TINY_OVERRIDES + ["data.lattice=log-cos"])
    model = load_model(train(config, tmp_path / "run", reference_data, log=lambda *a: None))
    assert model.encoder.lattice == "log-cos" and model.config.data.lattice == "log-cos"
    assert load_model(export_run(tmp_path / "run", tmp_path / "exported.pt")).encoder.lattice == "log-cos"
    # the scaler was fitted on log lengths: perov-5 cells are 3-10 A long, so the L0 row spans about ln 3..ln 10
    low, high = model.scaler.row_min[model.encoder.lattice_row], model.scaler.row_max[model.encoder.lattice_row]
    assert 0.5 < low < high < 3.0
    assert len(sample_crystals(model, 3, seed=0, steps=3).structures) == 3
    # checkpoints written before the option existed carry no lattice key: they are the paper's layout
    payload = torch.load(tmp_path / "exported.pt", weights_only=True)
    del payload["encoder"]["lattice"]
    torch.save(payload, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt").encoder.lattice == "abc"
    with pytest.raises(ValueError, match="data.lattice"):
        load_train_config("crysgen/configs/perov5.yaml", ["data.lattice=matrix"])


def _resave(path, out, **kwargs):
    """Re-write a sampling checkpoint through save_model (as the shipped model is packaged)."""
    from crysgen.checkpoint import save_model

    model = load_model(path)
    return save_model(out, weights=model.denoiser.state_dict(), config=model.config, encoder=model.encoder,
                      scaler=model.scaler, properties=model.properties, meta=model.meta, **kwargs)


def test_float16_weights_halve_the_file_and_load_back_as_float32(tiny_run, tmp_path):
    _, path, _ = tiny_run
    full = _resave(path, tmp_path / "full.pt")
    half = _resave(path, tmp_path / "half.pt", weights_dtype="float16")
    state = load_model(full).denoiser.state_dict()
    weights = sum(t.numel() for t in state.values())
    # the weights shrink from 4 to 2 bytes each (torch aligns each tensor record to 64 bytes); the rest of the
    # file (config, scaler) is the same
    assert full.stat().st_size - half.stat().st_size == pytest.approx(2 * weights, abs=64 * len(state))
    a, b = load_model(full).denoiser.state_dict(), load_model(half).denoiser.state_dict()
    for name, tensor in a.items():
        assert b[name].dtype == torch.float32, name
        # float16 keeps 11 significant bits: relative error <= 2**-11, or below the subnormal step near zero
        assert torch.all((b[name] - tensor).abs() <= 2.0 ** -11 * tensor.abs() + 2.0 ** -24), name
    ours = sample_crystals(half, 3, steps=4, seed=2)
    assert np.isfinite(ours.matrices).all()


def test_save_model_refuses_bad_dtypes_and_non_finite_weights(tiny_run, tmp_path):
    _, path, _ = tiny_run
    with pytest.raises(ValueError, match="weights_dtype"):
        _resave(path, tmp_path / "x.pt", weights_dtype="bfloat8")
    model = load_model(path)
    from crysgen.checkpoint import save_model

    weights = dict(model.denoiser.state_dict())
    name = next(k for k, v in weights.items() if v.is_floating_point())
    for bad, match in ((float("nan"), "NaN or infinite"), (1e6, "float16 range")):
        broken = dict(weights)
        broken[name] = weights[name].clone().fill_(bad)
        with pytest.raises(ValueError, match=match):
            save_model(tmp_path / "x.pt", weights=broken, config=model.config, encoder=model.encoder,
                       scaler=model.scaler, properties=model.properties, weights_dtype="float16")
    assert not (tmp_path / "x.pt").exists()


def test_a_sampler_sidecar_overrides_the_checkpoints_sampler_settings(tiny_run, tmp_path):
    from crysgen.checkpoint import sampler_defaults_path

    _, path, _ = tiny_run
    ckpt = _resave(path, tmp_path / "m.pt")
    stored = load_model(ckpt)
    assert "sampler_defaults" not in stored.meta  # no sidecar: the binary's own settings
    sidecar = sampler_defaults_path(ckpt)
    assert sidecar == tmp_path / "m.sampler.yaml"
    sidecar.write_text("steps: 7\nS_churn: 12\nS_max: null\n")
    model = load_model(ckpt)
    assert model.config.diffusion.steps == 7 and isinstance(model.config.diffusion.steps, int)
    assert model.config.diffusion.S_churn == 12.0 and model.meta["sampler_defaults"] == "m.sampler.yaml"
    # what the network was trained on is untouched
    assert model.config.diffusion.sigma_data == stored.config.diffusion.sigma_data
    assert model.config.trainer == stored.config.trainer
    result = sample_crystals(model, 2, seed=0)
    assert result.settings["S_churn"] == 12.0 and result.nfe == 2 * 7 - 1
    # the call's settings replace the sidecar's, in one place (crysgen.sampling.sampler_settings)
    from crysgen.sampling import sampler_settings

    resolved = sampler_settings(model, steps=5, churn=0)
    assert (resolved.steps, resolved.S_churn, resolved.S_max) == (5, 0.0, model.config.diffusion.S_max)
    assert sampler_settings(model) == model.config.diffusion
    called = sample_crystals(model, 2, seed=0, steps=5, churn=0)
    assert called.settings["steps"] == 5 and called.settings["S_churn"] == 0.0 and called.nfe == 2 * 5 - 1
    with pytest.raises(ValueError, match="steps must be an integer"):
        sampler_settings(model, steps=2.5)
    sidecar.write_text("")  # an empty file changes nothing
    assert load_model(ckpt).config.diffusion == stored.config.diffusion


@pytest.mark.parametrize("text, match", [
    ("sigma_data: 1.0\n", "not sampler settings"),
    ("steps: [1, 2\n", "not a readable YAML"),
    ("- steps\n", "expected a mapping"),
    ("S_churn: lots\n", "must be a number"),
    ("steps: 7.5\n", "integer"),
    ("steps: 1\n", "steps >= 2"),
])
def test_a_bad_sampler_sidecar_is_a_clear_error(tiny_run, tmp_path, text, match):
    from crysgen.checkpoint import sampler_defaults_path

    _, path, _ = tiny_run
    ckpt = _resave(path, tmp_path / "m.pt")
    sampler_defaults_path(ckpt).write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        load_model(ckpt)
    assert "m.sampler.yaml" in str(info.value)


def test_export_run_packages_a_shipped_model(tiny_run, tmp_path):
    """float16 weights and metadata replaced by the packager (a portable data source, no machine path)."""
    from crysgen.checkpoint import export_run

    run_dir, path, _ = tiny_run
    portable = {"dataset": "perov_5", "split": "val", "source": "<data_dir>/crystals/perov_5/val.csv"}
    out = export_run(run_dir, tmp_path / "shipped.pt", weights_dtype="float16",
                     meta={"data": portable, "history": "4 steps"})
    model = load_model(out)
    assert model.meta["data"] == portable and model.meta["history"] == "4 steps"
    assert model.meta["weights"] == "ema" and "trained_with" in model.meta
    assert out.stat().st_size < 0.75 * (run_dir / "model.pt").stat().st_size
    raw = torch.load(out, weights_only=True)["weights"]
    assert {t.dtype for t in raw.values() if t.is_floating_point()} == {torch.float16}


def test_decoding_can_be_restricted_to_the_training_elements(tiny_run):
    _, path, _ = tiny_run
    model = load_model(path)
    trained_on = set(model.config.data.elements)
    free = sample_crystals(model, 8, steps=3, seed=2)
    kept = sample_crystals(model, 8, steps=3, seed=2, elements="training")
    assert np.array_equal(free.matrices, kept.matrices)  # same generated matrices, only the decoding differs
    assert kept.settings["elements"] == list(model.config.data.elements) and free.settings["elements"] is None
    assert sum(c is not None for c in kept.structures) >= 4
    for crystal in kept.structures:
        assert crystal is None or {e.symbol for e in crystal.composition} <= trained_on
    oxides = sample_crystals(model, 8, steps=3, seed=2, elements=["Ti", "O"])
    for crystal in oxides.structures:
        assert crystal is None or {e.symbol for e in crystal.composition} <= {"Ti", "O"}
    for bad in (["Xx"], [], "all"):
        with pytest.raises(ValueError, match="elements"):
            sample_crystals(model, 1, steps=2, elements=bad)
