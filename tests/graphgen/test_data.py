"""graphgen datasets: JSON graph lists and the GDSS split, generators, padded tensors, molecule preprocessing,
caching and splits (ZINC250k on a CSV the test writes; QM9 split counts on the real data)."""

from __future__ import annotations

import json
import warnings

import networkx as nx
import numpy as np
import pytest
import torch
from rdkit import Chem

import graphgen.data as data_module
from graphgen.data import (
    GRAPH_DATASETS,
    ZINC250K_URL,
    GraphDataset,
    MoleculeDataset,
    community_graphs,
    grid_graphs,
    load_graph_dataset,
    load_graph_list,
    load_zinc250k,
    read_qm9pack_table,
    smiles_to_molecule_data,
    split_graphs,
)
from graphgen.representation import QM9_ATOMS, ZINC250K_ATOMS, mol_to_tensors


def _write_graphs(root, name, graphs):
    folder = root / "graphs"
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"name": name, "source": "test", "graphs": graphs}
    (folder / f"{name}.json").write_text(json.dumps(payload))


def test_load_graph_list_reads_json(tmp_path):
    _write_graphs(
        tmp_path, "toy", [{"num_nodes": 3, "edges": [[0, 1], [1, 2]]}, {"num_nodes": 2, "edges": []}]
    )
    graphs = load_graph_list("toy", tmp_path)
    assert [sorted(g.edges) for g in graphs] == [[(0, 1), (1, 2)], []]
    assert [g.number_of_nodes() for g in graphs] == [3, 2]


def test_load_graph_list_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="graph dataset 'missing'"):
        load_graph_list("missing", tmp_path)
    _write_graphs(tmp_path, "bad", [{"num_nodes": 2, "edges": [[0, 5]]}])
    with pytest.raises(ValueError, match="outside nodes"):
        load_graph_list("bad", tmp_path)
    with pytest.raises(ValueError, match="unknown graph dataset"):
        load_graph_dataset("toy", tmp_path)


def test_split_is_first_twenty_percent_without_shuffle():
    graphs = [nx.path_graph(n) for n in range(2, 13)]  # 11 graphs -> int(2.2) = 2 test graphs
    train, test = split_graphs(graphs)
    assert test == graphs[:2] and train == graphs[2:]


@pytest.mark.data
def test_real_graph_benchmarks_split_counts(reference_data):
    expected = {"community_small": (80, 20), "ego_small": (160, 40), "grid": (80, 20), "ENZYMES": (470, 117)}
    for name, (n_train, n_test) in expected.items():
        train, test = load_graph_dataset(name, reference_data)
        assert (len(train), len(test)) == (n_train, n_test)
        max_node_num, max_feat_num = GRAPH_DATASETS[name]
        graphs = train + test
        assert max(g.number_of_nodes() for g in graphs) <= max_node_num
        assert max(d for g in graphs for _, d in g.degree) < max_feat_num  # no clipping needed on real data
    first_test = load_graph_list("grid", reference_data)[0]
    assert nx.utils.graphs_equal(first_test, load_graph_dataset("grid", reference_data)[1][0])


def test_community_graphs_statistics_and_determinism():
    graphs = community_graphs(300, np.random.default_rng(0))
    again = community_graphs(300, np.random.default_rng(0))
    assert all(sorted(a.edges) == sorted(b.edges) for a, b in zip(graphs, again))
    sizes = np.array([g.number_of_nodes() for g in graphs])
    assert set(sizes) == {12, 14, 16, 18, 20}
    intra_edges = intra_pairs = inter_edges = 0
    for g in graphs:
        half = g.number_of_nodes() // 2
        edges = np.array(g.edges)
        same = (edges[:, 0] < half) == (edges[:, 1] < half)
        intra_edges += same.sum()
        intra_pairs += half * (half - 1)
        inter_edges += (~same).sum()
        assert (~same).sum() >= 1  # every graph has a bridge
    assert abs(intra_edges / intra_pairs - 0.7) < 0.02
    # expected bridges per graph: size^2 * 0.1 / size = size / 10 (plus the forced one when none is drawn)
    assert 0.9 < inter_edges / len(graphs) < 2.0


