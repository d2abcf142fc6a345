"""Conv and attention building blocks of the tokenizer's encoders and decoders.

Feature maps are `(N, C, h, w)`. `CrossAttnBlock` is what makes an encoder or decoder conditional: its
queries are the map of the frame being coded and its keys/values the same-scale maps of all context frames
of the same clip (iVideoGPT, docs/method.md §1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, SiLU, conv3x3) x 2, with a 1x1 skip on channel change."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Halve the spatial size with a strided 3x3 conv, changing the width to the next level's."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double the spatial size: nearest-neighbour upsampling, then a 3x3 conv to the next level's width.

    Changing the width here (not in the next residual block) halves the cost of this conv, which runs at
    the higher resolution.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MultiHeadAttention(nn.Module):
    """Multi-head attention on token sequences, shared by self- and cross-attention blocks."""

    def __init__(self, channels: int, heads: int, zero_init_out: bool = False) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention: {channels} channels do not split into {heads} heads")
        self.heads = heads
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(channels, 2 * channels)
        self.out = nn.Linear(channels, channels)
        if zero_init_out:
            # The block starts as the identity, so a conditional network copied from a plain one
            # (init_conditional_from_plain) begins exactly where the plain one is.
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """(N, Lq, C) queries attending to (N, Lk, C) keys/values -> (N, Lq, C)."""
        q = rearrange(self.q(x), "n l (h d) -> n h l d", h=self.heads)
        k, v = rearrange(self.kv(context), "n l (two h d) -> two n h l d", two=2, h=self.heads)
        y = F.scaled_dot_product_attention(q, k, v)  # (N, heads, Lq, d)
        return self.out(rearrange(y, "n h l d -> n l (h d)"))


class AttnBlock(nn.Module):
    """Residual self-attention over all positions of a feature map."""

    def __init__(self, channels: int, groups: int, heads: int) -> None:
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.attn = MultiHeadAttention(channels, heads)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        tokens = rearrange(self.norm(x), "n c h w -> n (h w) c")
        y = self.attn(tokens, tokens)
        return x + rearrange(y, "n (h w) c -> n c h w", h=h, w=w)


class CrossAttnBlock(nn.Module):
    """Residual cross-attention from a frame's feature map to the same-scale maps of its context frames.

    GroupNorm on queries and on keys/values, learned spatial position embeddings (shared by all context
    frames, so any number of context frames works), multi-head attention, zero-initialised output.
    """

    def __init__(self, channels: int, size: int, groups: int, heads: int) -> None:
        super().__init__()
        self.size = size
        self.norm_q = group_norm(channels, groups)
        self.norm_kv = group_norm(channels, groups)
        self.pos_q = nn.Parameter(torch.randn(size * size, channels) * 0.02)
        self.pos_kv = nn.Parameter(torch.randn(size * size, channels) * 0.02)
        self.attn = MultiHeadAttention(channels, heads, zero_init_out=True)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """Condition frames on their clip's context frames.

        Args:
            x: `(B * F, C, h, w)`: F frames per clip, clip-major (frames of a clip are consecutive).
            context: `(B, Tc, C, h, w)`: the context frames' features at the same scale.

        Returns:
            `(B * F, C, h, w)`.
        """
        b, _, c, h, w = context.shape
        if x.shape[1:] != (c, h, w) or x.shape[0] % b or (h, w) != (self.size, self.size):
            raise ValueError(f"CrossAttnBlock({self.size}x{self.size}): queries {tuple(x.shape)} do not fit "
                             f"context {tuple(context.shape)}")
        q = rearrange(self.norm_q(x), "n c h w -> n (h w) c") + self.pos_q  # (B*F, hw, C)
        # Every query attends to the same keys of its clip, independently of the other queries, so all
        # F frames of a clip share one query sequence and the context is never copied per frame.
        q = rearrange(q, "(b f) l c -> b (f l) c", b=b)  # (B, F*hw, C)
        kv = rearrange(self.norm_kv(context.flatten(0, 1)), "n c h w -> n (h w) c") + self.pos_kv
        kv = rearrange(kv, "(b t) l c -> b (t l) c", b=b)  # (B, Tc*hw, C)
        y = rearrange(self.attn(q, kv), "b (f h w) c -> (b f) c h w", h=h, w=w)
        return x + y
