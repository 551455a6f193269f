"""Fréchet ChemNet Distance: ChemNet activations from the PyPI ``fcd`` package's shipped weights (no
network), Gaussian statistics and the Fréchet distance computed here.

FCD = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}).
tr((S1 S2)^{1/2}) equals the nuclear norm (sum of singular values) of S1^{1/2} S2^{1/2}, with the PSD square
roots from symmetric eigen-decompositions whose tiny negative round-off eigenvalues are clipped to zero. This
avoids the complex-valued ``sqrtm`` of a non-symmetric product and its eps-offset retry (the stability fix)
and stays accurate for the rank-deficient covariances of fewer samples than dimensions.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pkgutil
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from shared.io import atomic_write_bytes, write_cache

__all__ = [
    "frechet_distance",
    "gaussian_statistics",
    "chemnet_activations",
    "reference_statistics",
    "fcd_score",
]

_LOG = logging.getLogger(__name__)
_CHEMNET_FILE = "ChemNet_v0.13_pretrained.pt"


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein) distance squared between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"shape mismatch: mu1 {mu1.shape}, mu2 {mu2.shape}, sigma1 {sigma1.shape}, sigma2 {sigma2.shape}"
        )
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise ValueError("frechet_distance got non-finite means or covariances")
    # singular values of S1^{1/2} S2^{1/2} are the square roots of the eigenvalues of S1^{1/2} S2 S1^{1/2};
    # the SVD gets near-zero ones to absolute precision eps instead of sqrt(eps)
    tr_covmean = np.linalg.svd(_psd_sqrt(sigma1) @ _psd_sqrt(sigma2), compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def gaussian_statistics(activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, as the ``fcd`` package) covariance of ``activations (n, d)``; needs n >= 2."""
    activations = np.asarray(activations, dtype=np.float64)
    if activations.ndim != 2 or activations.shape[0] < 2:
        raise ValueError(f"need activations of shape (n >= 2, d), got {activations.shape}")
    return activations.mean(axis=0), np.cov(activations, rowvar=False)


@lru_cache(maxsize=1)
def _chemnet() -> torch.nn.Module:
    # the fcd package ships the weights as a pickled layer list; loading needs weights_only=False, which is
    # safe here because the file comes from the installed package, not from user input
    from fcd.utils import load_imported_model

    payload = pkgutil.get_data("fcd", _CHEMNET_FILE)
    if payload is None:
        raise FileNotFoundError(f"{_CHEMNET_FILE} not found in the installed 'fcd' package")
    model = load_imported_model(torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False))
    return model.eval()


def _canonical(smiles: Sequence[str]) -> list[str]:
    from graphgen.metrics.molecules import canonical_smiles

    canonical = [canonical_smiles(s) for s in smiles]
    bad = [i for i, c in enumerate(canonical) if c is None]
    if bad:
        warnings.warn(f"FCD: skipped {len(bad)} invalid SMILES (first positions {bad[:5]})", stacklevel=3)
    return [c for c in canonical if c is not None]


def chemnet_activations(
    smiles: Sequence[str],
    batch_size: int = 128,
    device: str | torch.device | None = None,
    canonicalize: bool = True,
) -> np.ndarray:
    """ChemNet penultimate activations ``(n, 512)`` of (canonicalised, invalid ones dropped) SMILES."""
    from fcd.utils import SmilesDataset

    if canonicalize:
        smiles = _canonical(smiles)
    if len(smiles) == 0:
        raise ValueError("chemnet_activations needs at least one valid SMILES")
    device = torch.device(device) if device is not None else torch.device("cpu")
    model = _chemnet().to(device)
    dataset = SmilesDataset(list(smiles))
    outputs = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = np.stack([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            inputs = torch.as_tensor(batch, dtype=torch.float32, device=device).transpose(1, 2)
            outputs.append(model(inputs).cpu().numpy())
    return np.concatenate(outputs).astype(np.float64)


def reference_statistics(
    smiles: Sequence[str],
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 128,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)`` of a reference set, cached in ``cache_dir`` by a hash of its canonical SMILES."""
    canonical = _canonical(smiles)
    if cache_dir is None:
        return gaussian_statistics(chemnet_activations(canonical, batch_size, device, canonicalize=False))
    from fcd import __version__ as fcd_version

    # the key covers the molecules and the network version, so a new ChemNet never reuses old statistics
    key = f"{_CHEMNET_FILE}|{fcd_version}|" + "\n".join(canonical)
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"fcd_ref_{digest}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return stored["mu"], stored["sigma"]
    mu, sigma = gaussian_statistics(chemnet_activations(canonical, batch_size, device, canonicalize=False))
    buffer = io.BytesIO()
    np.savez(buffer, mu=mu, sigma=sigma)
    if write_cache(path, lambda p: atomic_write_bytes(p, buffer.getvalue()), "FCD reference cache"):
        _LOG.info("cached FCD reference statistics of %d molecules at %s", len(canonical), path)
    return mu, sigma


def fcd_score(
    generated: Sequence[str],
    reference: Sequence[str] | tuple[np.ndarray, np.ndarray],
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 128,
    device: str | torch.device | None = None,
) -> float:
    """FCD of generated SMILES against reference SMILES (or precomputed ``(mu, sigma)``)."""
    if isinstance(reference, tuple) and len(reference) == 2 and isinstance(reference[0], np.ndarray):
        mu_ref, sigma_ref = reference
    else:
        mu_ref, sigma_ref = reference_statistics(reference, cache_dir, batch_size, device)
    mu_gen, sigma_gen = gaussian_statistics(chemnet_activations(generated, batch_size, device))
    return frechet_distance(mu_gen, sigma_gen, mu_ref, sigma_ref)
