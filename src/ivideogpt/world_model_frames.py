"""The tokenizer's half of a world-model rollout: context frames -> codes and the decoder's context
features, imagined codes -> frames, in the rollout's precision (`WorldModel.precision`).

The transformer's half (KV-cached sampling of codes) is `ivideogpt.transformer.sampling`; `WorldModel`
joins the two.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from ivideogpt.data.frames import to_model, to_uint8
from ivideogpt.modes import eval_mode
from ivideogpt.tokenizer import ContextState, VideoTokenizer


def encode_context(tokenizer: VideoTokenizer, frames: Tensor, dtype: torch.dtype | None) -> ContextState:
    """uint8 (B, Tc, H, W, 3) on the tokenizer's device -> its context state (codes and decoder features)."""
    with tokenizer_mode(tokenizer, dtype):
        return tokenizer.encode_context(to_model(frames))


def decode_frame(tokenizer: VideoTokenizer, codes: Tensor, context: ContextState,
                 dtype: torch.dtype | None) -> np.ndarray:
    """Future codes (B, n) of one frame -> uint8 (B, H, W, 3), decoded against the cached context."""
    with tokenizer_mode(tokenizer, dtype):
        frames = tokenizer.decode_future(codes.view(-1, *tokenizer.future_grid), context)  # (B, 3, H, W)
    return to_uint8(frames).cpu().numpy()


def decode_frames(tokenizer: VideoTokenizer, codes: Tensor, context: ContextState, dtype: torch.dtype | None,
                  max_frames: int = 256) -> np.ndarray:
    """Future codes (B, T, n) -> uint8 (B, T, H, W, 3): a batch of frames per decoder pass.

    One pass decodes up to `max_frames` frames (whole clips of T frames, at least one clip), which
    bounds the decoder's activation memory; per-pass overhead is paid once per chunk, not per frame.
    """
    b, t = codes.shape[:2]
    grid = codes.view(b, t, *tokenizer.future_grid)  # (B, T, hf, wf)
    rows = max(1, max_frames // t)
    with tokenizer_mode(tokenizer, dtype):
        if rows >= b:
            return to_uint8(tokenizer.decode_future(grid, context)).cpu().numpy()
        chunks = [
            tokenizer.decode_future(grid[i : i + rows], context.map(lambda x, i=i: x[i : i + rows]))
            for i in range(0, b, rows)
        ]  # each (rows, T, 3, H, W)
    return to_uint8(torch.cat(chunks)).cpu().numpy()


@contextlib.contextmanager
def tokenizer_mode(tokenizer: VideoTokenizer, dtype: torch.dtype | None) -> Iterator[None]:
    """The tokenizer in eval mode, under autocast to `dtype` when one is given (precision "bfloat16")."""
    device = next(tokenizer.parameters()).device
    with eval_mode(tokenizer), (torch.autocast(device.type, dtype) if dtype is not None
                                else contextlib.nullcontext()):
        yield
