"""graphgen's GDSS attention and MLP layers as of commit 93e24e4 (before the exact speed-ups), kept verbatim.

``benchmarks/graphgen_speed.py`` times the current networks against these, and ``tests/graphgen/test_models.py``
checks the current ones reproduce them to float tolerance. ``use_reference_layers(net)`` swaps a network's
attention layers and adjacency/GMH networks for these classes in place (same parameters, same names), for a
like-for-like comparison.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graphgen.models.layers import MLP, mask_adjs, mask_x, pow_tensor
from graphgen.models.score_networks import ScoreNetworkA, ScoreNetworkX_GMH, _time_features


class DenseGCNConvV0(nn.Module):
    """Dense graph convolution: D^-1/2 (A + I) D^-1/2 X W + b (Kipf & Welling), A weighted and dense."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        n = adj.shape[-1]
        eye = torch.eye(n, dtype=adj.dtype, device=adj.device)
        # self-loops replace the diagonal (GDSS/PyG convention), they are not added to it
        adj = adj * (1 - eye) + eye
        deg_inv_sqrt = adj.sum(dim=-1).clamp(min=1).pow(-0.5)
        adj = deg_inv_sqrt.unsqueeze(-1) * adj * deg_inv_sqrt.unsqueeze(-2)
        out = adj @ (x @ self.weight)
        if self.bias is not None:
            out = out + self.bias
        return out


class GraphAttentionV0(nn.Module):
    """Graph multi-head attention: GCN queries/keys/values, tanh attention averaged over heads, symmetrised."""

    def __init__(self, in_dim: int, attn_dim: int, out_dim: int, num_heads: int = 4):
        super().__init__()
        if attn_dim % num_heads:
            raise ValueError(f"attention dim {attn_dim} is not divisible by {num_heads} heads")
        self.attn_dim, self.out_dim, self.num_heads = attn_dim, out_dim, num_heads
        self.gnn_q = DenseGCNConvV0(in_dim, attn_dim)
        self.gnn_k = DenseGCNConvV0(in_dim, attn_dim)
        self.gnn_v = DenseGCNConvV0(in_dim, out_dim)

    def forward(self, x: Tensor, adj: Tensor) -> tuple[Tensor, Tensor]:
        q, k, v = self.gnn_q(x, adj), self.gnn_k(x, adj), self.gnn_v(x, adj)
        b, n, _ = q.shape
        head = self.attn_dim // self.num_heads
        q = q.view(b, n, self.num_heads, head).transpose(1, 2)  # (B, H, N, d)
        k = k.view(b, n, self.num_heads, head).transpose(1, 2)
        # GDSS scales by sqrt(out_dim), not sqrt(head dim); kept for checkpoint compatibility
        attn = torch.tanh(q @ k.transpose(-1, -2) / math.sqrt(self.out_dim)).mean(dim=1)
        return v, (attn + attn.transpose(-1, -2)) / 2


class AttentionLayerV0(nn.Module):
    """One GDSS layer over a multi-channel adjacency (B, C_in, N, N): per-channel attention, then MLPs
    that mix the channels of the node features and of the adjacency (B, C_out, N, N, symmetric)."""

    def __init__(self, num_linears: int, conv_input_dim: int, attn_dim: int, conv_output_dim: int,
                 input_dim: int, output_dim: int, num_heads: int = 4):
        super().__init__()
        self.attn = nn.ModuleList(
            GraphAttentionV0(conv_input_dim, attn_dim, conv_output_dim, num_heads) for _ in range(input_dim))
        hidden = 2 * max(input_dim, output_dim)
        self.mlp = MLP(num_linears, 2 * input_dim, hidden, output_dim, activation=F.elu)
        self.multi_channel = MLP(2, input_dim * conv_output_dim, hidden, conv_output_dim, activation=F.elu)

    def forward(self, x: Tensor, adj: Tensor, flags: Tensor | None) -> tuple[Tensor, Tensor]:
        values, attentions = zip(*(attn(x, adj[:, c]) for c, attn in enumerate(self.attn)))
        x_out = torch.tanh(mask_x(self.multi_channel(torch.cat(values, dim=-1)), flags))
        mlp_in = torch.cat([torch.stack(attentions, dim=-1), adj.permute(0, 2, 3, 1)], dim=-1)
        adj_out = self.mlp(mlp_in).permute(0, 3, 1, 2)
        adj_out = adj_out + adj_out.transpose(-1, -2)
        return x_out, mask_adjs(adj_out, flags)


class ScoreNetworkAV0(ScoreNetworkA):
    """``ScoreNetworkA.forward`` as of 93e24e4 (full N x N pair MLPs, diagonal zeroed by multiplication)."""

    def forward(self, x: Tensor, adj: Tensor, flags: Tensor | None, t: Tensor | None = None) -> Tensor:
        temb = _time_features(self.time_embed, t, x)
        if temb is not None:
            x = torch.cat([x, temb], dim=-1)
        adjc = pow_tensor(adj, self.c_init)
        channels = [adjc]
        for layer in self.layers:
            x, adjc = layer(x, adjc, flags)
            channels.append(adjc)
        score = self.final(torch.cat(channels, dim=1).permute(0, 2, 3, 1)).squeeze(-1)
        n = score.shape[-1]
        score = score * (1 - torch.eye(n, dtype=score.dtype, device=score.device))
        return mask_adjs(score, flags)


class ScoreNetworkX_GMHV0(ScoreNetworkX_GMH):
    """``ScoreNetworkX_GMH.forward`` as of 93e24e4."""

    def forward(self, x: Tensor, adj: Tensor, flags: Tensor | None, t: Tensor | None = None) -> Tensor:
        adjc = pow_tensor(adj, self.c_init)
        features = [x]
        for layer in self.layers:
            x, adjc = layer(x, adjc, flags)
            x = torch.tanh(x)
            features.append(x)
        return mask_x(self.final(torch.cat(features, dim=-1)), flags)


def use_reference_layers(net: nn.Module) -> nn.Module:
    """Re-class every ``AttentionLayer``/``GraphAttention``/``DenseGCNConv`` of ``net`` as the V0 versions.

    Parameters and buffers are untouched (same names and shapes), so state dicts stay interchangeable.
    """
    from graphgen.models import layers

    swap = {layers.AttentionLayer: AttentionLayerV0, layers.GraphAttention: GraphAttentionV0,
            layers.DenseGCNConv: DenseGCNConvV0, ScoreNetworkA: ScoreNetworkAV0,
            ScoreNetworkX_GMH: ScoreNetworkX_GMHV0}
    for module in net.modules():
        if type(module) in swap:
            module.__class__ = swap[type(module)]
    return net
