"""Per-frame VQGAN: conv encoder, patch projection, vector quantizer, conv decoder.

One parametrised piece serves both halves of the compressive tokenizer (docs/method.md §1):
- the plain per-frame pair E_c / D_c (`patch_size=1`, no cross-attention): 16x16 tokens at 64x64;
- the conditional pair E_p / D_p (`patch_size=4`, cross-attention to the context frames' features at the
  configured scales): the 16x16 latent cut into 4x4 patches, one token each, 16 tokens per frame.

Encoders and decoders also return their multi-scale feature maps `{side: (N, C, side, side)}` (output
of each level's residual blocks), which the conditional pair attends to.
"""

from __future__ import annotations

import itertools

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ivideogpt.tokenizer.blocks import AttnBlock, CrossAttnBlock, Downsample, ResBlock, Upsample, group_norm
from ivideogpt.tokenizer.config import QuantizerConfig, TokenizerConfig
from ivideogpt.tokenizer.quantizer import QuantizerOutput, VectorQuantizer

# Feature maps by side length s: (N, C, s, s) per frame, or (B, Tc, C, s, s) per clip.
Features = dict[int, Tensor]


class Level(nn.Module):
    """One resolution level: residual blocks, then (conditional nets only) cross-attention blocks, windowed
    at the sizes in `cfg.local_cross_attn_resolutions`."""

    def __init__(self, cfg: TokenizerConfig, channels: int, size: int, cross_blocks: int) -> None:
        super().__init__()
        self.size = size
        self.res = nn.ModuleList(
            ResBlock(channels, channels, cfg.norm_groups, cfg.dropout) for _ in range(cfg.num_res_blocks)
        )
        window = cfg.cross_attn_window if size in cfg.local_cross_attn_resolutions else None
        self.cross = nn.ModuleList(
            CrossAttnBlock(channels, size, cfg.norm_groups, cfg.cross_attn_heads, window)
            for _ in range(cross_blocks)
        )

    def forward(self, x: Tensor, context: Features | None) -> Tensor:
        for block in self.res:
            x = block(x)
        if len(self.cross):
            if context is None or self.size not in context:
                raise ValueError(f"conditional level {self.size}x{self.size} needs context features of that "
                                 f"size, got {None if context is None else sorted(context)}")
            for block in self.cross:
                x = block(x, context[self.size])
        return x


def _levels(cfg: TokenizerConfig, ch: tuple[int, ...], sizes: tuple[int, ...], cross: int) -> nn.ModuleList:
    """Levels in processing order; `cross` blocks only at the sizes in `cfg.conditioned_sizes`."""
    return nn.ModuleList(
        Level(cfg, c, s, cross if s in cfg.conditioned_sizes else 0)
        for c, s in zip(ch, sizes, strict=True)
    )


def _mid_block(cfg: TokenizerConfig) -> nn.Sequential:
    ch = cfg.channels[-1]
    blocks = [ResBlock(ch, ch, cfg.norm_groups, cfg.dropout)]
    if cfg.mid_attention:
        blocks.append(AttnBlock(ch, cfg.norm_groups, cfg.cross_attn_heads))
    blocks.append(ResBlock(ch, ch, cfg.norm_groups, cfg.dropout))
    return nn.Sequential(*blocks)


class Encoder(nn.Module):
    """Image `(N, 3, H, W)` -> latent `(N, latent_channels, h, w)` plus per-level features."""

    def __init__(self, cfg: TokenizerConfig, cross_blocks: int = 0) -> None:
        super().__init__()
        ch, sizes = cfg.channels, cfg.level_sizes
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        self.levels = _levels(cfg, ch, sizes, cross_blocks)
        self.down = nn.ModuleList(Downsample(c_in, c_out) for c_in, c_out in itertools.pairwise(ch))
        self.mid = _mid_block(cfg)
        self.norm_out = group_norm(ch[-1], cfg.norm_groups)
        self.conv_out = nn.Conv2d(ch[-1], cfg.latent_channels, 3, padding=1)

    def forward(self, x: Tensor, context: Features | None = None) -> tuple[Tensor, Features]:
        h = self.conv_in(x)
        features: Features = {}
        for i, level in enumerate(self.levels):
            h = level(h, context)
            features[level.size] = h
            if i < len(self.down):
                h = self.down[i](h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h))), features


