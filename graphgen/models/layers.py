"""Building blocks of the GDSS score networks (Jo et al., ICML 2022).

Module and parameter names follow the published GDSS code so that its checkpoints load without renaming
(``graphgen import-gdss``). Masks: ``flags`` is (B, N) with 1 for real nodes.
"""

from __future__ import annotations

import math
from typing import Callable

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


class DenseGCNConv(nn.Module):
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
    """Graph multi-head attention: GCN queries/keys/values, tanh attention averaged over heads, symmetrised."""

    def __init__(self, in_dim: int, attn_dim: int, out_dim: int, num_heads: int = 4):
        super().__init__()
        if attn_dim % num_heads:
            raise ValueError(f"attention dim {attn_dim} is not divisible by {num_heads} heads")
        self.attn_dim, self.out_dim, self.num_heads = attn_dim, out_dim, num_heads
        self.gnn_q = DenseGCNConv(in_dim, attn_dim)
        self.gnn_k = DenseGCNConv(in_dim, attn_dim)
        self.gnn_v = DenseGCNConv(in_dim, out_dim)

    def forward(self, x: Tensor, adj: Tensor) -> tuple[Tensor, Tensor]:
        q, k, v = self.gnn_q(x, adj), self.gnn_k(x, adj), self.gnn_v(x, adj)
        b, n, _ = q.shape
        head = self.attn_dim // self.num_heads
        q = q.view(b, n, self.num_heads, head).transpose(1, 2)  # (B, H, N, d)
        k = k.view(b, n, self.num_heads, head).transpose(1, 2)
        # GDSS scales by sqrt(out_dim), not sqrt(head dim); kept for checkpoint compatibility
        attn = torch.tanh(q @ k.transpose(-1, -2) / math.sqrt(self.out_dim)).mean(dim=1)
        return v, (attn + attn.transpose(-1, -2)) / 2


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

    def forward(self, x: Tensor, adj: Tensor, flags: Tensor | None) -> tuple[Tensor, Tensor]:
        values, attentions = zip(*(attn(x, adj[:, c]) for c, attn in enumerate(self.attn)))
        x_out = torch.tanh(mask_x(self.multi_channel(torch.cat(values, dim=-1)), flags))
        mlp_in = torch.cat([torch.stack(attentions, dim=-1), adj.permute(0, 2, 3, 1)], dim=-1)
        adj_out = self.mlp(mlp_in).permute(0, 3, 1, 2)
        adj_out = adj_out + adj_out.transpose(-1, -2)
        return x_out, mask_adjs(adj_out, flags)
