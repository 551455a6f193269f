"""Property regressor: E(3)/permutation invariance, padding, normalisation fit, save/load, a tiny training run."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from molgen.regressor import PropertyRegressor, RegressorConfig, fit_normalisation, load_regressor, \
    save_regressor, type_counts


def random_molecules(generator: torch.Generator, batch: int = 6, atoms: int = 9):
    """Random atom types/positions with a different number of real atoms per molecule (rest is padding)."""
    counts = torch.randint(2, atoms + 1, (batch,), generator=generator)
    mask = torch.arange(atoms) < counts.unsqueeze(-1)
    types = torch.randint(0, 5, (batch, atoms), generator=generator) * mask
    positions = torch.randn(batch, atoms, 3, generator=generator) * 1.5 * mask.unsqueeze(-1)
    return types, positions, mask


def random_orthogonal(generator: torch.Generator, batch: int) -> torch.Tensor:
    """Random rotations and reflections (QR of Gaussian matrices with the sign fix of Mezzadri)."""
    q, r = torch.linalg.qr(torch.randn(batch, 3, 3, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)).float()


def assert_invariant(fn, types, positions, mask, generator: torch.Generator, atol: float = 1e-4) -> None:
    """``fn(types, positions, mask)`` -> (B, ...) is unchanged by a random orthogonal map + translation per
    molecule and by a random permutation of each molecule's real atoms (padding stays at the end)."""
    reference = fn(types, positions, mask)
    b, n = mask.shape
    rot = random_orthogonal(generator, b)
    shift = torch.randn(b, 1, 3, generator=generator) * 5
    moved = (torch.einsum("bij,bnj->bni", rot, positions) + shift) * mask.unsqueeze(-1)
    torch.testing.assert_close(fn(types, moved, mask), reference, atol=atol, rtol=1e-5)
    keys = torch.rand(b, n, generator=generator) + (~mask) * 2.0  # padding sorts last
    perm = keys.argsort(-1)
    permuted = (types.gather(1, perm), positions.gather(1, perm.unsqueeze(-1).expand(-1, -1, 3)),
                mask.gather(1, perm))
    torch.testing.assert_close(fn(*permuted), reference, atol=atol, rtol=1e-5)


@pytest.mark.parametrize("readout,depth", [("sum", 1), ("mean", 2), ("dipole", 1)])
def test_invariant_to_rotation_translation_reflection_and_permutation(readout, depth):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = PropertyRegressor(RegressorConfig(hidden=16, num_interactions=2, readout=readout, filter_depth=depth))
    model.set_normalisation(1.0, torch.arange(5.0), 2.0)
    types, positions, mask = random_molecules(g)
    with torch.no_grad():
        assert_invariant(model, types, positions, mask, g)


def test_dipole_readout_is_the_norm_of_neutralised_charges_times_positions():
    from molgen.units import E_ANGSTROM_TO_DEBYE

    model = PropertyRegressor(RegressorConfig(hidden=8, num_interactions=1, readout="dipole"))
    charges = torch.tensor([[0.7, -0.2, 0.1, 0.0]])  # net +0.6: shifted by -0.2 each over the 3 real atoms
    positions = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [9.0, 9.0, 9.0]]])
    mask = torch.tensor([[True, True, True, False]])
    q = torch.tensor([0.5, -0.4, -0.1])
    expected = torch.linalg.norm((q.unsqueeze(-1) * positions[0, :3]).sum(0)) * E_ANGSTROM_TO_DEBYE
    got = model._dipole(charges, positions, mask)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    shifted = model._dipole(charges, positions + torch.tensor([3.0, -1.0, 2.0]), mask)  # neutral: origin-free
    assert shifted.item() == pytest.approx(expected.item(), rel=1e-5)
    # forward() reports Debye directly: no composition baseline is added to a vector's norm
    types = torch.tensor([[1, 0, 0, 0]])
    model.set_normalisation(5.0, torch.ones(5), 3.0)
    with torch.no_grad():
        assert torch.allclose(model(types, positions, mask), model.normalised(types, positions, mask).double())


def test_padding_and_batch_composition_do_not_change_predictions():
    g = torch.Generator().manual_seed(1)
    model = PropertyRegressor(RegressorConfig(hidden=16, num_interactions=2))
    types, positions, mask = random_molecules(g, batch=4, atoms=7)
    with torch.no_grad():
        ref = model(types, positions, mask)
        extra = 5  # more padding columns, with garbage positions/types that the mask must hide
        padded = (torch.cat([types, torch.full((4, extra), 3)], 1),
                  torch.cat([positions, torch.randn(4, extra, 3, generator=g)], 1),
                  torch.cat([mask, torch.zeros(4, extra, dtype=torch.bool)], 1))
        torch.testing.assert_close(model(*padded), ref)
        alone = torch.cat([model(types[k:k + 1], positions[k:k + 1], mask[k:k + 1]) for k in range(4)])
        torch.testing.assert_close(alone, ref)


