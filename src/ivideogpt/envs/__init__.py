"""Environments: the world-model envs (`WorldModelEnv`, `WorldModelVectorEnv`) and the Meta-World simulator.

Imports are lazy (PEP 562): `import ivideogpt.envs` loads neither MuJoCo/Meta-World nor the models;
`from ivideogpt.envs import WorldModelEnv` loads the world-model env only. The Meta-World env lives in
`ivideogpt.sim.metaworld` and is imported from there.
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
