"""Import of the published GDSS checkpoints: same network outputs as GDSS-built networks, config translation,
EMA mapping, model-file round trip, and clear errors for files that are not GDSS checkpoints."""

import pytest
import torch

from graphgen.checkpoint import import_gdss, load_model, save_model
from graphgen.gdss_import import GDSSImportError, read_gdss_checkpoint
from graphgen.models import ScoreNetworkA, ScoreNetworkX, ScoreNetworkX_GMH
from graphgen.sampling import sample_graphs

NETWORKS = {"ScoreNetworkX": ScoreNetworkX, "ScoreNetworkX_GMH": ScoreNetworkX_GMH, "ScoreNetworkA": ScoreNetworkA}
NAMES = ["qm9", "community_small", "grid"]


def _direct(params, state):
    """A network built straight from the GDSS constructor arguments and state dict."""
    kwargs = {k: v for k, v in params.items() if k != "model_type"}
    net = NETWORKS[params["model_type"]](**kwargs)
    if state is not None:
        net.load_state_dict(state)
    return net.eval()


def _inputs(n, f, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    flags = torch.ones(b, n)
    flags[1, n // 2:] = 0
    adj = torch.randn(b, n, n, generator=g).triu(1)
    adj = (adj + adj.transpose(1, 2)) * flags[:, :, None] * flags[:, None, :]
    x = torch.randn(b, n, f, generator=g) * flags[..., None]
    return x, adj, flags


@pytest.mark.data
@pytest.mark.parametrize("name", NAMES)
def test_imported_networks_equal_gdss_networks(reference_data, name, tmp_path):
    path = reference_data / "gdss_checkpoints" / f"gdss_{name}.pth"
    raw = read_gdss_checkpoint(path)
    config, model, ema, counts = import_gdss(path)
    assert counts is None  # no data dir given
    n, f = config.data.max_node_num, config.data.max_feat_num
    # the networks work on any node count: a 40-node input keeps the 361-node grid model fast
    x, adj, flags = _inputs(min(n, 40), f)
    t = torch.full((x.shape[0],), 0.5)
    with torch.no_grad():
        ours_x, ours_adj = model.eval()(x, adj, flags, t)
        torch.testing.assert_close(ours_x, _direct(raw.params_x, raw.x_state_dict)(x, adj, flags))
        torch.testing.assert_close(ours_adj, _direct(raw.params_adj, raw.adj_state_dict)(x, adj, flags))

    # EMA shadow lists map onto parameters in order
    if raw.ema_x is not None:
        names = list(raw.x_state_dict)
        for i, name_ in enumerate(names):
            assert torch.equal(ema[f"x_net.{name_}"], raw.ema_x[i])
    else:
        assert ema is None

    # model file round trip keeps outputs (raw weights) and the EMA weights
    saved = save_model(tmp_path / "m.pt", config, model, ema_state=ema, node_counts=torch.tensor([0, 1, 2]))
    bundle = load_model(saved, use_ema=False)
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x, adj, flags, t)[1], ours_adj)
    if ema is not None:
        with_ema = load_model(saved, use_ema=True)
        assert with_ema.used_ema
        first = next(iter(raw.x_state_dict))
        assert torch.equal(dict(with_ema.model.named_parameters())[f"x_net.{first}"], raw.ema_x[0])


@pytest.mark.data
def test_config_translation(reference_data):
    qm9, *_ = import_gdss(reference_data / "gdss_checkpoints" / "gdss_qm9.pth")
    assert qm9.data.name == "QM9" and qm9.atom_types == ("C", "N", "O", "F")
    assert (qm9.sde.x.type, qm9.sde.adj.type, qm9.sde.adj.beta_max) == ("VE", "VE", 1.0)
    assert (qm9.sampler.predictor, qm9.sampler.snr, qm9.sampler.scale_eps, qm9.sampler.eps) == (
        "reverse_diffusion", 0.2, 0.7, 1e-4)
    assert (qm9.train.lr, qm9.train.num_epochs, qm9.model.num_linears) == (5e-3, 300, 3)
    comm, *_ = import_gdss(reference_data / "gdss_checkpoints" / "gdss_community_small.pth")
    assert (comm.sampler.predictor, comm.sampler.corrector, comm.sampler.snr, comm.sampler.use_ema) == (
        "euler_maruyama", "langevin", 0.05, False)
    grid, *_ = import_gdss(reference_data / "gdss_checkpoints" / "gdss_grid.pth")
    assert (grid.sde.adj.beta_min, grid.sde.adj.beta_max, grid.sampler.use_ema, grid.data.max_node_num) == (
        0.2, 0.8, True, 361)


