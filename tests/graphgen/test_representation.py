"""Mol <-> tensors and graph <-> tensors: hand-built cases, GDSS decoding rules and round trips."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
from rdkit import Chem

from graphgen.data import community_graphs, grid_graphs
from graphgen.metrics.molecules import canonical_smiles
from graphgen.representation import (
    QM9_ATOMS,
    ZINC250K_ATOMS,
    add_virtual_channel,
    adjacency_to_graphs,
    construct_mol,
    decode_molecules,
    degree_features,
    graphs_to_adjacency,
    mol_to_tensors,
    mols_to_tensors,
    node_flags,
    quantize_bond_orders,
    valence_problem,
)


def test_quantize_bond_orders_uses_gdss_thresholds():
    adj = torch.tensor([-1.0, 0.0, 0.49, 0.5, 1.49, 1.5, 2.49, 2.5, 7.0])
    assert quantize_bond_orders(adj).tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3]


def test_virtual_channel_picks_first_channel_above_threshold():
    x = torch.tensor([[[0.2, 0.7, 0.9, 0.1], [0.1, 0.2, 0.4, 0.49], [0.0, 0.0, 0.0, 0.51]]])
    full = add_virtual_channel(x)
    # row 0: two channels above 0.5 -> the first one (N), not the largest raw value (O)
    assert full.argmax(-1).tolist() == [[1, 4, 3]]


def test_mol_to_tensors_acetic_acid_by_hand():
    mol = Chem.MolFromSmiles("CC(=O)O")  # atoms C0 C1 O2 O3; bonds 0-1 single, 1-2 double, 1-3 single
    x, adj = mol_to_tensors(mol, QM9_ATOMS, 9, virtual_channel=True)
    assert x.shape == (9, 5) and adj.shape == (9, 9)
    assert x.argmax(-1).tolist() == [0, 0, 2, 2, 4, 4, 4, 4, 4]
    expected = torch.zeros(9, 9)
    for i, j, order in [(0, 1, 1), (1, 2, 2), (1, 3, 1)]:
        expected[i, j] = expected[j, i] = order
    assert torch.equal(adj, expected)


def test_mol_to_tensors_kekulizes_aromatic_rings():
    _, adj = mol_to_tensors(Chem.MolFromSmiles("c1ccccc1"), QM9_ATOMS, 9)
    orders = adj[:6, :6][torch.triu(torch.ones(6, 6, dtype=torch.bool), 1)]
    assert sorted(orders[orders > 0].tolist()) == [1, 1, 1, 2, 2, 2]


def test_mol_to_tensors_rejects_bad_input():
    with pytest.raises(ValueError, match="not in the allowed list"):
        mol_to_tensors(Chem.MolFromSmiles("CCl"), QM9_ATOMS, 9)
    with pytest.raises(ValueError, match="max_atoms"):
        mol_to_tensors(Chem.MolFromSmiles("CCCCCCCCCC"), QM9_ATOMS, 9)


def _decode_one(smiles: str, atoms=QM9_ATOMS, max_atoms=9) -> Chem.RWMol:
    x, adj = mol_to_tensors(Chem.MolFromSmiles(smiles), atoms, max_atoms)
    return decode_molecules(x[None], adj[None], atoms)[0]


def test_construct_mol_puts_plus_charge_on_overvalent_nitrogen():
    # nitromethane: charges are not encoded; N (valence 4) gets +1 back, O- comes back as OH (GDSS behaviour)
    mol = _decode_one("C[N+](=O)[O-]")
    assert [a.GetFormalCharge() for a in mol.GetAtoms()] == [0, 1, 0, 0]
    assert valence_problem(mol) is None
    assert Chem.MolToSmiles(mol) == "C[N+](=O)O"
    # tetramethylammonium
    charged = _decode_one("C[N+](C)(C)C")
    assert sum(a.GetFormalCharge() for a in charged.GetAtoms()) == 1 and valence_problem(charged) is None


def test_construct_mol_leaves_overvalent_carbon_uncharged():
    x = torch.zeros(6, 5)
    x[:, 0] = 1  # six carbons
    adj = torch.zeros(6, 6, dtype=torch.long)
    adj[0, 1:] = adj[1:, 0] = 1  # pentavalent centre
    mol = construct_mol(x, adj, QM9_ATOMS)
    assert all(a.GetFormalCharge() == 0 for a in mol.GetAtoms())
    assert valence_problem(mol) == (0, 5)


def test_construct_mol_validates_shapes_and_orders():
    with pytest.raises(ValueError, match="empty column"):
        construct_mol(torch.zeros(3, 4), torch.zeros(3, 3), QM9_ATOMS)
    with pytest.raises(ValueError, match="quantize"):
        construct_mol(torch.zeros(3, 5), torch.full((3, 3), 4), QM9_ATOMS)


def test_decode_uses_lower_triangle_and_drops_empty_slots():
    x = torch.tensor([[[0.9, 0, 0, 0], [0.1, 0.1, 0.1, 0.1], [0, 0, 0.8, 0]]])  # C, empty, O
    adj = torch.zeros(1, 3, 3)
    adj[0, 2, 0] = 1.7  # only the lower triangle is read
    adj[0, 0, 2] = 0.2
    adj[0, 1, 0] = adj[0, 0, 1] = 1.0  # bond to the empty slot disappears with it
    mol = decode_molecules(x, adj, QM9_ATOMS)[0]
    assert Chem.MolToSmiles(mol) == "C=O"


def test_qm9_sample_round_trips_through_tensors():
    from graphgen.data import read_qm9pack_table

    try:
        _, smiles = read_qm9pack_table()
    except FileNotFoundError:
        pytest.skip("qm9pack not installed")
    rng = np.random.default_rng(0)
    sample = [smiles[i] for i in rng.choice(len(smiles), 400, replace=False)]
    mols = [Chem.MolFromSmiles(s) for s in sample]
    x, adj = mols_to_tensors(mols, QM9_ATOMS, 9)
    # perturb like a sampler output: still on the same side of every threshold
    noise = torch.Generator().manual_seed(1)
    x_noisy = x * 0.8 + 0.3 * torch.rand(x.shape, generator=noise)
    adj_noisy = adj + 0.8 * (torch.rand(adj.shape, generator=noise) - 0.5)
    decoded = decode_molecules(x_noisy, adj_noisy, QM9_ATOMS)
    neutral = 0
    for original, mol in zip(mols, decoded):
        if all(a.GetFormalCharge() == 0 for a in original.GetAtoms()):
            neutral += 1
            assert canonical_smiles(mol) == Chem.MolToSmiles(original)
        # charges are not encoded, but the graph (atoms + bond orders) always survives
        x2, adj2 = mol_to_tensors(mol, QM9_ATOMS, 9)
        reference = mol_to_tensors(original, QM9_ATOMS, 9)
        assert torch.equal(x2, reference[0]) and torch.equal(adj2, reference[1])
    assert neutral > 350


def test_zinc_atoms_round_trip():
    smiles = ["O=C(Nc1ccc(Br)cc1)c1ccc(I)s1", "FC(F)(F)c1ccc(P(Cl)Cl)cc1"]
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    x, adj = mols_to_tensors(mols, ZINC250K_ATOMS, 38)
    decoded = decode_molecules(x, adj, ZINC250K_ATOMS)
    assert [canonical_smiles(m) for m in decoded] == [Chem.MolToSmiles(m) for m in mols]


def _edge_set(graph: nx.Graph) -> set[tuple[int, int]]:
    return {tuple(sorted(e)) for e in graph.edges}


def test_generated_graphs_round_trip():
    rng = np.random.default_rng(3)
    graphs = community_graphs(6, rng) + grid_graphs(2, rng, side_range=(3, 5))
    adj = graphs_to_adjacency(graphs, 25)
    assert torch.equal(adj, adj.transpose(1, 2)) and adj.diagonal(dim1=1, dim2=2).abs().sum() == 0
    noisy = adj * 0.7 + 0.4 * torch.rand(adj.shape, generator=torch.Generator().manual_seed(0))
    for original, back in zip(graphs, adjacency_to_graphs(noisy)):
        assert _edge_set(back) == _edge_set(original)
        assert back.number_of_nodes() == original.number_of_nodes()


def test_adjacency_to_graphs_drops_isolated_nodes_and_self_loops():
    adj = torch.zeros(2, 4, 4)
    adj[0, 0, 1] = adj[0, 1, 0] = 0.5  # threshold is inclusive
    adj[0, 3, 3] = 1.0  # self-loop on an otherwise isolated node
    graphs = adjacency_to_graphs(adj)
    assert sorted(graphs[0].nodes) == [0, 1] and _edge_set(graphs[0]) == {(0, 1)}
    assert graphs[1].number_of_nodes() == 1 and graphs[1].number_of_edges() == 0


def test_degree_features_by_hand_with_clipping():
    path = nx.path_graph(3)
    star = nx.star_graph(5)  # centre degree 5
    adj = graphs_to_adjacency([path, star], 6)
    flags = node_flags([3, 6], 6)
    x = degree_features(adj, 3, flags)
    assert x[0].argmax(-1)[:3].tolist() == [1, 2, 1]
    assert x[0, 3:].sum() == 0  # padded slots are empty
    assert x[1, 0].tolist() == [0, 0, 1]  # degree 5 clipped to the last class
    assert torch.equal(x.sum(-1), flags)


def test_graphs_to_adjacency_rejects_oversized_graph():
    with pytest.raises(ValueError, match="max_node_num"):
        graphs_to_adjacency([nx.path_graph(5)], 4)