def test_position_gradients_are_finite_with_padding_and_coincident_atoms():
    model = PropertyRegressor(RegressorConfig(hidden=8, num_interactions=1))
    positions = torch.zeros(1, 4, 3)
    positions[0, 1, 0] = 1.0  # atoms 2 and 3 are padding at the origin, atom 0 is there too
    positions.requires_grad_(True)
    mask = torch.tensor([[True, True, False, False]])
    model(torch.zeros(1, 4, dtype=torch.long), positions, mask).sum().backward()
    assert torch.isfinite(positions.grad).all()
    assert positions.grad[0, 2:].abs().sum() == 0


def test_cutoff_makes_distant_atoms_independent():
    model = PropertyRegressor(RegressorConfig(hidden=8, num_interactions=2, cutoff=3.0))
    types = torch.tensor([[1, 0, 2, 0]])
    near = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [10.0, 0, 0], [11.0, 0, 0]]])
    far = near.clone()
    far[0, 2:, 0] += 50.0  # both fragments are already beyond the cutoff: moving them apart changes nothing
    mask = torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(model(types, near, mask), model(types, far, mask))


def test_fit_normalisation_recovers_an_exact_linear_composition_model():
    g = torch.Generator().manual_seed(2)
    counts = torch.randint(0, 9, (200, 5), generator=g).double()
    atomref = torch.tensor([-0.5, 3.0, 2.0, 1.5, 0.25], dtype=torch.float64)
    values = 7.0 + counts @ atomref
    offset, fitted, scale = fit_normalisation(counts, values)
    assert offset == pytest.approx(7.0, abs=1e-8)
    torch.testing.assert_close(fitted, atomref)
    assert scale == 1.0  # no residual: the scale falls back to 1 instead of 0
    noisy = values + torch.randn(200, generator=g, dtype=torch.float64) * 0.3
    assert fit_normalisation(counts, noisy)[2] == pytest.approx(0.3, rel=0.2)
    with pytest.raises(ValueError, match="molecules"):
        fit_normalisation(counts[:1], values[:1])


def test_baseline_counts_real_atoms_only_and_save_load_round_trip(tmp_path):
    g = torch.Generator().manual_seed(3)
    model = PropertyRegressor(RegressorConfig(hidden=8, num_interactions=1))
    model.set_normalisation(0.5, torch.tensor([1.0, 10.0, 100.0, 1000.0, 1e4]), 3.0)
    types = torch.tensor([[0, 1, 1, 4, 3]])
    mask = torch.tensor([[True, True, True, False, False]])
    assert type_counts(types, mask, 5).tolist() == [[1.0, 2.0, 0.0, 0.0, 0.0]]
    assert float(model.baseline(types, mask)) == 21.5
    save_regressor(model, tmp_path / "m.pt", property="gap")
    loaded = load_regressor(tmp_path / "m.pt")
    assert loaded.metadata["property"] == "gap"
    types, positions, mask = random_molecules(g)
    with torch.no_grad():
        torch.testing.assert_close(loaded(types, positions, mask), model(types, positions, mask))
    with pytest.raises(FileNotFoundError, match="regressor"):
        load_regressor(tmp_path / "missing.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a molgen regressor"):
        load_regressor(tmp_path / "other.pt")


# --- training on a small QM9 subset ------------------------------------------------------------------------


needs_qm9 = pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None or importlib.util.find_spec("rdkit")
                               is None, reason="qm9pack/rdkit not installed")


@pytest.fixture(scope="module")
def small_qm9(tmp_path_factory):
    from molgen.data import prepare_qm9

    return prepare_qm9(tmp_path_factory.mktemp("qm9"), limit=400, workers=0)


@needs_qm9
def test_training_keeps_the_best_checkpoint_and_reports_test_mae_in_mev(small_qm9, tmp_path):
    from molgen.train_regressor import RegressorTrainConfig, evaluate_regressor, load_split, regressor_mae, \
        train_regressor
    from shared.config import load_config

    config = load_config(RegressorTrainConfig, None, [
        "property=gap", f"data={small_qm9}", "model.hidden=16", "model.num_interactions=1", "batch_size=16",
        "trainer.max_steps=60", "trainer.eval_every=20", "trainer.progress=false", "trainer.lr=3e-3",
        "valid_limit=null"])
    summary = train_regressor(config, tmp_path)
    assert summary["steps"] == 60 and summary["stop_reason"] == "max_steps"
    evals = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    valid = [r["valid_mae"] for r in evals if r["split"] == "eval"]
    assert len(valid) == 3 and summary["best_valid_mae"] == pytest.approx(min(valid))
    best = load_regressor(tmp_path / "best.pt")
    # the saved model is the best one: its validation MAE (eV -> meV) is the best logged value
    assert regressor_mae(best, load_split(small_qm9, "valid", "gap")) * 1000 == pytest.approx(min(valid))
    test = evaluate_regressor(tmp_path / "best.pt", small_qm9)
    assert test["unit"] == "meV" and test["property"] == "gap" and math.isfinite(test["mae"])
    # better than predicting the training mean gap for every test molecule (gap std on QM9 is ~1.3 eV)
    train = load_split(small_qm9, "train_regressor", "gap")
    tst = load_split(small_qm9, "test", "gap")
    assert test["mae"] < 1000 * float((tst.values - train.values.mean()).abs().mean())


