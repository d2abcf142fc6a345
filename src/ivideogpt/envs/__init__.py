"""Gymnasium environments backed by a world model (`WorldModelEnv`, `WorldModelVectorEnv`).

Imports are lazy (PEP 562): `import ivideogpt.envs` loads no model; `from ivideogpt.envs import
WorldModelEnv` loads the world-model env. Real simulators (Meta-World) live in `ivideogpt.sim`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ContextSource": "ivideogpt.envs.world_model_env",
    "WorldModelEnv": "ivideogpt.envs.world_model_env",
    "WorldModelVectorEnv": "ivideogpt.envs.world_model_env",
}

__all__ = ["ContextSource", "WorldModelEnv", "WorldModelVectorEnv"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ivideogpt.envs' has no attribute {name!r}")
