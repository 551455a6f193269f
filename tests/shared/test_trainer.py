"""Trainer: bitwise-identical resume on CPU, logs, eval hook, clipping, non-finite losses, LR schedules, sampler."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from shared.training import EpochSampler, Trainer, TrainerConfig, build_lr_scheduler, lr_factor


class Points(Dataset):
    def __init__(self, n: int = 23) -> None:
        self.x = torch.randn(n, 3, generator=torch.Generator().manual_seed(11))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def make_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    # dropout draws from the global torch RNG: resume must restore it too
    return nn.Sequential(nn.Linear(3, 16), nn.SiLU(), nn.Dropout(0.2), nn.Linear(16, 3))


def denoising_loss(model, batch, generator):
    noise = torch.randn(batch.shape, generator=generator)
    t = torch.rand(batch.shape[0], 1, generator=generator)
    loss = (model(batch + t * noise) - noise).pow(2).mean()
    return loss, {"t_mean": t.mean()}


def noisy_eval(trainer):
    # consumes global and trainer RNG: the trainer must shield training from this
    torch.randn(5)
    torch.randn(5, generator=trainer.generator)
    with trainer.ema.swap(), torch.no_grad():
        value = float(trainer.model(torch.ones(1, 3)).sum())
    return {"ema_out": value}


CFG = TrainerConfig(max_steps=17, lr=1e-2, ema_decay=0.9, ema_warmup=True, lr_schedule="cosine", warmup_steps=3,
                    log_every=4, checkpoint_every=6, eval_every=5, keep_last=5, seed=3, device="cpu",
                    progress=False, grad_clip=0.5)


def make_trainer(run_dir, init_seed=0, **changes):
    loader = DataLoader(Points(), batch_size=5, shuffle=True)  # 5 batches per epoch, the last one of 3
    return Trainer(make_net(init_seed), denoising_loss, loader, dataclasses.replace(CFG, **changes), run_dir,
                   eval_fn=noisy_eval)


def assert_same_weights(a: Trainer, b: Trainer) -> None:
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), f"model {name} differs"
    for name, x in a.ema.shadow.items():
        assert torch.equal(x, b.ema.shadow[name]), f"EMA {name} differs"


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run = tmp_path_factory.mktemp("straight")
    trainer = make_trainer(run)
    summary = trainer.train()
    return trainer, summary, run


def test_resume_is_bitwise_identical(straight, tmp_path):
    reference, _, _ = straight
    first = make_trainer(tmp_path)
    first.train(steps=7)  # stops mid-epoch (epoch 1, batch 2) and writes a checkpoint
    assert first.step == 7 and (tmp_path / "checkpoints" / "ckpt-00000007.pt").is_file()
    second = make_trainer(tmp_path, init_seed=42)  # different init: everything must come from the checkpoint
    torch.randn(100)  # move the global RNG: resume must restore it
    assert second.resume(tmp_path) == 7
    second.train()
    assert second.step == 17
    assert_same_weights(reference, second)
    # weights actually changed, so the comparison is not vacuous
    assert not torch.equal(reference.model[0].weight, make_net(0)[0].weight)


def test_resume_from_periodic_checkpoint_after_crash(straight, tmp_path):
    reference, _, run = straight
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["ckpt-00000006.pt", "ckpt-00000012.pt", "ckpt-00000017.pt"]
    # a "crashed" run that got to step 17 resumes from step 6 (its later log lines must not be duplicated)
    import shutil

    shutil.copytree(run, tmp_path / "run")
    trainer = make_trainer(tmp_path / "run", init_seed=5)
    trainer.resume(tmp_path / "run" / "checkpoints" / "ckpt-00000006.pt")
    trainer.train()
    assert_same_weights(reference, trainer)
    steps = [(r["split"], r["step"]) for r in map(json.loads, (tmp_path / "run" / "log.jsonl").open())]
    assert len(steps) == len(set(steps)), "duplicated log records after resume"


def _ctrl_c_at(step: int, presses: int = 1):
    """A loss that sends this process SIGINT ``presses`` times while computing step ``step`` (1-based)."""
    import os
    import signal

    calls = {"n": 0}

    def loss(model, batch, generator):
        calls["n"] += 1
        value = denoising_loss(model, batch, generator)
        if calls["n"] == step:
            for _ in range(presses):
                os.kill(os.getpid(), signal.SIGINT)  # the handler runs at once, between two bytecodes
        return value

    return loss


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler, as an interactive user has it (a shell that starts pytest in the background
    makes SIGINT ignored, which the trainer then leaves alone)."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_finishes_the_step_saves_it_and_resumes_exactly(straight, tmp_path, capfd, python_sigint):
    import signal

    reference, _, _ = straight
    trainer = make_trainer(tmp_path)
    trainer.loss_fn = _ctrl_c_at(9)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert trainer.step == 9 and (tmp_path / "checkpoints" / "ckpt-00000009.pt").is_file()
    assert "checkpoint of step 9 saved" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own handler is back
    resumed = make_trainer(tmp_path, init_seed=42)
    assert resumed.resume(tmp_path) == 9
    resumed.train()
    assert_same_weights(reference, resumed)  # the interrupted step was whole: nothing lost, nothing twice
    steps = [(r["split"], r["step"]) for r in map(json.loads, (tmp_path / "log.jsonl").open())]
    assert len(steps) == len(set(steps))


def test_second_ctrl_c_stops_at_once_without_a_checkpoint(tmp_path, python_sigint):
    trainer = make_trainer(tmp_path)
    trainer.loss_fn = _ctrl_c_at(9, presses=2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert trainer.step == 8  # step 9 was abandoned in the middle, so it is neither counted nor saved
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["ckpt-00000006.pt"]


def test_logs_and_eval_written(straight):
    trainer, summary, run = straight
    assert summary == {"step": 17, "epoch": 3, "nonfinite_skipped": 0}
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    evals = [r for r in records if r["split"] == "eval"]
    assert [r["step"] for r in train] == [4, 8, 12, 16, 17]  # plus the final partial window
    assert [r["step"] for r in evals] == [5, 10, 15]
    for r in train:
        assert {"loss", "grad_norm", "lr", "t_mean", "epoch", "steps_per_sec"} <= set(r)
        assert math.isfinite(r["loss"]) and 0.0 < r["t_mean"] < 1.0
        # lr after `step` optimizer steps is lr * factor(step)
        factor = lr_factor("cosine", warmup_steps=3, total_steps=17)(r["step"])
        assert r["lr"] == pytest.approx(1e-2 * factor)
    csv_rows = (run / "log.csv").read_text().splitlines()
    assert csv_rows[0].startswith("step,split,epoch,lr") and len(csv_rows) == 1 + len(train)
    assert len((run / "eval.csv").read_text().splitlines()) == 1 + len(evals)
    assert all("ema_out" in r for r in evals)


def test_eval_does_not_change_training(straight, tmp_path):
    reference, _, _ = straight
    trainer = make_trainer(tmp_path, eval_every=None)
    trainer.eval_fn = None
    trainer.train()
    assert_same_weights(reference, trainer)


def test_plain_iterable_loader_resumes_by_skipping(tmp_path):
    data = Points()
    batches = [data.x[i : i + 4] for i in range(0, 20, 4)]  # a fixed list of 5 batches
    cfg = dataclasses.replace(CFG, eval_every=None, checkpoint_every=None, max_steps=9)
    straight = Trainer(make_net(0), denoising_loss, batches, cfg, tmp_path / "a")
    straight.train()
    first = Trainer(make_net(0), denoising_loss, batches, cfg, tmp_path / "b")
    first.train(steps=3)
    second = Trainer(make_net(1), denoising_loss, batches, cfg, tmp_path / "b")
    second.resume()
    second.train()
    assert_same_weights(straight, second)


def test_gradient_clipping_with_given_optimizer(tmp_path):
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0]]))
    direction = torch.tensor([3.0, 4.0])  # gradient of the loss below, norm 5

    def linear_loss(m, batch, generator):
        return (m.weight * direction).sum()

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = TrainerConfig(max_steps=1, grad_clip=1.0, ema_decay=None, log_every=1, checkpoint_every=None,
                        device="cpu", progress=False, csv_log=False)
    trainer = Trainer(model, linear_loss, [torch.zeros(1)], cfg, tmp_path, optimizer=opt)
    trainer.train()
    # clipped gradient is direction / 5 (up to clip_grad_norm_'s 1e-6 guard)
    torch.testing.assert_close(model.weight.detach()[0], torch.tensor([1.0, 1.0]) - 0.1 * direction / 5.0)
    record = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert record["grad_norm"] == pytest.approx(5.0)  # the norm before clipping
    assert not (tmp_path / "log.csv").exists()


def test_nonfinite_losses_are_skipped_then_fatal(tmp_path):
    calls = []

    def flaky_loss(model, batch, generator):
        calls.append(1)
        loss = model(batch).pow(2).mean()
        return loss * float("nan") if len(calls) in (3, 4) else loss

    cfg = TrainerConfig(max_steps=6, lr=0.1, ema_decay=0.5, log_every=100, checkpoint_every=None, device="cpu",
                        progress=False, max_nonfinite=3)
    batches = [torch.ones(2, 3)]
    trainer = Trainer(nn.Linear(3, 1), flaky_loss, batches, cfg, tmp_path / "a")
    trainer.train(steps=2)
    weights, shadow = trainer.model.weight.clone(), trainer.ema.shadow["weight"].clone()
    trainer.train(steps=2)  # both steps are NaN: nothing may change
    assert torch.equal(trainer.model.weight, weights) and torch.equal(trainer.ema.shadow["weight"], shadow)
    summary = trainer.train()
    assert summary["nonfinite_skipped"] == 2 and trainer.nonfinite_streak == 0
    assert not torch.equal(trainer.model.weight, weights)
    record = json.loads((tmp_path / "a" / "log.jsonl").read_text().splitlines()[-1])
    assert record["nonfinite_skipped"] == 2 and math.isfinite(record["loss"])

    def nan_loss(model, batch, generator):
        return model(batch).sum() * float("nan")

    doomed = Trainer(nn.Linear(3, 1), nan_loss, batches, cfg, tmp_path / "b")
    with pytest.raises(FloatingPointError, match="non-finite for 3 consecutive steps"):
        doomed.train()


def test_bad_loss_and_empty_loader(tmp_path):
    cfg = TrainerConfig(max_steps=2, device="cpu", progress=False, checkpoint_every=None)
    vector = Trainer(nn.Linear(3, 1), lambda m, b, g: m(b), [torch.ones(2, 3)], cfg, tmp_path / "a")
    with pytest.raises(ValueError, match=r"scalar tensor .*Tensor\(2, 1\)"):
        vector.train()
    empty = Trainer(nn.Linear(3, 1), lambda m, b, g: m(b).sum(), [], cfg, tmp_path / "b")
    with pytest.raises(ValueError, match="no batch in a whole epoch"):
        empty.train()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        empty.resume(tmp_path / "b")


def test_bf16_autocast_on_cpu(tmp_path):
    cfg = dataclasses.replace(CFG, amp=True, max_steps=4, eval_every=None, checkpoint_every=None)
    seen = []

    def loss(model, batch, generator):
        out = model(batch)
        seen.append(out.dtype)
        return out.float().pow(2).mean()

    trainer = Trainer(make_net(0), loss, DataLoader(Points(), batch_size=5), cfg, tmp_path)
    trainer.train()
    assert seen == [torch.bfloat16] * 4 and trainer.model[0].weight.dtype == torch.float32


@pytest.mark.parametrize("name, kwargs, expected", [
    ("constant", {}, [1.0, 1.0, 1.0]),
    ("linear_warmup", {"warmup_steps": 4}, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]),
    # cosine: warmup 2, then half cosine over 8 steps to the floor 0.1
    ("cosine", {"warmup_steps": 2, "total_steps": 10, "min_lr_ratio": 0.1},
     [0.5, 1.0, 1.0, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 8)), 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)),
      0.1 + 0.9 * 0.5 * (1 + math.cos(3 * math.pi / 8)), 0.55, 0.1 + 0.9 * 0.5 * (1 + math.cos(5 * math.pi / 8)),
      0.1 + 0.9 * 0.5 * (1 + math.cos(6 * math.pi / 8)), 0.1 + 0.9 * 0.5 * (1 + math.cos(7 * math.pi / 8)),
      0.1, 0.1]),
    ("exponential", {"warmup_steps": 1, "gamma": 0.5}, [1.0, 1.0, 0.5, 0.25, 0.125]),
])
def test_lr_schedule_values(name, kwargs, expected):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = build_lr_scheduler(opt, name, **kwargs)
    got = []
    for _ in expected:
        got.append(opt.param_groups[0]["lr"])  # the lr used by the next optimizer step
        opt.step()
        sched.step()
    assert got == pytest.approx([2.0 * e for e in expected])


@pytest.mark.parametrize("name, kwargs, message", [
    ("cosin", {}, "unknown lr schedule 'cosin'"),
    ("constant", {"warmup_steps": 3}, "no warmup"),
    ("cosine", {"warmup_steps": 5, "total_steps": 5}, "total_steps > warmup_steps"),
    ("exponential", {"gamma": 0.0}, "gamma"),
])
def test_lr_schedule_errors(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        lr_factor(name, **kwargs)


def test_epoch_sampler_order_shards_and_skipping():
    sampler = EpochSampler(10, seed=1, rank=0, world_size=1)
    sampler.set_epoch(0)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    assert sorted(epoch0) == list(range(10)) and list(sampler) != epoch0
    sampler.set_epoch(0, start=4)
    assert list(sampler) == epoch0[4:] and len(sampler) == 6
    # three ranks: each gets ceil(10 / 3) = 4 indices, together the whole permutation padded by wrapping
    shards = []
    for rank in range(3):
        s = EpochSampler(10, seed=1, rank=rank, world_size=3)
        s.set_epoch(0)
        shards.append(list(s))
    assert all(len(s) == 4 for s in shards)
    interleaved = [shards[r][i] for i in range(4) for r in range(3)]
    assert interleaved == epoch0 + epoch0[:2]
    unshuffled = EpochSampler(5, shuffle=False, rank=1, world_size=2, drop_last=True)
    assert list(unshuffled) == [1, 3]
    with pytest.raises(ValueError, match="rank 2 outside world of size 2"):
        EpochSampler(5, rank=2, world_size=2)


def test_own_epoch_sampler_with_workers_resumes_exactly(tmp_path):
    def build(run, seed):
        loader = DataLoader(Points(), batch_size=4, sampler=EpochSampler(23, seed=9), num_workers=2)
        cfg = dataclasses.replace(CFG, eval_every=None, checkpoint_every=None, max_steps=9)
        return Trainer(make_net(seed), denoising_loss, loader, cfg, run)

    straight = build(tmp_path / "a", 0)
    straight.train()
    first = build(tmp_path / "b", 0)
    first.train(steps=4)
    second = build(tmp_path / "b", 1)
    second.resume()
    second.train()
    assert_same_weights(straight, second)


@pytest.mark.slow
def test_compiled_model_trains_and_saves_plain_state(tmp_path):
    cfg = dataclasses.replace(CFG, compile=True, max_steps=4, eval_every=None, checkpoint_every=None)
    trainer = Trainer(make_net(0), denoising_loss, DataLoader(Points(), batch_size=5), cfg, tmp_path)
    trainer.train()
    from shared.training import load_checkpoint

    state = load_checkpoint(tmp_path / "checkpoints" / "ckpt-00000004.pt")["model"]
    assert set(state) == set(make_net(0).state_dict())  # no "_orig_mod." prefixes
