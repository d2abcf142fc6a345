import os

# Offscreen MuJoCo rendering on the CPU; must be set before mujoco is imported anywhere.
os.environ.setdefault("MUJOCO_GL", "egl")

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    # Tests share 2 cores; one thread keeps them predictable and avoids oversubscription.
    torch.set_num_threads(1)
    torch.manual_seed(0)
