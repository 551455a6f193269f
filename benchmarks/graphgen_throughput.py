"""graphgen sampling throughput against the official GDSS code on the same machine, with quality beside each row.

For every setting: CPU-seconds of the sampling call per 1,000 QM9 molecules (published GDSS QM9 checkpoint, one
thread, one batch of 1,000 per seed) and per 100 ZINC-sized graphs (published GDSS ZINC250k checkpoint, 100
graphs), the network evaluations (NFE), and the GDSS quality metrics: validity w/o correction per seed, FCD and
NSPDK of the seeds pooled (N = 1,000 x seeds). GDSS's rows run its own code (``benchmarks.gdss_official``, from a
checkout given by ``--gdss-dir``) on the same node masks and seeds; rows alternate between the two codes so that
the machine's load hits both alike. The machine's CPU model and flags go into the results file.

Usage:
  python -m benchmarks.graphgen_throughput --data-dir ../shared/data --gdss-dir ~/src/GDSS \
      --gdss-extra-path /tmp/gdss_deps --seeds 42 43 44
  (add --rows to pick rows; --zinc-checkpoint defaults to the GDSS checkout's ZINC250k v2 checkpoint)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.harness import machine_info, write_results

# name: (code, sampler, steps, precision); "gdss" rows run the official code, "ours" rows graphgen.sample_graphs
ROWS: dict[str, tuple[str, str, int, str]] = {
    "gdss-pc-100": ("gdss", "pc", 100, "fp32"),
    "ours-pc-100": ("ours", "pc", 100, "fp32"),
    "gdss-s4-200": ("gdss", "s4", 200, "fp32"),
    "ours-s4-200": ("ours", "s4", 200, "fp32"),
    "ours-s4-200-bf16": ("ours", "s4", 200, "bf16"),
    "ours-s4-100-bf16": ("ours", "s4", 100, "bf16"),
    "ours-fast": ("ours", "fast", 0, "preset"),  # graphgen sample --preset fast, as shipped
    "ours-fast-fp32": ("ours", "fast", 0, "fp32"),
    "ours-fast-bf16": ("ours", "fast", 0, "bf16"),
    "ours-pc-1000": ("ours", "pc", 1000, "fp32"),  # the quality reference (GDSS's default sampler)
    "gdss-pc-1000": ("gdss", "pc", 1000, "fp32"),
}
DEFAULT_ROWS = ["gdss-pc-100", "ours-pc-100", "gdss-s4-200", "ours-s4-200", "ours-s4-200-bf16",
                "ours-s4-100-bf16", "ours-fast", "ours-pc-1000"]
ZINC_ROWS = ["gdss-s4-200", "ours-s4-200", "ours-s4-200-bf16", "ours-fast"]
# ZINC250k heavy-atom counts (mean 23.2, sd 4.5, 6-38): the CSV is not reachable offline, so sizes are drawn from
# this normal fit; both codes get the same masks (a user with the CSV gets the same protocol via --zinc-counts).
ZINC_MEAN, ZINC_SD, ZINC_MIN, ZINC_MAX = 23.2, 4.5, 6, 38


def cpu_flags() -> str:
    try:
        line = next(ln for ln in open("/proc/cpuinfo", encoding="ascii", errors="replace") if ln.startswith("flags"))
    except (OSError, StopIteration):
        return ""
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "fma")
    return " ".join(f for f in line.split(":", 1)[1].split() if f in wanted)


def run_ours(bundle, row, flags_sizes, seed, node_counts):
    from graphgen.sampling import resolve_preset, sample_graphs

    _, sampler, steps, precision = row
    options = (resolve_preset(bundle, "fast", precision=None if precision == "preset" else precision)
               if sampler == "fast" else {"sampler": sampler, "steps": steps, "precision": precision})
    n = flags_sizes
    cpu0 = time.process_time()
    out = sample_graphs(bundle, n, seed=seed, batch_size=n, return_tensors=True, node_counts=node_counts, **options)
    return out.x, out.adj, time.process_time() - cpu0, out.nfe, options


def run_gdss(args, checkpoint, row, flags, seed, work: Path):
    _, sampler, steps, _ = row
    flags_path, out_path = work / "flags.pt", work / "gdss_out.pt"
    torch.save(flags, flags_path)
    cmd = [sys.executable, "-m", "benchmarks.gdss_official", "--gdss-dir", args.gdss_dir, "--checkpoint",
           checkpoint, "--flags", str(flags_path), "--sampler", "S4" if sampler == "s4" else "Reverse",
           "--steps", str(steps), "--seed", str(seed), "--threads", str(args.threads), "--out", str(out_path)]
    if args.gdss_extra_path:
        cmd += ["--extra-path", args.gdss_extra_path]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode:
        raise SystemExit(f"official GDSS run failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    res = torch.load(out_path, weights_only=True)
    return res["x"], res["adj"], report["cpu_s"], report["nfe"], {"sampler": sampler, "steps": steps}


def zinc_counts(max_nodes: int) -> torch.Tensor:
    sizes = torch.arange(max_nodes + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * ((sizes - ZINC_MEAN) / ZINC_SD) ** 2)
    weights[(sizes < ZINC_MIN) | (sizes > ZINC_MAX)] = 0
    return weights / weights.sum()


def quality(x, adj, atom_types, per_seed_valid, data_dir, cache: Path, with_reference: bool) -> dict:
    from graphgen.metrics import gdss_molecule_metrics

    if with_reference:
        from benchmarks.graphgen_qm9 import evaluate

        m = evaluate(x, adj, atom_types, data_dir, cache)
    else:
        m = gdss_molecule_metrics(x, adj, atom_types)
    out = {"valid_wo_corr": round(sum(per_seed_valid) / len(per_seed_valid), 4),
           "valid_wo_corr_per_seed": [round(v, 4) for v in per_seed_valid],
           "valid_wo_corr_pooled": round(m["validity_wo_correction"], 4),
           "multi_fragment": round(m["multi_fragment_fraction"], 4)}
    if with_reference:
        out.update(fcd=round(m["fcd"], 3), nspdk=round(m["nspdk_mmd"], 5),
                   elements=" ".join(f"{e} {m[f'gen_pct_{e}']:.1f}" for e in atom_types if m[f"gen_pct_{e}"] > 0.5))
    return out


def run_dataset(args, dataset: str, bundle, checkpoint: str, rows: list[str], n: int, seeds: list[int],
                node_counts, work: Path) -> list[dict]:
    from graphgen.metrics import gdss_molecule_metrics
    from graphgen.sampling import draw_node_flags

    max_nodes, atom_types = bundle.config.data.max_node_num, bundle.config.atom_types
    counts = node_counts if node_counts is not None else bundle.node_counts
    samples: dict[str, dict] = {r: {"x": [], "adj": [], "cpu": [], "valid": []} for r in rows}
    for seed in seeds:
        # the masks ours draws from this seed: GDSS samples the same graph sizes
        flags = draw_node_flags(counts, n, max_nodes, torch.Generator().manual_seed(seed))
        for r in rows:  # alternate codes within a seed: load drifts hit both
            row = ROWS[r]
            if row[0] == "gdss":
                x, adj, cpu, nfe, opts = run_gdss(args, checkpoint, row, flags, seed, work)
            else:
                x, adj, cpu, nfe, opts = run_ours(bundle, row, n, seed, node_counts)
            valid = gdss_molecule_metrics(x, adj, atom_types)["validity_wo_correction"]
            s = samples[r]
            s["x"].append(x.float())
            s["adj"].append(adj.float())
            s["cpu"].append(cpu)
            s["valid"].append(valid)
            s["nfe"], s["opts"] = nfe, opts
            print(f"{dataset} seed {seed} {r}: {cpu:.1f} CPU-s, NFE {nfe}, valid w/o corr {valid:.3f}", flush=True)
    table = []
    for r in rows:
        s = samples[r]
        pad = max(a.shape[1] for a in s["x"])  # ours crops padding per batch; pad back to stack
        xs = torch.cat([torch.nn.functional.pad(a, (0, 0, 0, pad - a.shape[1])) for a in s["x"]])
        adjs = torch.cat([torch.nn.functional.pad(a, (0, pad - a.shape[1], 0, pad - a.shape[1])) for a in s["adj"]])
        q = ({"valid_wo_corr": round(sum(s["valid"]) / len(s["valid"]), 4)} if args.timing_only else
             quality(xs, adjs, atom_types, s["valid"], args.data_dir, work / "fcd_cache", dataset == "QM9"))
        cpu = sum(s["cpu"]) / len(s["cpu"])
        table.append({"dataset": dataset, "row": r, "code": ROWS[r][0], "setting": json.dumps(s["opts"]),
                      "nfe": s["nfe"], "cpu_s": round(cpu, 2), "cpu_s_per_seed": [round(c, 2) for c in s["cpu"]],
                      "cpu_s_per_nfe": round(cpu / s["nfe"], 4), **q})
    base = next((t["cpu_s"] for t in table if t["row"] == "gdss-s4-200"), None)
    for t in table:
        t["speedup_vs_gdss_s4_200"] = round(base / t["cpu_s"], 2) if base else None
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--gdss-dir", required=True, help="a checkout of github.com/harryjo97/GDSS")
    parser.add_argument("--gdss-extra-path", default=None, help="folder with easydict for GDSS's checkpoints")
    parser.add_argument("--qm9-checkpoint", default=None, help="default: DATA_DIR/gdss_checkpoints/gdss_qm9.pth")
    parser.add_argument("--zinc-checkpoint", default="checkpoints/ZINC250k/gdss_zinc250k_v2.pth",
                        help="GDSS ZINC250k checkpoint (relative: inside --gdss-dir); '' skips ZINC")
    parser.add_argument("--rows", nargs="+", default=DEFAULT_ROWS, choices=sorted(ROWS))
    parser.add_argument("--zinc-rows", nargs="*", default=ZINC_ROWS, choices=sorted(ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("-n", type=int, default=1000, help="QM9 molecules per seed (one batch)")
    parser.add_argument("--zinc-n", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="runs/bench-graphgen-throughput")
    parser.add_argument("--name", default="graphgen_throughput")
    parser.add_argument("--timing-only", action="store_true",
                        help="CPU-seconds and per-seed validity only (no FCD/NSPDK): for timing reruns")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from benchmarks.graphgen_qm9 import load_bundle

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    qm9_ckpt = args.qm9_checkpoint or str(Path(args.data_dir) / "gdss_checkpoints" / "gdss_qm9.pth")
    table = run_dataset(args, "QM9", load_bundle(qm9_ckpt, args.data_dir, work / "qm9"), str(Path(qm9_ckpt).resolve()),
                        args.rows, args.n, args.seeds, None, work)
    if args.zinc_checkpoint and args.zinc_rows:
        zinc_path = Path(args.zinc_checkpoint)
        zinc_path = zinc_path if zinc_path.is_absolute() else Path(args.gdss_dir) / zinc_path
        zinc = load_bundle(str(zinc_path), None, work / "zinc")
        table += run_dataset(args, "ZINC250k", zinc, str(zinc_path.resolve()), args.zinc_rows, args.zinc_n,
                             args.seeds[:1], zinc_counts(zinc.config.data.max_node_num), work)
    machine = machine_info()
    machine["cpu_flags"] = cpu_flags()
    results = {f"{t['dataset']}/{t['row']}": {k: t[k] for k in ("cpu_s", "nfe", "valid_wo_corr")} for t in table}
    protocol = (
        f"One thread per code (torch.set_num_threads({args.threads})), CPU-seconds (process time) of the sampling "
        f"call only, decoding excluded for both. QM9: published GDSS checkpoint (no EMA, as GDSS samples it), "
        f"{args.n} molecules per seed in one batch, seeds {args.seeds}; validity w/o correction per seed (GDSS's "
        f"ratio) and its mean; FCD/NSPDK of the {args.n * len(args.seeds)} pooled molecules against the QM9 test "
        f"split (our implementations, the same for both codes). ZINC250k: published GDSS v2 checkpoint, "
        f"{args.zinc_n} graphs, seed {args.seeds[0]}, node counts from a normal fit to ZINC250k's heavy-atom counts "
        f"(mean {ZINC_MEAN}, sd {ZINC_SD}, {ZINC_MIN}-{ZINC_MAX}; the CSV is not reachable offline, so no FCD); ours "
        "crops each batch's padding to its largest graph, GDSS computes all 38 nodes. GDSS rows run the official "
        "code (benchmarks.gdss_official) on the same node masks; rows alternate between codes within each seed. "
        "Samplers: GDSS settings snr 0.2, scale_eps 0.7 (QM9) / 0.9 (ZINC250k); pc = reverse-diffusion predictor + "
        "Langevin corrector (2 NFE/step), s4 = GDSS's S4 solver (1 NFE/step); bf16 = the networks under bf16 "
        "autocast, state and integrator in fp32; 'fast' = graphgen sample --preset fast. "
        f"Machine: {machine.get('cpu_model')} ({machine['cpu_flags']}).")
    command = "python -m benchmarks.graphgen_throughput " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results(args.name, results, protocol, command, table, machine=machine)
    for t in table:
        print({k: v for k, v in t.items() if k not in ("cpu_s_per_seed", "valid_wo_corr_per_seed")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
