"""What a tokenizer's training forward returns (read by the model and by its losses)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class TokenizerOutput:
    """Everything one training forward produces."""

    recon: Tensor  # (B, T, 3, H, W) reconstructed clip (context frames first)
    quant_loss: Tensor  # scalar: codebook + commitment terms of both quantizers
    context_codes: Tensor  # int64 (B, Tc, hc, wc)
    future_codes: Tensor  # int64 (B, Tf, hf, wf)
    stats: dict[str, Tensor]  # detached scalars: {context,future}_{perplexity,usage}
    # `future_blend` only: D_p's own future frames (B, Tf, 3, H, W) and its blend-mask logits (B, Tf, 1, H, W)
    # before they were mixed with the last context frame (the loss supervises both)
    future_raw: Tensor | None = None
    future_mask_logits: Tensor | None = None
