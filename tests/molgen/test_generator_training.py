"""The generator end to end on molecules this file builds: overfitting, conditioning, resume, files, the CLI."""

from __future__ import annotations

import shutil
import warnings
from collections import Counter

import pytest
import torch

pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")

from rdkit import Chem  # noqa: E402
from rdkit.Chem import AllChem  # noqa: E402

from molgen.checkpoint import load_generator  # noqa: E402
from molgen.cli import main  # noqa: E402
from molgen.sampling import generate, write_sdf  # noqa: E402
from molgen.train import GeneratorTrainConfig, MolListDataset, train_generator  # noqa: E402
from shared.config import load_config  # noqa: E402

TINY = ["model.num_layers=2", "model.scalars=32", "model.vectors=4", "model.edge_features=16", "model.rbf=16",
        "model.rbf_max=6.0", "trainer.lr=3e-3", "trainer.warmup_steps=20", "trainer.ema_decay=0.99",
        "trainer.progress=false", "trainer.checkpoint_every=null", "trainer.log_every=50", "trainer.seed=0"]


def mol3d(smiles: str):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    AllChem.MMFFOptimizeMolecule(mol)
    return mol


def config(*extra: str) -> GeneratorTrainConfig:
    return load_config(GeneratorTrainConfig, None, [*TINY, *extra])


def canonical(mol) -> str | None:
    try:
        copy = Chem.Mol(mol)
        Chem.SanitizeMol(copy)
        return Chem.MolToSmiles(Chem.RemoveHs(copy))
    except Exception:  # noqa: BLE001 - invalid molecules count as misses
        return None


