"""GDSS score networks: permutation equivariance, symmetry, masking, GDSS checkpoint compatibility."""

import pytest
import torch

from graphgen.models import ScoreNetworkA, ScoreNetworkX, ScoreNetworkX_GMH, pow_tensor
from graphgen.models.layers import DenseGCNConv

B, N, F = 3, 7, 4


def _graph_batch(seed=0, n_real=(7, 5, 3)):
    g = torch.Generator().manual_seed(seed)
    flags = torch.zeros(B, N)
    for i, n in enumerate(n_real):
        flags[i, :n] = 1
    adj = (torch.rand(B, N, N, generator=g) < 0.4).float().triu(1)
    adj = (adj + adj.transpose(-1, -2)) * flags[:, :, None] * flags[:, None, :]
    x = torch.rand(B, N, F, generator=g) * flags[:, :, None]
    return x, adj, flags


def _networks(time_conditioned=False):
    torch.manual_seed(0)
    return {
        "x": ScoreNetworkX(F, depth=2, nhid=16, time_conditioned=time_conditioned),
        "x_gmh": ScoreNetworkX_GMH(F, depth=2, nhid=16, num_linears=2, c_init=2, c_hid=8, c_final=4, adim=16),
        "adj": ScoreNetworkA(F, N, nhid=16, num_layers=3, num_linears=2, c_init=2, c_hid=8, c_final=4, adim=16,
                             time_conditioned=time_conditioned),
    }


def assert_permutation_equivariant(net, x, adj, flags, t=None, atol=1e-5):
    """f(P x, P A P^T) = P f(x, A) (node outputs) or P f P^T (edge outputs), for a random permutation."""
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    out = net(x, adj, flags, t)
    out_p = net(x[:, perm], adj[:, perm][:, :, perm], flags[:, perm], t)
    edge_output = out.shape == adj.shape and out.shape != x.shape
    expected = out[:, perm][:, :, perm] if edge_output else out[:, perm]
    torch.testing.assert_close(out_p, expected, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("name", ["x", "x_gmh", "adj"])
def test_permutation_equivariance(name):
    net = _networks()[name]
    x, adj, flags = _graph_batch()
    assert_permutation_equivariant(net, x, adj, flags)


def test_time_conditioned_variant_is_equivariant_and_uses_time():
    nets = _networks(time_conditioned=True)
    x, adj, flags = _graph_batch()
    t = torch.tensor([0.1, 0.5, 0.9])
    for name in ("x", "adj"):
        assert_permutation_equivariant(nets[name], x, adj, flags, t)
        assert not torch.allclose(nets[name](x, adj, flags, t), nets[name](x, adj, flags, 1 - t))
    with pytest.raises(ValueError, match="time-conditioned"):
        nets["x"](x, adj, flags)


def test_adjacency_score_is_symmetric_zero_diagonal_and_masked():
    net = _networks()["adj"]
    x, adj, flags = _graph_batch()
    score = net(x, adj, flags)
    torch.testing.assert_close(score, score.transpose(-1, -2))
    assert torch.all(torch.diagonal(score, dim1=-2, dim2=-1) == 0)
    pad = flags == 0
    assert torch.all(score[pad] == 0) and torch.all(score.transpose(1, 2)[pad] == 0)


def test_node_score_is_masked_and_padding_does_not_leak():
    net = _networks()["x"]
    x, adj, flags = _graph_batch()
    out = net(x, adj, flags)
    assert torch.all(out[flags == 0] == 0)
    # garbage in padded rows must not change real nodes' scores (padded rows of adj are zero)
    x2 = x.clone()
    x2[flags == 0] = 5.0
    torch.testing.assert_close(net(x2, adj, flags)[flags == 1], out[flags == 1])


@pytest.mark.parametrize("name", ["x", "x_gmh", "adj"])
@pytest.mark.parametrize("time_conditioned", [False, True])
def test_outputs_do_not_depend_on_the_amount_of_padding(name, time_conditioned):
    """Cropping padded nodes away (graphgen.sampling crops each batch to its largest graph) changes nothing."""
    if name == "x_gmh" and time_conditioned:
        pytest.skip("ScoreNetworkX_GMH has no time-conditioned variant")
    net = _networks(time_conditioned)[name]
    x, adj, flags = _graph_batch()  # largest graph: 7 real nodes of N = 9
    t = torch.tensor([0.2, 0.5, 0.8]) if time_conditioned else None
    full = net(x, adj, flags, t)
    cropped = net(x[:, :7], adj[:, :7, :7], flags[:, :7], t)
    expected = full[:, :7, :7] if full.shape == adj.shape else full[:, :7]
    torch.testing.assert_close(cropped, expected, atol=1e-6, rtol=1e-5)


def test_dense_gcn_matches_explicit_formula():
    torch.manual_seed(0)
    conv = DenseGCNConv(3, 2)
    adj = torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 1, 0]])
    x = torch.randn(1, 3, 3)
    a_hat = adj + torch.eye(3)
    d = torch.diag(a_hat.sum(1) ** -0.5)
    expected = d @ a_hat @ d @ x[0] @ conv.weight + conv.bias
    torch.testing.assert_close(conv(x, adj[None])[0], expected)


