"""Vector quantizer: nearest-code lookup with straight-through gradients and codebook/commitment loss.

With `l2_normalized` (ViT-VQGAN, Yu et al. 2022) latents and codes are unit vectors and the lookup is by
cosine similarity; this keeps far more codes in use than raw Euclidean lookup. Codes whose usage fades
are optionally restarted from recent encoder outputs (as in Jukebox / "dead code" restarts).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ivideogpt.tokenizer.config import QuantizerConfig


@dataclass
class QuantizerOutput:
    """Result of quantizing a latent grid of N maps."""

    quantized: Tensor  # (N, D, h, w) code vectors, straight-through gradients to the latent
    codes: Tensor  # int64 (N, h, w)
    loss: Tensor  # scalar: codebook term + beta * commitment term
    perplexity: Tensor  # scalar: exp(entropy) of the batch's code histogram (detached)
    usage: Tensor  # scalar: share of the codebook used in the batch (detached)


class VectorQuantizer(nn.Module):
    """A codebook of `codebook_size` vectors of size `code_dim`."""

    def __init__(self, cfg: QuantizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.codebook = nn.Embedding(cfg.codebook_size, cfg.code_dim)
        if cfg.l2_normalized:
            nn.init.normal_(self.codebook.weight)
        else:
            nn.init.uniform_(self.codebook.weight, -1.0 / cfg.codebook_size, 1.0 / cfg.codebook_size)
        if cfg.restart_dead_codes:
            # EMA of per-code usage counts per call. Starting at zero, codes unused in the first
            # `restart_every` calls are restarted from data, a cheap data-driven codebook initialisation.
            self.register_buffer("usage_ema", torch.zeros(cfg.codebook_size))
            self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    @property
    def vocab_size(self) -> int:
        return self.cfg.codebook_size

    def embeddings(self) -> Tensor:
        """The code vectors as used for lookup and decoding, `(K, D)`."""
        w = self.codebook.weight
        return F.normalize(w, dim=-1) if self.cfg.l2_normalized else w

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize a latent grid.

        Args:
            z: `(N, D, h, w)` latent vectors (D = code_dim).

        Returns:
            `QuantizerOutput` with quantized `(N, D, h, w)` and codes `(N, h, w)`.
        """
        if z.ndim != 4 or z.shape[1] != self.cfg.code_dim:
            raise ValueError(f"VectorQuantizer: expected (N, {self.cfg.code_dim}, h, w), "
                             f"got {tuple(z.shape)}")
        n, _, h, w = z.shape
        flat = rearrange(z, "n d h w -> (n h w) d").float()
        if self.cfg.l2_normalized:
            flat = F.normalize(flat, dim=-1)
        # Usage bookkeeping and restarts only in training steps (not in no-grad tokenization).
        track = self.training and self.cfg.restart_dead_codes and torch.is_grad_enabled()
        if track:
            self._restart_dead_codes(flat.detach())
        codes = self._lookup(flat.detach())  # (n h w,)
        e = F.embedding(codes, self.embeddings())  # (n h w, D)
        # Codebook term pulls codes to the latents, commitment term (weight beta) the latents to the codes.
        loss = F.mse_loss(e, flat.detach()) + self.cfg.beta * F.mse_loss(flat, e.detach())
        quantized = flat + (e - flat).detach()  # straight-through estimator
        if track:
            self._update_usage(codes)
        perplexity, usage = self._usage_stats(codes)
        return QuantizerOutput(
            quantized=rearrange(quantized, "(n h w) d -> n d h w", n=n, h=h, w=w).to(z.dtype),
            codes=codes.view(n, h, w),
            loss=loss,
            perplexity=perplexity,
            usage=usage,
        )

    def codes_to_embedding(self, codes: Tensor) -> Tensor:
        """Code vectors of a code grid: int `(N, h, w)` -> `(N, D, h, w)`; `forward` maps them back."""
        check_codes(codes, self.vocab_size, "codes")
        e = F.embedding(codes.long(), self.embeddings())  # (N, h, w, D)
        return rearrange(e, "n h w d -> n d h w")

    def add_uses(self, code: int, count: Tensor) -> None:
        """In a training call, count `count` (a scalar tensor) more uses of `code`, assigned by the caller
        rather than by the lookup, so that dead-code restarts never take a code the caller keeps using."""
        if not (self.training and self.cfg.restart_dead_codes and torch.is_grad_enabled()):
            return  # as `forward`: usage is tracked in training steps only (checked outside no_grad)
        count = count.detach().float().clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(count)  # as `_update_usage`: every rank keeps the same usage
        self.usage_ema[code] += (1.0 - self.cfg.dead_code_decay) * count

    @torch.no_grad()
    @torch.autocast("cuda", enabled=False)
    @torch.autocast("cpu", enabled=False)
    def _lookup(self, flat: Tensor) -> Tensor:
        # in float32 even under autocast: bf16 similarities pick another code for most context latents
        flat, emb = flat.float(), self.embeddings().float()
        if self.cfg.l2_normalized:
            return (flat @ emb.t()).argmax(dim=-1)  # cosine similarity of unit vectors
        dist2 = flat.square().sum(-1, keepdim=True) - 2 * flat @ emb.t() + emb.square().sum(-1)
        return dist2.argmin(dim=-1)

    @torch.no_grad()
    def _usage_stats(self, codes: Tensor) -> tuple[Tensor, Tensor]:
        counts = torch.bincount(codes, minlength=self.vocab_size).float()
        p = counts / counts.sum().clamp_min(1.0)
        perplexity = torch.exp(-(p * p.clamp_min(1e-10).log()).sum())
        return perplexity, (counts > 0).float().mean()

    @torch.no_grad()
    def _update_usage(self, codes: Tensor) -> None:
        counts = torch.bincount(codes, minlength=self.vocab_size).float()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)  # every rank sees the global usage, so all restart the same codes
        self.usage_ema.mul_(self.cfg.dead_code_decay).add_(counts, alpha=1.0 - self.cfg.dead_code_decay)
        self.calls += 1

    @torch.no_grad()
    def _restart_dead_codes(self, flat: Tensor) -> None:
        calls = int(self.calls)
        if calls == 0 or calls % self.cfg.restart_every != 0:
            return
        dead = self.usage_ema < self.cfg.dead_code_threshold * self.usage_ema.mean()
        num_dead = int(dead.sum())
        if num_dead == 0:
            return
        # New codes: random latents of this batch (with a little noise when there are fewer than needed).
        pick = torch.randint(0, flat.shape[0], (num_dead,), device=flat.device)
        fresh = flat[pick] + 0.01 * flat.std() * torch.randn_like(flat[pick])
        weight = self.codebook.weight
        weight.data[dead] = fresh.to(weight.dtype)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(weight.data, src=0)  # ranks drew different latents: keep rank 0's
        self.usage_ema[dead] = self.usage_ema.mean()


def check_codes(codes: Tensor, vocab_size: int, name: str) -> None:
    """Raise a clear error unless `codes` is an integer tensor with values in [0, vocab_size)."""
    if codes.dtype.is_floating_point or codes.dtype == torch.bool or codes.is_complex():
        raise TypeError(f"{name}: expected integer codes, got dtype {codes.dtype}")
    if codes.numel() == 0:
        return
    lo, hi = int(codes.min()), int(codes.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"{name}: codes out of range: values in [{lo}, {hi}], but the codebook has "
                         f"{vocab_size} codes (valid 0..{vocab_size - 1})")
