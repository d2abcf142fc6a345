"""The transformer's parts: LLaMA block, causal self-attention with RoPE and a KV cache, SwiGLU MLP,
RMSNorm, and the rotary-position functions (docs/method.md §2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ivideogpt.transformer.config import TransformerConfig
from ivideogpt.transformer.kv_cache import KVCache


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x)).

    With `action_modulation`, a zero-initialised bias-free Linear maps each position's action row to a scale
    and a shift of both norms' outputs (before their gains): norm(x) * (1 + scale) + shift. Zero init and
    no bias: it starts as the plain block, and a zero action row (a context position) changes nothing.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.mlp_norm = RMSNorm(cfg.n_embd)
        self.mlp = SwiGLU(cfg)
        modulated = cfg.action_modulation and cfg.action_dim
        self.action_mod = nn.Linear(cfg.action_input_dim, 4 * cfg.n_embd, bias=False) if modulated else None

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor],
        mask: Tensor | None,
        kv_cache: KVCache | None,
        layer: int,
        action_rows: Tensor | None = None,
    ) -> Tensor:
        """`action_rows` (B, T, A_in): each position's action input (zero where none), read only with
        `action_modulation`."""
        mods = [None] * 4  # attention's scale and shift, then the MLP's
        if self.action_mod is not None and action_rows is not None:
            mods = self.action_mod(action_rows).chunk(4, dim=-1)  # 4 x (B, T, d)
        x = x + self.attn(self.attn_norm(x, *mods[:2]), rope, mask, kv_cache, layer)
        return x + self.mlp(self.mlp_norm(x, *mods[2:]))


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with rotary positions, through F.scaled_dot_product_attention."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.attn_dropout = cfg.attn_dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor],
        mask: Tensor | None,
        kv_cache: KVCache | None,
        layer: int,
    ) -> Tensor:
        b, t, d = x.shape
        q, k, v = (
            self.qkv(x).view(b, t, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)
        )  # (B, H, T, hd)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)  # (B, H, S, hd): cached positions then these T
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.attn_dropout if self.training else 0.0,
            is_causal=mask is None and t > 1,  # one query attends to everything cached
        )  # (B, H, T, hd)
        return self.drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))


class SwiGLU(nn.Module):
    """LLaMA's gated MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(cfg.n_embd, cfg.hidden_size, bias=False)
        self.up = nn.Linear(cfg.n_embd, cfg.hidden_size, bias=False)
        self.down = nn.Linear(cfg.hidden_size, cfg.n_embd, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.down(F.silu(self.gate(x)) * self.up(x)))


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 (bf16 mean-of-squares loses precision)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor, scale: Tensor | None = None, shift: Tensor | None = None) -> Tensor:
        """x / rms(x), modulated by (1 + scale) and shift when given (`Block`), times the gain."""
        xf = x.float()
        normed = xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + self.eps)
        if scale is not None:
            normed = normed * (1 + scale.float()) + shift.float()
        return normed.type_as(x) * self.weight


# -------------------------------------------------------------------------------- rotary positions


def rope_frequencies(head_dim: int, theta: float) -> Tensor:
    """Inverse frequencies (head_dim / 2,) of RoPE (Su et al. 2021)."""
    return 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)


def rope_cos_sin(positions: Tensor, inv_freq: Tensor) -> tuple[Tensor, Tensor]:
    """Cos and sin (T, head_dim / 2) of absolute positions (T,); computed, so any position works."""
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, hd/2)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs (i, i + hd/2) of x (B, H, T, hd) by position angles (LLaMA's "rotate half")."""
    x1, x2 = x.float().chunk(2, dim=-1)  # 2 x (B, H, T, hd/2)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


def offset_causal_mask(start: int, t: int, device: torch.device) -> Tensor | None:
    """Bool (T, start + T) mask for T > 1 queries after `start` cached keys; None where is_causal suffices."""
    if start == 0 or t == 1:
        return None
    keys = torch.arange(start + t, device=device)
    queries = torch.arange(start, start + t, device=device)
    return keys[None, :] <= queries[:, None]
