"""``torchrun --nproc_per_node 2 -m crysgen.cli train``: one run directory line, one model file, one log."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ["model.channels=8", "model.channel_mult=[1, 2]", "model.num_res_blocks=1", "model.emb_dim=16",
        "model.attn_heads=2", "model.groups=4", "batch_size=16", "trainer.max_steps=4",
        "trainer.lr_schedule=constant", "trainer.warmup_steps=0", "trainer.log_every=1",
        "trainer.checkpoint_every=2"]


@pytest.mark.timeout(300)
def test_torchrun_two_ranks_through_the_cli(tmp_path, reference_data):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "crysgen.cli", "train", str(REPO / "crysgen" / "configs" / "perov5.yaml"), *TINY, "--device", "cpu",
           "--run-dir", str(tmp_path / "run"), "--data-dir", str(Path(reference_data).resolve()), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=280, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run directory:") == 1, done.stdout
    assert done.stdout.count("wrote ") == 1, done.stdout
    assert sorted(p.name for p in tmp_path.rglob("model.pt")) == ["model.pt"]
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("split") == "train"] == [1, 2, 3, 4]  # rank 0 alone logs
