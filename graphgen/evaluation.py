"""Evaluation of generated graphs and molecules against a dataset's test split (the library side of
``graphgen evaluate``): graph MMDs for generic graphs; validity, uniqueness, atom statistics, novelty and FCD for
molecules. Novelty and FCD need the dataset's splits; without them they are skipped and the reason is returned."""

from __future__ import annotations

import os
from typing import Any, Sequence

__all__ = ["evaluate_against", "evaluate_samples", "load_reference", "molecule_metrics"]


def molecule_metrics(smiles: Sequence[str | None], test_smiles: Sequence[str] | None = None,
                     train_smiles: Sequence[str] | None = None, *, fcd: bool = True, device: str = "cpu") -> dict:
    """Validity (RDKit-parsable SMILES), uniqueness, heavy-atom statistics; novelty with ``train_smiles``, FCD
    with ``test_smiles`` (and ``fcd``)."""
    from graphgen.metrics import canonical_smiles, molecule_statistics, novelty, uniqueness

    valid = [s for s in (canonical_smiles(s) if s else None for s in smiles) if s]
    metrics: dict[str, Any] = {"validity_wo_correction": len(valid) / max(len(smiles), 1),
                               "uniqueness": uniqueness(valid) if valid else 0.0}
    if valid:
        metrics.update(molecule_statistics(valid))
    if train_smiles is not None:
        metrics["novelty"] = novelty(valid, train_smiles) if valid else 0.0
    if valid and test_smiles is not None and fcd:
        from graphgen.metrics import fcd_score

        metrics["fcd"] = fcd_score(valid, test_smiles, device=device)
    return metrics


def load_reference(is_molecule: bool, dataset: str, data_dir: str | os.PathLike | None = None
                   ) -> tuple[list | None, list | None, str | None]:
    """``(reference, train_smiles, skipped)``: ``dataset``'s test split (and training SMILES for molecules), or
    None with the reason when a molecule set's splits are unavailable (novelty and FCD are then skipped)."""
    from graphgen.diffusion import MOLECULE_DATASETS, DataConfig
    from graphgen.train import load_test_data
    from shared.paths import resolve_data_dir

    if is_molecule != (dataset in MOLECULE_DATASETS):
        raise ValueError(f"the samples are {'molecules' if is_molecule else 'graphs'} but dataset {dataset} is "
                         f"{'a molecule set' if dataset in MOLECULE_DATASETS else 'graphs'}")
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
    if is_molecule:
        return molecule_metrics(items, reference, train_smiles, fcd=fcd, device=device)
    from graphgen.metrics import eval_graph_list

    return eval_graph_list(reference, items)


def evaluate_samples(items: Sequence[Any], is_molecule: bool, dataset: str, *,
                     data_dir: str | os.PathLike | None = None, fcd: bool = True,
                     device: str = "cpu") -> tuple[dict, list | None, str | None]:
    """``(metrics, reference, skipped)``: the metrics of ``items`` (SMILES/Mols or networkx graphs) against
    ``dataset``'s test split, the reference items used (None if unavailable) and why novelty/FCD were skipped."""
    reference, train_smiles, skipped = load_reference(is_molecule, dataset, data_dir)
    return evaluate_against(items, is_molecule, reference, train_smiles, fcd=fcd, device=device), reference, skipped
