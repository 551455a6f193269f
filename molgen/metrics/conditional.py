"""Conditional-generation protocol pieces (EDM / PropMolFlow on QM9).

A property regressor trained on the ``train_regressor`` half predicts the property of molecules generated for
target values; the score is the MAE between targets and predictions. Two reference baselines bracket it:

* ``permutation_baseline_mae`` (EDM's "Naive (upper bound)"): the regressor's predictions on the
  ``train_generator`` half against that half's true labels after a random permutation, i.e. what a generator
  that ignores the condition would score;
* ``atom_count_baseline_mae`` (EDM's "#Atoms"): a predictor that sees only the number of atoms, fitted on one
  half (per-count median, which minimises the L1 loss EDM's regressors train with; per-count mean optional) and
  evaluated on the other; counts unseen in fitting fall back to the overall statistic.

``ood_target`` gives the out-of-distribution target of PropMolFlow's OOD task (a high percentile of the training
distribution).
"""

from __future__ import annotations

import numpy as np

__all__ = ["property_mae", "permutation_baseline_mae", "AtomCountBaseline", "atom_count_baseline_mae",
           "ood_target"]


def _vector(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def property_mae(targets, predictions) -> float:
    """Mean absolute error between target and predicted property values."""
    t, p = _vector(targets, "targets"), _vector(predictions, "predictions")
    if t.shape != p.shape:
        raise ValueError(f"targets ({t.size}) and predictions ({p.size}) differ in length")
    return float(np.abs(t - p).mean())


def permutation_baseline_mae(predictions, labels, rng: np.random.Generator) -> float:
    """MAE between predictions and a random permutation of the true labels (same molecules)."""
    labels = _vector(labels, "labels")
    return property_mae(labels[rng.permutation(labels.size)], predictions)


class AtomCountBaseline:
    """Predict a property from the atom count alone: the per-count median (or mean) of the fitting data."""

    def __init__(self, counts, values, statistic: str = "median"):
        if statistic not in ("median", "mean"):
            raise ValueError(f"statistic must be 'median' or 'mean', got {statistic!r}")
        counts = np.asarray(counts).reshape(-1).astype(np.int64)
        values = _vector(values, "values")
        if counts.shape != values.shape:
            raise ValueError(f"counts ({counts.size}) and values ({values.size}) differ in length")
        reduce = np.median if statistic == "median" else np.mean
        order = np.argsort(counts, kind="stable")
        keys, starts = np.unique(counts[order], return_index=True)
        groups = np.split(values[order], starts[1:])
        self.table = dict(zip(keys.tolist(), (float(reduce(g)) for g in groups)))
        self.fallback = float(reduce(values))

    def __call__(self, counts) -> np.ndarray:
        counts = np.asarray(counts).reshape(-1).astype(np.int64)
        keys = np.array(sorted(self.table), dtype=np.int64)
        table = np.array([self.table[k] for k in keys])
        pos = np.clip(np.searchsorted(keys, counts), 0, len(keys) - 1)
        return np.where(keys[pos] == counts, table[pos], self.fallback)


def atom_count_baseline_mae(fit_counts, fit_values, eval_counts, eval_values, statistic: str = "median") -> float:
    """MAE on the evaluation half of the atom-count-only predictor fitted on the other half."""
    predictor = AtomCountBaseline(fit_counts, fit_values, statistic)
    return property_mae(eval_values, predictor(eval_counts))


def ood_target(values, percentile: float = 99.0) -> float:
    """The ``percentile``-th percentile of the training values (PropMolFlow's OOD target uses the 99th)."""
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    return float(np.percentile(_vector(values, "values"), percentile))
