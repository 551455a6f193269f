"""train -> model file -> sample end to end with tiny networks; determinism, masks, resume, writers, NaN check."""

import json

import networkx as nx
import numpy as np
import pytest
import torch
from rdkit import Chem

from graphgen.checkpoint import ModelBundle, load_model
from graphgen.data import MoleculeDataset, smiles_to_molecule_data
from graphgen.diffusion import GraphGenConfig, build_model
from graphgen.sampling import draw_node_flags, read_samples, sample_graphs, write_samples
from graphgen.train import train
from shared.config import load_config

TINY = ["model.depth=2", "model.nhid=8", "model.adim=8", "model.num_layers=2", "train.log_every=5",
        "train.checkpoint_every=5", "sampler.steps=12"]


def _graph_config(steps=10, *extra):
    return load_config(GraphGenConfig, None, ["data.name=synthetic_community", "data.num_graphs=24",
                                              "data.max_node_num=12", "data.max_feat_num=6",
                                              "data.batch_size=8", f"train.max_steps={steps}", *TINY, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    path = train(_graph_config(), run, device="cpu", progress=False)
    return run, path


def test_run_dir_is_self_describing(trained):
    run, path = trained
    assert path == run / "model.pt"
    for name in ("config.yaml", "node_counts.json", "log.jsonl"):
        assert (run / name).is_file()
    assert list((run / "checkpoints").glob("ckpt-*.pt"))
    counts = json.loads((run / "node_counts.json").read_text())
    assert len(counts) == 13 and sum(counts) == 24 and set(np.nonzero(counts)[0]) <= {12}
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"loss", "loss_x", "loss_adj"} <= set(records[-1])
    bundle = load_model(path)
    assert bundle.used_ema and bundle.node_counts.tolist() == counts


def test_sampling_respects_masks_and_is_deterministic(trained):
    bundle = load_model(trained[1])
    out = sample_graphs(bundle, 5, batch_size=2, seed=3, return_tensors=True)
    assert len(out.items) == 5 and all(isinstance(g, nx.Graph) for g in out.items)
    assert out.nfe == 3 * 12 * 2  # 3 batches, 12 steps, predictor + corrector
    x, adj, flags = out.x, out.adj, out.flags
    assert torch.isfinite(x).all() and torch.isfinite(adj).all()
    pad = flags == 0
    assert (x[pad] == 0).all()
    assert (adj * (1 - flags[:, :, None] * flags[:, None, :]) == 0).all()
    torch.testing.assert_close(adj, adj.transpose(1, 2))
    assert (torch.diagonal(adj, dim1=1, dim2=2) == 0).all()
    assert all(g.number_of_nodes() <= int(f.sum()) for g, f in zip(out.items, flags))
    again = sample_graphs(bundle, 5, batch_size=2, seed=3, return_tensors=True)
    assert torch.equal(again.adj, adj) and torch.equal(again.x, x)
    other = sample_graphs(bundle, 5, batch_size=2, seed=4, return_tensors=True)
    assert not torch.equal(other.adj, adj)


def test_node_features_get_their_own_snr(trained):
    """sampler.snr_x gives the node-feature corrector its own strength; an explicit snr alone means both (GDSS)."""
    import dataclasses

    bundle = load_model(trained[1])

    def run(b, **kw):
        return sample_graphs(b, 4, seed=5, return_tensors=True, **kw)

    gdss = run(bundle)
    assert bundle.config.sampler.snr_x is None
    same = run(bundle, snr_x=bundle.config.sampler.snr)  # x's own value equal to snr: bit for bit GDSS
    assert torch.equal(same.x, gdss.x) and torch.equal(same.adj, gdss.adj)
    own = dataclasses.replace(bundle, config=dataclasses.replace(
        bundle.config, sampler=dataclasses.replace(bundle.config.sampler, snr_x=0.0)))
    quiet = run(own)  # the model's own snr_x is used by default...
    assert torch.equal(quiet.x, run(bundle, snr_x=0.0).x) and not torch.equal(quiet.x, gdss.x)
    explicit = run(own, snr=bundle.config.sampler.snr)  # ...and an explicit snr alone overrides it for both
    assert torch.equal(explicit.x, gdss.x) and torch.equal(explicit.adj, gdss.adj)


def test_batches_are_cropped_to_their_largest_graph_and_order_is_kept(trained):
    """Each batch runs on as many nodes as its largest graph (seen through the score network's input shapes);
    outputs come back padded to max_node_num, aligned with the drawn node counts."""
    bundle = load_model(trained[1])
    seen = []
    hook = bundle.model.adj_net.register_forward_hook(lambda module, args, out: seen.append(out.shape[-1]))
    try:
        small = torch.zeros(13)
        small[3] = 1
        out = sample_graphs(bundle, 4, batch_size=2, steps=2, seed=1, return_tensors=True, node_counts=small)
        assert set(seen) == {3} and out.x.shape[1] == 12 and out.adj.shape[1:] == (12, 12)
        mixed = torch.zeros(13)
        mixed[[3, 12]] = 1
        seen.clear()
        out = sample_graphs(bundle, 8, batch_size=2, steps=2, seed=1, return_tensors=True, node_counts=mixed)
    finally:
        hook.remove()
    sizes = out.flags.sum(-1).long()
    assert set(sizes.tolist()) == {3, 12} and 3 in seen  # sorted by size: some batch holds only 3-node graphs
    real = out.flags == 1
    assert (out.x[~real] == 0).all() and (out.x[real] != 0).any(-1).all()  # padding where the flags say
    assert all(g.number_of_nodes() <= int(n) for g, n in zip(out.items, sizes))


def test_s4_sampler_one_evaluation_per_step(trained):
    bundle = load_model(trained[1], use_ema=False)
    assert not bundle.used_ema
    out = sample_graphs(bundle, 3, sampler="s4", steps=7, seed=0)
    assert out.nfe == 7 and len(out.items) == 3


@pytest.mark.parametrize("sampler, nfe", [("ode-euler", 6), ("ode-heun", 12)])
def test_probability_flow_ode_samplers(trained, sampler, nfe):
    bundle = load_model(trained[1])
    out = sample_graphs(bundle, 3, sampler=sampler, steps=6, seed=0, return_tensors=True)
    assert out.nfe == nfe and len(out.items) == 3
    assert torch.isfinite(out.adj).all() and torch.equal(out.adj, out.adj.transpose(1, 2))
    again = sample_graphs(bundle, 3, sampler=sampler, steps=6, seed=0, return_tensors=True)
    assert torch.equal(out.adj, again.adj)  # deterministic given the seed of the prior draw
    with pytest.raises(ValueError, match="sampler must be one of"):
        sample_graphs(bundle, 3, sampler="ode-rk9", steps=6)


def test_resume_continues_exactly(trained, tmp_path):
    _, full = trained
    run = tmp_path / "resumed"
    train(_graph_config(), run, device="cpu", progress=False, steps=5)
    path = train(_graph_config(), run, device="cpu", progress=False)
    a, b = torch.load(full, weights_only=True), torch.load(path, weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]:
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    with pytest.raises(ValueError, match="different config"):
        train(_graph_config(12), run, device="cpu", progress=False)


def test_node_flags_follow_the_histogram():
    g = torch.Generator().manual_seed(0)
    flags = draw_node_flags(torch.tensor([0, 0, 3, 0, 1]), 400, 5, g)
    sizes = flags.sum(1)
    assert set(sizes.tolist()) == {2.0, 4.0}
    assert abs(float((sizes == 2).float().mean()) - 0.75) < 0.07
    assert (flags[:, :-1] >= flags[:, 1:]).all()  # prefix masks
    with pytest.raises(ValueError, match="histogram"):
        draw_node_flags(torch.zeros(5), 3, 4, g)
    # empty graphs (entry 0) are never drawn: they would be empty SMILES; a histogram of only those is refused
    sizes = draw_node_flags(torch.tensor([5.0, 0, 1]), 200, 2, g).sum(1)
    assert (sizes == 2).all()
    with pytest.raises(ValueError, match="at least one node"):
        draw_node_flags(torch.tensor([3.0, 0, 0]), 3, 2, g)


class _NaNNet(torch.nn.Module):
    def forward(self, x, adj, flags, t):
        bad = torch.full_like(x, float("nan")) if float(t[0]) < 0.5 else torch.zeros_like(x)
        return bad, torch.zeros_like(adj)


def test_nan_during_sampling_names_the_step(trained):
    bundle = load_model(trained[1])
    broken = ModelBundle(bundle.config, _NaNNet(), bundle.node_counts, False)
    with pytest.raises(FloatingPointError, match=r"sampling step \d+/12"):
        sample_graphs(broken, 2, seed=0)


def test_graph_writers_round_trip(tmp_path):
    graphs = [nx.path_graph(3), nx.cycle_graph(5), nx.complete_graph(4)]
    for suffix in (".json", ".graphml"):
        path = write_samples(tmp_path / f"g{suffix}", graphs)
        back, is_mol = read_samples(path)
        assert not is_mol and len(back) == 3
        for a, b in zip(graphs, back):
            assert nx.is_isomorphic(a, b)
    with pytest.raises(ValueError, match="unknown sample file type"):
        write_samples(tmp_path / "g.csv", graphs)
    with pytest.raises(FileNotFoundError):
        read_samples(tmp_path / "missing.smi")


def test_molecule_pipeline_and_writers(tmp_path):
    smiles = ["CCO", "C1=CC=CC=C1", "CC(=O)N", "C#N", "CCOC", "OC(F)F", "CNC(C)=O", "C1CC1O"]
    data, failures = smiles_to_molecule_data(smiles, ("C", "N", "O", "F"), 9)
    assert not failures
    cfg = load_config(GraphGenConfig, None, ["data.name=QM9", "data.max_node_num=9", "data.max_feat_num=4",
                                             "data.batch_size=4", "train.max_steps=4", "sde.x.type=VE",
                                             "sde.adj.type=VE", *TINY])
    path = train(cfg, tmp_path / "mol", dataset=MoleculeDataset(data), device="cpu", progress=False)
    out = sample_graphs(load_model(path), 4, steps=5, seed=0)
    assert out.is_molecule and all(isinstance(m, Chem.Mol) for m in out.items)

    mols = [Chem.MolFromSmiles(s) for s in smiles]
    for suffix in (".smi", ".sdf"):
        back, is_mol = read_samples(write_samples(tmp_path / f"m{suffix}", mols))
        assert is_mol
        assert [Chem.CanonSmiles(s) for s in back] == [Chem.CanonSmiles(s) for s in smiles]
    write_samples(tmp_path / "generated.sdf", out.items)  # uncorrected molecules must still be writable


def test_build_model_rejects_time_conditioned_gmh():
    cfg = load_config(GraphGenConfig, None, ["model.x=ScoreNetworkX_GMH", "model.time_conditioned=true"])
    with pytest.raises(ValueError, match="time_conditioned"):
        build_model(cfg)


def test_bf16_networks_give_close_scores_and_keep_the_state_fp32(trained):
    from graphgen.diffusion import build_system, gdss_score_fn

    bundle = load_model(trained[1])
    system = build_system(bundle.config)
    g = torch.Generator().manual_seed(0)
    x, adj = torch.randn(4, 12, 6, generator=g), torch.randn(4, 12, 12, generator=g)
    state, t = {"x": x, "adj": (adj + adj.transpose(1, 2)) / 2}, torch.full((4,), 0.5)
    with torch.no_grad():
        fp32 = gdss_score_fn(bundle.model, system)(state, t)
        bf16 = gdss_score_fn(bundle.model, system, "bf16")(state, t)
    for key in ("x", "adj"):
        assert bf16[key].dtype == torch.float32
        rel = float((bf16[key] - fp32[key]).norm() / fp32[key].norm())
        assert 0 < rel < 0.05  # bf16 has ~3 significant digits: close to fp32, and really computed in bf16
    out = sample_graphs(bundle, 3, sampler="s4", steps=5, seed=0, precision="bf16", return_tensors=True)
    assert out.x.dtype == torch.float32 and torch.isfinite(out.adj).all()
    again = sample_graphs(bundle, 3, sampler="s4", steps=5, seed=0, precision="bf16", return_tensors=True)
    assert torch.equal(out.adj, again.adj)  # bf16 is deterministic on CPU too
    with pytest.raises(ValueError, match="precision"):
        sample_graphs(bundle, 1, precision="fp8")


def test_fast_preset_scales_the_models_corrector_noise_and_explicit_options_win(trained):
    from graphgen.sampling import resolve_preset

    bundle = load_model(trained[1])
    fast = resolve_preset(bundle, "fast")
    assert fast["sampler"] == "s4" and fast["steps"] == 60 and fast["precision"] == "auto"
    assert fast["scale_eps"] == pytest.approx(bundle.config.sampler.scale_eps * 6 / 7)
    assert resolve_preset(bundle, "fast", steps=30, scale_eps=None)["steps"] == 30
    assert resolve_preset(bundle, "gdss") == {}
    with pytest.raises(ValueError, match="preset"):
        resolve_preset(bundle, "fastest")


def test_samplers_are_a_registry_that_the_cli_offers():
    from graphgen.cli import DESCRIPTION, PROG, SUBCOMMANDS
    from graphgen.sampling import SAMPLERS, register_sampler
    from shared.cli_common import build_parser

    assert list(SAMPLERS) == ["pc", "s4", "ode-euler", "ode-heun", "ode-adaptive"]
    parser = build_parser(PROG, DESCRIPTION, SUBCOMMANDS)
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices["sample"]
    assert tuple(sub._option_string_actions["--sampler"].choices) == tuple(SAMPLERS)
    with pytest.raises(ValueError, match="already registered"):
        register_sampler("pc")(lambda *a: None)
