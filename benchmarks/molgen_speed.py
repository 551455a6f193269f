"""molgen's network cost: training steps/s and sampling molecules/s, fp32 against bf16 autocast and torch.compile.

One command for any machine (CPU here, CUDA where present; under 10 minutes on either):

    python -m benchmarks.molgen_speed --device cuda --train-steps 50 --sample-n 256
    python -m benchmarks.molgen_speed --threads 1 --train-steps 30 --sample-n 64

Rows: ``train`` (the shipped recipe's loss and AdamW step on the embedded generator, batch 64 QM9 molecules, after
``--warmup`` untimed steps) and ``sample`` (``--sample-steps`` Euler steps, seed 11, batch 64). Each setting starts
from the same weights and seeds; ``max_abs_dx`` compares the bf16 sample's coordinates with fp32's on the same
seed (where both keep the same discrete choices), so a fast setting that changes the molecules shows it.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from benchmarks.harness import write_results

ROOT = Path(__file__).resolve().parents[1]


def _loader(data: str, properties: list[str], batch: int):
    from torch.utils.data import DataLoader

    from molgen.representation import dense_batch
    from molgen.train import GeneratorDataset

    dataset = GeneratorDataset(data, "train_generator", properties, limit=batch * 40)
    return DataLoader(dataset, batch_size=batch, shuffle=True, collate_fn=dense_batch, drop_last=True,
                      generator=torch.Generator().manual_seed(0))


def train_speed(gen, data: str, device, amp: bool, compile_: bool, steps: int, warmup: int) -> float:
    from molgen.train import GeneratorTrainConfig, make_loss_fn
    from shared.config import load_config

    config = load_config(GeneratorTrainConfig, ROOT / "molgen" / "configs" / "qm9_cpu.yaml")
    model = copy.deepcopy(gen.model).to(device).train()
    net = torch.compile(model) if compile_ else model
    loss_fn = make_loss_fn(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    scaler = torch.amp.GradScaler("cuda") if amp and device.type == "cuda" else None
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    g = torch.Generator(device=device).manual_seed(0)
    batches = iter(_loader(data, gen.properties, 64))
    start = None
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in next(batches).items()}
        with torch.autocast(device.type, dtype=dtype) if amp else nullcontext():
            loss, _ = loss_fn(net, batch, g)
        opt.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def sample_speed(gen, device, amp: bool, n: int, steps: int):
    from molgen.sampling import generate

    start = time.perf_counter()
    out = generate(gen, n, seed=11, steps=steps, batch_size=64, device=device, amp=amp)
    return n / (time.perf_counter() - start), out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--sample-n", type=int, default=64)
    parser.add_argument("--sample-steps", type=int, default=50)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--data", default=str(Path.home() / ".cache/scoregen/qm9/qm9_v1_all.pt"))
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from molgen.sampling import load_default_generator
    from molgen.metrics.soundness import molecule_soundness

    device = torch.device(args.device)
    gen = load_default_generator()
    rows = []
    settings = [("fp32", False, False), ("bf16", True, False)]
    if not args.no_compile:
        settings += [("fp32+compile", False, True), ("bf16+compile", True, True)]
    for label, amp, comp in settings:
        sps = train_speed(gen, args.data, device, amp, comp, args.train_steps, args.warmup)
        rows.append({"what": "train", "setting": label, "steps_per_s": round(sps, 3),
                     "molecules_per_s": round(64 * sps, 1)})
        print(rows[-1], flush=True)
    ref = None
    for label, amp in (("fp32", False), ("bf16", True)):
        gen.model.to(device)
        mps, out = sample_speed(gen, device, amp, args.sample_n, args.sample_steps)
        sound = molecule_soundness(out.batch)
        row = {"what": "sample", "setting": label, "molecules_per_s": round(mps, 2),
               "stable": round(float(sound["stable"].double().mean()), 3),
               "bond_windows": round(float(sound["bond_windows"].double().mean()), 3)}
        if ref is None:
            ref = out.batch
        else:
            same = (out.batch.numbers == ref.numbers).all(1) & (out.batch.bonds == ref.bonds).flatten(1).all(1)
            row["same_discrete"] = round(float(same.double().mean()), 3)
            if same.any():
                row["max_abs_dx"] = float((out.batch.positions[same] - ref.positions[same]).abs().max())
        rows.append(row)
        print(row, flush=True)
    name = args.name or f"molgen_speed_{device.type}"
    protocol = {"doc": __doc__.split("\n\n")[2], "device": str(device), "threads": args.threads,
                "train_steps": args.train_steps, "sample_n": args.sample_n, "sample_steps": args.sample_steps}
    write_results(name, {"rows": rows}, protocol, "python -m benchmarks.molgen_speed " +
                  " ".join(argv if argv is not None else sys.argv[1:]), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