def test_grid_graphs_are_grids():
    graphs = grid_graphs(20, np.random.default_rng(1))
    for g in graphs:
        degrees = sorted(d for _, d in g.degree)
        n = g.number_of_nodes()
        assert degrees[:4] == [2, 2, 2, 2] and max(degrees) <= 4
        # an m x n grid has m(n-1) + n(m-1) edges: recover m, n from the node count and check
        sides = [(m, n // m) for m in range(10, 20) if n % m == 0 and 10 <= n // m <= 19]
        assert any(m * (k - 1) + k * (m - 1) == g.number_of_edges() for m, k in sides)
    assert len({g.number_of_nodes() for g in graphs}) > 5


def test_graph_dataset_tensors():
    graphs = [nx.path_graph(4), nx.cycle_graph(5)]
    dataset = GraphDataset(graphs, max_node_num=6, max_feat_num=3)
    item = dataset[1]
    assert item["x"].shape == (6, 3) and item["adj"].shape == (6, 6)
    assert item["flags"].tolist() == [1, 1, 1, 1, 1, 0]
    assert item["x"][:5].argmax(-1).tolist() == [2] * 5
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert torch.equal(batch["x"].argmax(-1)[0, :4], batch["adj"][0].sum(-1)[:4].long())


TOY_SMILES = ["CCO", "not_a_smiles", "c1ccccc1", "C[Si](C)C", "CCCCCCCCCC", "OC(=O)C#N", "[NH3+]CC([O-])=O"]


def test_smiles_to_molecule_data_reports_failures_and_matches_encoder():
    data, failures = smiles_to_molecule_data(TOY_SMILES, QM9_ATOMS, 9, rows=np.arange(10, 17))
    assert [(row, reason.split()[0]) for row, _, reason in failures] == [
        (11, "unparsable"),
        (13, "element"),
        (14, "10"),
    ]
    assert data.rows.tolist() == [10, 12, 15, 16]
    x, adj = data.to_tensors()
    for i, row in enumerate(data.rows):
        mol = Chem.MolFromSmiles(
            Chem.MolToSmiles(Chem.MolFromSmiles(TOY_SMILES[row - 10]), isomericSmiles=False)
        )
        ref_x, ref_adj = mol_to_tensors(mol, QM9_ATOMS, 9)
        assert torch.equal(x[i], ref_x) and torch.equal(adj[i], ref_adj)
    assert data.smiles[1] == "c1ccccc1"
    sub = data.subset(np.array([False, True, False, True]))
    sub_x, sub_adj = sub.to_tensors()
    assert torch.equal(sub_x, x[[1, 3]]) and torch.equal(sub_adj, adj[[1, 3]])
    dataset = MoleculeDataset(data, virtual_channel=True)
    item = dataset[2]
    assert torch.equal(item["x"][:, :4], x[2]) and torch.equal(item["adj"], adj[2])
    assert item["flags"].tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0]
    assert torch.equal(item["x"][:, 4], 1 - item["flags"])


def _write_zinc(tmp_path, smiles, test_rows):
    csv_path = tmp_path / "zinc.csv"
    lines = ["smiles,logP,qed,SAS"] + [f'"{s}\n",1.0,0.5,2.0' for s in smiles]  # the real file quotes "...\n"
    csv_path.write_text("\n".join(lines) + "\n")
    split = tmp_path / "split.json"
    split.write_text(json.dumps(test_rows))
    return csv_path, split


def test_load_zinc250k_on_small_csv_with_cache(tmp_path, monkeypatch):
    smiles = ["CC[NH+](C)C", "O=C([O-])c1ccc(Br)cc1", "bad((", "C[Si](C)(C)C", "Clc1ccc(I)cc1", "CS(=O)(=O)N"]
    csv_path, split = _write_zinc(tmp_path, smiles, [1, 4])
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="skipped 2 of 6"):
        train, test = load_zinc250k(csv_path, split_path=split, cache_dir=cache)
    assert train.rows.tolist() == [0, 5] and test.rows.tolist() == [1, 4]
    assert test.smiles == [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in (smiles[1], smiles[4])]
    assert train.atom_types == ZINC250K_ATOMS and train.max_atoms == 38
    assert len(list(cache.iterdir())) == 1

    def fail(*args, **kwargs):
        raise AssertionError("cache was not used")

    monkeypatch.setattr(data_module, "smiles_to_molecule_data", fail)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train2, test2 = load_zinc250k(csv_path, split_path=split, cache_dir=cache)
    assert np.array_equal(train2.atoms, train.atoms) and train2.smiles == train.smiles
    assert np.array_equal(test2.bonds, test.bonds)
    # a changed source file changes the key
    csv_path.write_text(csv_path.read_text().replace("CS(=O)(=O)N", "CCN"))
    monkeypatch.undo()
    with pytest.warns(UserWarning):
        train3, _ = load_zinc250k(csv_path, split_path=split, cache_dir=cache)
    assert train3.smiles[-1] == "CCN" and len(list(cache.iterdir())) == 2


def test_load_zinc250k_missing_csv_names_the_url(tmp_path):
    with pytest.raises(FileNotFoundError, match="chemical_vae"):
        load_zinc250k(tmp_path / "nope.csv", split_path=tmp_path / "x.json", cache_dir=tmp_path)
    assert ZINC250K_URL.endswith("250k_rndm_zinc_drugs_clean_3.csv")


@pytest.mark.data
def test_qm9_gdss_split_counts(reference_data):
    try:
        rows, _ = read_qm9pack_table()
    except FileNotFoundError:
        pytest.skip("qm9pack not installed")
    payload = json.loads((reference_data / "qm9" / "valid_idx_qm9.json").read_text())
    test_rows = np.array([int(i) for i in payload["valid_idxs"]])
    assert len(rows) == 130_831 and rows[0] == 0 and rows[-1] == 133_884
    is_test = np.isin(rows, test_rows)
    assert (int((~is_test).sum()), int(is_test.sum())) == (117_917, 12_914)


@pytest.mark.slow
@pytest.mark.data
def test_load_qm9_full_preprocessing(reference_data, tmp_path):
    from graphgen.data import load_qm9

    train, test = load_qm9(reference_data, cache_dir=tmp_path)  # ~40 s: every molecule parses
    assert (len(train), len(test)) == (117_917, 12_914)
    assert set(np.unique(train.atoms).tolist()) == {-1, 0, 1, 2, 3}
