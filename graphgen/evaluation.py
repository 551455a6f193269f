"""Evaluation of generated graphs and molecules against a dataset's test split (the library side of
``graphgen evaluate``): graph MMDs for generic graphs; validity, uniqueness, atom statistics, novelty and FCD for
molecules. Novelty and FCD need the dataset's splits; without them they are skipped and the reason is returned."""

from __future__ import annotations

import os
from typing import Any, Sequence

__all__ = ["evaluate_against", "evaluate_samples", "evaluation_plots", "evaluation_report", "load_reference",
           "molecule_metrics"]


def molecule_metrics(smiles: Sequence[str | None], test_smiles: Sequence[str] | None = None,
                     train_smiles: Sequence[str] | None = None, *, fcd: bool = True, device: str = "cpu") -> dict:
    """Validity (RDKit-parsable SMILES), uniqueness, heavy-atom statistics; novelty with ``train_smiles``, FCD
    with ``test_smiles`` (and ``fcd``): graphgen's registered evaluators (``graphgen.metrics.evaluators``)."""
    from graphgen.metrics.evaluators import nest_atom_fractions

    return nest_atom_fractions(evaluation_report(smiles, True, test_smiles, train_smiles, fcd=fcd,
                                                 device=device).metrics)


def evaluation_report(items: Sequence[Any], is_molecule: bool, reference: Sequence[Any] | None = None,
                      train_smiles: Sequence[str] | None = None, *, fcd: bool = True, device: str = "cpu"):
    """The ``shared.evaluation.EvaluationReport`` (metrics and what was skipped, with why) of graphgen's default
    evaluators on ``items``; ``reference`` is the test split (SMILES for molecules, networkx graphs otherwise)."""
    from graphgen.metrics.evaluators import SampleSet, default_evaluators
    from shared.evaluation import run_evaluators

    if is_molecule:
        context = {"test_smiles": reference, "train_smiles": train_smiles, "device": device}
    else:
        context = {"reference_graphs": reference}
    return run_evaluators(default_evaluators(is_molecule, fcd=fcd), SampleSet(items, is_molecule), context)


def load_reference(is_molecule: bool, dataset: str, data_dir: str | os.PathLike | None = None
                   ) -> tuple[list | None, list | None, str | None]:
    """``(reference, train_smiles, skipped)``: ``dataset``'s test split (and training SMILES for molecules), or
    None with the reason when a molecule set's splits are unavailable (novelty and FCD are then skipped)."""
    from graphgen.datasets import dataset_spec, load_test_data
    from graphgen.diffusion import DataConfig
    from shared.paths import resolve_data_dir

    if is_molecule != dataset_spec(dataset).is_molecule:
        raise ValueError(f"the samples are {'molecules' if is_molecule else 'graphs'} but dataset {dataset} is "
                         f"{'a molecule set' if not is_molecule else 'graphs'}")
    if is_molecule and resolve_data_dir(data_dir) is None:
        return None, None, "no data_dir / $SCOREGEN_DATA"
    if is_molecule:
        try:
            reference, train_smiles = load_test_data(DataConfig(name=dataset), data_dir)
        except FileNotFoundError as err:
            return None, None, str(err)
        return reference, train_smiles, None
    reference, train_smiles = load_test_data(DataConfig(name=dataset), data_dir)
    return reference, train_smiles, None


def evaluate_against(items: Sequence[Any], is_molecule: bool, reference: list | None,
                     train_smiles: list | None, *, fcd: bool = True, device: str = "cpu") -> dict:
    """The metrics of ``items`` against a reference from :func:`load_reference`."""
    if not is_molecule and reference is None:
        raise ValueError("graph samples need the dataset's test graphs to be compared with")
    if is_molecule:
        return molecule_metrics(items, reference, train_smiles, fcd=fcd, device=device)
    return evaluation_report(items, is_molecule, reference, fcd=fcd, device=device).metrics


def evaluate_samples(items: Sequence[Any], is_molecule: bool, dataset: str, *,
                     data_dir: str | os.PathLike | None = None, fcd: bool = True,
                     device: str = "cpu") -> tuple[dict, list | None, str | None]:
    """``(metrics, reference, skipped)``: the metrics of ``items`` (SMILES/Mols or networkx graphs) against
    ``dataset``'s test split, the reference items used (None if unavailable) and why novelty/FCD were skipped."""
    reference, train_smiles, skipped = load_reference(is_molecule, dataset, data_dir)
    return evaluate_against(items, is_molecule, reference, train_smiles, fcd=fcd, device=device), reference, skipped


def evaluation_plots(items: Sequence[Any], reference: Sequence[Any] | None, is_molecule: bool,
                     out_dir: str | os.PathLike, label: str = "samples", reference_label: str = "reference") -> list:
    """Figures of samples against the reference (PNG paths): heavy atoms and elements (molecules), node degrees and
    clustering coefficients (graphs)."""
    from pathlib import Path

    from shared.plots import bar_comparison, histogram_comparison

    out = Path(out_dir)
    sets = {label: items, **({reference_label: reference} if reference is not None else {})}
    if is_molecule:
        from rdkit import Chem, RDLogger

        from graphgen.metrics import canonical_smiles

        RDLogger.DisableLog("rdApp.*")
        mols = {k: [m for m in (Chem.MolFromSmiles(c) for c in (canonical_smiles(s) if s else None for s in v) if c)
                    if m is not None] for k, v in sets.items()}
        RDLogger.EnableLog("rdApp.*")
        sizes = {k: [m.GetNumAtoms() for m in v] for k, v in mols.items()}
        elements = {}
        for k, v in mols.items():
            symbols = [a.GetSymbol() for m in v for a in m.GetAtoms()]
            elements[k] = {e: symbols.count(e) / max(len(symbols), 1) for e in sorted(set(symbols))}
        return [histogram_comparison(sizes, "heavy atoms per valid molecule", out / "heavy_atoms.png", discrete=True),
                bar_comparison(elements, "fraction of heavy atoms", out / "elements.png", title="element mix")]
    import networkx as nx

    degrees = {k: [d for g in v for _, d in g.degree()] for k, v in sets.items()}
    clustering = {k: [c for g in v for c in nx.clustering(g).values()] for k, v in sets.items()}
    return [histogram_comparison(degrees, "node degree", out / "degree.png", discrete=True),
            histogram_comparison(clustering, "clustering coefficient", out / "clustering.png", bins=20)]
