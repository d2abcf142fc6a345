"""Tiny random datasets for the data tests (random frames test the format, never a result)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from ivideogpt.data.store import DatasetWriter

from .helpers import random_episode

MakeDataset = Callable[..., Path]


@pytest.fixture
def make_dataset(tmp_path: Path) -> MakeDataset:
    """Factory: make_dataset(name, lengths, action_dim=2, size=8) -> dataset folder under tmp_path."""
    rng = np.random.default_rng(0)

    def make(name: str, lengths: Sequence[int], action_dim: int | None = 2, size: int = 8) -> Path:
        root = tmp_path / name
        with DatasetWriter(root, "test", size, action_dim, fps=10.0) as writer:
            for i, length in enumerate(lengths):
                writer.add(random_episode(rng, length, size, action_dim), task=f"task{i % 2}", seed=i)
        return root

    return make
