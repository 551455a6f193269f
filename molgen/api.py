"""molgen's side of the model -> samples contract (``shared.contract``): load_model, sample, evaluate."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from shared.contract import resolve_model_path
from shared.numerics import resolve_precision

__all__ = ["evaluate", "generator_path", "load_model", "sample"]


def generator_path(path: str | os.PathLike | None = None):
    """The generator file ``load_model(path)`` reads: the embedded one, the file, or a run folder's model.pt."""
    from molgen.pretrained import pretrained_generator_path

    return resolve_model_path(path, pretrained_generator_path)


def load_model(path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu"):
    """The embedded QM9 generator (None), a generator file (``model.pt``) or a training run folder."""
    from molgen.checkpoint import load_generator

    return load_generator(generator_path(path), device)


def sample(model, n: int = 100, *, seed: int = 0, steps: int | None = None, condition: dict[str, float] | None = None,
           guidance_scale: float = 1.0, precision: str = "fp32", eta: float | None = None,
           temperature: float | None = None, purity: bool | None = None, device: str | torch.device = "cpu",
           **options: Any):
    """``n`` 3D molecules (a :class:`molgen.sampling.Generated`: ``.items`` are RDKit Mols, ``.write(path)`` SDF).

    ``condition``: property targets in QM9 units (e.g. ``{"gap": 4.5}``), with classifier-free ``guidance_scale``;
    ``eta``/``temperature``/``purity`` override the generator's sampler settings (the one place where they are
    settled; ``steps`` is applied by ``generate``); ``options`` go to
    :func:`molgen.sampling.generate` (batch_size, relax, regressors, progress, ...)."""
    from molgen.sampling import canonical_property, generate

    sampler = model.sampler
    changes = {k: v for k, v in (("eta", eta), ("temperature", temperature), ("purity", purity)) if v is not None}
    if changes:
        sampler = dataclasses.replace(sampler, **changes)
    condition = {canonical_property(k): v for k, v in (condition or {}).items()}
    amp = resolve_precision(precision, torch.device(device)) == "bf16"
    return generate(model, n, condition=condition, guidance_scale=guidance_scale, steps=steps, seed=seed,
                    sampler=sampler, device=device, amp=amp, **options)


def evaluate(samples, *, reference_smiles: list[str] | None = None, strain: str | None = None,
             workers: int = 1) -> dict:
    """molgen's registered evaluators on ``samples`` (a ``Generated`` or an SDF/XYZ file): stability, validity,
    bond windows, ...; novelty with ``reference_smiles``; strain with ``strain`` ("mmff"/"xtb")."""
    from molgen.io import molecules_to_batch, read_molecules
    from molgen.metrics import evaluate_molecules

    batch = samples.batch if hasattr(samples, "batch") else molecules_to_batch(read_molecules(samples).mols)
    context = {"train_smiles": reference_smiles, "strain_method": strain, "strain_workers": workers,
               "progress": False}
    return evaluate_molecules(batch, context).to_dict()
