import importlib.util
import os
import sys
from pathlib import Path

# Offscreen MuJoCo rendering on the CPU; must be set before mujoco is imported anywhere.
os.environ.setdefault("MUJOCO_GL", "egl")

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    # Tests share 2 cores; one thread keeps them predictable and avoids oversubscription.
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture
def load_script(monkeypatch: pytest.MonkeyPatch):
    """Import a script of bench/ (or of another top-level `folder`, e.g. scripts/) by name
    (`load_script("control_lag")`), as `python bench/<name>.py` would."""

    def load(name: str, folder: str = "bench"):
        path = Path(__file__).parents[1] / folder / f"{name}.py"
        monkeypatch.syspath_prepend(path.parent)  # its folder-local imports (bench/record.py)
        spec = importlib.util.spec_from_file_location(f"{folder}_{name}", path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module

    return load
