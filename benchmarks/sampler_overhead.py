"""Sampler overhead per step versus the raw cost of the score network.

A GDSS system (X: VP 0.1..1.0, A: VE 0.2..1.0; the ZINC250k set-up) with the GDSS ZINC250k networks
(ScoreNetworkX_GMH + ScoreNetworkA) on a batch of graphs of 38 nodes. We time

* ``network``: one call of the system score function (both networks) on a fixed noisy state, and
* ``pc_step``: one step of ``shared.samplers.pc_sample`` (reverse-diffusion predictor + one Langevin
  correction = 2 score calls), measured as (time for S+1 steps - time for 1 step) / S,

and report overhead = pc_step / (2 * network) - 1: the cost the sampler adds on top of the network calls
(noise generation, masking, symmetrisation, norms, updates).

Usage: python -m benchmarks.sampler_overhead [--batch 1024] [--nodes 38] [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from benchmarks.harness import write_results
from graphgen.models import ScoreNetworkA, ScoreNetworkX_GMH
from shared.samplers import pc_sample
from shared.sde import VESDE, VPSDE
from shared.system import Component, SDESystem


def build(nodes: int, feats: int = 9):
    torch.manual_seed(0)
    net_x = ScoreNetworkX_GMH(feats, depth=2, nhid=16, num_linears=3, c_init=2, c_hid=8, c_final=4, adim=16)
    net_a = ScoreNetworkA(feats, nodes, nhid=16, num_layers=6, num_linears=3, c_init=2, c_hid=8, c_final=4, adim=16)
    system = SDESystem({"x": Component(VPSDE(0.1, 1.0, 1000), masked=True),
                        "adj": Component(VESDE(0.2, 1.0, 1000), symmetric=True, masked=True)})
    std_x = system["x"].sde.marginal_std

    def score_fn(state, t, mask):
        x, adj = state["x"], state["adj"]
        # GDSS: VP score = -network / std, VE score = network
        return {"x": -net_x(x, adj, mask) / std_x(t)[:, None, None], "adj": net_a(x, adj, mask)}

    return system, score_fn


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run(batch: int, nodes: int, steps: int, repeats: int) -> dict:
    feats = 9
    system, score_fn = build(nodes, feats)
    gen = torch.Generator().manual_seed(0)
    n_real = torch.randint(nodes // 2, nodes + 1, (batch,), generator=gen)
    mask = (torch.arange(nodes)[None, :] < n_real[:, None]).float()
    state = system.prior_sample({"x": (batch, nodes, feats), "adj": (batch, nodes, nodes)}, mask, gen)
    t = torch.full((batch,), 0.5)
    shapes = {"x": (batch, nodes, feats), "adj": (batch, nodes, nodes)}

    def sample(fn, n):
        return pc_sample(fn, system, shapes, n, predictor="reverse_diffusion", corrector="langevin",
                         snr=0.2, scale_eps=0.9, mask=mask, generator=torch.Generator().manual_seed(1))

    def per_step(fn) -> float:
        # the ancestral predictor needs >= 2 discretisation levels, so the baseline run has 2 steps
        base = _time(lambda: sample(fn, 2), repeats)
        return (_time(lambda: sample(fn, steps + 2), repeats) - base) / steps

    with torch.no_grad():
        fixed = score_fn(state, t, mask)  # warm-up, and the canned output of the free score function
        network = _time(lambda: score_fn(state, t, mask), repeats)
        # a score function that costs nothing isolates what the sampler itself adds per step
        sampler_only = per_step(lambda s, tt, m: fixed)
        pc_step = per_step(score_fn)
        calls_per_step = sample(score_fn, 2).nfe // 2  # predictor + corrector score calls
    return {
        "batch": batch, "nodes": nodes, "features": feats, "steps_timed": steps, "repeats": repeats,
        "network_s": network, "sampler_only_step_s": sampler_only, "pc_step_s": pc_step,
        "score_calls_per_step": calls_per_step,
        "overhead_fraction": sampler_only / (calls_per_step * network),
        "end_to_end_overhead_fraction": pc_step / (calls_per_step * network) - 1.0,
        "threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--nodes", type=int, default=38)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(args.batch, args.nodes, args.steps, args.repeats)
    table = [{"quantity": "score network call (both networks), s", "value": res["network_s"]},
             {"quantity": "sampler alone per step (free score function), s", "value": res["sampler_only_step_s"]},
             {"quantity": f"full PC step ({res['score_calls_per_step']} score calls), s", "value": res["pc_step_s"]},
             {"quantity": "overhead = sampler alone / network time per step", "value": res["overhead_fraction"]},
             {"quantity": "end-to-end: full step / network time - 1 (noisy under load)",
              "value": res["end_to_end_overhead_fraction"]}]
    protocol = (f"GDSS ZINC250k networks (ScoreNetworkX_GMH depth 2 nhid 16; ScoreNetworkA 6 layers), untrained, "
                f"batch {res['batch']} graphs x {res['nodes']} nodes (node counts uniform in [19, 38], masked), "
                f"reverse-diffusion predictor + 1 Langevin step; best of {res['repeats']} repeats; "
                f"per-step times = (T({args.steps + 2} steps) - T(2 steps)) / {args.steps}; the sampler's own cost is "
                "measured with a score function that returns canned tensors (noise, masks, symmetrisation, norms, "
                "updates), the end-to-end figure with the real networks; torch.no_grad; CPU float32; "
                "goal: overhead < 10%.")
    command = "python -m benchmarks.sampler_overhead " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results("sampler_overhead", res, protocol, command.strip(), table)
    print(f"network {res['network_s']*1e3:.1f} ms/call; sampler alone {res['sampler_only_step_s']*1e3:.1f} ms/step "
          f"= {100*res['overhead_fraction']:.2f}% of {res['score_calls_per_step']} network calls; full PC step "
          f"{res['pc_step_s']*1e3:.1f} ms (end-to-end {100*res['end_to_end_overhead_fraction']:+.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
