"""Import of the published GDSS checkpoints: same network outputs as GDSS-built networks, config translation,
EMA mapping, model-file round trip, and clear errors for files that are not GDSS checkpoints."""

import pytest
import torch

from graphgen.checkpoint import import_gdss, load_model, save_model
from graphgen.gdss_import import GDSSImportError, read_gdss_checkpoint
from graphgen.models import ScoreNetworkA, ScoreNetworkX, ScoreNetworkX_GMH
from graphgen.sample import sample_graphs

NETWORKS = {"ScoreNetworkX": ScoreNetworkX, "ScoreNetworkX_GMH": ScoreNetworkX_GMH, "ScoreNetworkA": ScoreNetworkA}
NAMES = ["qm9", "community_small", "grid"]


def _direct(params, state):
    """A network built straight from the GDSS constructor arguments and state dict."""
    kwargs = {k: v for k, v in params.items() if k != "model_type"}
    net = NETWORKS[params["model_type"]](**kwargs)
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
