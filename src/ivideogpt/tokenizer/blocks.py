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

    GroupNorm on queries and on keys/values, multi-head attention, zero-initialised output. With `window`
    None every position attends to every position of every context frame, with learned spatial position
    embeddings (shared by all context frames, so any number of them works). With an odd `window` each
    position attends only to the window x window neighbourhood of its own position in each context frame,
    with learned embeddings of the offset: cost linear in the map's area, for fine scales.
    """

    def __init__(self, channels: int, size: int, groups: int, heads: int, window: int | None = None) -> None:
        super().__init__()
        self.size, self.window = size, window
        self.norm_q = group_norm(channels, groups)
        self.norm_kv = group_norm(channels, groups)
        self.pos_q = nn.Parameter(torch.randn(size * size, channels) * 0.02)
        keys = size * size if window is None else window * window  # positions, or offsets in the window
        self.pos_kv = nn.Parameter(torch.randn(keys, channels) * 0.02)
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
        kv = self.norm_kv(context.flatten(0, 1))  # (B*Tc, C, h, w)
        y = self._global(q, kv, b) if self.window is None else self._local(q, kv, b)
        return x + rearrange(y, "n (h w) c -> n c h w", h=h, w=w)

    def _global(self, q: Tensor, kv: Tensor, b: int) -> Tensor:
        # Every query attends to the same keys of its clip, independently of the other queries, so all
        # F frames of a clip share one query sequence and the context is never copied per frame.
        q = rearrange(q, "(b f) l c -> b (f l) c", b=b)  # (B, F*hw, C)
        kv = rearrange(kv, "(b t) c h w -> b (t h w) c", b=b) + self.pos_kv.repeat(kv.shape[0] // b, 1)
        return rearrange(self.attn(q, kv), "b (f l) c -> (b f) l c", l=self.size * self.size)

    def _local(self, q: Tensor, kv: Tensor, b: int) -> Tensor:
        attn, k2, pad, size = self.attn, self.window * self.window, self.window // 2, self.size
        # Project the maps once, then cut each position's window out of every context frame (projecting
        # the windows would repeat the projection k2 times). The offset embedding enters the keys and values
        # as pos_kv @ W_kv, which is what adding it before the (linear) projection gives.
        projected = rearrange(attn.kv(rearrange(kv, "n c h w -> n (h w) c")), "n (h w) c -> n c h w", h=size)
        windows = F.unfold(projected, self.window, padding=pad)  # (B*Tc, 2C*k2, hw); zeros outside the map
        offsets = F.linear(self.pos_kv, attn.kv.weight)  # (k2, 2C)
        windows = rearrange(windows, "(b t) (c k) l -> b l t k c", b=b, k=k2) + offsets
        # one attention problem per (clip, position): the F frames' queries against that position's windows
        k, v = rearrange(windows, "b l t k (two h d) -> two (b l) h (t k) d", two=2, h=attn.heads)
        inside = F.unfold(kv.new_ones(1, 1, size, size), self.window, padding=pad)[0] > 0  # (k2, hw)
        inside = inside.t().repeat(1, kv.shape[0] // b)  # (hw, Tc*k2), in the keys' (t k) order
        mask = inside[None, :, None, None].expand(b, -1, -1, -1, -1).flatten(0, 1)  # (B*hw, 1, 1, Tc*k2)
        qh = rearrange(attn.q(q), "(b f) l (h d) -> (b l) h f d", b=b, h=attn.heads)
        y = F.scaled_dot_product_attention(qh, k, v, attn_mask=mask)  # (B*hw, heads, F, d)
        return attn.out(rearrange(y, "(b l) h f d -> (b f) l (h d)", b=b))
