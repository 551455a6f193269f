"""Training recipes for molgen's generator, measured from one warm start with one step budget each.

Every recipe continues the embedded generator (``molgen/pretrained/generator.pt``) on QM9's ``train_generator``
half for the same number of optimiser steps (same batch, learning rate, warm-up, seed, 1 CPU thread), then is
judged on raw output (no relaxation) by:

* ``stable`` / ``valid`` / ``connected`` / ``bond_windows`` / ``sound`` (all four): ``molgen.metrics.soundness``
  on ``--n`` molecules sampled with seed 11 at the model's default sampler (100 steps);
* ``chemist_windows``: the untuned element-pair windows of ``benchmarks.molgen_geometry``;
* ``heavy_gt9``: molecules with more than 9 heavy atoms (QM9 has none);
* ``rmse_t099`` / ``rmse_t09``: one-step position error (Angstrom) of the network's x1 prediction on 512 QM9
  *valid*-split molecules interpolated to t = 0.99 / 0.9 without any recipe noise (seeded, low variance);
* C-H and C-C single bond-length spread (std, Angstrom; QM9 0.007 / 0.034).

Sampler rows (``+grid2``) re-sample a trained recipe's model with a time grid finer near the data
(``time_power`` 2). ``--amp`` / ``--compile`` rows measure the network's training cost only (steps/s).

    python -m benchmarks.molgen_recipes --steps 600 --n 200 --recipes baseline,beta21 --run-root runs/recipes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.harness import write_results

ROOT = Path(__file__).resolve().parents[1]
# name -> flow overrides (the shipped recipe is "baseline": uniform t, no position noise)
RECIPES = {
    "baseline": {},
    "beta21": {"time_distribution": "beta", "time_beta": (2.0, 1.0)},
    "beta21_noise01": {"time_distribution": "beta", "time_beta": (2.0, 1.0), "position_noise": 0.1},
    "noise02": {"position_noise": 0.2},
    "beta21_distort": {"time_distribution": "beta", "time_beta": (2.0, 1.0), "distortion_prob": 0.3,
                       "distortion_std": 0.3},
    "beta31": {"time_distribution": "beta", "time_beta": (3.0, 1.0)},
    "beta21_bf16": {"time_distribution": "beta", "time_beta": (2.0, 1.0)},
}
# recipes that change how the network runs, not what it learns
TRAINER = {"beta21_bf16": {"amp": True}}


def recipe_config(name: str, steps: int, data: str, lr: float, warmup: int, amp: bool = False,
                  compile_: bool = False):
    from molgen.train import GeneratorTrainConfig
    from shared.config import load_config

    config = load_config(GeneratorTrainConfig, ROOT / "molgen" / "configs" / "qm9_cpu.yaml")
    config.data = data
    config.init_from = str(ROOT / "molgen" / "pretrained" / "generator.pt")
    config.flow = replace(config.flow, **RECIPES[name])
    config.trainer = replace(config.trainer, max_steps=steps, lr=lr, warmup_steps=warmup, checkpoint_every=100,
                             progress=False, **{"amp": amp, "compile": compile_, **TRAINER.get(name, {})})
    return config


def one_step_rmse(model, flow, dataset, t_value: float, n: int = 512, seed: int = 0) -> float:
    """RMSE (Angstrom) of x1_hat at time t over real atoms, plain interpolant (no recipe noise)."""
    from molgen.flow import FlowConfig, noisy_state
    from molgen.representation import dense_batch

    plain = FlowConfig(loss_weights=flow.loss_weights, prior_std=flow.prior_std, align_prior=flow.align_prior)
    g = torch.Generator().manual_seed(seed)
    num_classes = {"atom_types": model.config.num_atom_types, "charges": model.config.num_charges,
                   "bonds": model.config.num_bond_types}
    sq, count = 0.0, 0
    with torch.no_grad():
        for b0 in range(0, n, 128):
            batch = dense_batch([dataset[i] for i in range(b0, min(n, b0 + 128))])
            t = torch.full((batch["mask"].shape[0],), t_value)
            state, _ = noisy_state(batch, t, num_classes, plain, g)
            cond = None
            if model.cond is not None:
                p = model.config.conditioning.properties
                cond = {"values": torch.zeros(t.shape[0], len(p)), "present": torch.zeros(t.shape[0], len(p))}
            out = model(state, t, cond=cond)
            m = batch["mask"].unsqueeze(-1).float()
            sq += float((((out["positions"] - batch["positions"]) ** 2) * m).sum())
            count += int(batch["mask"].sum())
    return (sq / count) ** 0.5


def judge(model_path: Path, n: int, data: str, time_power: float | None = None, cache: Path | None = None) -> dict:
    """Scores of one model (cached in ``cache`` as JSON: a merged results run re-samples nothing)."""
    if cache is not None and cache.is_file():
        return json.loads(cache.read_text())
    row = _judge(model_path, n, data, time_power)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(row))
    return row


def _judge(model_path: Path, n: int, data: str, time_power: float | None) -> dict:
    from benchmarks.molgen_geometry import bond_statistics, chemist_windows
    from molgen.checkpoint import load_generator
    from molgen.metrics.soundness import molecule_soundness
    from molgen.sampling import generate
    from molgen.train import GeneratorDataset

    gen = load_generator(model_path)
    sampler = gen.sampler if time_power is None else replace(gen.sampler, time_power=time_power)
    start = time.perf_counter()
    out = generate(gen, n, seed=11, sampler=sampler, batch_size=64)
    seconds = time.perf_counter() - start
    s = molecule_soundness(out.batch)
    row = {k: round(float(v.double().mean()), 3) for k, v in s.items()}
    row["chemist_windows"] = round(float(chemist_windows(out.batch).double().mean()), 3)
    heavy = ((out.batch.numbers > 1) & out.batch.mask).sum(1)
    row["heavy_gt9"] = round(float((heavy > 9).double().mean()), 3)
    stats = bond_statistics(out.batch)
    row["std_CH"] = stats.get("C-H std")
    row["std_CC"] = stats.get("C-C std")
    valid = GeneratorDataset(data, "valid", gen.properties)
    row["rmse_t099"] = round(one_step_rmse(gen.model, gen.flow, valid, 0.99), 4)
    row["rmse_t09"] = round(one_step_rmse(gen.model, gen.flow, valid, 0.9), 4)
    row["sample_s"] = round(seconds, 1)
    return row


def train_recipe(name: str, args) -> tuple[Path, dict]:
    from molgen.train import train_generator

    config = recipe_config(name, args.steps, args.data, args.lr, args.warmup)
    run_dir = Path(args.run_root) / name
    model = run_dir / "model.pt"
    log = run_dir / "recipe_timing.json"
    if model.is_file() and log.is_file() and json.loads(log.read_text())["steps"] >= args.steps:
        return model, json.loads(log.read_text())
    start_cpu, start = time.process_time(), time.perf_counter()
    train_generator(config, run_dir)
    timing = {"steps": args.steps, "train_cpu_s": round(time.process_time() - start_cpu, 1),
              "train_wall_s": round(time.perf_counter() - start, 1)}
    log.write_text(json.dumps(timing))
    return model, timing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="baseline,beta21,beta21_noise01,beta21_distort")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--grid", default="", help="recipes also re-sampled with time_power 2")
    parser.add_argument("--data", default=str(Path.home() / ".cache/scoregen/qm9/qm9_v1_all.pt"))
    parser.add_argument("--run-root", default="runs/recipes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="molgen_recipes")
    parser.add_argument("--rows-only", action="store_true", help="print rows as JSON lines, write no results file")
    parser.add_argument("--models", nargs="*", default=[], metavar="NAME=PATH",
                        help="also judge these trained generator files (e.g. a longer run of a recipe)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    names = [r for r in args.recipes.split(",") if r]
    unknown = sorted(set(names) - set(RECIPES) - {"embedded"})
    if unknown:
        parser.error(f"unknown recipes {unknown}; choose from {sorted(RECIPES)}")
    if "embedded" not in names and not args.rows_only:
        names = ["embedded", *names]
    for name in names:
        if name == "embedded":
            path, timing = ROOT / "molgen" / "pretrained" / "generator.pt", {"steps": 0}
        else:
            path, timing = train_recipe(name, args)
        cache = Path(args.run_root) / name / f"judge_n{args.n}.json"
        row = {"recipe": name, **{k: v for k, v in RECIPES.get(name, {}).items()}, **timing,
               **judge(path, args.n, args.data, cache=cache)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if name in args.grid.split(","):
            grid_row = {"recipe": f"{name}+grid2", **timing, **judge(path, args.n, args.data, time_power=2.0,
                                                                 cache=cache.with_name(f"judge_n{args.n}_grid2.json"))}
            rows.append(grid_row)
            print(json.dumps(grid_row), flush=True)
    for item in args.models:
        name, _, path = item.partition("=")
        if not path or not Path(path).is_file():
            parser.error(f"--models expects NAME=PATH to a generator file, got {item!r}")
        cache = Path(args.run_root) / name / f"judge_n{args.n}.json"
        row = {"recipe": name, "model": path, **judge(Path(path), args.n, args.data, cache=cache)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if not args.rows_only:
        protocol = {"doc": __doc__.split("\n\n")[1], "steps": args.steps, "lr": args.lr, "warmup": args.warmup,
                    "n": args.n, "threads": args.threads, "sample_seed": 11}
        write_results(args.name, {"rows": rows}, protocol, "python -m benchmarks.molgen_recipes " +
                      " ".join(argv if argv is not None else sys.argv[1:]), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
