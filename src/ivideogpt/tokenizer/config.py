"""Configs of the tokenizer: quantizers, the conv autoencoders, and the training loss.

`TokenizerConfig` fixes the architecture: `build_tokenizer(from_dict(TokenizerConfig, to_dict(cfg)))`
rebuilds the same parameter shapes, so a checkpoint stores `to_dict(cfg)` beside its weights.
`TokenizerLossConfig` holds everything that only matters while training (loss weights, LPIPS, GAN).
`TOKENIZER_PRESETS` names ready architectures: `tiny` (tests, seconds), `metaworld64` (about an hour of
CPU training at 64x64), `reference64` (the paper's 64x64 sizes, for GPUs) and per-frame baselines.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

TokenizerKind = Literal["compressive", "per_frame"]
ReconLoss = Literal["l1", "l2"]


@dataclass
class QuantizerConfig:
    """One codebook and how it is looked up and kept alive."""

    codebook_size: int = 1024  # number of codes K (token vocabulary of this codebook)
    code_dim: int = 32  # dimension of each code vector (the latent is projected to it before lookup)
    beta: float = 1.0  # commitment weight (docs/method.md §1: 1.0); the codebook term has weight 1
    l2_normalized: bool = True  # cosine lookup on unit vectors (ViT-VQGAN): better code usage
    restart_dead_codes: bool = True  # re-initialise rarely used codes from recent encoder outputs
    restart_every: int = 100  # training forward calls between dead-code checks
    dead_code_decay: float = 0.99  # EMA decay of per-code usage counts
    dead_code_threshold: float = 0.03  # dead: EMA usage below this fraction of the mean usage per code

    def __post_init__(self) -> None:
        for name in ("codebook_size", "code_dim", "restart_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"QuantizerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.beta < 0:
            raise ValueError(f"QuantizerConfig.beta must be >= 0, got {self.beta}")
        if not 0.0 < self.dead_code_decay < 1.0:
            raise ValueError(f"QuantizerConfig.dead_code_decay must be in (0, 1), got {self.dead_code_decay}")
        if not 0.0 <= self.dead_code_threshold < 1.0:
            raise ValueError(
                f"QuantizerConfig.dead_code_threshold must be in [0, 1), got {self.dead_code_threshold}"
            )


@dataclass
class TokenizerConfig:
    """Architecture of a video tokenizer (compressive, or the per-frame baseline)."""

    kind: TokenizerKind = "compressive"  # "compressive" (E_c/D_c + conditional E_p/D_p) or "per_frame"
    resolution: int = 64  # frame height = width in pixels
    channels: tuple[int, ...] = (16, 32, 64)  # conv width per level; len(channels) - 1 2x downsamplings
    num_res_blocks: int = 1  # residual blocks per level, in encoders and decoders
    mid_attention: bool = True  # self-attention block in the bottleneck (at the latent grid)
    latent_channels: int = 16  # channels of the encoder output / decoder input (before patching)
    norm_groups: int = 8  # GroupNorm groups (must divide every entry of `channels`)
    dropout: float = 0.0  # dropout inside residual blocks
    # codebook of E_c (per_frame: of every frame), and the second codebook of E_p (compressive only)
    context_codebook: QuantizerConfig = field(default_factory=QuantizerConfig)
    future_codebook: QuantizerConfig = field(default_factory=QuantizerConfig)
    patch_size: int = 4  # compressive: future latent cut into patch x patch patches, one token each
    cross_attn_resolutions: tuple[int, ...] = (16,)  # compressive: feature-map sizes with cross-attention
    encoder_cross_blocks: int = 2  # compressive: cross-attention blocks per such level in E_p
    decoder_cross_blocks: int = 1  # compressive: cross-attention blocks per such level in D_p
    cross_attn_heads: int = 4  # heads of every (cross- and self-) attention block
    # compressive: finer feature-map sizes with LOCAL cross-attention, each position attending to the
    # cross_attn_window x cross_attn_window neighbourhood of its own position in every context frame. Fine
    # scales carry the detail a moved arm is drawn with; full attention there costs (h w)^2 per frame
    # (32x32 made a training step 7x slower on a CPU), while motion between frames a few steps apart is local.
    local_cross_attn_resolutions: tuple[int, ...] = ()
    cross_attn_window: int = 5
    # compressive: D_p also outputs a per-pixel mask that blends its frame with the last context frame (its
    # real pixels when encoded from frames). Not in the reference; lets a small CPU-trained tokenizer keep
    # static pixels exactly and spend its 16 tokens on what moved.
    future_blend: bool = False
    # compressive with future_blend: a future patch none of whose pixels changed by more than this many grey
    # levels (mean over RGB) since the last context frame gets the reserved code STILL_CODE (0), whose vector
    # is learnt through the decoder, which then copies the context there. Otherwise still patches get
    # whatever code their latent is nearest, about 1 nat each the transformer cannot predict
    # (docs/actions-log.md); 0: off
    still_threshold: float = 0.0

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        self.cross_attn_resolutions = tuple(self.cross_attn_resolutions)
        self.local_cross_attn_resolutions = tuple(self.local_cross_attn_resolutions)
        if self.kind not in ("compressive", "per_frame"):
            raise ValueError(f"TokenizerConfig.kind must be 'compressive' or 'per_frame', got {self.kind!r}")
        if self.future_blend and self.kind != "compressive":
            raise ValueError("TokenizerConfig.future_blend needs kind='compressive' (per-frame tokenizers "
                             "code every frame alone)")
        if self.still_threshold < 0:
            raise ValueError(f"TokenizerConfig.still_threshold must be >= 0, got {self.still_threshold}")
        if self.still_threshold and not self.future_blend:
            raise ValueError("TokenizerConfig.still_threshold needs future_blend: a still patch's code says "
                             "'copy the last context frame here', which only the blend mask can do (set "
                             "--tokenizer.future-blend too, also when the parent of --init-from has it)")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"TokenizerConfig.channels must be non-empty positive widths, "
                             f"got {self.channels}")
        bad = [c for c in self.channels if c % self.norm_groups]
        if self.norm_groups < 1 or bad:
            raise ValueError(f"TokenizerConfig.norm_groups={self.norm_groups} must divide every channel "
                             f"count, but not {bad}")
        for name in ("num_res_blocks", "latent_channels", "patch_size", "cross_attn_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"TokenizerConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("encoder_cross_blocks", "decoder_cross_blocks"):
            if getattr(self, name) < 0:
                raise ValueError(f"TokenizerConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TokenizerConfig.dropout must be in [0, 1), got {self.dropout}")
        factor = 2 ** (len(self.channels) - 1)
        if self.resolution < 1 or self.resolution % factor:
            raise ValueError(f"TokenizerConfig.resolution={self.resolution} must be divisible by "
                             f"2**(len(channels)-1) = {factor} (channels={self.channels})")
        heads_bad = [c for c in self.channels if c % self.cross_attn_heads]
        if heads_bad:
            raise ValueError(f"TokenizerConfig.cross_attn_heads={self.cross_attn_heads} must divide every "
                             f"channel count, but not {heads_bad}")
        if self.kind == "compressive":
            self._check_compressive()

    def _check_compressive(self) -> None:
        if self.latent_grid % self.patch_size:
            raise ValueError(f"TokenizerConfig.patch_size={self.patch_size} must divide the latent grid "
                             f"{self.latent_grid} (resolution {self.resolution}, channels {self.channels})")
        sizes = self.level_sizes
        for name in ("cross_attn_resolutions", "local_cross_attn_resolutions"):
            bad = [r for r in getattr(self, name) if r not in sizes]
            if bad:
                raise ValueError(f"TokenizerConfig.{name}={getattr(self, name)}: {bad} are not feature-map "
                                 f"sizes of this network (sizes: {sizes})")
        both = set(self.cross_attn_resolutions) & set(self.local_cross_attn_resolutions)
        if both:
            raise ValueError(f"TokenizerConfig: sizes {sorted(both)} are in both cross_attn_resolutions "
                             "(full attention) and local_cross_attn_resolutions (windowed); pick one")
        if self.cross_attn_window < 1 or self.cross_attn_window % 2 == 0:
            raise ValueError(f"TokenizerConfig.cross_attn_window must be odd and >= 1 (a window centred on "
                             f"each position), got {self.cross_attn_window}")

    @property
    def conditioned_sizes(self) -> tuple[int, ...]:
        """Feature-map sizes E_p / D_p attend to the context at (full or windowed)."""
        return self.cross_attn_resolutions + self.local_cross_attn_resolutions

    @property
    def level_sizes(self) -> tuple[int, ...]:
        """Feature-map side length at each encoder level, e.g. (64, 32, 16)."""
        return tuple(self.resolution // 2**i for i in range(len(self.channels)))

    @property
    def latent_grid(self) -> int:
        """Side of the per-frame latent grid (context tokens per side)."""
        return self.level_sizes[-1]

    @property
    def future_grid(self) -> int:
        """Side of the future-frame token grid."""
        return self.latent_grid // self.patch_size if self.kind == "compressive" else self.latent_grid


@dataclass
class TokenizerLossConfig:
    """Training objective of a tokenizer: reconstruction, perceptual, codebook and optional patch GAN."""

    recon: ReconLoss = "l1"  # pixel reconstruction loss on context and future frames: "l1" or "l2"
    recon_weight: float = 1.0  # weight of the pixel loss
    # future pixels weigh 1 + motion_weight * |change since the last context frame| (mean over RGB, in
    # [-1, 1] units) in the pixel loss: motion covers few pixels, and without this a small tokenizer
    # settles for copying the context (0: the plain loss of docs/method.md §1)
    motion_weight: float = 0.0
    # future_blend only: pixel loss on D_p's own frame (so it learns to draw whole frames, not only what the
    # mask lets through), and BCE of its mask against "the last context frame is at least as close here"
    blend_raw_weight: float = 1.0
    blend_mask_weight: float = 1.0
    perceptual_weight: float = 1.0  # LPIPS weight (docs/method.md §1: 1); used only with LPIPS weights
    lpips_weights: Path | None = None  # torchvision vgg16 + LPIPS lin weights in one file, or the vgg16 file
    lpips_lin_weights: Path | None = None  # LPIPS lin-layer file (lpips' vgg.pth) when separate from vgg16
    codebook_weight: float = 1.0  # weight of the codebook + commitment terms of both quantizers
    disc_enabled: bool = False  # train a patch-GAN discriminator (hinge loss, adaptive weight)
    disc_start: int = 0  # optimizer step from which the GAN terms are active
    disc_weight: float = 0.1  # GAN weight, multiplied by the adaptive weight
    disc_channels: int = 64  # width of the first discriminator layer
    disc_layers: int = 3  # strided conv layers of the discriminator
    adaptive_weight_max: float = 1e4  # clamp of the adaptive GAN weight

    def __post_init__(self) -> None:
        if self.recon not in ("l1", "l2"):
            raise ValueError(f"TokenizerLossConfig.recon must be 'l1' or 'l2', got {self.recon!r}")
        for name in ("recon_weight", "motion_weight", "blend_raw_weight", "blend_mask_weight",
                     "perceptual_weight", "codebook_weight", "disc_weight", "disc_start"):
            if getattr(self, name) < 0:
                raise ValueError(f"TokenizerLossConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("disc_channels", "disc_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"TokenizerLossConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.lpips_lin_weights is not None and self.lpips_weights is None:
            raise ValueError("TokenizerLossConfig.lpips_lin_weights is set but lpips_weights (the vgg16 "
                             "weights) is not")


def _tiny() -> TokenizerConfig:
    codebook = QuantizerConfig(codebook_size=64, code_dim=8, restart_every=20)
    return TokenizerConfig(channels=(8, 16, 16), latent_channels=8, norm_groups=4, mid_attention=True,
                           context_codebook=codebook, future_codebook=dataclasses.replace(codebook))


def _metaworld64() -> TokenizerConfig:
    # The defaults: sized for CPU training (~4 s per 16-clip x 8-frame step on one thread), the
    # reference layout (16x16 context tokens, 4x4 future tokens) at an eighth of the reference widths.
    return TokenizerConfig()


def _reference64() -> TokenizerConfig:
    # The paper's 64x64 sizes (docs/method.md §1): channels 128-256-512, latent 64, two 8192-code books.
    return TokenizerConfig(channels=(128, 256, 512), num_res_blocks=2, latent_channels=64, norm_groups=32,
                           context_codebook=QuantizerConfig(codebook_size=8192, code_dim=64),
                           future_codebook=QuantizerConfig(codebook_size=8192, code_dim=64))


def _per_frame(base: TokenizerConfig, channels: tuple[int, ...]) -> TokenizerConfig:
    return dataclasses.replace(base, kind="per_frame", channels=channels, cross_attn_resolutions=())


TOKENIZER_PRESETS = {
    "tiny": _tiny,
    "metaworld64": _metaworld64,
    "reference64": _reference64,
    # per-frame baselines at the size of metaworld64: 16x16 tokens, or 4x4 by two more downsamplings
    "per_frame16": lambda: _per_frame(_metaworld64(), (16, 32, 64)),
    "per_frame4": lambda: _per_frame(_metaworld64(), (16, 32, 64, 64, 64)),
}


def tokenizer_preset(name: str) -> TokenizerConfig:
    """A fresh `TokenizerConfig` of a named preset (see `TOKENIZER_PRESETS`)."""
    if name not in TOKENIZER_PRESETS:
        raise KeyError(f"unknown tokenizer preset {name!r}; known: {sorted(TOKENIZER_PRESETS)}")
    return TOKENIZER_PRESETS[name]()
