"""Building blocks of the GDSS score networks (Jo et al., ICML 2022).

Module and parameter names follow the published GDSS code so that its checkpoints load without renaming
(``graphgen import-gdss``). Masks: ``flags`` is (B, N) with 1 for real nodes.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mask_x(x: Tensor, flags: Tensor | None) -> Tensor:
    """Zero the feature rows of padded nodes; ``x`` is (B, N, F)."""
    if flags is None:
        return x
    return x * flags[:, :, None]


def mask_adjs(adjs: Tensor, flags: Tensor | None) -> Tensor:
    """Zero rows and columns of padded nodes; ``adjs`` is (B, N, N) or (B, C, N, N)."""
    if flags is None:
        return adjs
    if adjs.dim() == 4:
        flags = flags.unsqueeze(1)
    return adjs * flags.unsqueeze(-1) * flags.unsqueeze(-2)


def pow_tensor(adj: Tensor, powers: int) -> Tensor:
    """Stack [A, A^2, ..., A^powers] along a new channel dimension: (B, N, N) -> (B, powers, N, N)."""
    out = [adj]
    current = adj
    for _ in range(powers - 1):
        current = torch.bmm(current, adj)
        out.append(current)
    return torch.stack(out, dim=1)


def normalized_adjacency(adj: Tensor) -> Tensor:
    """D^-1/2 (A with a unit diagonal) D^-1/2 over the last two dims (self-loops replace the diagonal: GDSS/PyG)."""
    adj = adj.clone()
    adj.diagonal(dim1=-2, dim2=-1).fill_(1.0)  # equals adj * (1 - I) + I for finite entries
    deg_inv_sqrt = adj.sum(dim=-1).clamp(min=1).pow(-0.5)
    return deg_inv_sqrt.unsqueeze(-1) * adj * deg_inv_sqrt.unsqueeze(-2)


class DenseGCNConv(nn.Module):
    """Dense graph convolution: D^-1/2 (A + I) D^-1/2 X W + b (Kipf & Welling), A weighted and dense."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        out = normalized_adjacency(adj) @ (x @ self.weight)
        if self.bias is not None:
            out = out + self.bias
        return out


class MLP(nn.Module):
    """``num_layers`` linear layers with ``activation`` between them (none after the last)."""

    def __init__(self, num_layers: int, input_dim: int, hidden_dim: int, output_dim: int,
                 activation: Callable[[Tensor], Tensor] = F.relu):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP needs at least one layer, got {num_layers}")
        self.num_layers = num_layers
        self.activation = activation
        if num_layers == 1:
            self.linear = nn.Linear(input_dim, output_dim)
        else:
            dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
            self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in ([self.linear] if self.num_layers == 1 else self.linears):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.num_layers == 1:
            return self.linear(x)
        for layer in self.linears[:-1]:
            x = self.activation(layer(x))
        return self.linears[-1](x)


class GraphAttention(nn.Module):
    """Graph multi-head attention: GCN queries/keys/values, tanh attention averaged over heads, symmetrised.

    Holds the parameters (GDSS's names); ``AttentionLayer`` evaluates all channels' attentions in one batch.
    """

    def __init__(self, in_dim: int, attn_dim: int, out_dim: int, num_heads: int = 4):
        super().__init__()
        if attn_dim % num_heads:
            raise ValueError(f"attention dim {attn_dim} is not divisible by {num_heads} heads")
        self.attn_dim, self.out_dim, self.num_heads = attn_dim, out_dim, num_heads
        self.gnn_q = DenseGCNConv(in_dim, attn_dim)
        self.gnn_k = DenseGCNConv(in_dim, attn_dim)
        self.gnn_v = DenseGCNConv(in_dim, out_dim)

    def forward(self, x: Tensor, adj: Tensor) -> tuple[Tensor, Tensor]:
        values, attention = _batched_attention([self], x, adj.unsqueeze(1))
        return values[:, 0], attention[:, 0]


