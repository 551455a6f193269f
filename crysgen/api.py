"""crysgen's side of the model -> samples contract (``shared.contract``): load_model, sample, evaluate."""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from crysgen.checkpoint import CrystalModel, default_checkpoint
from crysgen.checkpoint import load_model as _load_model_file
from crysgen.sampling import SampleResult, sample_crystals
from shared.contract import resolve_model_path

__all__ = ["evaluate", "load_model", "sample"]


def load_model(path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu") -> CrystalModel:
    """The embedded perov-5 model (None), a crysgen model file or a training run folder (its model.pt)."""
    return _load_model_file(resolve_model_path(path, default_checkpoint), device)


def sample(model: CrystalModel, n: int = 100, *, seed: int = 0, steps: int | None = None,
           condition: dict[str, float] | None = None, guidance_scale: float = 1.0, precision: str = "fp32",
           **options: Any) -> SampleResult:
    """``n`` crystals (``.items`` are pymatgen Structures, ``.write(folder)`` CIFs + summary.csv).

    ``condition``: raw property targets (e.g. ``{"heat_ref": -0.5}``) with classifier-free ``guidance_scale``;
    ``options`` go to :func:`crysgen.sampling.sample_crystals` (batch_size, churn, elements, symmetrize, ...)."""
    return sample_crystals(model, n, steps=steps, guidance=condition or None, guidance_scale=guidance_scale,
                           seed=seed, precision=precision, **options)


def evaluate(samples: SampleResult | str | os.PathLike, *, dataset: str = "perov_5",
             reference: Sequence[Any] | str = "test", train: Sequence[Any] | str | None = None,
             data_dir: str | os.PathLike | None = None, seed: int = 0) -> dict:
    """CDVAE-protocol metrics (validity, COV, property distances, novelty with ``train``) of ``samples`` (a
    :class:`SampleResult` or a folder/CSV of CIFs). ``reference``/``train``: structures or split names of
    ``dataset``. Returns ``{"metrics", "skipped", "protocol", "space_groups"}``."""
    from crysgen.data import load_dataset
    from crysgen.evaluation import evaluate_crystals
    from crysgen.io import read_structures
    from crysgen.train import default_cache_dir

    cache = default_cache_dir()

    def split(value):
        if value is None or not isinstance(value, str):
            return value
        return load_dataset(dataset, value, data_dir, cache_dir=cache).structures

    structures = samples.structures if isinstance(samples, SampleResult) else read_structures(samples).structures
    return evaluate_crystals(structures, reference=split(reference), train=split(train), dataset=dataset, seed=seed,
                             reference_cache_dir=cache / "fingerprints")
