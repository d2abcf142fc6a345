"""Which future codes cover an image patch that moved since the last context frame.

A compressive future code is relative to the context frames (docs/method.md §2): where nothing moved the
decoder can copy the context, so those codes say little, and where something moved they carry what the
actions did. Token shards store this mask per future code (`moving.npy`) so that training can weigh the
codes that matter (`TransformerConfig.moving_weight`) and benchmarks can score them apart.
"""

from __future__ import annotations

import torch

MOVING_THRESHOLD = 20.0  # grey levels (mean over RGB): a patch moves when one of its pixels changed more


def moving_codes(frames: torch.Tensor, tc: int, grid: int | tuple[int, int],
                 threshold: float = MOVING_THRESHOLD) -> torch.Tensor:
    """bool (N, Tf, gh * gw) from uint8 frames (N, Tc + Tf, H, W, C) and the future code grid (gh, gw):
    whether each future code's patch holds a pixel that differs from the last context frame by more than
    `threshold`."""
    change = (frames[:, tc:].float() - frames[:, tc - 1 : tc].float()).abs().mean(-1)  # (N, Tf, H, W)
    return moving_patches(change, grid, threshold)


def moving_patches(change: torch.Tensor, grid: int | tuple[int, int], threshold: float) -> torch.Tensor:
    """bool (N, Tf, gh * gw) from a per-pixel change (N, Tf, H, W) in grey levels: whether each patch of the
    (gh, gw) grid holds a pixel that changed by more than `threshold`."""
    (n, t, h, w), (gh, gw) = change.shape, (grid, grid) if isinstance(grid, int) else grid
    if h % gh or w % gw:
        raise ValueError(f"moving_patches: frames of {h}x{w} do not split into a {gh}x{gw} grid of patches")
    patches = change.view(n, t, gh, h // gh, gw, w // gw).amax(dim=(3, 5))
    return (patches > threshold).flatten(2)
