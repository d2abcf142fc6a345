"""Learning rate as a pure function of the step (nanoGPT's `get_lr`): linear warm-up, then constant or cosine.

Being a function of the step alone, the schedule needs no state in a checkpoint: a resumed run computes the
same rate for the same step.
"""

from __future__ import annotations

import math
from typing import Literal

Schedule = Literal["constant", "cosine"]


def lr_at(
    step: int,
    lr: float,
    warmup_steps: int,
    total_steps: int,
    schedule: Schedule = "constant",
    min_lr: float = 0.0,
) -> float:
    """Learning rate for optimizer step `step` (0-based: the first update uses `step=0`).

    Warm-up ramps linearly from `lr / warmup_steps` at step 0 to `lr` at step `warmup_steps - 1`, so no
    update is taken at lr 0. After warm-up, "constant" stays at `lr`; "cosine" decays from `lr` at step
    `warmup_steps` to `min_lr` at step `total_steps` (and stays there beyond it).

    Args:
        step: optimizer steps already taken.
        lr: peak learning rate.
        warmup_steps: length of the linear warm-up (0: none).
        total_steps: the step at which the cosine reaches `min_lr`.
        schedule: "constant" or "cosine".
        min_lr: floor of the cosine.

    Returns:
        The learning rate to use for this step.
    """
    if step < 0:
        raise ValueError(f"lr_at: step must be >= 0, got {step}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_at: schedule must be 'constant' or 'cosine', got {schedule!r}")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)  # 0 -> 1 over the decay
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)