class Decoder(nn.Module):
    """Latent `(N, latent_channels, h, w)` -> image `(N, 3, H, W)` plus per-level features."""

    def __init__(self, cfg: TokenizerConfig, cross_blocks: int = 0, out_channels: int = 3) -> None:
        super().__init__()
        ch, sizes = cfg.channels[::-1], cfg.level_sizes[::-1]  # bottom (coarsest) level first
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch[0], 3, padding=1)
        self.mid = _mid_block(cfg)
        self.levels = _levels(cfg, ch, sizes, cross_blocks)
        self.up = nn.ModuleList(Upsample(c_in, c_out) for c_in, c_out in itertools.pairwise(ch))
        self.norm_out = group_norm(ch[-1], cfg.norm_groups)
        self.conv_out = nn.Conv2d(ch[-1], out_channels, 3, padding=1)

    def forward(self, z: Tensor, context: Features | None = None) -> tuple[Tensor, Features]:
        h = self.mid(self.conv_in(z))
        features: Features = {}
        for i, level in enumerate(self.levels):
            h = level(h, context)
            features[level.size] = h
            if i < len(self.up):
                h = self.up[i](h)
        return self.conv_out(F.silu(self.norm_out(h))), features


class VQGAN(nn.Module):
    """Encoder -> patches -> linear -> quantizer -> linear -> un-patch -> decoder, for single frames.

    Args:
        cfg: architecture.
        quantizer: this autoencoder's codebook.
        patch_size: latent patch side per token (1: one token per latent position).
        conditional: add cross-attention blocks (E_p / D_p); then `encode`/`decode` need `context`.
        out_channels: channels the decoder outputs (3; 4 when a blending mask rides along).
    """

    def __init__(
        self, cfg: TokenizerConfig, quantizer: QuantizerConfig, patch_size: int, conditional: bool,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.conditional = conditional
        self.encoder = Encoder(cfg, cfg.encoder_cross_blocks if conditional else 0)
        self.decoder = Decoder(cfg, cfg.decoder_cross_blocks if conditional else 0, out_channels)
        patch_dim = patch_size * patch_size * cfg.latent_channels
        self.to_code = nn.Linear(patch_dim, quantizer.code_dim)
        self.from_code = nn.Linear(quantizer.code_dim, patch_dim)
        self.quantizer = VectorQuantizer(quantizer)
        self.grid = cfg.latent_grid // patch_size

    @property
    def vocab_size(self) -> int:
        return self.quantizer.vocab_size

    @property
    def cross_attn_sizes(self) -> tuple[int, ...]:
        """Feature sizes the decoder's cross-attention reads (empty for a plain VQGAN)."""
        return tuple(level.size for level in self.decoder.levels if len(level.cross))

    def encode(self, x: Tensor, context: Features | None = None) -> tuple[QuantizerOutput, Features]:
        """Frames `(N, 3, H, W)` -> quantized `(N, D, g, g)`, codes `(N, g, g)`, encoder features.

        `context`: conditional only, the context frames' encoder features `{s: (B, Tc, C, s, s)}`, with
        N = B * F frames in clip-major order.
        """
        embedded, features = self.embed(x, context)
        return self.quantizer(embedded), features

    def embed(self, x: Tensor, context: Features | None = None) -> tuple[Tensor, Features]:
        """Frames `(N, 3, H, W)` -> the code vectors before quantization `(N, D, g, g)`, encoder features.

        What `encode` quantizes; also a frame's continuous features (the planner's goal distance).
        """
        z, features = self.encoder(x, context)  # (N, L, h, w)
        p = self.patch_size
        patches = rearrange(z, "n c (h p1) (w p2) -> n h w (p1 p2 c)", p1=p, p2=p)
        return rearrange(self.to_code(patches), "n h w d -> n d h w"), features

    def decode(self, quantized: Tensor, context: Features | None = None) -> tuple[Tensor, Features]:
        """Code vectors `(N, D, g, g)` -> frames `(N, 3, H, W)` and decoder features."""
        p = self.patch_size
        patches = self.from_code(rearrange(quantized, "n d h w -> n h w d"))
        z = rearrange(patches, "n h w (p1 p2 c) -> n c (h p1) (w p2)", p1=p, p2=p)
        return self.decoder(z, context)

    def decode_codes(self, codes: Tensor, context: Features | None = None) -> tuple[Tensor, Features]:
        """Codes `(N, g, g)` -> frames `(N, 3, H, W)` and decoder features."""
        return self.decode(self.quantizer.codes_to_embedding(codes), context)