@needs_qm9
def test_warm_start_continues_from_a_regressor_file(small_qm9, tmp_path):
    from molgen.train_regressor import RegressorTrainConfig, load_split, regressor_predictions, train_regressor
    from shared.config import load_config

    common = [f"data={small_qm9}", "model.hidden=16", "model.num_interactions=1", "batch_size=16",
              "trainer.progress=false", "valid_limit=null"]
    first = load_config(RegressorTrainConfig, None, ["property=homo", "trainer.max_steps=40",
                                                     "trainer.eval_every=20", "trainer.lr=3e-3", *common])
    train_regressor(first, tmp_path / "a")
    # a warm start that cannot move (lr 1e-12) predicts what its starting file predicts, normalisation included
    again = load_config(RegressorTrainConfig, None, [
        "property=homo", "trainer.max_steps=1", "trainer.eval_every=1", "trainer.lr=1e-12",
        f"init_from={tmp_path / 'a' / 'best.pt'}", *common])
    train_regressor(again, tmp_path / "b")
    valid = load_split(small_qm9, "valid", "homo")
    torch.testing.assert_close(regressor_predictions(load_regressor(tmp_path / "b" / "best.pt"), valid),
                               regressor_predictions(load_regressor(tmp_path / "a" / "best.pt"), valid),
                               atol=1e-6, rtol=1e-6)
    wrong = load_config(RegressorTrainConfig, None, [
        "property=lumo", "trainer.max_steps=1", f"init_from={tmp_path / 'a' / 'best.pt'}", *common])
    with pytest.raises(ValueError, match="init_from"):
        train_regressor(wrong, tmp_path / "c")


@needs_qm9
def test_patience_stops_training(small_qm9, tmp_path):
    from molgen.train_regressor import RegressorTrainConfig, train_regressor
    from shared.config import load_config

    # lr so small that nothing improves after the first evaluation: stop after `patience` more evaluations
    config = load_config(RegressorTrainConfig, None, [
        "property=mu", f"data={small_qm9}", "model.hidden=8", "model.num_interactions=1", "batch_size=8",
        "trainer.max_steps=1000", "trainer.eval_every=5", "trainer.progress=false", "trainer.lr=1e-12",
        "trainer.lr_schedule=constant", "patience=2"])
    summary = train_regressor(config, tmp_path)
    assert summary["stop_reason"] == "patience"
    assert summary["steps"] < 1000


def test_bad_config_is_a_clear_error():
    from molgen.train_regressor import RegressorTrainConfig

    with pytest.raises(ValueError, match="unknown property"):
        RegressorTrainConfig(property="U0x")
    with pytest.raises(ValueError, match="readout"):
        RegressorConfig(readout="max")


def test_shipped_regressors_load_are_small_and_match_the_manifest():
    from molgen.pretrained import EGNN_REFERENCE_MAE, PRETRAINED_DIR, load_pretrained, read_manifest

    try:
        models = read_manifest()["models"]
    except FileNotFoundError:
        pytest.skip("no pretrained regressors built yet")
    g = torch.Generator().manual_seed(4)
    types, positions, mask = random_molecules(g, batch=3)
    for prop, entry in models.items():
        assert prop in EGNN_REFERENCE_MAE and (PRETRAINED_DIR / entry["file"]).stat().st_size < 2_000_000
        model = load_pretrained(prop)
        assert model.metadata["property"] == prop
        with torch.no_grad():
            assert_invariant(model, types, positions, mask, g, atol=1e-3)


@needs_qm9
def test_resume_continues_the_early_stopping_record(small_qm9, tmp_path):
    from molgen.train_regressor import RegressorTrainConfig, train_regressor
    from shared.config import load_config

    base = ["property=homo", f"data={small_qm9}", "model.hidden=8", "model.num_interactions=1", "batch_size=8",
            "trainer.eval_every=5", "trainer.progress=false"]
    first = train_regressor(load_config(RegressorTrainConfig, None, [*base, "trainer.max_steps=10"]), tmp_path)
    with pytest.warns(UserWarning, match="max_steps"):  # the trainer notes the longer schedule
        resumed = train_regressor(load_config(RegressorTrainConfig, None, [*base, "trainer.max_steps=20"]),
                                  tmp_path, resume=True)
    assert resumed["steps"] == 20
    assert resumed["best_valid_mae"] <= first["best_valid_mae"]
