"""Small configs and clips shared by the tokenizer tests."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from ivideogpt.tokenizer import TokenizerConfig, tokenizer_preset

# Channel lists that give a 16x16 latent grid at each resolution (one more downsampling per doubling).
CHANNELS_FOR_16X16 = {64: (8, 16, 16), 128: (8, 8, 16, 16), 256: (8, 8, 8, 16, 16)}


def tiny_config(resolution: int = 64, **overrides: object) -> TokenizerConfig:
    """The `tiny` preset at a resolution, channels chosen so the context grid stays 16x16."""
    cfg = tokenizer_preset("tiny")
    channels = CHANNELS_FOR_16X16[resolution]
    return dataclasses.replace(cfg, resolution=resolution, channels=channels, **overrides)


def random_clip(batch: int, frames: int, resolution: int = 64, seed: int = 0) -> Tensor:
    """float (B, T, 3, H, W) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, frames, 3, resolution, resolution, generator=g) * 2 - 1


def moving_square_clip(batch: int, frames: int, resolution: int) -> Tensor:
    """A coloured square sliding over a smooth background: float (B, T, 3, H, W) in [-1, 1]."""
    lin = torch.linspace(-1, 1, resolution)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    clip = torch.stack([0.5 * xx, 0.5 * yy, -0.3 * torch.ones_like(xx)])  # (3, H, W)
    clip = clip.expand(batch, frames, 3, resolution, resolution).clone()
    side = resolution // 4
    for b in range(batch):
        for t in range(frames):
            x0 = (2 * t + 3 * b) % (resolution - side)
            clip[b, t, :, side : 2 * side, x0 : x0 + side] = torch.tensor([0.9, -0.8, 0.3])[:, None, None]
    return clip
