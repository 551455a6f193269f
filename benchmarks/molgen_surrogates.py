"""Fit the 2D screening surrogates (molgen.surrogates) on QM9's train_generator half, measure them on the valid
and test splits, and write the shipped file molgen/pretrained/surrogates.npz (``--out``) and a results table."""

from __future__ import annotations

import argparse
import sys
import time

from benchmarks.harness import write_results

PROPERTIES = ("alpha", "gap", "homo", "lumo", "mu", "Cv")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qm9", default=None, help="prepared QM9 file (default: molgen's cache)")
    parser.add_argument("--properties", nargs="+", default=list(PROPERTIES))
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--max-leaf-nodes", type=int, default=31)
    parser.add_argument("--out", default="molgen/pretrained/surrogates.npz")
    parser.add_argument("--name", default="molgen_surrogates")
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args(argv)

    from molgen.train import default_qm9_path
    from molgen.surrogates import save_surrogates, train_surrogates
    from molgen.train_regressor import REPORTING_UNITS

    qm9 = args.qm9 or str(default_qm9_path())
    start = time.perf_counter()
    models, scores = train_surrogates(qm9, args.properties, max_iter=args.max_iter,
                                      max_leaf_nodes=args.max_leaf_nodes, progress=True)
    seconds = time.perf_counter() - start
    rows = []
    for prop in args.properties:
        unit, factor = REPORTING_UNITS[prop]
        rows.append({"property": prop, "unit": unit, "valid_mae": scores[prop]["valid_mae"] * factor,
                     "test_mae": scores[prop]["test_mae"] * factor, "nodes": int(models[prop].feature.size)})
    protocol = {"data": "QM9 (molgen.data), fitted on train_generator (the generator's half), MAE on valid and test",
                "model": f"scikit-learn HistGradientBoostingRegressor, {args.max_iter} trees of <= "
                         f"{args.max_leaf_nodes} leaves, learning rate 0.1, no early stopping, seed 0; exported to "
                         "arrays and evaluated in numpy",
                "features": "element and hydrogen counts, bond orders, rings, Morgan count fingerprint r=2, 1,024 "
                            "bits, and the Gasteiger-charge dipole (D) and total |charge| at each molecule's own "
                            "coordinates (feature version 2; molgen.surrogates.molecule_features)"}
    save_surrogates(args.out, models, how_trained=protocol, scores=scores, seconds=round(seconds, 1))
    command = "python -m benchmarks.molgen_surrogates " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results(args.name, {"seconds": round(seconds, 1), "out": args.out}, protocol, command, rows,
                  results_dir=args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
