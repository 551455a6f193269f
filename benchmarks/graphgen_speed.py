"""graphgen sampling throughput: today's networks against the pre-speed-up implementation, same everything else.

Both run the same checkpoint (default: the published GDSS QM9 one), seed, batch, steps and thread count, in
interleaved repeats (reference, current, reference, ...) so machine load hits both alike. The reference is the
code as of commit 93e24e4, kept in ``benchmarks/reference/graphgen_layers_v0.py``: per-channel attention modules,
4-D head views, full N x N pair MLPs, the checkpoint's weights as stored (subnormal heads included) and no
flush-to-zero. Quality of both sample sets (validity w/o correction, uniqueness, novelty, multi-fragment
fraction, NSPDK, FCD) and the fraction of identical molecules (same seed) are written next to the timings.

Usage:
  python -m benchmarks.graphgen_speed --data-dir ../shared/data -n 1000 --steps 100 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch

from benchmarks.harness import write_results


def reference_bundle(bundle, raw_model):
    """The bundle with the V0 layers and the weights exactly as the checkpoint stores them."""
    from benchmarks.reference.graphgen_layers_v0 import use_reference_layers

    ref = copy.copy(bundle)
    ref.model = use_reference_layers(copy.deepcopy(raw_model)).eval()
    return ref


def timed_sample(bundle, n: int, steps: int, seed: int, batch: int, reference: bool):
    from graphgen.sampling import sample_graphs

    # the reference predates flush-to-zero while sampling; everything else is the same call
    patch = (mock.patch("graphgen.sampling.flush_denormal_mode", lambda enabled=True: contextlib.nullcontext())
             if reference else contextlib.nullcontext())
    with patch:
        start = time.perf_counter()
        out = sample_graphs(bundle, n, steps=steps, seed=seed, batch_size=batch, return_tensors=True)
        return out, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="GDSS .pth or graphgen model (default: GDSS QM9)")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="runs/bench/graphgen-speed")
    parser.add_argument("--name", default="graphgen_speed")
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from benchmarks.graphgen_qm9 import evaluate
    from graphgen.checkpoint import import_gdss, load_model, save_model

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint or str(Path(args.data_dir) / "gdss_checkpoints" / "gdss_qm9.pth")
    if checkpoint.endswith(".pth"):
        config, raw_model, ema, counts = import_gdss(checkpoint, args.data_dir)
        path = save_model(work / "imported.pt", config, raw_model, ema_state=ema, node_counts=counts,
                          source=checkpoint)
    else:
        path = Path(checkpoint)
    bundle = load_model(path)  # current loader: subnormal weights flushed
    raw = load_model(path)
    payload = torch.load(path, weights_only=True)
    state = {**payload["model"], **(payload.get("ema") or {} if raw.used_ema else {})}
    raw.model.load_state_dict(state)  # undo the flush for the reference: the weights as stored
    reference = reference_bundle(bundle, raw.model)

    times = {"reference": [], "current": []}
    outputs = {}
    for r in range(args.repeats):
        order = ("reference", "current") if r % 2 == 0 else ("current", "reference")
        for which in order:
            out, seconds = timed_sample(bundle if which == "current" else reference, args.n, args.steps,
                                        args.seed, args.batch, which == "reference")
            times[which].append(seconds)
            outputs[which] = out
            print(f"repeat {r + 1}/{args.repeats} {which:>9}: {seconds:.1f} s ({args.n / seconds:.2f} mol/s)",
                  flush=True)

    quality = {}
    for which, out in outputs.items():
        metrics = evaluate(out.x, out.adj, bundle.config.atom_types, args.data_dir, work / "fcd_cache")
        quality[which] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    from graphgen.metrics import canonical_smiles

    same = [canonical_smiles(a) == canonical_smiles(b)
            for a, b in zip(outputs["reference"].items, outputs["current"].items)]
    max_adj_diff = float((outputs["reference"].adj - outputs["current"].adj).abs().max())
    median = {k: statistics.median(v) for k, v in times.items()}
    summary = {
        "speedup_median": median["reference"] / median["current"],
        "reference_seconds_median": median["reference"],
        "current_seconds_median": median["current"],
        "reference_mol_per_s": args.n / median["reference"],
        "current_mol_per_s": args.n / median["current"],
        "identical_molecules_fraction": sum(same) / len(same),
        "max_abs_adjacency_difference": max_adj_diff,
        "times_s": times,
        "quality": quality,
    }
    table = [{"metric": k, "reference": quality["reference"].get(k), "current": quality["current"].get(k)}
             for k in ("validity_wo_correction", "validity", "uniqueness", "novelty", "multi_fragment_fraction",
                       "nspdk_mmd", "fcd")]
    table.append({"metric": "seconds (median)", "reference": round(median["reference"], 2),
                  "current": round(median["current"], 2)})
    protocol = {
        "checkpoint": checkpoint,
        "sampling": f"{args.n} molecules, batch {args.batch}, {args.steps} steps of the model's sampler "
                    f"(GDSS reverse diffusion + Langevin), seed {args.seed}, {args.threads} torch thread(s), CPU",
        "reference": "benchmarks/reference/graphgen_layers_v0.py (commit 93e24e4 layers), weights as stored, "
                     "no flush-to-zero",
        "current": "graphgen.models as of this commit, weights loaded by graphgen.checkpoint.load_model "
                   "(subnormals flushed), flush-to-zero while sampling",
        "timing": f"{args.repeats} interleaved repeats each (order alternates), median wall time",
        "quality": "benchmarks.graphgen_qm9.evaluate (GDSS protocol) on the last repeat's samples of each",
        "identical": "canonical SMILES equal position by position (same seed); float differences can flip a few",
    }
    command = "python -m benchmarks.graphgen_speed " + " ".join(argv if argv is not None else sys.argv[1:])
    paths = write_results(args.name, summary, protocol, command, table, results_dir=args.results_dir)
    for row in table:
        print(row)
    print(f"speed-up {summary['speedup_median']:.2f}x; "
          f"identical molecules {summary['identical_molecules_fraction']:.3f}")
    print("wrote", *paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
