"""graphgen's DFT-hook evaluator on QM9: generated molecules and QM9 test molecules through the same xTB pipeline.

N molecules are sampled from a graphgen model (default: the embedded QM9 model, its own sampler settings) and N
molecules are drawn from the GDSS QM9 test split; both go through ``graphgen dft``'s pipeline (RDKit ETKDG v3,
K MMFF94 conformers, lowest kept, GFN2-xTB single point). The table compares HOMO, LUMO, gap and dipole of the
two sets (like with like: same embedding, same method) and lists QM9's own B3LYP labels of the test molecules
for scale. Throughput is molecules per minute of the embedding + xTB stage on this machine.

Usage:
  python -m benchmarks.graphgen_dft --data-dir ../shared/data -n 500 --work runs/bench/graphgen-dft --threads 1
Sampled SMILES and the xTB cache live in --work, so a rerun resumes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import write_results

PLOTS_DIR = Path(__file__).resolve().parent / "results" / "graphgen_dft_plots"


def sample_smiles(checkpoint: str | None, n: int, seed: int, steps: int | None, work: Path) -> tuple[list, float]:
    """Sampled SMILES (uncorrected molecules, "" where RDKit cannot write one) and sampling seconds; cached."""
    from graphgen.api import load_model
    from graphgen.sampling import read_samples, sample_graphs, write_samples

    path = work / f"samples_n{n}_seed{seed}_steps{steps or 'default'}.smi"
    timing = path.with_suffix(".seconds")
    if path.is_file() and timing.is_file():
        return read_samples(path)[0], float(timing.read_text())
    bundle = load_model(checkpoint)
    start = time.perf_counter()
    out = sample_graphs(bundle, n, steps=steps, seed=seed, batch_size=min(n, 1000), progress=True)
    seconds = time.perf_counter() - start
    write_samples(path, out.items)
    timing.write_text(f"{seconds:.3f}\n")
    return read_samples(path)[0], seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="graphgen model (default: the embedded QM9 model)")
    parser.add_argument("--data-dir", required=True, help="reference data (the GDSS QM9 split)")
    parser.add_argument("-n", type=int, default=500, help="molecules per set (default 500)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    parser.add_argument("--conformers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="runs/bench/graphgen-dft")
    parser.add_argument("--name", default="graphgen_dft")
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from graphgen.dft_runs import make_dft_hook, run_dft
    from graphgen.data import load_qm9, qm9_property_labels
    from graphgen.dft import DFT_PROPERTIES, compare_distributions, plot_property_histograms, property_values
    from graphgen.metrics import canonical_smiles

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    generated, sample_seconds = sample_smiles(args.checkpoint, args.n, args.seed, args.steps, work)
    _, test = load_qm9(args.data_dir)
    pick = np.sort(np.random.default_rng(args.seed).choice(len(test), size=min(args.n, len(test)), replace=False))
    test_smiles = [test.smiles[i] for i in pick]
    labels = qm9_property_labels(test.rows[pick])

    hook = make_dft_hook("xtb", conformers=args.conformers, seed=args.seed)
    runs = {}
    for name, smiles in (("generated", generated), ("qm9_test", test_smiles)):
        start = time.perf_counter()
        results = run_dft(hook, smiles, work / "cache", workers=args.workers, progress=True)
        wall = time.perf_counter() - start
        fresh = [r for r in results if not r.cached]
        runs[name] = {"results": results, "wall_s": wall, "fresh": len(fresh),
                      "cpu_s_per_mol": float(np.mean([r.elapsed_s for r in results])) if results else 0.0}

    gen_values = property_values(runs["generated"]["results"])
    test_values = property_values(runs["qm9_test"]["results"])
    like = compare_distributions(gen_values, test_values)
    vs_labels = compare_distributions(gen_values, labels)
    test_vs_labels = compare_distributions(test_values, labels)
    table = []
    for prop in DFT_PROPERTIES:
        g, t, lab = like[prop], test_vs_labels[prop], vs_labels[prop]
        table.append({
            "property": prop,
            "generated xTB mean ± std": f"{g['mean']:.3f} ± {g['std']:.3f}",
            "QM9 test xTB mean ± std": f"{t['mean']:.3f} ± {t['std']:.3f}",
            "W1 generated vs QM9 test (xTB)": round(g["wasserstein"], 4),
            "QM9 test B3LYP label mean ± std": f"{t['reference_mean']:.3f} ± {t['reference_std']:.3f}",
            "W1 QM9 test xTB vs its labels": round(t["wasserstein"], 4),
            "W1 generated xTB vs labels": round(lab["wasserstein"], 4),
        })

    def failures(results):
        out: dict[str, int] = {}
        for r in results:
            if not r.ok:
                kind = r.reason.split(":")[0]
                out[kind] = out.get(kind, 0) + 1
        return out

    gen_results = runs["generated"]["results"]
    valid = [canonical_smiles(s) if s else None for s in generated]
    summary = {
        "n_generated": len(generated),
        "n_qm9_test": len(test_smiles),
        "generated_valid_wo_correction": sum(v is not None for v in valid) / len(generated),
        "generated_xtb_ok": sum(r.ok for r in gen_results) / len(gen_results),
        "qm9_test_xtb_ok": sum(r.ok for r in runs["qm9_test"]["results"]) / len(test_smiles),
        "generated_failures": failures(gen_results),
        "qm9_test_failures": failures(runs["qm9_test"]["results"]),
        "sampling_seconds": round(sample_seconds, 1),
        # every attempt counts (failed embeddings try all stereoisomers: seconds each), and the successful ones
        "molecules_per_minute_embed_xtb": round(60.0 / max(np.mean([runs[k]["cpu_s_per_mol"] for k in runs]), 1e-9),
                                                1),
        "molecules_per_minute_successful_only": round(60.0 / max(np.mean(
            [r.elapsed_s for k in runs for r in runs[k]["results"] if r.ok]), 1e-9), 1),
        "median_seconds_per_molecule": float(np.median([r.elapsed_s for k in runs for r in runs[k]["results"]])),
        "mean_w1_generated_vs_qm9_test_xtb": float(np.mean([like[p]["wasserstein"] for p in DFT_PROPERTIES])),
        "distributions_generated_vs_qm9_test_xtb": like,
        "distributions_qm9_test_xtb_vs_labels": test_vs_labels,
    }
    plot_property_histograms(gen_values, test_values, PLOTS_DIR, label="generated (xTB)",
                             reference_label="QM9 test (xTB)", prefix="generated_vs_qm9_test")
    protocol = {
        "model": args.checkpoint or "embedded graphgen QM9 model (graphgen/pretrained)",
        "sampling": f"{args.n} molecules, seed {args.seed}, model's sampler settings"
                    + (f", {args.steps} steps" if args.steps else "") + "; no valence correction",
        "reference": f"{len(test_smiles)} molecules drawn (seed {args.seed}) from the GDSS QM9 test split",
        "pipeline": f"RDKit ETKDG v3 (seed {args.seed}), {args.conformers} conformers relaxed with MMFF94 "
                    "(UFF where MMFF lacks parameters), lowest kept; GFN2-xTB single point (tblite, 300 K "
                    "smearing); open-shell and invalid molecules are failures, not computed",
        "units": "eV (HOMO, LUMO, gap), Debye (dipole)",
        "throughput": "molecules per minute of embedding + xTB from per-molecule compute times (1 process, "
                      f"{args.threads} torch thread(s)); sampling time separately",
        "plots": str(PLOTS_DIR.relative_to(Path(__file__).resolve().parents[1])),
    }
    command = "python -m benchmarks.graphgen_dft " + " ".join(argv if argv is not None else sys.argv[1:])
    paths = write_results(args.name, summary, protocol, command, table, results_dir=args.results_dir)
    for row in table:
        print(row)
    for key in ("generated_valid_wo_correction", "generated_xtb_ok", "qm9_test_xtb_ok", "generated_failures",
                "molecules_per_minute_embed_xtb", "molecules_per_minute_successful_only",
                "mean_w1_generated_vs_qm9_test_xtb", "sampling_seconds"):
        print(f"{key}: {summary[key]}")
    print("wrote", *paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