def test_pow_tensor():
    adj = torch.rand(2, 4, 4)
    p = pow_tensor(adj, 3)
    torch.testing.assert_close(p[:, 2], adj @ adj @ adj)


def test_published_gdss_state_dicts_load(reference_data):
    from collections import OrderedDict

    class _EasyDict(dict):
        def __new__(cls, *args, **kwargs):
            return OrderedDict()

    path = reference_data / "gdss_checkpoints" / "gdss_qm9.pth"
    with torch.serialization.safe_globals([(_EasyDict, "easydict.EasyDict")]):
        ckpt = torch.load(path, weights_only=True, map_location="cpu")
    px, pa = dict(ckpt["params_x"]), dict(ckpt["params_adj"])
    assert px.pop("model_type") == "ScoreNetworkX" and pa.pop("model_type") == "ScoreNetworkA"
    ScoreNetworkX(**px).load_state_dict(ckpt["x_state_dict"])
    ScoreNetworkA(**pa).load_state_dict(ckpt["adj_state_dict"])


# --- the batched/symmetric fast path equals the pre-speed-up layers (benchmarks/reference) --------------------


def _reference_copy(net):
    import copy

    from benchmarks.reference.graphgen_layers_v0 import use_reference_layers

    return use_reference_layers(copy.deepcopy(net))


@pytest.mark.parametrize("time_conditioned", [False, True])
@pytest.mark.parametrize("symmetric", [True, False])
def test_fast_layers_equal_the_reference_layers(time_conditioned, symmetric):
    x, adj, flags = _graph_batch(seed=4)
    adj = adj * torch.rand(adj.shape, generator=torch.Generator().manual_seed(2))  # weighted, like sampling
    adj = (adj + adj.transpose(-1, -2)) / 2
    if not symmetric:  # e.g. a user's own call: the full pair path must still be exact
        adj = adj + 0.1 * torch.rand(adj.shape, generator=torch.Generator().manual_seed(3)) * flags[:, :, None]
    t = torch.rand(B, generator=torch.Generator().manual_seed(5))
    for name, net in _networks(time_conditioned).items():
        reference = _reference_copy(net)
        with torch.no_grad():
            torch.testing.assert_close(net(x, adj, flags, t), reference(x, adj, flags, t), atol=1e-6, rtol=1e-5,
                                       msg=lambda m: f"{name}: {m}")


def test_fast_layers_have_equal_gradients():
    x, adj, flags = _graph_batch(seed=6)
    net = _networks()["adj"]
    reference = _reference_copy(net)
    net(x, adj, flags).square().sum().backward()
    reference(x, adj, flags).square().sum().backward()
    for (name, p), q in zip(net.named_parameters(), reference.parameters()):
        # the last layer's values feed nothing: no gradient there in the reference, zeros in the batched weights
        zero = torch.zeros_like(q)
        torch.testing.assert_close(zero if p.grad is None else p.grad, zero if q.grad is None else q.grad,
                                   atol=1e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.data
@pytest.mark.parametrize("name", ["qm9", "community_small", "grid"])
def test_fast_layers_equal_the_reference_on_published_checkpoints(reference_data, name):
    from graphgen.checkpoint import import_gdss

    config, model, _, _ = import_gdss(reference_data / "gdss_checkpoints" / f"gdss_{name}.pth")
    model.eval()
    reference = _reference_copy(model)
    n, x_dim = min(config.data.max_node_num, 40), config.data.max_feat_num  # 40 nodes keep grid fast
    g = torch.Generator().manual_seed(0)
    flags = torch.ones(3, n)
    flags[1, n // 2:] = 0
    adj = torch.rand(3, n, n, generator=g).triu(1)
    adj = (adj + adj.transpose(1, 2)) * flags[:, :, None] * flags[:, None, :]
    x = torch.rand(3, n, x_dim, generator=g) * flags[..., None]
    t = torch.full((3,), 0.3)
    with torch.no_grad():
        for ours, ref in zip(model(x, adj, flags, t), reference(x, adj, flags, t)):
            torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
