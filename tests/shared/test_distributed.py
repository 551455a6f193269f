"""Distributed helper and DDP training: 2 gloo processes on CPU against a hand-replayed averaged-gradient run."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, Dataset

from shared.training import Trainer, TrainerConfig, distributed

WORLD, STEPS, LR = 2, 3, 0.1


class Indexed(Dataset):
    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(8, 3, generator=gen), torch.randn(8, 1, generator=gen)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        return i, self.x[i], self.y[i]


def mse(model, x, y):
    return (model(x) - y).pow(2).mean()


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed.init()
    try:
        assert distributed.get_rank() == rank and distributed.get_world_size() == WORLD
        assert distributed.is_main() == (rank == 0)
        mean = distributed.all_reduce_mean(torch.tensor([rank + 1.0]))
        seeds = distributed.all_gather_object(distributed.shard_seed(7))
        seen = []

        def loss_fn(model, batch, generator):
            index, x, y = batch
            seen.append(index.clone())
            return mse(model, x, y)

        torch.manual_seed(rank)  # different init per rank: DDP must broadcast rank 0's weights
        model = nn.Linear(3, 1)
        cfg = TrainerConfig(max_steps=STEPS, ema_decay=0.5, grad_clip=None, log_every=1, checkpoint_every=None,
                            device="cpu", progress=False, seed=1)
        loader = DataLoader(Indexed(), batch_size=2, shuffle=True)
        trainer = Trainer(model, loss_fn, loader, cfg, out_dir,
                          optimizer=torch.optim.SGD(model.parameters(), lr=LR))
        init = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.train()
        generator_state = trainer.generator.get_state()
        resumed = Trainer(nn.Linear(3, 1), loss_fn, loader, cfg, out_dir,
                          optimizer=None)
        resumed.resume()
        torch.save({"init": init, "final": trainer.model.state_dict(), "ema": trainer.ema.shadow,
                    "seen": seen, "mean": mean, "seeds": seeds,
                    "resumed_equal": all(torch.equal(a, b) for a, b in zip(
                        resumed.model.state_dict().values(), trainer.model.state_dict().values())),
                    "generator_restored": torch.equal(resumed.generator.get_state(), generator_state)},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        distributed.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_single_process_is_a_no_op():
    distributed.init()  # no WORLD_SIZE: nothing happens
    assert (distributed.get_rank(), distributed.get_world_size(), distributed.is_main()) == (0, 1, True)
    x = torch.tensor([1.0, 2.0])
    assert torch.equal(distributed.all_reduce_mean(x), x)
    assert distributed.all_gather_object("a") == ["a"]
    distributed.barrier()
    assert len({distributed.shard_seed(3, rank=r) for r in range(64)}) == 64
    assert distributed.shard_seed(3, rank=1) == distributed.shard_seed(3, rank=1)


def test_init_requires_torchrun_variables(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="launch with torchrun"):
        distributed.init()


def test_ddp_two_ranks_average_gradients(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    assert r0["mean"].item() == 1.5 and r0["seeds"][0] != r0["seeds"][1]
    # DDP broadcast rank 0's initial weights, and the ranks stayed bitwise in step
    for key in r0["init"]:
        assert torch.equal(r0["init"][key], r1["init"][key])
        assert torch.equal(r0["final"][key], r1["final"][key])
    for key in r0["ema"]:
        assert torch.equal(r0["ema"][key], r1["ema"][key])
    # epoch 0 (2 steps per rank) covers the 8 samples once, the ranks on disjoint shards
    epoch0 = torch.cat(r0["seen"][:2] + r1["seen"][:2])
    assert sorted(epoch0.tolist()) == list(range(8))
    # replay: plain SGD on the gradient averaged over ranks == one step on the concatenated batch
    data = Indexed()
    model = nn.Linear(3, 1)
    model.load_state_dict(r0["init"])
    for step in range(STEPS):
        index = torch.cat([r0["seen"][step], r1["seen"][step]])
        model.zero_grad()
        mse(model, data.x[index], data.y[index]).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= LR * p.grad
    for key, value in model.state_dict().items():
        torch.testing.assert_close(r0["final"][key], value, rtol=1e-6, atol=1e-7)
    assert not torch.equal(r0["final"]["weight"], r0["init"]["weight"])
    # rank 0 alone wrote the logs and the checkpoint; resuming restored weights and each rank's noise stream
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert (tmp_path / "checkpoints" / "ckpt-00000003.pt").is_file()
    assert r0["resumed_equal"] and r1["resumed_equal"]
    assert r0["generator_restored"] and r1["generator_restored"]
