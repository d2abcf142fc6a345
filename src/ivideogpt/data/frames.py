"""Frame conversions between the on-disk/API layout and the model layout.

On disk and at every API boundary frames are uint8 channels-last `(..., H, W, 3)` in [0, 255]; inside
the models they are float32 channels-first `(..., 3, H, W)` in [-1, 1]. These two functions are the only
place the two meet, so every component rounds and clamps the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_model(frames: Tensor) -> Tensor:
    """uint8 channels-last frames to float32 channels-first in [-1, 1].

    Args:
        frames: uint8 `(..., H, W, 3)`, any number of leading dims (e.g. `(B, T, H, W, 3)`).

    Returns:
        float32 `(..., 3, H, W)` with 0 -> -1.0 and 255 -> 1.0, on the input's device.
    """
    if frames.dtype != torch.uint8:
        raise TypeError(f"to_model: expected uint8 frames, got dtype {frames.dtype}")
    if frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"to_model: expected shape (..., H, W, 3), got {tuple(frames.shape)}")
    x = frames.movedim(-1, -3).to(torch.float32)  # (..., 3, H, W)
    return x.div_(127.5).sub_(1.0)


def to_uint8(x: Tensor) -> Tensor:
    """float channels-first frames in [-1, 1] to uint8 channels-last (clamped, rounded).

    Args:
        x: floating `(..., 3, H, W)`; values outside [-1, 1] are clamped.

    Returns:
        uint8 `(..., H, W, 3)` on the input's device, contiguous.
    """
    if not x.is_floating_point():
        raise TypeError(f"to_uint8: expected a floating tensor, got dtype {x.dtype}")
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"to_uint8: expected shape (..., 3, H, W), got {tuple(x.shape)}")
    y = (x.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5  # [0, 255]
    return y.round_().to(torch.uint8).movedim(-3, -1).contiguous()  # (..., H, W, 3)
