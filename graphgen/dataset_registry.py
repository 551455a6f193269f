"""The registry of graphgen's datasets (filled by :mod:`graphgen.datasets` with the benchmarks).

A leaf module, so that the configuration (:mod:`graphgen.diffusion`, which reads a molecule set's atom vocabulary)
and the loaders can both read it without importing each other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from shared.registry import Registry

if TYPE_CHECKING:
    from torch.utils.data import Dataset

__all__ = ["DatasetSpec", "DATASETS", "register_dataset", "dataset_spec"]

DataDir = str | os.PathLike | None


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset graphgen can train on and evaluate against.

    ``train(cfg, data_dir)`` gives the training split as GDSS tensors (``{"x", "adj", "flags"}`` per item);
    ``test(cfg, data_dir)`` gives ``(test graphs, None)`` for graph sets or ``(test SMILES, train SMILES)`` for
    molecule sets; ``atoms`` is a molecule set's atom vocabulary (the one-hot feature order), None for graphs.
    """

    name: str
    train: Callable[[Any, DataDir], Dataset]  # cfg: a graphgen.diffusion.DataConfig
    test: Callable[[Any, DataDir], tuple[list, list[str] | None]]
    atoms: tuple[str, ...] | None = None

    @property
    def is_molecule(self) -> bool:
        return self.atoms is not None


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    """Make ``spec.name`` known to training, sampling (node counts), evaluation and the CLI's ``--dataset``."""
    return DATASETS.register(spec.name, spec, replace=replace)


def dataset_spec(name: str) -> DatasetSpec:
    """The registered dataset ``name``; an unknown name is a ValueError listing the known ones."""
    return DATASETS[name]
