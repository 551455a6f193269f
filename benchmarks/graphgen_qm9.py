"""GDSS on QM9: sample N molecules from a graphgen model (e.g. the imported published GDSS checkpoint) and
evaluate them with the GDSS protocol (validity without correction, validity, uniqueness, novelty, NSPDK MMD and
FCD against the test split), plus sampling throughput.

Sampling runs in batches (default 1,000) whose tensors are saved one file per batch, atomically, so an
interrupted run resumes where it stopped; batch i uses seed ``seed + i``.

Usage:
  python -m benchmarks.graphgen_qm9 --checkpoint ../shared/data/gdss_checkpoints/gdss_qm9.pth \
      --data-dir ../shared/data -n 10000 --work runs/bench-qm9-gdss
(a GDSS ``.pth`` is imported on the fly; any graphgen model file or run directory works too).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from benchmarks.harness import write_results
from shared.io import atomic_torch_save


def load_bundle(checkpoint: str, data_dir: str | None, work: Path):
    """A graphgen model; a published GDSS ``.pth`` goes through ``graphgen import-gdss``'s code path first."""
    from graphgen.checkpoint import import_gdss, load_model, save_model

    if checkpoint.endswith(".pth"):
        converted = work / "imported_model.pt"
        if not converted.is_file():
            config, model, ema, counts = import_gdss(checkpoint, data_dir)
            save_model(converted, config, model, ema_state=ema, node_counts=counts, source=checkpoint)
        checkpoint = str(converted)
    return load_model(checkpoint)


def sample_batches(bundle, n: int, batch: int, seed: int, work: Path, threads: int, steps: int | None,
                   existing_only: bool = False, sampler: str | None = None, snr_x: float | None = None,
                   snr: float | None = None) -> dict:
    from graphgen.sampling import sample_graphs

    work.mkdir(parents=True, exist_ok=True)
    n_batches = (n + batch - 1) // batch
    for i in range(n_batches):
        path = work / f"batch_{i:04d}.pt"
        if path.is_file():
            continue
        if existing_only:  # evaluate the finished prefix of an interrupted or still-running run
            n_batches = i
            break
        size = min(batch, n - i * batch)
        start = time.perf_counter()
        out = sample_graphs(bundle, size, batch_size=size, seed=seed + i, steps=steps, sampler=sampler,
                            snr=snr, snr_x=snr_x, return_tensors=True, progress=True)
        seconds = time.perf_counter() - start
        atomic_torch_save({"x": out.x, "adj": out.adj, "nfe": out.nfe, "seconds": seconds, "threads": threads}, path)
        print(f"batch {i + 1}/{n_batches}: {size} molecules in {seconds:.1f} s ({size / seconds:.2f} mol/s)",
              flush=True)
    if n_batches == 0:
        raise SystemExit(f"no finished batches in {work}")
    parts = [torch.load(work / f"batch_{i:04d}.pt", weights_only=True) for i in range(n_batches)]
    times = [p["seconds"] for p in parts]
    return {"x": torch.cat([p["x"] for p in parts]), "adj": torch.cat([p["adj"] for p in parts]),
            "nfe_per_batch": parts[0]["nfe"], "seconds_per_batch": times}