@pytest.mark.data
def test_imported_community_model_samples_with_node_counts_from_data(reference_data, tmp_path):
    path = reference_data / "gdss_checkpoints" / "gdss_community_small.pth"
    config, model, ema, counts = import_gdss(path, data_dir=reference_data)
    assert int(counts.sum()) == 80 and int(counts[:12].sum()) == 0  # 100 graphs, first 20 are the test split
    bundle = load_model(save_model(tmp_path / "c.pt", config, model, ema_state=ema, node_counts=counts))
    out = sample_graphs(bundle, 3, steps=10, seed=0, return_tensors=True)
    assert len(out.items) == 3 and torch.isfinite(out.adj).all()


def test_invalid_files_raise_gdss_import_error(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(GDSSImportError, match="garbage.pth"):
        import_gdss(garbage)
    wrong = tmp_path / "wrong.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, wrong)
    with pytest.raises(GDSSImportError, match="missing"):
        import_gdss(wrong)
    with pytest.raises(FileNotFoundError):
        import_gdss(tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="not a graphgen model file"):
        load_model(wrong)


# --- every config shape GDSS published (config/*.yaml of the GDSS repository), as synthetic checkpoints -------

def _gdss_config(data, sde_x, sde_adj, model, train_extra=None, sampler=None, sample=None):
    train = {"name": "test", "num_epochs": 5000, "lr": 0.01, "lr_schedule": True, "ema": 0.999,
             "weight_decay": 1e-4, "grad_norm": 1.0, "lr_decay": 0.999, "eps": 1e-5}
    train.update(train_extra or {})
    config = {"data": data, "sde": {"x": sde_x, "adj": sde_adj},
              "model": {"x": "ScoreNetworkX", "adj": "ScoreNetworkA", "conv": "GCN", "num_heads": 4,
                        "c_init": 2, "c_hid": 8, "c_final": 4, **model},
              "train": {k: v for k, v in train.items() if v is not None}}
    if sampler:
        config["sampler"] = sampler
    if sample:
        config["sample"] = sample
    return config


def _sde(kind, beta_min, beta_max):
    return {"type": kind, "beta_min": beta_min, "beta_max": beta_max, "num_scales": 1000}


GDSS_CONFIGS = {
    "qm9": _gdss_config({"data": "QM9", "batch_size": 1024, "max_node_num": 9, "max_feat_num": 4, "init": "atom"},
                        _sde("VE", 0.1, 1.0), _sde("VE", 0.1, 1.0),
                        {"depth": 2, "adim": 16, "nhid": 16, "num_layers": 3, "num_linears": 3},
                        {"num_epochs": 300, "lr": 0.005}),
    "zinc250k": _gdss_config({"data": "ZINC250k", "batch_size": 1024, "max_node_num": 38, "max_feat_num": 9,
                              "init": "atom"}, _sde("VP", 0.1, 1.0), _sde("VE", 0.2, 1.0),
                             {"depth": 2, "adim": 16, "nhid": 16, "num_layers": 6, "num_linears": 3},
                             {"num_epochs": 500, "lr": 0.005}),
    # the published ZINC250k checkpoints' stored config has no 'ema' (trained without it, no EMA weights)
    "zinc250k_no_ema": _gdss_config({"data": "ZINC250k", "batch_size": 1024, "max_node_num": 38,
                                     "max_feat_num": 9, "init": "atom"}, _sde("VP", 0.1, 1.0),
                                    _sde("VE", 0.2, 1.0),
                                    {"depth": 2, "adim": 16, "nhid": 16, "num_layers": 6, "num_linears": 3},
                                    {"num_epochs": 500, "lr": 0.005, "ema": None}),
    "community_small": _gdss_config(
        {"data": "community_small", "batch_size": 128, "test_split": 0.2, "max_node_num": 20, "max_feat_num": 10,
         "init": "deg"}, _sde("VP", 0.1, 1.0), _sde("VP", 0.1, 1.0),
        {"depth": 3, "adim": 32, "nhid": 32, "num_layers": 5, "num_linears": 2}, None,
        {"predictor": "Euler", "corrector": "Langevin", "snr": 0.05, "scale_eps": 0.7, "n_steps": 1},
        {"use_ema": False, "noise_removal": True, "probability_flow": False, "eps": 1e-4, "seed": 11}),
    "ego_small": _gdss_config(
        {"data": "ego_small", "batch_size": 128, "test_split": 0.2, "max_node_num": 18, "max_feat_num": 17,
         "init": "deg"}, _sde("VP", 0.1, 1.0), _sde("VP", 0.1, 1.0),
        {"depth": 2, "adim": 32, "nhid": 32, "num_layers": 5, "num_linears": 2}, None,
        {"predictor": "Euler", "corrector": "None", "snr": 0.0, "scale_eps": 0.0, "n_steps": 1},
        {"use_ema": False, "noise_removal": True, "probability_flow": False, "eps": 1e-4, "seed": 12}),
    "grid": _gdss_config(
        {"data": "grid", "batch_size": 8, "test_split": 0.2, "max_node_num": 361, "max_feat_num": 5, "init": "deg"},
        _sde("VP", 0.1, 1.0), _sde("VP", 0.2, 0.8),
        {"depth": 5, "adim": 32, "nhid": 32, "num_layers": 7, "num_linears": 2}, None,
        {"predictor": "Reverse", "corrector": "Langevin", "snr": 0.1, "scale_eps": 0.7, "n_steps": 1},
        {"use_ema": True, "noise_removal": True, "probability_flow": False, "eps": 1e-4, "seed": 13}),
    "enzymes": _gdss_config(
        {"data": "ENZYMES", "batch_size": 64, "test_split": 0.2, "max_node_num": 125, "max_feat_num": 10,
         "init": "deg"}, _sde("VP", 0.1, 1.0), _sde("VE", 0.2, 1.0),
        {"depth": 5, "adim": 32, "nhid": 32, "num_layers": 7, "num_linears": 2}, None,
        {"predictor": "S4", "corrector": "None", "snr": 0.15, "scale_eps": 0.7, "n_steps": 1},
        {"use_ema": True, "noise_removal": True, "probability_flow": False, "eps": 1e-4, "seed": 11}),
}


def _write_gdss_checkpoint(path, config):
    data, model = config["data"], config["model"]
    params_x = {"model_type": "ScoreNetworkX", "max_feat_num": data["max_feat_num"], "depth": model["depth"],
                "nhid": model["nhid"]}
    params_adj = {"model_type": "ScoreNetworkA", "max_feat_num": data["max_feat_num"],
                  "max_node_num": data["max_node_num"], "nhid": model["nhid"], "num_layers": model["num_layers"],
                  "num_linears": model["num_linears"], "c_init": 2, "c_hid": 8, "c_final": 4,
                  "adim": model["adim"], "num_heads": 4, "conv": "GCN"}
    torch.manual_seed(0)
    x_net, adj_net = _direct(params_x, None), _direct(params_adj, None)
    raw = {"model_config": config, "params_x": params_x, "x_state_dict": x_net.state_dict(),
           "params_adj": params_adj, "adj_state_dict": adj_net.state_dict()}
    if "ema" in config["train"]:
        raw["ema_x"] = {"decay": 0.999, "shadow_params": [p.detach() + 1 for p in x_net.parameters()]}
        raw["ema_adj"] = {"decay": 0.999, "shadow_params": [p.detach() + 1 for p in adj_net.parameters()]}
    torch.save(raw, path)
    return x_net, adj_net


@pytest.mark.parametrize("name", sorted(GDSS_CONFIGS))
def test_every_published_gdss_config_shape_imports(name, tmp_path):
    config = GDSS_CONFIGS[name]
    x_net, adj_net = _write_gdss_checkpoint(tmp_path / f"gdss_{name}.pth", config)
    ours, model, ema, counts = import_gdss(tmp_path / f"gdss_{name}.pth")
    assert counts is None
    assert ours.data.max_node_num == config["data"]["max_node_num"]
    assert (ours.sde.adj.type, ours.sde.adj.beta_min) == (config["sde"]["adj"]["type"],
                                                          config["sde"]["adj"]["beta_min"])
    assert ours.model.num_layers == config["model"]["num_layers"]
    if "ema" in config["train"]:
        assert ours.train.ema == 0.999 and ema is not None
        first = next(iter(x_net.state_dict()))
        assert torch.equal(ema[f"x_net.{first}"], x_net.state_dict()[first] + 1)
    else:
        assert ours.train.ema is None and ema is None
    expected_sampler = config.get("sampler") or {"predictor": "Reverse", "corrector": "Langevin"}
    predictor = {"Reverse": "reverse_diffusion", "Euler": "euler_maruyama", "S4": "s4"}[expected_sampler["predictor"]]
    assert ours.sampler.predictor == predictor
    assert ours.sampler.corrector == ("langevin" if expected_sampler["corrector"] == "Langevin" else "none")
    n, f = min(config["data"]["max_node_num"], 12), config["data"]["max_feat_num"]
    x, adj, flags = _inputs(n, f)
    with torch.no_grad():
        torch.testing.assert_close(model.adj_net(x, adj, flags), adj_net(x, adj, flags))
        torch.testing.assert_close(model.x_net(x, adj, flags), x_net(x, adj, flags))


def test_zinc_checkpoint_without_node_counts_samples_with_node_counts_file(tmp_path, capsys):
    from graphgen.cli import main

    _write_gdss_checkpoint(tmp_path / "gdss_zinc250k_v2.pth", GDSS_CONFIGS["zinc250k_no_ema"])
    assert main(["import-gdss", str(tmp_path / "gdss_zinc250k_v2.pth"), str(tmp_path / "zinc.pt")]) == 0
    assert "--node-counts FILE" in capsys.readouterr().out
    env_free = ["--device", "cpu", "--no-progress", "--steps", "2", "-n", "3"]
    assert main(["sample", str(tmp_path / "zinc.pt"), "--out", str(tmp_path / "a.smi"), *env_free,
                 "--data-dir", str(tmp_path / "nothing")]) == 2
    assert "--node-counts FILE (SMILES or SDF of the training set, or a JSON histogram)" in capsys.readouterr().err
    train = tmp_path / "train.csv"
    train.write_text('smiles,logP\n"CCO",0.1\n"c1ccccc1CCN",1.0\n"not-a-smiles(",0\n')
    assert main(["sample", str(tmp_path / "zinc.pt"), "--out", str(tmp_path / "a.smi"), *env_free,
                 "--node-counts", str(train)]) == 0
    assert "unreadable line(s) skipped for node counts (line 4)" in capsys.readouterr().err
    # stored at import: then sampling needs nothing else
    histogram = tmp_path / "counts.json"
    histogram.write_text('{"20": 3, "25": 1}')
    assert main(["import-gdss", str(tmp_path / "gdss_zinc250k_v2.pth"), str(tmp_path / "zinc2.pt"),
                 "--node-counts", str(histogram)]) == 0
    bundle = load_model(tmp_path / "zinc2.pt")
    assert bundle.node_counts[20] == 3 and bundle.node_counts[25] == 1 and int(bundle.node_counts.sum()) == 4
    assert main(["sample", str(tmp_path / "zinc2.pt"), "--out", str(tmp_path / "b.smi"), *env_free]) == 0


def test_node_counts_from_file_formats(tmp_path):
    from graphgen.data import node_counts_from_file

    (tmp_path / "a.json").write_text("[0, 0, 2, 1]")
    assert node_counts_from_file(tmp_path / "a.json", 5).tolist() == [0, 0, 2, 1, 0, 0]
    (tmp_path / "b.json").write_text('{"counts": [0, 1]}')
    assert node_counts_from_file(tmp_path / "b.json", 2).tolist() == [0, 1, 0]
    (tmp_path / "m.smi").write_text("CCO name\nc1ccccc1\n\nO\n")
    assert node_counts_from_file(tmp_path / "m.smi", 6).tolist() == [0, 1, 0, 1, 0, 0, 1]
    from rdkit import Chem

    writer = Chem.SDWriter(str(tmp_path / "m.sdf"))
    for smi in ("CC", "CCC"):
        writer.write(Chem.AddHs(Chem.MolFromSmiles(smi)))  # hydrogens are not graph nodes
    writer.close()
    assert node_counts_from_file(tmp_path / "m.sdf", 3).tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="6 nodes but the model has at most 4"):
        node_counts_from_file(tmp_path / "m.smi", 4)
    (tmp_path / "bad.json").write_text('{"counts": "many"}')
    with pytest.raises(ValueError, match="bad.json"):
        node_counts_from_file(tmp_path / "bad.json", 4)
    with pytest.raises(FileNotFoundError):
        node_counts_from_file(tmp_path / "absent.json", 4)
