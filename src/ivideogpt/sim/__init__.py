"""Real simulators as gymnasium envs, with their scripted experts: the bottom of the package.

Collectors (`data.collect`), the demo, planners and RL import simulators from here; nothing here imports a
model. Each suite is one module with the same names: `NAME`, `Env` (a `sim.base.TaskEnv`), `ACTION_DIM`,
`DEFAULT_TASKS`, `DEFAULT_CAMERA`, `DEFAULT_ACTION_REPEAT`, `MAX_REWARD`, `task_name`, `EXPERTS` and
`expert_policy`. `load_suite("robodesk")` imports one (they load MuJoCo, so they are imported from
there, not here). The world-model envs live in `ivideogpt.envs`, above `world_model.py`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

SUITES = ("metaworld", "robodesk")


class SuiteTasks:
    """For a config with a `suite` and `tasks`: the suite's module and the tasks by its full names."""

    suite: str
    tasks: tuple[str, ...]

    @property
    def simulator(self) -> ModuleType:
        """The suite's module (`ivideogpt.sim.metaworld`, ...)."""
        return load_suite(self.suite)

    @property
    def task_list(self) -> tuple[str, ...]:
        """The tasks as the suite's full names, in the order given (raises on an unknown one)."""
        return tuple(self.simulator.task_name(t) for t in self.tasks)


def load_suite(name: str) -> ModuleType:
    """The module of simulator suite `name` (`ivideogpt.sim.metaworld`, `ivideogpt.sim.robodesk`).

    Raises:
        ValueError: not a suite of this package.
    """
    if name not in SUITES:
        raise ValueError(f"unknown simulator suite {name!r}; known: {', '.join(SUITES)}")
    return importlib.import_module(f"ivideogpt.sim.{name}")
