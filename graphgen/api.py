"""graphgen's side of the model -> samples contract (``shared.contract``): load_model, sample, evaluate."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from graphgen.checkpoint import ModelBundle, default_model_path
from graphgen.checkpoint import load_model as _load_model_file
from graphgen.io import read_samples, write_samples
from graphgen.sampling import resolve_preset, sample_graphs

__all__ = ["GraphSamples", "evaluate", "load_model", "sample"]


@dataclass
class GraphSamples:
    """Generated RDKit molecules (molecule datasets) or networkx graphs, with the settings that made them."""

    items: list[Any]
    is_molecule: bool
    nfe: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def write(self, path: str | os.PathLike) -> Path:
        """.smi/.txt/.sdf for molecules, .json/.graphml for graphs (atomic)."""
        return write_samples(path, self.items)


def load_model(path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
               use_ema: bool | None = None) -> ModelBundle:
    """The embedded QM9 model (None), a model file or a training run folder."""
    # graphgen's loader takes files and run folders itself (a run still training: its newest checkpoint)
    return _load_model_file(default_model_path() if path is None else path, use_ema=use_ema, device=device)


def sample(model: ModelBundle, n: int = 100, *, seed: int = 0, steps: int | None = None,
           condition: dict[str, float] | None = None, guidance_scale: float = 1.0, precision: str | None = None,
           preset: str = "gdss", sampler: str | None = None, batch_size: int = 1000,
           device: str | torch.device = "cpu", progress: bool = False, **options: Any) -> GraphSamples:
    """``n`` graphs/molecules. GDSS models are unconditional: ``condition`` is refused, not ignored. ``preset``
    "fast" is S4 at 60 steps, 6/7 of the corrector noise, bf16 where native; explicit ``steps``, ``sampler`` and
    ``precision`` win; ``options`` go to :func:`graphgen.sampling.sample_graphs` (snr, snr_x, scale_eps,
    node_counts, ...)."""
    if condition:
        raise ValueError("graphgen's models are unconditional (GDSS): condition= is not supported; molgen and "
                         "crysgen models take conditions")
    if guidance_scale != 1.0:
        raise ValueError("guidance_scale needs a conditional model; graphgen's are unconditional")
    settings = resolve_preset(model, preset, sampler=sampler, steps=steps, precision=precision,
                              scale_eps=options.pop("scale_eps", None))
    out = sample_graphs(model, n, seed=seed, batch_size=batch_size, device=device, progress=progress,
                        **settings, **options)
    return GraphSamples(out.items, out.is_molecule, out.nfe,
                        {"preset": preset, **settings, **{k: v for k, v in options.items() if k != "node_counts"},
                         "n": n, "seed": seed, "nfe": out.nfe, "dataset": model.config.data.name,
                         "model": model.source})


def evaluate(samples: GraphSamples | str | os.PathLike, *, dataset: str | None = None,
             data_dir: str | os.PathLike | None = None, fcd: bool = True, device: str = "cpu") -> dict:
    """Metrics of ``samples`` (a :class:`GraphSamples` or a samples file) against ``dataset``'s test split
    (default: the dataset the samples were generated for; QM9 for a file). Novelty/FCD need the data."""
    from graphgen.evaluation import evaluate_samples

    if isinstance(samples, GraphSamples):
        items, is_molecule = samples.items, samples.is_molecule
        dataset = dataset or samples.settings.get("dataset")
    else:
        items, is_molecule = read_samples(samples)
    metrics, _, skipped = evaluate_samples(items, is_molecule, dataset or "QM9", data_dir=data_dir, fcd=fcd,
                                           device=device)
    if skipped:
        metrics["skipped"] = {"novelty_fcd": skipped}
    return metrics
