"""CDVAE's COV-R / COV-P over fingerprints: the reference-set standardisation of composition fingerprints (its
StandardScaler's rules), the coverage and mean-minimum-distance numbers, and the per-dataset cut-offs
(MP-20 0.4 / 10, perov-5 and carbon-24 0.2 / 4)."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["COV_CUTOFFS", "comp_stats", "cov_cutoffs_for", "coverage", "standardize"]

COV_CUTOFFS = {"mp_20": (0.4, 10.0), "perov_5": (0.2, 4.0), "carbon_24": (0.2, 4.0)}
_DATASET_ALIASES = {"mp20": "mp_20", "perovskite": "perov_5", "perov": "perov_5", "carbon": "carbon_24"}


def cov_cutoffs_for(dataset: str) -> tuple[float, float]:
    """(structure, composition) COV cut-offs of a CDVAE benchmark (aliases such as ``perovskite`` accepted);
    ValueError for any other dataset."""
    key = _DATASET_ALIASES.get(dataset, dataset)
    if key not in COV_CUTOFFS:
        raise ValueError(f"no COV cut-offs for dataset {dataset!r}; known: {sorted(COV_CUTOFFS)}")
    return COV_CUTOFFS[key]


def comp_stats(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature nan-mean and nan-std of reference fingerprints, with CDVAE StandardScaler's fixes
    (NaN mean -> 0, NaN or zero std -> 1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        mean = np.nanmean(reference, axis=0)
        std = np.nanstd(reference, axis=0)
    return np.where(np.isnan(mean), 0.0, mean), np.where(np.isnan(std) | (std == 0), 1.0, std)


def standardize(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(features - mean) / std`` with NaN results set to 0, as CDVAE's StandardScaler."""
    scaled = (np.asarray(features, dtype=float) - mean) / std
    return np.where(np.isnan(scaled), 0.0, scaled)


def coverage(gen_struct: np.ndarray, gen_comp: np.ndarray, ref_struct: np.ndarray, ref_comp: np.ndarray,
             struct_cutoff: float, comp_cutoff: float, n_generated: int | None = None) -> dict[str, float]:
    """CDVAE's COV-R/COV-P and mean min distances; composition fps must already be standardised."""
    from scipy.spatial.distance import cdist

    if len(gen_struct) == 0:
        return {"cov_recall": 0.0, "cov_precision": 0.0}
    n_generated = len(gen_struct) if n_generated is None else n_generated
    struct_d = cdist(gen_struct, ref_struct)
    comp_d = cdist(gen_comp, ref_comp)
    recall_s, recall_c = struct_d.min(axis=0), comp_d.min(axis=0)
    precision_s, precision_c = struct_d.min(axis=1), comp_d.min(axis=1)
    return {
        "cov_recall": float(np.mean((recall_s <= struct_cutoff) & (recall_c <= comp_cutoff))),
        "cov_precision": float(np.sum((precision_s <= struct_cutoff) & (precision_c <= comp_cutoff))
                               / n_generated),
        "amsd_recall": float(recall_s.mean()), "amsd_precision": float(precision_s.mean()),
        "amcd_recall": float(recall_c.mean()), "amcd_precision": float(precision_c.mean()),
    }
