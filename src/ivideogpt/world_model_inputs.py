"""What `WorldModel` accepts from its callers: context frames and actions, validated once, here.

Every rollout entry point (`reset`, `step`, `rollout`, `imagine`) goes through these checks, so a wrong
dtype, shape or value is named with the argument it came in, before any tokenizer or transformer work.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


def check_context_frames(frames: Any, image_size: int, num_context: int) -> Tensor:
    """uint8 context frames (B, T, H, W, 3) with T >= `num_context`, as a tensor (on their own device)."""
    x = as_tensor(frames, "context_frames", "uint8 frames")
    h = image_size
    if x.dtype != torch.uint8:
        raise TypeError(f"context_frames: expected uint8 frames (B, T, {h}, {h}, 3), got dtype {x.dtype}")
    if x.ndim != 5 or tuple(x.shape[2:]) != (h, h, 3):
        hint = " (add a batch axis: frames[None])" if x.ndim == 4 else ""
        raise ValueError(f"context_frames: expected shape (B, T, {h}, {h}, 3), got {tuple(x.shape)}{hint}")
    if x.shape[1] < num_context or x.shape[0] < 1:
        raise ValueError(f"context_frames: this model needs at least {num_context} context frame(s) and a "
                         f"batch of >= 1, got shape {tuple(x.shape)}")
    return x


def check_actions(actions: Any, shape: tuple[int, ...], action_dim: int, device: torch.device,
                  name: str) -> Tensor | None:
    """Validate and convert actions to float32 `shape` on `device` (None stays None)."""
    if actions is None:
        return None
    if action_dim == 0:
        raise ValueError(f"{name}: this model is action-free (action_dim=0); pass actions=None")
    a = as_tensor(actions, name, "real-valued actions")
    if a.dtype == torch.bool or a.is_complex():
        raise TypeError(f"{name}: expected real-valued actions, got dtype {a.dtype}")
    if a.ndim == len(shape) - 1 and tuple(a.shape) == shape[1:]:
        raise ValueError(f"{name}: expected shape {shape} (batch first), got {tuple(a.shape)}: the batch "
                         f"axis is missing (pass {name}[None] for one rollout)")
    if tuple(a.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape} (action_dim={action_dim}), got {tuple(a.shape)}")
    a = a.to(device, torch.float32)
    if not bool(torch.isfinite(a).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return a


def horizon_of(actions: Any, action_dim: int) -> int:
    """T of actions (B, T, A); a 2-D (T, A) array is named as missing its batch axis, not read as (B, T)."""
    shape = tuple(as_tensor(actions, "actions", "real-valued actions").shape)
    if len(shape) == 2 and shape[1] == action_dim:
        raise ValueError(f"actions: expected shape (B, T, {action_dim}), got {shape}: the batch axis is "
                         "missing (pass actions[None] for one rollout)")
    if len(shape) != 3:
        raise ValueError(f"actions: expected shape (B, T, {action_dim}), got {shape}")
    return shape[1]


def as_tensor(x: Any, name: str, expected: str) -> Tensor:
    """`torch.as_tensor(x)`, with an error naming the argument where torch cannot convert x (strings, ...)."""
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as e:
        got = type(x).__name__ + (f" of dtype {x.dtype}" if isinstance(x, np.ndarray) else "")
        raise TypeError(f"{name}: expected {expected} (a numpy array or tensor), got {got} ({e})") from None