def evaluate(x, adj, atom_types, data_dir: str | None, cache_dir: Path) -> dict:
    from rdkit import Chem

    from graphgen.data import load_qm9
    from graphgen.metrics import gdss_molecule_metrics, fcd_score, molecule_graphs, nspdk_mmd

    train, test = load_qm9(data_dir)
    metrics = gdss_molecule_metrics(x, adj, atom_types, train_smiles=train.smiles)
    smiles = metrics.pop("smiles")
    gen_mols = [m for m in (Chem.MolFromSmiles(s) for s in smiles) if m is not None]
    test_mols = [m for m in (Chem.MolFromSmiles(s) for s in test.smiles) if m is not None]
    for mol in gen_mols + test_mols:
        Chem.Kekulize(mol, clearAromaticFlags=True)  # GDSS compares kekulized graphs
    metrics["nspdk_mmd"] = nspdk_mmd(molecule_graphs(test_mols), molecule_graphs(gen_mols))
    metrics["fcd"] = fcd_score(smiles, test.smiles, cache_dir=cache_dir)
    metrics["num_test"] = len(test.smiles)
    # element mix of the heavy atoms (percent), generated and test: what a chemist sees first
    for name, mols in (("gen", gen_mols), ("test", test_mols)):
        symbols = [a.GetSymbol() for m in mols for a in m.GetAtoms()]
        for element in atom_types:
            metrics[f"{name}_pct_{element}"] = round(100.0 * symbols.count(element) / max(len(symbols), 1), 2)
    return metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work", default="runs/bench-graphgen-qm9")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--name", default="graphgen_qm9")
    parser.add_argument("--steps", type=int, default=None, help="override the model's sampler steps")
    parser.add_argument("--sampler", choices=("pc", "s4", "ode-euler", "ode-heun", "ode-adaptive"), default=None,
                        help="override the model's sampler")
    parser.add_argument("--snr", type=float, default=None,
                        help="Langevin snr (alone: both components, as GDSS; with --snr-x: the adjacency's)")
    parser.add_argument("--snr-x", type=float, default=None,
                        help="the node features' own Langevin snr (default: the model's; GDSS: same as snr)")
    parser.add_argument("--existing-only", action="store_true",
                        help="sample nothing: evaluate the batches already finished in --work")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    from graphgen.sampling import resolve_snr

    bundle = load_bundle(args.checkpoint, args.data_dir, work)
    sampler = bundle.config.sampler
    samples = sample_batches(bundle, args.n, args.batch, args.seed, work, torch.get_num_threads(), args.steps,
                             args.existing_only, args.sampler, args.snr_x, args.snr)
    n_done = samples["x"].shape[0]
    metrics = evaluate(samples["x"], samples["adj"], bundle.config.atom_types, args.data_dir, work / "fcd_cache")
    total_s = sum(samples["seconds_per_batch"])
    metrics.update({"sampling_seconds": total_s, "molecules_per_second": n_done / total_s,
                    "nfe_per_batch": samples["nfe_per_batch"], "batch_size": args.batch})
    table = [{"metric": k, "value": v} for k, v in metrics.items() if isinstance(v, (int, float))]
    protocol = (
        f"GDSS protocol on QM9 (qm9pack table, GDSS test split valid_idx_qm9.json; kekulized, no hydrogens, C N O F, "
        f"<= 9 atoms). Model: {args.checkpoint}. Sampler: "
        f"{(args.sampler + ' (overriding ') if args.sampler else ''}{sampler.predictor} predictor + "
        f"{sampler.corrector}{')' if args.sampler else ''} "
        f"corrector, snr {resolve_snr(sampler, args.snr, args.snr_x)} (a dict: node features x and adjacency "
        f"each their own), scale_eps {sampler.scale_eps}, {args.steps or sampler.steps} steps, "
        f"eps {sampler.eps}, "
        f"final step without noise. N = {n_done} (of {args.n} requested) in batches of {args.batch} "
        f"(batch i seeded {args.seed}+i); node "
        "counts drawn from the training split's histogram. Validity w/o correction = fraction of molecules that "
        "pass RDKit valence checks before GDSS's valency correction, over molecules surviving correction (GDSS's "
        "ratio; also reported over all samples); validity/uniqueness/novelty on corrected largest fragments "
        "(MOSES definitions); novelty vs training canonical SMILES; FCD with the ChemNet of the `fcd` package and "
        "our Frechet distance, generated vs test canonical SMILES; NSPDK (r=d=4, our stable-hash implementation) "
        f"of kekulized molecular graphs vs the test set. CPU, torch threads {torch.get_num_threads()}.")
    command = "python -m benchmarks.graphgen_qm9 " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results(args.name, metrics, protocol, command, table)
    for row in table:
        print(f"{row['metric']:>36}: {row['value']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
