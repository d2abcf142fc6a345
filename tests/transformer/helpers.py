"""A tiny transformer config and random clips for the transformer tests (random codes test mechanics only)."""

from __future__ import annotations

import torch
from torch import Tensor

from ivideogpt.data.tokens import TokenBatch
from ivideogpt.transformer import Transformer, TransformerConfig, transformer_preset


def tiny_config(**overrides: object) -> TransformerConfig:
    """The tiny preset with a small layout: Vc=32, Vf=24, N=6 codes per context frame, n=4 per future one."""
    layout = {
        "context_vocab_size": 32,
        "future_vocab_size": 24,
        "tokens_per_context_frame": 6,
        "tokens_per_future_frame": 4,
        "max_context_frames": 2,
        "max_future_frames": 3,
    }
    return transformer_preset("tiny", **{**layout, **overrides})


def randomize_zero_init(model: Transformer, seed: int = 0) -> None:
    """Give the zero-initialised parts (action projection, learned positions, heads) random weights so tests
    can see them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            zero_init = name.startswith(("action_proj.", "action_sum_proj.", "heads.", "pos_emb."))
            if zero_init or ".action_mod." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def random_clip(cfg: TransformerConfig, b: int, tc: int, tf: int, seed: int = 0) -> dict[str, Tensor]:
    """compute_loss keyword arguments for B random clips of Tc context and Tf future frames."""
    g = torch.Generator().manual_seed(seed)
    t = tc + tf
    return {
        "context_codes": torch.randint(
            0, cfg.context_vocab_size, (b, tc, cfg.tokens_per_context_frame), generator=g
        ),
        "future_codes": torch.randint(
            0, cfg.future_vocab_size, (b, tf, cfg.tokens_per_future_frame), generator=g
        ),
        "actions": torch.randn(b, t, cfg.action_dim, generator=g),
        "rewards": torch.randn(b, t, generator=g),
        "dones": torch.rand(b, t, generator=g) < 0.3,
        "has_actions": torch.ones(b, dtype=torch.bool),
        "has_rewards": torch.ones(b, dtype=torch.bool),
    }


def random_batch(
    cfg: TransformerConfig, b: int, tc: int, tf: int, seed: int = 0, **fields: Tensor
) -> TokenBatch:
    """`random_clip` as the `TokenBatch` `Transformer.compute_loss` takes, with `fields` replaced."""
    return TokenBatch(**{**random_clip(cfg, b, tc, tf, seed), **fields})
