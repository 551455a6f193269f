"""Small matplotlib figures every domain's ``evaluate --plots`` and campaign reports use (no display needed).

Each function writes one PNG atomically and returns its path; axes are labelled and carry units when given.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["bar_comparison", "histogram_comparison"]


def _figure(width: float = 5.0, height: float = 3.5):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=120)


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    from shared.io import atomic_write_bytes

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def histogram_comparison(samples: Mapping[str, Sequence[float]], xlabel: str, path: str | Path, *,
                         bins: int | Sequence[float] = 30, discrete: bool = False, title: str | None = None) -> Path:
    """Density histograms of several labelled samples on shared bins (``discrete``: one bin per integer)."""
    arrays = {k: np.asarray(v, dtype=float)[np.isfinite(np.asarray(v, dtype=float))] for k, v in samples.items()}
    both = np.concatenate([a for a in arrays.values() if a.size] or [np.zeros(1)])
    if discrete:
        edges = np.arange(np.floor(both.min()) - 0.5, np.ceil(both.max()) + 1.5)
    elif isinstance(bins, int):
        low, high = (np.percentile(both, [0.5, 99.5]) if both.size > 10 else (both.min(), both.max()))
        edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    else:
        edges = np.asarray(bins, dtype=float)
    fig, ax = _figure()
    for label, values in arrays.items():
        if values.size:
            ax.hist(np.clip(values, edges[0], edges[-1]), bins=edges, density=True, alpha=0.55,
                    label=f"{label} (n={values.size})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def bar_comparison(fractions: Mapping[str, Mapping[str, float]], ylabel: str, path: str | Path, *,
                   title: str | None = None) -> Path:
    """Grouped bars: for each category (e.g. element), one bar per labelled set."""
    categories: list[str] = []
    for values in fractions.values():
        categories.extend(c for c in values if c not in categories)
    fig, ax = _figure(max(5.0, 0.6 * len(categories) + 2), 3.5)
    width = 0.8 / max(len(fractions), 1)
    x = np.arange(len(categories))
    for k, (label, values) in enumerate(fractions.items()):
        ax.bar(x + k * width, [values.get(c, 0.0) for c in categories], width, label=label)
    ax.set_xticks(x + width * (len(fractions) - 1) / 2, categories)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)
