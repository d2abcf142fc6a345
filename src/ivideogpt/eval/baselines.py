"""The two baselines every prediction is scored beside (docs/method.md §4).

- `copy_last_frame`: the last context frame repeated; a model that does not beat it has learned no motion.
- `tokenizer_reconstruction`: the world model's tokenizer encoding and decoding the true future given the
  true context: the best any transformer on top of this tokenizer could score (the ceiling).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ivideogpt.data.frames import to_model, to_uint8
from ivideogpt.modes import eval_mode
from ivideogpt.tokenizer import VideoTokenizer


def copy_last_frame(context: np.ndarray, horizon: int) -> np.ndarray:
    """The copy-last-frame baseline: uint8 context `(B, Tc, H, W, 3)` -> `(B, horizon, H, W, 3)`."""
    return np.repeat(context[:, -1:], horizon, axis=1)


@torch.no_grad()
def tokenizer_reconstruction(tokenizer: VideoTokenizer, clip: Tensor, num_context: int) -> np.ndarray:
    """The tokenizer ceiling: encode and decode the true future frames given the true context.

    Args:
        tokenizer: the world model's tokenizer (run in eval mode; its mode is restored afterwards).
        clip: uint8 `(B, Tc + T, H, W, 3)`.
        num_context: Tc.

    Returns:
        uint8 `(B, T, H, W, 3)`: the reconstructed future frames.
    """
    with eval_mode(tokenizer):
        device = next(tokenizer.parameters()).device
        frames = to_model(clip.to(device))
        _, future_codes = tokenizer.tokenize(frames, num_context)
        # decoded against the real context frames, as a rollout from them decodes its imagined codes
        frames = tokenizer.decode_future(future_codes, tokenizer.encode_context(frames[:, :num_context]))
    return to_uint8(frames).cpu().numpy()