def _batched_attention(heads: Sequence[GraphAttention], x: Tensor, adj: Tensor) -> tuple[Tensor, Tensor]:
    """Values (B, C, N, out) and symmetrised attentions (B, C, N, N) of C channels at once.

    The same arithmetic as C separate ``GraphAttention`` calls (each a GCN for q, k, v and a per-head
    ``tanh(q k^T / sqrt(out_dim))`` averaged over heads), batched: one normalisation of every channel's adjacency,
    one matmul of x with all channels' weights, and contiguous (B*C*H, N, d) ``bmm`` for the heads.
    """
    first = heads[0]
    a, o, h = first.attn_dim, first.out_dim, first.num_heads
    b, c, n, _ = adj.shape
    width = 2 * a + o
    weight = torch.cat([torch.cat([m.gnn_q.weight, m.gnn_k.weight, m.gnn_v.weight], dim=1) for m in heads], dim=1)
    bias = torch.cat([torch.cat([m.gnn_q.bias, m.gnn_k.bias, m.gnn_v.bias]) for m in heads]).view(c, 1, width)
    xw = (x @ weight).view(b, n, c, width).transpose(1, 2).reshape(b * c, n, width)
    qkv = torch.bmm(normalized_adjacency(adj).reshape(b * c, n, n), xw).view(b, c, n, width) + bias
    d = a // h
    q = qkv[..., :a].reshape(b, c, n, h, d).transpose(2, 3).reshape(b * c * h, n, d)
    k = qkv[..., a:2 * a].reshape(b, c, n, h, d).transpose(2, 3).reshape(b * c * h, n, d)
    # GDSS scales by sqrt(out_dim), not sqrt(head dim); kept for checkpoint compatibility
    scores = torch.tanh(torch.bmm(q, k.transpose(1, 2)) / math.sqrt(o)).view(b, c, h, n, n).mean(dim=2)
    return qkv[..., 2 * a:], (scores + scores.transpose(-1, -2)) / 2


class PairMLP(nn.Module):
    """Applies an MLP to every node pair of (B, C_in, N, N) features -> (B, C_out, N, N).

    When the input is symmetric in the two node dims (always in sampling: GDSS adjacencies are symmetric), only
    the N(N+1)/2 pairs i <= j are computed and mirrored: the same numbers at about half the cost.
    """

    @staticmethod
    def apply(mlp: nn.Module, pairs: Tensor, symmetric: bool) -> Tensor:
        b, _, n, _ = pairs.shape
        if not symmetric:
            return mlp(pairs.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        upper, lower = _triangle_indices(n, pairs.device)
        packed = mlp(pairs.flatten(2)[:, :, upper].transpose(1, 2))  # (B, P, C_out)
        out = packed.new_empty(b, n * n, packed.shape[-1])
        out[:, upper] = packed
        out[:, lower] = packed
        return out.view(b, n, n, -1).permute(0, 3, 1, 2)


_TRIANGLES: dict[tuple[int, str], tuple[Tensor, Tensor]] = {}


def _triangle_indices(n: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Flat indices of the pairs i <= j in row-major (i, j) and in mirrored (j, i) order; cached per (n, device)."""
    key = (n, str(device))
    if key not in _TRIANGLES:
        # normal tensors even when first asked for while sampling under inference_mode: inference tensors could
        # not index autograd-tracked features later (training after sampling in the same process)
        with torch.inference_mode(False):
            i, j = torch.triu_indices(n, n, device=device)
            _TRIANGLES[key] = (i * n + j, j * n + i)
    return _TRIANGLES[key]


def is_symmetric(adj: Tensor) -> bool:
    """Exactly symmetric in the last two dims (the cheap test that allows the half-cost pair path)."""
    return bool(torch.equal(adj, adj.transpose(-1, -2)))


class AttentionLayer(nn.Module):
    """One GDSS layer over a multi-channel adjacency (B, C_in, N, N): per-channel attention, then MLPs
    that mix the channels of the node features and of the adjacency (B, C_out, N, N, symmetric)."""

    def __init__(self, num_linears: int, conv_input_dim: int, attn_dim: int, conv_output_dim: int,
                 input_dim: int, output_dim: int, num_heads: int = 4):
        super().__init__()
        self.attn = nn.ModuleList(
            GraphAttention(conv_input_dim, attn_dim, conv_output_dim, num_heads) for _ in range(input_dim))
        hidden = 2 * max(input_dim, output_dim)
        self.mlp = MLP(num_linears, 2 * input_dim, hidden, output_dim, activation=F.elu)
        self.multi_channel = MLP(2, input_dim * conv_output_dim, hidden, conv_output_dim, activation=F.elu)

    def forward(self, x: Tensor, adj: Tensor, flags: Tensor | None,
                symmetric: bool | None = None) -> tuple[Tensor, Tensor]:
        """``symmetric``: whether ``adj`` is symmetric (tested when not given); the output always is."""
        b, c, n, _ = adj.shape
        values, attention = _batched_attention(self.attn, x, adj)
        # channel-major concatenation of the values, as GDSS concatenates per-channel outputs
        x_out = torch.tanh(mask_x(self.multi_channel(values.transpose(1, 2).reshape(b, n, -1)), flags))
        if symmetric is None:
            symmetric = is_symmetric(adj)
        m = PairMLP.apply(self.mlp, torch.cat([attention, adj], dim=1), symmetric)
        # m + m^T of the reference; a symmetric m makes that exactly 2 m
        adj_out = m + m if symmetric else m + m.transpose(-1, -2)
        return x_out, mask_adjs(adj_out, flags)
