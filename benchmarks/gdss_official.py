"""Run the official GDSS sampler (github.com/harryjo97/GDSS) from a local checkout, for side-by-side timings.

Nothing of GDSS is copied here: this imports its ``solver``/``utils.loader`` from ``--gdss-dir`` and changes only
what a CPU run beside ours needs (one thread; ``pyemd``, used by GDSS's MMD code only, is stubbed when absent;
the node masks come from a file so both codes sample the same graph sizes; the sample count is the batch instead of
GDSS's hard-coded 10,000). Its checkpoint's ``model_config`` is read through GDSS's own unpickling (needs
``easydict``). Prints one JSON line with the CPU seconds of the sampling call and saves x, adj to ``--out``.

Usage (normally started by benchmarks.graphgen_throughput):
  python -m benchmarks.gdss_official --gdss-dir ~/src/GDSS --checkpoint checkpoints/QM9/gdss_qm9.pth \
      --flags flags.pt --sampler S4 --steps 200 --seed 42 --out gdss.pt
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gdss-dir", required=True, help="a checkout of github.com/harryjo97/GDSS")
    parser.add_argument("--checkpoint", required=True, help="GDSS .pth (relative paths: inside --gdss-dir)")
    parser.add_argument("--flags", required=True, help="torch file with the (B, N) node masks to sample")
    parser.add_argument("--sampler", choices=("S4", "Reverse"), default="S4", help="S4 solver or Reverse+Langevin PC")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--snr", type=float, default=None, help="default: the dataset's GDSS sampling config")
    parser.add_argument("--scale-eps", type=float, default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--extra-path", default=None, help="a folder with GDSS's extra dependencies (easydict)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.extra_path:
        sys.path.insert(0, args.extra_path)
    try:
        import pyemd  # noqa: F401
    except ImportError:
        sys.modules["pyemd"] = types.ModuleType("pyemd")
    flags = torch.load(os.path.abspath(args.flags), weights_only=True)
    out = os.path.abspath(args.out)
    os.chdir(args.gdss_dir)
    sys.path.insert(0, os.path.abspath(args.gdss_dir))
    from solver import S4_solver, get_pc_sampler  # GDSS's modules
    from utils.loader import load_model_from_ckpt, load_sde, load_seed

    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)  # GDSS's own file format
    cfg = ckpt["model_config"]
    cfg.sde.x.num_scales = cfg.sde.adj.num_scales = args.steps  # GDSS's way to set the number of steps
    model_x = load_model_from_ckpt(ckpt["params_x"], ckpt["x_state_dict"], "cpu")
    model_adj = load_model_from_ckpt(ckpt["params_adj"], ckpt["adj_state_dict"], "cpu")
    # GDSS's sample_qm9.yaml / sample_zinc250k.yaml: snr 0.2, scale_eps 0.7 (QM9) / 0.9 (ZINC250k)
    scale_eps = args.scale_eps if args.scale_eps is not None else (0.7 if cfg.data.data == "QM9" else 0.9)
    snr = 0.2 if args.snr is None else args.snr
    n, max_nodes, feats = flags.shape[0], cfg.data.max_node_num, cfg.data.max_feat_num
    make = S4_solver if args.sampler == "S4" else get_pc_sampler
    sampling_fn = make(sde_x=load_sde(cfg.sde.x), sde_adj=load_sde(cfg.sde.adj), shape_x=(n, max_nodes, feats),
                       shape_adj=(n, max_nodes, max_nodes), predictor=args.sampler, corrector="Langevin", snr=snr,
                       scale_eps=scale_eps, n_steps=1, probability_flow=False, continuous=True, denoise=True,
                       eps=1e-4, device="cpu")
    load_seed(args.seed)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    x, adj, _ = sampling_fn(model_x, model_adj, flags)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    torch.save({"x": x, "adj": adj, "cpu_s": cpu, "wall_s": wall}, out)
    print(json.dumps({"cpu_s": cpu, "wall_s": wall, "nfe": args.steps * (1 if args.sampler == "S4" else 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
