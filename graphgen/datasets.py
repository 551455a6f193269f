"""The dataset a :class:`~graphgen.diffusion.DataConfig` names: training split, test split, node-count histogram.

Used by training, by sampling and GDSS import (node counts of the training set), and by evaluation (test split).
It sits below :mod:`graphgen.train` and :mod:`graphgen.checkpoint` so that neither has to import the other's
data code (``graphgen.train`` re-exports these names for older callers).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from graphgen.dataset_registry import DATASETS, DataDir, DatasetSpec, dataset_spec, register_dataset
from graphgen.config import DataConfig
from shared.config import config_to_dict

__all__ = ["DatasetSpec", "DATASETS", "register_dataset", "dataset_spec", "SYNTHETIC", "load_training_data",
           "load_test_data", "node_count_histogram", "sampling_node_counts"]

def _check_features(cfg: DataConfig, spec: DatasetSpec) -> None:
    if spec.atoms is not None and cfg.max_feat_num != len(spec.atoms):
        raise ValueError(f"data.max_feat_num={cfg.max_feat_num} but {cfg.name} has {len(spec.atoms)} atom types")


def load_training_data(cfg: DataConfig, data_dir: DataDir = None) -> Dataset:
    """The training split of ``cfg.name`` as GDSS tensors ``{"x", "adj", "flags"}`` per item."""
    spec = dataset_spec(cfg.name)
    _check_features(cfg, spec)
    return spec.train(cfg, data_dir)


def load_test_data(cfg: DataConfig, data_dir: DataDir = None) -> tuple[list, list[str] | None]:
    """``(test graphs, None)`` for graph sets or ``(test SMILES, train SMILES)`` for molecule sets."""
    return dataset_spec(cfg.name).test(cfg, data_dir)


# --- the benchmark datasets --------------------------------------------------------------------------------------


def _graph_benchmark(name: str) -> DatasetSpec:
    def train(cfg: DataConfig, data_dir: DataDir) -> Dataset:
        from graphgen import data

        return data.GraphDataset(data.load_graph_dataset(name, data_dir)[0], cfg.max_node_num, cfg.max_feat_num)

    def test(cfg: DataConfig, data_dir: DataDir) -> tuple[list, None]:
        from graphgen import data

        return data.load_graph_dataset(name, data_dir)[1], None

    return DatasetSpec(name, train, test)


def _molecule_benchmark(name: str, atoms: tuple[str, ...], loader: str) -> DatasetSpec:
    def splits(data_dir: DataDir):
        from graphgen import data

        return getattr(data, loader)(data_dir=data_dir)

    def train(cfg: DataConfig, data_dir: DataDir) -> Dataset:
        from graphgen import data

        return data.MoleculeDataset(splits(data_dir)[0])

    def test(cfg: DataConfig, data_dir: DataDir) -> tuple[list, list[str]]:
        train_split, test_split = splits(data_dir)
        return test_split.smiles, train_split.smiles

    return DatasetSpec(name, train, test, atoms)


def _synthetic_graphs(cfg: DataConfig) -> list:
    from graphgen.data import community_graphs, grid_graphs

    rng = np.random.default_rng(cfg.seed)
    if cfg.name == "synthetic_community":
        return community_graphs(cfg.num_graphs, rng, node_range=(min(12, cfg.max_node_num), cfg.max_node_num))
    side = max(2, int(math.isqrt(cfg.max_node_num)))
    return grid_graphs(cfg.num_graphs, rng, side_range=(2, side))


def _synthetic(name: str) -> DatasetSpec:
    def train(cfg: DataConfig, data_dir: DataDir) -> Dataset:
        from graphgen import data

        return data.GraphDataset(_synthetic_graphs(cfg), cfg.max_node_num, cfg.max_feat_num)

    def test(cfg: DataConfig, data_dir: DataDir) -> tuple[list, None]:
        # a fresh draw with another seed stands in for a test split
        return _synthetic_graphs(DataConfig(**{**config_to_dict(cfg), "seed": cfg.seed + 1})), None

    return DatasetSpec(name, train, test)


for _name in ("community_small", "ego_small", "grid", "ENZYMES"):  # graphgen.data.GRAPH_DATASETS, GDSS's files
    register_dataset(_graph_benchmark(_name))
register_dataset(_molecule_benchmark("QM9", ("C", "N", "O", "F"), "load_qm9"))
register_dataset(_molecule_benchmark("ZINC250k", ("C", "N", "O", "F", "P", "S", "Cl", "Br", "I"), "load_zinc250k"))
SYNTHETIC = ("synthetic_community", "synthetic_grid")
for _name in SYNTHETIC:
    register_dataset(_synthetic(_name))


def node_count_histogram(dataset: Dataset, max_node_num: int) -> torch.Tensor:
    """``counts[k]`` = number of items with k real nodes (from the dataset's node flags)."""
    if hasattr(dataset, "flags"):
        sizes = torch.as_tensor(dataset.flags).sum(-1).round().long()
    elif hasattr(dataset, "data") and hasattr(dataset.data, "atoms"):
        sizes = torch.as_tensor((dataset.data.atoms >= 0).sum(-1), dtype=torch.long)
    else:
        sizes = torch.tensor([int(dataset[i]["flags"].sum().round()) for i in range(len(dataset))])
    if sizes.numel() and int(sizes.max()) > max_node_num:
        raise ValueError(f"dataset has a graph with {int(sizes.max())} nodes > max_node_num={max_node_num}")
    return torch.bincount(sizes, minlength=max_node_num + 1)


NO_NODE_COUNTS = ("this model stores no node-count statistics: pass --node-counts FILE (SMILES or SDF of the "
                  "training set, or a JSON histogram) or --data-dir with the training data")


def sampling_node_counts(bundle, node_counts: str | os.PathLike | None = None,
                         data_dir: str | os.PathLike | None = None) -> torch.Tensor | None:
    """The graph-size histogram sampling draws from: ``node_counts`` (a SMILES/SDF file of the training set or a
    JSON histogram), else None when the model stores its own, else the training split under ``data_dir``.

    Raises ValueError (saying what to pass) when none of these is available."""
    from shared.paths import resolve_data_dir

    max_nodes = bundle.config.data.max_node_num
    if node_counts is not None:
        from graphgen.data import node_counts_from_file

        return node_counts_from_file(node_counts, max_nodes)
    if bundle.node_counts is not None:
        return None
    if data_dir is None and resolve_data_dir(None) is None:
        raise ValueError(NO_NODE_COUNTS)
    try:
        return node_count_histogram(load_training_data(bundle.config.data, data_dir), max_nodes)
    except FileNotFoundError as err:
        raise ValueError(f"{NO_NODE_COUNTS} ({err})") from None
