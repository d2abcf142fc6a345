"""Small random episodes for the data tests (random frames test the format, never a result)."""

from __future__ import annotations

import numpy as np

from ivideogpt.data.episode import Episode


def random_episode(
    rng: np.random.Generator, length: int, size: int = 8, action_dim: int | None = 2
) -> Episode:
    """Random frames and actions; reward t is t, so a clip's rewards show which episode rows it took."""
    return Episode(
        frames=rng.integers(0, 256, (length, size, size, 3), dtype=np.uint8),
        actions=None if action_dim is None else rng.normal(size=(length, action_dim)).astype(np.float32),
        rewards=np.arange(length, dtype=np.float32),
        success=np.arange(length) == length - 1,
        done=np.arange(length) == length - 1,
    )
