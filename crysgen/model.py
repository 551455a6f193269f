"""The denoiser network: a 1-D U-Net over the rows of the crystal matrix, matrix columns as channels.

Each residual block gets the noise embedding (sinusoidal features of EDM's ``c_noise`` -> MLP), plus an optional
condition embedding (scalar properties -> MLP; a learned null embedding replaces it where the condition is
NaN, which is how classifier-free guidance and condition dropout mark "unconditional"). Self-attention at the
bottleneck attends over the positions of one crystal only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["UNet1D", "UNetConfig", "sinusoidal_embedding"]


@dataclass
class UNetConfig:
    channels: int = 48  # width of the first level
    channel_mult: tuple[int, ...] = (1, 2, 2)  # per level; one down-sampling between consecutive levels
    num_res_blocks: int = 2
    emb_dim: int = 128
    attn_heads: int = 4
    dropout: float = 0.0
    groups: int = 8

    def __post_init__(self) -> None:
        if self.channels < 1 or self.num_res_blocks < 1 or not self.channel_mult:
            raise ValueError(f"invalid UNetConfig: {self}")
        if any(self.channels * m % self.groups for m in self.channel_mult):
            raise ValueError(f"channels*mult must be divisible by groups={self.groups}: {self}")


def sinusoidal_embedding(values: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """``(B,)`` scalars -> ``(B, dim)`` [cos, sin] features at geometrically spaced frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half)
    angles = values.float()[:, None] * freqs[None]
    emb = torch.cat([angles.cos(), angles.sin()], dim=1)
    return F.pad(emb, (0, dim - 2 * half))


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, c_in), c_in)
        self.conv1 = nn.Conv1d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head attention over the length axis; the batch axis stays a batch (no mixing of crystals)."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x).transpose(1, 2)  # (B, L, C)
        h, _ = self.attn(h, h, h, need_weights=False)
        return x + h.transpose(1, 2)


class UNet1D(nn.Module):
    """``net(x, c_noise, cond=None)`` for ``x`` of shape ``(B, rows, width)``; returns the same shape.

    ``cond`` is ``(B, cond_dim)`` scalars (normalised); rows containing NaN, or ``cond=None``, use the learned
    null embedding.
    """

    def __init__(self, width: int, config: UNetConfig | None = None, cond_dim: int = 0):
        super().__init__()
        cfg = config or UNetConfig()
        self.width, self.cond_dim, self.config = int(width), int(cond_dim), cfg
        chans = [cfg.channels * m for m in cfg.channel_mult]
        e, g = cfg.emb_dim, cfg.groups
        self.noise_mlp = nn.Sequential(nn.Linear(cfg.channels, e), nn.SiLU(), nn.Linear(e, e))
        if cond_dim > 0:
            self.cond_mlp = nn.Sequential(nn.Linear(cond_dim, e), nn.SiLU(), nn.Linear(e, e))
            self.null_cond = nn.Parameter(torch.zeros(e))
        self.stem = nn.Conv1d(width, chans[0], 3, padding=1)

        self.down = nn.ModuleList()
        skip_chans, c = [chans[0]], chans[0]
        for level, c_level in enumerate(chans):
            blocks = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(c, c_level, e, g, cfg.dropout))
                c = c_level
                skip_chans.append(c)
            sample = nn.Conv1d(c, c, 3, stride=2, padding=1) if level < len(chans) - 1 else None
            if sample is not None:
                skip_chans.append(c)
            self.down.append(nn.ModuleDict({"blocks": blocks, **({"sample": sample} if sample else {})}))

        self.mid1 = ResBlock(c, c, e, g, cfg.dropout)
        self.mid_attn = SelfAttention(c, cfg.attn_heads, g)
        self.mid2 = ResBlock(c, c, e, g, cfg.dropout)

        self.up = nn.ModuleList()
        for level in reversed(range(len(chans))):
            blocks = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResBlock(c + skip_chans.pop(), chans[level], e, g, cfg.dropout))
                c = chans[level]
            sample = nn.Conv1d(c, c, 3, padding=1) if level > 0 else None
            self.up.append(nn.ModuleDict({"blocks": blocks, **({"sample": sample} if sample else {})}))
        self.out_norm = nn.GroupNorm(g, c)
        self.out = nn.Conv1d(c, width, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # start as the zero function: D = c_skip x at initialisation
        nn.init.zeros_(self.out.bias)

    def embed(self, c_noise: Tensor, cond: Tensor | None, batch: int) -> Tensor:
        emb = self.noise_mlp(sinusoidal_embedding(c_noise.reshape(-1).expand(batch), self.config.channels))
        if self.cond_dim == 0:
            if cond is not None:
                raise ValueError("this network was built without conditioning (cond_dim=0) but got a condition")
            return emb
        if cond is None:
            return emb + self.null_cond
        if cond.shape != (batch, self.cond_dim):
            raise ValueError(f"cond must have shape ({batch}, {self.cond_dim}), got {tuple(cond.shape)}")
        is_null = torch.isnan(cond).any(dim=1, keepdim=True)
        cond_emb = self.cond_mlp(torch.nan_to_num(cond.to(emb.dtype), nan=0.0))
        return emb + torch.where(is_null, self.null_cond.to(emb.dtype), cond_emb)

    def forward(self, x: Tensor, c_noise: Tensor, cond: Tensor | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[2] != self.width:
            raise ValueError(f"expected x of shape (B, rows, {self.width}), got {tuple(x.shape)}")
        emb = self.embed(c_noise, cond, x.shape[0])
        h = self.stem(x.transpose(1, 2))
        skips = [h]
        for level in self.down:
            for block in level["blocks"]:
                h = block(h, emb)
                skips.append(h)
            if "sample" in level:
                h = level["sample"](F.pad(h, (0, h.shape[-1] % 2)))  # odd lengths: pad one row before halving
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level in self.up:
            for block in level["blocks"]:
                skip = skips.pop()
                h = block(torch.cat([h[..., : skip.shape[-1]], skip], dim=1), emb)
            if "sample" in level:
                h = level["sample"](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.out(F.silu(self.out_norm(h[..., : x.shape[1]])))
        return h.transpose(1, 2)
