"""Tokenizer training objective: pixel reconstruction, LPIPS, codebook/commitment, optional patch GAN.

`TokenizerLoss.generator_loss` is what the tokenizer minimises; `discriminator_loss` trains the patch-GAN
discriminator (hinge loss) and is only called while `gan_active(step)`, so no step is spent on a GAN that
is off (a weak spot of the reference code, docs/method.md §5). The GAN's generator term is scaled by the
adaptive weight of taming-transformers: |grad of the reconstruction loss| / |grad of the GAN loss| at the
decoders' last layer.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ivideogpt.tokenizer.config import TokenizerLossConfig
from ivideogpt.tokenizer.lpips import LPIPS
from ivideogpt.tokenizer.output import TokenizerOutput

_warned_no_lpips = False  # the "perceptual loss disabled" warning is given once per process
# `future_blend`: the last context frame is right at a pixel when no channel is off by more than 2
# uint8 levels
STATIC_TOLERANCE = 2 * 2 / 255  # in [-1, 1] units


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (pix2pix / taming): `(N, 3, H, W)` -> real/fake logits `(N, 1, h, w)`.

    GroupNorm instead of BatchNorm, so the result does not depend on how the batch is split across
    processes or micro-batches.
    """

    def __init__(self, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(3, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        ch = channels
        for i in range(1, layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            blocks += [nn.Conv2d(ch, out, 4, stride=stride, padding=1, bias=False),
                       nn.GroupNorm(math.gcd(32, out), out), nn.LeakyReLU(0.2)]
            ch = out
        blocks.append(nn.Conv2d(ch, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TokenizerLoss(nn.Module):
    """Losses of a tokenizer; holds the discriminator (when enabled) and a frozen LPIPS (when given).

    The LPIPS network is deliberately not a registered submodule: it is frozen, comes from its own
    weight files and must not bloat tokenizer checkpoints. It follows the input's device on first use.
    """

    def __init__(self, cfg: TokenizerLossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.discriminator = (PatchDiscriminator(cfg.disc_channels, cfg.disc_layers)
                              if cfg.disc_enabled else None)
        lpips = None
        if cfg.lpips_weights is not None and cfg.perceptual_weight > 0:
            lpips = LPIPS.from_weights(cfg.lpips_weights, cfg.lpips_lin_weights)
        elif cfg.perceptual_weight > 0:
            _warn_no_lpips()
        self._lpips: tuple[LPIPS, ...] = (lpips,) if lpips is not None else ()  # a tuple: not a submodule

    @property
    def perceptual_enabled(self) -> bool:
        return bool(self._lpips)

    def gan_active(self, step: int) -> bool:
        """Whether the GAN terms (and the discriminator update) are on at this optimizer step."""
        return self.discriminator is not None and step >= self.cfg.disc_start

    def generator_loss(
        self, clip: Tensor, out: TokenizerOutput, last_layer: Tensor | Sequence[Tensor], step: int
    ) -> tuple[Tensor, dict[str, float]]:
        """Loss the tokenizer minimises, and float metrics.

        Args:
            clip: the target `(B, T, 3, H, W)` in [-1, 1].
            out: the tokenizer's forward output on `clip` (recon `(B, T, 3, H, W)`; Tc = context frames).
            last_layer: the decoders' output weights (`tokenizer.last_layer_weights`), for the adaptive
                GAN weight.
            step: optimizer step (decides whether the GAN term is on).

        Returns:
            (scalar loss, metrics): `loss`, `recon`, `recon_context`, `recon_future`, `psnr_future`,
            `quant`, `{context,future}_{perplexity,usage}`, and `perceptual`, `gan_g`, `gan_weight` when on,
            `blend_raw`, `blend_mask` with `future_blend`.
        """
        tc = out.context_codes.shape[1]
        x, y = clip.flatten(0, 1), out.recon.flatten(0, 1)  # (B*T, 3, H, W)
        pixel = (y - x).abs() if self.cfg.recon == "l1" else (y - x).square()
        if self.cfg.motion_weight > 0:
            change = (clip[:, tc:] - clip[:, tc - 1 : tc]).abs().mean(dim=2, keepdim=True)  # (B, Tf, 1, H, W)
            weight = torch.cat([torch.ones_like(clip[:, :tc, :1]), 1 + self.cfg.motion_weight * change],
                               dim=1)  # (B, T, 1, H, W)
            pixel = pixel * weight.flatten(0, 1)
        per_frame = pixel.mean(dim=(1, 2, 3)).view(clip.shape[:2])  # (B, T)
        nll = self.cfg.recon_weight * per_frame.mean()
        metrics = {"recon_context": per_frame[:, :tc].mean(), "recon_future": per_frame[:, tc:].mean(),
                   "psnr_future": _psnr(clip[:, tc:], out.recon[:, tc:])}
        blend_mask = None
        if out.future_mask_logits is not None:  # future_blend
            blend_raw, blend_mask = self._blend_terms(clip[:, tc:], clip[:, tc - 1 : tc], out)
            nll = nll + self.cfg.blend_raw_weight * blend_raw
            metrics.update(blend_raw=blend_raw, blend_mask=blend_mask)
        if self._lpips:
            perceptual = self._perceptual(x, y)
            nll = nll + self.cfg.perceptual_weight * perceptual
            metrics["perceptual"] = perceptual
        loss = nll + self.cfg.codebook_weight * out.quant_loss
        if blend_mask is not None:  # a classification term: kept out of `nll`, which scales the GAN weight
            loss = loss + self.cfg.blend_mask_weight * blend_mask
        if self.gan_active(step) and torch.is_grad_enabled():
            assert self.discriminator is not None
            gan_g = -self.discriminator(y).mean()
            weight = self._adaptive_weight(nll, gan_g, last_layer)
            loss = loss + weight * gan_g
            metrics.update(gan_g=gan_g, gan_weight=weight)
        metrics.update(loss=loss, recon=per_frame.mean(), quant=out.quant_loss, **out.stats)
        values = torch.stack([torch.as_tensor(v).detach().float().reshape(()) for v in metrics.values()])
        return loss, dict(zip(metrics, values.tolist(), strict=True))  # one device sync for all metrics

    def discriminator_loss(
        self, clip: Tensor, out: TokenizerOutput, step: int
    ) -> tuple[Tensor, dict[str, float]]:
        """Hinge loss of the discriminator on real frames vs (detached) reconstructions.

        Only meaningful while `gan_active(step)`; raises otherwise so no step is wasted on a disabled GAN.
        """
        if not self.gan_active(step):
            raise RuntimeError(f"discriminator_loss called at step {step}, but the GAN is off "
                               f"(disc_enabled={self.cfg.disc_enabled}, disc_start={self.cfg.disc_start})")
        assert self.discriminator is not None
        real = self.discriminator(clip.flatten(0, 1))
        fake = self.discriminator(out.recon.detach().flatten(0, 1))
        loss = 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
        metrics = {"disc_loss": float(loss.detach()), "logits_real": float(real.detach().mean()),
                   "logits_fake": float(fake.detach().mean())}
        return loss, metrics

    def _blend_terms(self, future: Tensor, last: Tensor, out: TokenizerOutput) -> tuple[Tensor, Tensor]:
        """`future_blend` supervision: (pixel loss of D_p's own frames, BCE of its mask).

        Through the blend alone, sigmoid gradients fade as the mask closes: static pixels kept a few levels
        of D_p's blur and lost the near-static clips to copy-last (measured: 38% of future pixels differed
        from the last context frame where 7% had changed). So D_p's frame is also trained to be the whole
        future frame, and its mask is trained (BCE) to pick, per pixel, whichever of the last context frame
        and D_p's frame is closer to the truth, the last frame wherever it is within `STATIC_TOLERANCE`.

        Args:
            future: `(B, Tf, 3, H, W)` true future frames; last: `(B, 1, 3, H, W)` the last context frame.
        """
        assert out.future_raw is not None and out.future_mask_logits is not None
        error = out.future_raw - future
        raw = (error.abs() if self.cfg.recon == "l1" else error.square()).mean()
        error_last = (future - last).abs().amax(dim=2, keepdim=True)  # (B, Tf, 1, H, W)
        error_raw = error.detach().abs().amax(dim=2, keepdim=True)
        keep_last = (error_last <= error_raw.clamp_min(STATIC_TOLERANCE)).float()
        return raw, F.binary_cross_entropy_with_logits(out.future_mask_logits.float(), keep_last)

    def _perceptual(self, x: Tensor, y: Tensor) -> Tensor:
        net = self._lpips[0]
        if net.shift.device != x.device:
            net.to(x.device)
        return net(x.float(), y.float()).mean()

    def _adaptive_weight(self, nll: Tensor, gan_g: Tensor, last_layer: Tensor | Sequence[Tensor]) -> Tensor:
        params = [last_layer] if isinstance(last_layer, Tensor) else list(last_layer)
        nll_grads = torch.autograd.grad(nll, params, retain_graph=True)
        gan_grads = torch.autograd.grad(gan_g, params, retain_graph=True)
        nll_norm = torch.sqrt(sum(g.square().sum() for g in nll_grads))
        gan_norm = torch.sqrt(sum(g.square().sum() for g in gan_grads))
        weight = (nll_norm / (gan_norm + 1e-4)).clamp(0.0, self.cfg.adaptive_weight_max)
        return self.cfg.disc_weight * weight.detach()


def _psnr(target: Tensor, pred: Tensor) -> Tensor:
    """Mean PSNR in dB of frames in [-1, 1] (peak-to-peak 2), computed per frame."""
    mse = (pred.detach().clamp(-1, 1) - target).square().flatten(2).mean(-1)  # (B, T)
    return (10 * torch.log10(4.0 / mse.clamp_min(1e-10))).mean()


def _warn_no_lpips() -> None:
    global _warned_no_lpips
    if not _warned_no_lpips:
        _warned_no_lpips = True
        warnings.warn("no LPIPS weights given (TokenizerLossConfig.lpips_weights): the perceptual loss is "
                      "disabled; training uses the pixel and codebook losses only", stacklevel=3)