def sorted_distances(mol) -> torch.Tensor:
    pos = torch.as_tensor(mol.GetConformer().GetPositions())
    return torch.pdist(pos).sort().values


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny conditional model trained for a few steps (fast; for plumbing, not quality)."""
    mols = [mol3d(s) for s in ["C", "O", "N", "C#N", "CO"]]
    data = MolListDataset(mols, {"gap": [10.0, 8.0, 7.5, 9.0, 7.0], "mu": [0.0, 1.9, 1.5, 2.9, 1.7]})
    run = tmp_path_factory.mktemp("tiny") / "run"
    cfg = config("batch_size=5", "trainer.max_steps=3", "model.conditioning.properties=[gap, mu]")
    return train_generator(cfg, run, dataset=data)


@pytest.mark.timeout(300)
def test_overfit_regenerates_the_training_molecules(tmp_path):
    mols = [mol3d(s) for s in ["O", "N", "C"]]  # water, ammonia, methane
    reference = {canonical(m): sorted_distances(m) for m in mols}
    # each molecule 8 times per batch: 8 noise levels per step, a smoother fit in the same number of steps
    path = train_generator(config("batch_size=24", "trainer.max_steps=1500"), tmp_path / "run",
                           dataset=MolListDataset(mols * 8))
    generator = load_generator(path)
    result = generate(generator, 30, seed=0)  # the default sampler: 100 Euler steps, eta 10
    assert generator.atom_counts.probabilities()[[3, 4, 5]].tolist() == pytest.approx([1 / 3] * 3)
    hits, errors = 0, []
    for mol in result.mols():
        key = canonical(mol)
        if key in reference:
            hits += 1
            errors.append(float((sorted_distances(mol).float() - reference[key].float()).abs().max()))
    # geometry of the regenerated molecules: every interatomic distance within 0.15 A, typically within 0.05 A
    errors = torch.tensor(errors)
    assert errors.median() < 0.05 and errors.max() < 0.15, errors
    assert hits >= 29, Counter(canonical(m) for m in result.mols())


@pytest.mark.timeout(300)
def test_conditional_samples_track_the_target(tmp_path):
    """Two 3-atom molecules whose property is their hydrogen count: HCN (1) and water (2)."""
    data = MolListDataset([mol3d("C#N"), mol3d("O")] * 8, {"h_count": [1.0, 2.0] * 8})
    cfg = config("batch_size=16", "trainer.max_steps=1200", "model.conditioning.properties=[h_count]",
                 "model.conditioning.dropout=0.2", "model.conditioning.drop_all=0.0")
    generator = load_generator(train_generator(cfg, tmp_path / "run", dataset=data))
    three = torch.full((30,), 3)
    for target, expected in ((1.0, "C#N"), (2.0, "O")):
        result = generate(generator, 30, condition={"h_count": target}, num_atoms=three, seed=1)
        made = Counter(canonical(m) for m in result.mols())
        assert made[expected] >= 27, (target, made)
        assert result.targets["h_count"].eq(target).all()
    # classifier-free guidance runs two passes per step and keeps the answer
    guided = generate(generator, 10, condition={"h_count": 1.0}, num_atoms=three[:10], guidance_scale=2.0, seed=2)
    assert guided.nfe == 2 * generator.sampler.steps
    assert Counter(canonical(m) for m in guided.mols())["C#N"] >= 9


def test_resume_continues_exactly(tmp_path):
    mols = [mol3d(s) for s in ["O", "N", "C"]]
    data = MolListDataset(mols, {"gap": [1.0, 2.0, 3.0]})
    extra = ("batch_size=2", "trainer.max_steps=4", "trainer.checkpoint_every=2",
             "model.conditioning.properties=[gap]")
    straight = load_generator(train_generator(config(*extra), tmp_path / "a", dataset=data))
    train_generator(config(*extra), tmp_path / "b", dataset=data, steps=2)
    resumed = load_generator(train_generator(config(*extra), tmp_path / "b", dataset=data))
    assert resumed.metadata["steps"] == straight.metadata["steps"] == 4
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    with pytest.raises(ValueError, match="different config"):
        train_generator(config(*extra, "model.scalars=16"), tmp_path / "b", dataset=data)


def test_sampling_is_deterministic_and_respects_atom_counts(tiny_model):
    generator = load_generator(tiny_model)
    counts = torch.tensor([3, 5, 6, 4])
    a = generate(generator, 4, num_atoms=counts, steps=5, seed=3, batch_size=3)
    b = generate(generator, 4, num_atoms=counts, steps=5, seed=3, batch_size=3)
    assert torch.equal(a.batch.numbers, b.batch.numbers) and torch.equal(a.batch.positions, b.batch.positions)
    assert a.batch.num_atoms.tolist() == counts.tolist()
    assert a.nfe == 5
    centre = (a.batch.positions * a.batch.mask.unsqueeze(-1)).sum(1) / counts.unsqueeze(-1)
    assert centre.abs().max() < 1e-5


def test_conditions_are_checked(tiny_model):
    generator = load_generator(tiny_model)
    with pytest.raises(ValueError, match="not conditioned on 'alpha'"):
        generate(generator, 2, condition={"alpha": 70.0}, steps=2)
    with pytest.raises(ValueError, match="unknown property"):
        generate(generator, 2, condition={"colour": 1.0}, steps=2)
    with pytest.raises(ValueError, match="outside the training range"):
        generate(generator, 2, condition={"gap": 1e4}, steps=2)
    with pytest.raises(ValueError, match="finite"):
        generate(generator, 2, condition={"gap": float("nan")}, steps=2)
    with pytest.warns(UserWarning, match="outside the training range"):
        generate(generator, 2, condition={"gap": 10.5}, steps=2)
    with pytest.raises(ValueError, match="guidance needs a condition"):
        generate(generator, 2, guidance_scale=2.0, steps=2)


def test_nonfinite_integration_is_reported_not_written(tiny_model):
    generator = load_generator(tiny_model)
    with torch.no_grad():
        generator.model.type_head[-1].bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="NaN"):
        generate(generator, 3, steps=3)


def test_sdf_round_trip_and_fields(tiny_model, tmp_path):
    from molgen.io import read_molecules

    generator = load_generator(tiny_model)
    result = generate(generator, 4, condition={"gap": 8.0}, steps=4, seed=0)
    path = write_sdf(result, tmp_path / "out.sdf")
    supplier = Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False)
    records = [m for m in supplier]
    assert len(records) == 4
    for k, mol in enumerate(records):
        assert mol.GetDoubleProp("target_gap") == 8.0 and mol.GetIntProp("molgen_index") == k
        assert mol.GetNumAtoms() == int(result.batch.num_atoms[k])
        expected = result.batch.positions[k, : mol.GetNumAtoms()].double()
        assert torch.allclose(torch.as_tensor(mol.GetConformer().GetPositions()), expected, atol=1e-4)
        charges = [a.GetFormalCharge() for a in mol.GetAtoms()]
        assert charges == result.batch.charges[k, : mol.GetNumAtoms()].tolist()
    assert len(read_molecules(path, on_error="skip").mols) + len(read_molecules(path, on_error="skip").skipped) == 4


def test_checkpoint_loading_rejects_other_files(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="not a molgen generator"):
        load_generator(text)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(ValueError, match="something-else"):
        load_generator(other)
    with pytest.raises(FileNotFoundError):
        load_generator(tmp_path / "missing.pt")


def test_cli_sample_writes_sdf_and_summary(tiny_model, tmp_path, capsys):
    out = tmp_path / "mols.sdf"
    code = main(["sample", str(tiny_model.parent), "-n", "5", "--out", str(out), "--condition", "gap=8.5",
                 "--condition", "MU=1.5", "--guidance-scale", "1.5", "--steps", "3", "--no-progress"])
    assert code == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "5 molecules" in line and "NFE 6" in line and "gap=8.5" in line and "mu=1.5" in line
    assert out.read_text().count("$$$$") == 5


@pytest.mark.parametrize("argv, message", [
    (["--condition", "gap"], "expected PROP=VALUE"),
    (["--condition", "gap=high"], "is not a number"),
    (["--condition", "alpha=70"], "not conditioned on 'alpha'"),
    (["--condition", "gap=1e5"], "outside the training range"),
    (["-n", "0"], "expected a whole number >= 1, got '0'"),
])
def test_cli_sample_bad_input_is_one_line_and_writes_nothing(tiny_model, tmp_path, capsys, argv, message):
    out = tmp_path / "mols.sdf"
    code = main(["sample", str(tiny_model), "--out", str(out), "--steps", "2", "--no-progress", *argv])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_sample_rejects_a_non_model(tmp_path, capsys):
    fake = tmp_path / "mols.smi"
    fake.write_text("CCO\n")
    code = main(["sample", str(fake), "--out", str(tmp_path / "x.sdf"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "not a molgen generator" in err and "weights_only" not in err


def test_cli_train_accepts_overrides_after_options(capsys):
    code = main(["train", "qm9_cpu", "--dry-run", "batch_size=7", "model.num_layers=2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "batch_size: 7" in printed and "num_layers: 2" in printed and "parameters:" in printed
    assert main(["train", "no_such_config", "--dry-run"]) == 2


def test_training_interrupted_before_a_checkpoint_leaves_a_resumable_run(tmp_path):
    mols = [mol3d(s) for s in ["O", "N"]]
    cfg = config("batch_size=2", "trainer.max_steps=3")
    run = tmp_path / "run"
    train_generator(cfg, run, dataset=MolListDataset(mols), steps=1)
    shutil.rmtree(run / "checkpoints")  # as if killed before the first checkpoint landed
    path = train_generator(cfg, run, dataset=MolListDataset(mols))
    assert load_generator(path).metadata["steps"] == 3


def test_regressor_guidance_moves_the_judged_property(tiny_model):
    """A toy regressor (sum of squared distances from the centre: the spread) judges the samples: guided ones end
    up closer to the target than unguided ones from the same seed."""

    class Spread(torch.nn.Module):
        def forward(self, types, positions, mask):
            return ((positions ** 2).sum(-1) * mask).sum(-1).double()

    generator = load_generator(tiny_model)
    counts = torch.full((6,), 5)
    plain = generate(generator, 6, condition={"gap": 8.0}, num_atoms=counts, steps=10, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no molecule may be lost to NaN
        guided = generate(generator, 6, condition={"gap": 8.0}, num_atoms=counts, steps=10, seed=4,
                          regressors={"gap": Spread()}, regressor_scale=0.3)

    def spread(result):
        return Spread()(None, result.batch.positions, result.batch.mask).mean()

    assert abs(spread(guided) - 8.0) < 0.5 * abs(spread(plain) - 8.0), (spread(guided), spread(plain))
    with pytest.raises(ValueError, match="regressor guidance needs"):
        generate(generator, 2, condition={"gap": 8.0}, steps=2, regressor_scale=1.0)


@pytest.mark.timeout(300)
def test_torchrun_two_ranks_through_the_cli(tmp_path):
    """2 CPU ranks (gloo) through the real CLI: one run directory, one model file, one 'model written' line."""
    import os
    import subprocess
    import sys

    sdf = tmp_path / "train.sdf"
    writer = Chem.SDWriter(str(sdf))
    for smiles in ["O", "N", "C", "CO"]:
        writer.write(mol3d(smiles))
    writer.close()
    data = tmp_path / "tiny.yaml"
    data.write_text("batch_size: 2\nmodel: {num_layers: 1, scalars: 16, vectors: 4, edge_features: 8}\n"
                    "trainer: {max_steps: 2, checkpoint_every: 1, progress: false}\n")
    script = tmp_path / "launch.py"
    script.write_text(
        "import sys\n"
        "from rdkit import Chem\n"
        "import molgen.train as t\n"
        f"mols = [m for m in Chem.SDMolSupplier({str(sdf)!r}, removeHs=False)]\n"
        "t.GeneratorDataset = lambda *a, **k: t.MolListDataset(mols)\n"
        "from molgen.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), "train",
           str(data), "--qm9", str(sdf), "--run-dir", str(tmp_path / "run"), "--device", "cpu", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=280, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("model written") == 1
    assert load_generator(tmp_path / "run" / "model.pt").metadata["steps"] == 2
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("ckpt-*.pt")) == [
        "ckpt-00000001.pt", "ckpt-00000002.pt"]


def test_warm_start_from_a_generator_file(tmp_path):
    mols = [mol3d(s) for s in ["O", "N"]]
    first = train_generator(config("batch_size=2", "trainer.max_steps=2"), tmp_path / "a", dataset=MolListDataset(mols))
    warm = train_generator(config("batch_size=2", "trainer.max_steps=5", f"init_from={first}"), tmp_path / "b",
                           dataset=MolListDataset(mols), steps=0)
    a, b = load_generator(first).model.state_dict(), load_generator(warm).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="another shape"):
        train_generator(config("batch_size=2", "model.scalars=16", f"init_from={first}"), tmp_path / "c",
                        dataset=MolListDataset(mols), steps=0)
