"""``torchrun --nproc_per_node 2 ... graphgen train``: one run directory, one model file, one progress bar, one line.

Two CPU ranks (gloo) through the real CLI. Rank 1 is made to see another date, as when a run starts at
midnight: the default run directory is rank 0's decision, broadcast to the others.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from graphgen.checkpoint import load_model
from graphgen.diffusion import build_model
from shared.config import load_config
from shared.training import distributed

TINY = ["data.name=synthetic_community", "data.num_graphs=16", "data.max_node_num=12", "data.max_feat_num=6",
        "data.batch_size=4", "train.max_steps=4", "train.checkpoint_every=2", "train.log_every=1", "model.depth=2",
        "model.nhid=8", "model.adim=8", "model.num_layers=2", "sampler.steps=6"]

LAUNCH = """\
import os, sys, time
if os.environ.get("RANK") == "1":  # another day on rank 1: only rank 0's choice of run directory may count
    _strftime = time.strftime
    time.strftime = lambda fmt, *args: "19990101" if fmt == "%Y%m%d" else _strftime(fmt, *args)
from graphgen.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.timeout(240)
def test_torchrun_two_ranks_through_the_cli(tmp_path):
    script = tmp_path / "launch.py"
    script.write_text(LAUNCH)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SCOREGEN_DEBUG", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           "train", "community_small", *TINY, "--device", "cpu"]  # progress bars on: only rank 0 may draw one
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=220, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    assert done.stdout.count("model written") == 1, done.stdout
    assert done.stderr.count("train:   0%") == 1, done.stderr[-2000:]  # one progress bar
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and not runs[0].name.startswith("19990101"), runs
    run = runs[0]
    assert sorted(p.name for p in tmp_path.rglob("model.pt")) == ["model.pt"]
    assert f"model written to runs/{run.name}/model.pt" in done.stdout
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt-*.pt")) == ["ckpt-00000002.pt",
                                                                                 "ckpt-00000004.pt"]
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("split") == "train"] == [1, 2, 3, 4]  # rank 0 alone logs
    # 16 graphs over 2 ranks of batch 4: two steps per epoch, so GDSS's per-epoch LR decay is per rank's epoch
    assert [r["epoch"] for r in records if r.get("split") == "train"] == [0, 0, 1, 1]
    bundle = load_model(run / "model.pt")
    assert "for 4 steps" in bundle.source
    assert all(torch.isfinite(p).all() for p in bundle.model.parameters())


def test_unused_parameters_are_exactly_those_without_gradient():
    """DDP needs a gradient for every trainable parameter; GDSS's networks compute a few outputs they never use."""
    from graphgen.diffusion import GraphGenConfig

    for extra in (["model.x=ScoreNetworkX"], ["model.x=ScoreNetworkX_GMH"],
                  ["model.x=ScoreNetworkX", "model.time_conditioned=true"]):
        cfg = load_config(GraphGenConfig, None, ["data.max_node_num=7", "data.max_feat_num=4", "model.depth=2",
                                                 "model.nhid=8", "model.adim=8", "model.num_layers=3", *extra])
        model = build_model(cfg)
        gen = torch.Generator().manual_seed(0)
        x, adj = torch.randn(2, 7, 4, generator=gen), torch.rand(2, 7, 7, generator=gen)
        for a in (adj + adj.transpose(-1, -2), adj):  # the symmetric fast path and the general one
            model.zero_grad(set_to_none=True)
            out_x, out_adj = model(x, a, torch.ones(2, 7), torch.rand(2, generator=gen))
            (out_x.sum() + out_adj.sum()).backward()
            without = {n for n, p in model.named_parameters() if p.grad is None}
            listed = {id(p) for p in model.unused_parameters()}
            assert without == {n for n, p in model.named_parameters() if id(p) in listed}, extra
        assert model.unused_parameters()  # ScoreNetworkA's last layer always has some


def test_broadcast_object_without_a_process_group_is_the_object():
    assert distributed.broadcast_object({"run": "runs/x"}) == {"run": "runs/x"}
