"""ivideogpt: interactive video world models (iVideoGPT).

    from ivideogpt import WorldModel, WorldModelEnv, pretrained_path

    wm = WorldModel.load(pretrained_path())                   # tokenizer + transformer + spec
    out = wm.rollout(context_frames, actions, seed=0)         # uint8 (B, Tc, H, W, 3), (B, T, A)

`WorldModel` and `WorldModelEnv` are imported on first use (PEP 562), so `import ivideogpt` (and the
CLI's start-up) does not pay for torch and the models.
"""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ivideogpt.envs.world_model_env import WorldModelEnv
    from ivideogpt.world_model import WorldModel

__version__ = "0.1.0"
__all__ = ["WorldModel", "WorldModelEnv", "pretrained_path"]

_LAZY = {"WorldModel": "ivideogpt.world_model", "WorldModelEnv": "ivideogpt.envs.world_model_env"}


def pretrained_path(name: str = "metaworld64") -> Path:
    """Folder of a world model shipped inside the package; load it with `WorldModel.load(path)`."""
    # files() is a plain folder for a normal (not zipped) install, which pip always makes for this package
    return Path(str(resources.files("ivideogpt") / "pretrained" / name))


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ivideogpt' has no attribute {name!r}")
