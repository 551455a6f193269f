"""The dataset registry: one registration makes a dataset known to training, evaluation and the CLI."""

import argparse

import networkx as nx
import pytest

from graphgen.cli import dataset_name
from graphgen.data import GRAPH_DATASETS, GraphDataset
from graphgen.datasets import (
    DATASETS,
    DatasetSpec,
    dataset_spec,
    load_test_data,
    load_training_data,
    node_count_histogram,
    register_dataset,
)
from graphgen.diffusion import DataConfig, GraphGenConfig


def test_benchmarks_are_registered_with_their_kind():
    assert set(GRAPH_DATASETS) | {"QM9", "ZINC250k", "synthetic_community", "synthetic_grid"} == set(DATASETS)
    assert DATASETS["QM9"].atoms == ("C", "N", "O", "F") and DATASETS["QM9"].is_molecule
    assert not DATASETS["grid"].is_molecule
    cfg = GraphGenConfig(data=DataConfig(name="ZINC250k", max_feat_num=9))
    assert cfg.atom_types == DATASETS["ZINC250k"].atoms
    from graphgen.diffusion import MOLECULE_DATASETS  # the older name: a view of the registry

    assert MOLECULE_DATASETS == {"QM9": DATASETS["QM9"].atoms, "ZINC250k": DATASETS["ZINC250k"].atoms}


def test_a_registered_dataset_serves_training_evaluation_and_the_cli():
    paths = [nx.path_graph(n) for n in (3, 4, 5, 6)]

    def train(cfg, data_dir):
        return GraphDataset(paths[1:], cfg.max_node_num, cfg.max_feat_num)

    spec = register_dataset(DatasetSpec("paths_test", train, lambda cfg, data_dir: (paths[:1], None)))
    try:
        cfg = DataConfig(name="paths_test", max_node_num=8, max_feat_num=3)
        data = load_training_data(cfg)
        assert len(data) == 3
        assert node_count_histogram(data, 8).tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 0]
        test, train_smiles = load_test_data(cfg)
        assert test[0].number_of_nodes() == 3 and train_smiles is None
        assert dataset_name("Paths-Test") == "paths_test"
        with pytest.raises(ValueError, match="named 'paths_test' is already registered"):
            register_dataset(spec)
        register_dataset(spec, replace=True)
    finally:
        DATASETS.unregister("paths_test")
    with pytest.raises(ValueError, match="unknown dataset 'paths_test'; choose from"):
        dataset_spec("paths_test")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown dataset"):
        dataset_name("paths_test")


def test_molecule_feature_count_is_checked():
    with pytest.raises(ValueError, match="max_feat_num=5 but QM9 has 4 atom types"):
        load_training_data(DataConfig(name="QM9", max_feat_num=5))
