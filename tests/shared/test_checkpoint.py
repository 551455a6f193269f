"""Checkpoints and RNG snapshots: full round trip, identical RNG continuation, atomicity, corrupt files, rotation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from shared.io import atomic_write
from shared.seeding import capture_rng_state, make_generator, restore_rng_state, seed_everything
from shared.training import (EMA, CheckpointError, build_lr_scheduler, latest_checkpoint, load_checkpoint,
                             prune_checkpoints, restore_checkpoint, save_checkpoint)
from shared.training.checkpoint import FORMAT_VERSION, checkpoint_path


def _draw() -> tuple:
    return random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(3)


def test_rng_capture_restore_continues_identically():
    seed_everything(123)
    np.random.randn()  # leave numpy with a cached gaussian, which the state must carry
    state = capture_rng_state()
    first = _draw()
    restore_rng_state(state)
    second = _draw()
    assert first[:3] == second[:3] and torch.equal(first[3], second[3])


def test_seed_everything_and_make_generator():
    seed_everything(5)
    a = _draw()
    seed_everything(5)
    b = _draw()
    assert a[:3] == b[:3] and torch.equal(a[3], b[3])
    g1, g2 = make_generator(7), make_generator(7)
    assert torch.equal(torch.randn(4, generator=g1), torch.randn(4, generator=g2))
    with pytest.raises(ValueError, match=r"seed must be a whole number in \[0, 2\*\*63\)"):
        seed_everything(-1)


def _setup(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    ema = EMA(model, decay=0.9)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = build_lr_scheduler(opt, "cosine", warmup_steps=2, total_steps=10)
    return model, ema, opt, sched


def _steps(model, ema, opt, sched, n):
    for _ in range(n):
        x = torch.randn(8, 3)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        ema.update()


def test_round_trip_restores_all_states(tmp_path):
    model, ema, opt, sched = _setup(0)
    _steps(model, ema, opt, sched, 3)
    path = save_checkpoint(tmp_path / "ckpt.pt", model=model, ema=ema, optimizer=opt, scheduler=sched, step=3,
                           config={"lr": 1e-2}, extra={"epoch": 1})
    _steps(model, ema, opt, sched, 4)  # reference continuation
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    ref_shadow = {k: v.clone() for k, v in ema.shadow.items()}

    model2, ema2, opt2, sched2 = _setup(99)  # different initial weights and RNG position
    payload = load_checkpoint(path)
    assert restore_checkpoint(payload, model=model2, ema=ema2, optimizer=opt2, scheduler=sched2) == 3
    assert payload["format_version"] == FORMAT_VERSION and payload["config"] == {"lr": 1e-2}
    assert payload["extra"] == {"epoch": 1}
    assert set(payload["versions"]) == {"torch", "numpy", "python", "scoregen"}
    _steps(model2, ema2, opt2, sched2, 4)
    for k, v in model2.state_dict().items():
        assert torch.equal(v, reference[k]), k
    for k, v in ema2.shadow.items():
        assert torch.equal(v, ref_shadow[k]), k
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_checkpoint_is_weights_only_loadable(tmp_path):
    model, ema, opt, sched = _setup(0)
    _steps(model, ema, opt, sched, 1)
    path = save_checkpoint(tmp_path / "c.pt", model=model, ema=ema, optimizer=opt, scheduler=sched, step=1)
    torch.load(path, weights_only=True)  # raises if any pickled class slipped in
    with pytest.raises(TypeError, match=r"checkpoint entry checkpoint.extra.obj is a Linear"):
        save_checkpoint(tmp_path / "bad.pt", model=model, step=1, extra={"obj": nn.Linear(1, 1)})
    assert not (tmp_path / "bad.pt").exists()


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "ckpt-00000001.pt"
    target.write_bytes(b"old complete file")

    def failing_writer(handle):
        handle.write(b"half a checkpoint")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, failing_writer)
    assert target.read_bytes() == b"old complete file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000001.pt"]


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    model = nn.Linear(2, 2)
    good = save_checkpoint(tmp_path / "good.pt", model=model, step=0)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a scoregen training checkpoint: it is a truncated or damaged"):
        load_checkpoint(truncated)
    (tmp_path / "junk.pt").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="not a scoregen training checkpoint: it is binary data"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a scoregen checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="no ema state"):
        restore_checkpoint(load_checkpoint(good), ema=EMA(model))


def test_latest_and_rotation(tmp_path):
    model = nn.Linear(1, 1)
    ckpts = tmp_path / "checkpoints"
    assert latest_checkpoint(tmp_path) is None
    for step in (5, 100, 20):
        save_checkpoint(checkpoint_path(ckpts, step), model=model, step=step)
    (ckpts / ".ckpt-00000999.pt.abc.tmp").write_bytes(b"unfinished")  # an interrupted write is ignored
    assert latest_checkpoint(tmp_path) == ckpts / "ckpt-00000100.pt"  # run dir -> checkpoints/
    assert latest_checkpoint(ckpts) == ckpts / "ckpt-00000100.pt"
    deleted = prune_checkpoints(ckpts, keep_last=2)
    # the leftover of a killed write goes with the pruned ones
    assert [p.name for p in deleted] == ["ckpt-00000005.pt", ".ckpt-00000999.pt.abc.tmp"]
    assert sorted(p.name for p in ckpts.iterdir()) == ["ckpt-00000020.pt", "ckpt-00000100.pt"]
    with pytest.raises(ValueError, match="keep_last"):
        prune_checkpoints(ckpts, 0)
