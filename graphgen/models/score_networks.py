"""GDSS score networks: ScoreNetworkX, ScoreNetworkX_GMH (node features) and ScoreNetworkA (adjacency).

As published, the networks take no time input (the VP wrapper divides by the marginal std instead). The opt-in
``time_conditioned=True`` variant (our addition, not in GDSS) adds a sinusoidal embedding of the diffusion time
to the node features entering every layer and to the final MLP input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import AttentionLayer, DenseGCNConv, MLP, PairMLP, is_symmetric, mask_adjs, mask_x, pow_tensor

__all__ = ["ScoreNetworkX", "ScoreNetworkX_GMH", "ScoreNetworkA", "TimeEmbedding"]


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of t in [0, 1] followed by a small MLP: (B,) -> (B, dim)."""

    def __init__(self, dim: int, max_period: float = 10_000.0):
        super().__init__()
        if dim % 2:
            raise ValueError("time embedding dimension must be even")
        self.dim, self.max_period = dim, max_period
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(self.max_period) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
        args = 1000.0 * t[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


def _time_features(embed: TimeEmbedding | None, t: Tensor | None, x: Tensor) -> Tensor | None:
    if embed is None:
        return None
    if t is None:
        raise ValueError("this network is time-conditioned: pass t")
    return embed(t.to(x.dtype))[:, None, :].expand(-1, x.shape[1], -1)


def _attention_stack(num_layers: int, num_linears: int, feat_in: int, nhid: int, adim: int, c_init: int,
                     c_hid: int, c_final: int, num_heads: int) -> nn.ModuleList:
    """GDSS's stack of attention layers: channels c_init -> c_hid -> ... -> c_final, features feat_in -> nhid."""
    layers = nn.ModuleList()
    for i in range(num_layers):
        conv_in, attn_dim = (feat_in, nhid) if i == 0 else (nhid, adim)
        c_in = c_init if i == 0 else c_hid
        c_out = c_final if i == num_layers - 1 else c_hid
        layers.append(AttentionLayer(num_linears, conv_in, attn_dim, nhid, c_in, c_out, num_heads))
    return layers


class ScoreNetworkX(nn.Module):
    """Dense GCN layers with tanh, concatenation of all layer outputs, 3-layer ELU MLP to a score per feature."""

    def __init__(self, max_feat_num: int, depth: int, nhid: int, time_conditioned: bool = False,
                 time_dim: int = 16):
        super().__init__()
        self.nfeat, self.depth, self.nhid = max_feat_num, depth, nhid
        extra = time_dim if time_conditioned else 0
        self.time_embed = TimeEmbedding(time_dim) if time_conditioned else None
        self.layers = nn.ModuleList(
            DenseGCNConv((max_feat_num if i == 0 else nhid) + extra, nhid) for i in range(depth))
        self.fdim = max_feat_num + depth * nhid + extra
        self.final = MLP(3, self.fdim, 2 * self.fdim, max_feat_num, activation=F.elu)

    def forward(self, x: Tensor, adj: Tensor, flags: Tensor | None, t: Tensor | None = None) -> Tensor:
        temb = _time_features(self.time_embed, t, x)
        features = [x]
        for layer in self.layers:
            inp = x if temb is None else torch.cat([x, temb], dim=-1)
            x = torch.tanh(layer(inp, adj))
            features.append(x)
        if temb is not None:
            features.append(temb)
        return mask_x(self.final(torch.cat(features, dim=-1)), flags)

    def unused_parameters(self) -> list[nn.Parameter]:
        """Parameters the forward pass never uses (none here; see ScoreNetworkA)."""
        return []


class ScoreNetworkX_GMH(nn.Module):
    """Node-feature score network built from graph multi-head attention layers (GDSS's GMH variant)."""

    def __init__(self, max_feat_num: int, depth: int, nhid: int, num_linears: int, c_init: int, c_hid: int,
                 c_final: int, adim: int, num_heads: int = 4, conv: str = "GCN"):
        super().__init__()
        if conv != "GCN":
            raise ValueError(f"only conv='GCN' is implemented, got {conv!r}")
        self.depth, self.c_init = depth, c_init
        self.layers = _attention_stack(depth, num_linears, max_feat_num, nhid, adim, c_init, c_hid, c_final,
                                       num_heads)
        fdim = max_feat_num + depth * nhid
        self.final = MLP(3, fdim, 2 * fdim, max_feat_num, activation=F.elu)

    def forward(self, x: Tensor, adj: Tensor, flags: Tensor | None, t: Tensor | None = None) -> Tensor:
        adjc = pow_tensor(adj, self.c_init)
        features = [x]
        symmetric = is_symmetric(adj)
        for i, layer in enumerate(self.layers):
            x, adjc = layer(x, adjc, flags, symmetric=symmetric if i == 0 else True)
            x = torch.tanh(x)
            features.append(x)
        return mask_x(self.final(torch.cat(features, dim=-1)), flags)

    def unused_parameters(self) -> list[nn.Parameter]:
        """The last layer's adjacency MLP: GDSS computes that layer's adjacency and never uses it."""
        return list(self.layers[-1].mlp.parameters())


class ScoreNetworkA(nn.Module):
    """Adjacency score network: attention layers over [A, A^2, ..., A^c_init], concatenation of every layer's
    adjacency channels, ELU MLP to one score per entry; zero diagonal, padded nodes masked."""

    def __init__(self, max_feat_num: int, max_node_num: int, nhid: int, num_layers: int, num_linears: int,
                 c_init: int, c_hid: int, c_final: int, adim: int, num_heads: int = 4, conv: str = "GCN",
                 time_conditioned: bool = False, time_dim: int = 16):
        super().__init__()
        if conv != "GCN":
            raise ValueError(f"only conv='GCN' is implemented, got {conv!r}")
        if num_layers < 2:
            raise ValueError("ScoreNetworkA needs at least 2 layers")
        self.max_node_num, self.num_layers, self.c_init = max_node_num, num_layers, c_init
        self.time_embed = TimeEmbedding(time_dim) if time_conditioned else None
        feat_in = max_feat_num + (time_dim if time_conditioned else 0)
        self.layers = _attention_stack(num_layers, num_linears, feat_in, nhid, adim, c_init, c_hid, c_final,
                                       num_heads)
        self.fdim = c_hid * (num_layers - 1) + c_final + c_init
        self.final = MLP(3, self.fdim, 2 * self.fdim, 1, activation=F.elu)

    def forward(self, x: Tensor, adj: Tensor, flags: Tensor | None, t: Tensor | None = None) -> Tensor:
        temb = _time_features(self.time_embed, t, x)
        if temb is not None:
            x = torch.cat([x, temb], dim=-1)
        symmetric = is_symmetric(adj)  # then every channel below is, and pair MLPs run on i <= j only
        adjc = pow_tensor(adj, self.c_init)
        channels = [adjc]
        for i, layer in enumerate(self.layers):
            x, adjc = layer(x, adjc, flags, symmetric=symmetric if i == 0 else True)
            channels.append(adjc)
        score = PairMLP.apply(self.final, torch.cat(channels, dim=1), symmetric).squeeze(1)
        score = score.clone()
        score.diagonal(dim1=-2, dim2=-1).zero_()
        return mask_adjs(score, flags)

    def unused_parameters(self) -> list[nn.Parameter]:
        """The last layer's node-feature MLP: GDSS computes that layer's features and never uses them.

        They stay in the state dict (GDSS checkpoints hold them); training freezes them, which changes nothing
        in one process (they never get a gradient) and lets DistributedDataParallel, which waits for a gradient
        of every trainable parameter, run.
        """
        return list(self.layers[-1].multi_channel.parameters())
