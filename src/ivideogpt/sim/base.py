"""What every simulator env here shares: one task, an action held for `action_repeat` simulator steps, a time
limit, and a bit-exact snapshot of the MuJoCo state for the simulator-as-model planner.

A suite's env (`sim.metaworld.MetaWorldEnv`, `sim.robodesk.RoboDeskEnv`) subclasses `TaskEnv` and supplies
the scene (`_reset_scene`), one simulator step (`_substep`), the frame (`render`) and whatever its
simulator keeps beside MuJoCo's state (`_save_extra` / `_load_extra`).
"""

from __future__ import annotations

import os

# Offscreen rendering without a display (works on a CPU through EGL); must be set before mujoco loads.
os.environ.setdefault("MUJOCO_GL", "egl")

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np

# qpos, qvel, act, warm-start accelerations, controls, mocap poses, time, ...: what the next step depends on
_STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


def unknown_task(suite: str, given: str, name: str, known: Sequence[str]) -> ValueError:
    """The error for task `given` (read as `name`) that `suite` does not have, suggesting close names."""
    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
    return ValueError(f"unknown {suite} task {given!r}{hint}")


@dataclass(frozen=True)
class SimSnapshot:
    """A `TaskEnv`'s state at one moment (`snapshot` / `restore`)."""

    mujoco: np.ndarray  # float64, MuJoCo's full integration state (mj_getState)
    steps: int | None  # steps of the episode so far (None: not reset)
    extra: Any  # what the suite's simulator keeps beside MuJoCo (`TaskEnv._save_extra`)


class TaskEnv(gym.Env):
    """One task of a MuJoCo suite: uint8 frames, actions in [-1, 1]^A, truncation after `max_steps` steps.

    Episodes never terminate. `reset(seed=s)` gives the same scene whatever ran before.

    Attributes:
        task: the suite's full task name.
        state: float64, what the suite's scripted expert reads (Meta-World's 39-d observation; RoboDesk's
            joint positions).
        sim_dt: simulated seconds per step (action repeat included); the frame rate is `1 / sim_dt`.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}
    state: np.ndarray

    def __init__(self, task: str, size: int, action_dim: int, action_repeat: int, max_steps: int) -> None:
        for name, value in (("size", size), ("action_repeat", action_repeat), ("max_steps", max_steps)):
            if value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be >= 1, got {value}")
        self.task, self.action_repeat, self.max_steps = task, action_repeat, max_steps
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)
        self._steps: int | None = None  # None until reset, and again once truncated

    def _bind(self, model: mujoco.MjModel, data: mujoco.MjData, substep_seconds: float) -> None:
        """Name the simulator's MuJoCo model and data (for snapshots) and its time per `_substep`."""
        self._model, self._data = model, data
        self.sim_dt = substep_seconds * self.action_repeat
        self.metadata = {**self.metadata, "render_fps": 1.0 / self.sim_dt}

    # --- what a suite supplies ---------------------------------------------------------------------------

    def _reset_scene(self, seed: int | None) -> None:
        """Put the scene of `seed` (the env's own next one when None) in place."""
        raise NotImplementedError

    def _substep(self, action: np.ndarray) -> tuple[float, bool]:
        """One simulator step holding `action`: its reward and whether the task is solved."""
        raise NotImplementedError

    def render(self) -> np.ndarray:
        """The current frame, uint8 `(H, W, 3)`."""
        raise NotImplementedError

    def _save_extra(self) -> Any:
        """What the simulator keeps beside MuJoCo's state that a later step reads (copied)."""
        return None

    def _load_extra(self, extra: Any) -> None:
        """Put back what `_save_extra` saved (after MuJoCo's state)."""

    # --- shared ------------------------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode (in the scene of `seed` when given).

        Returns:
            frame uint8 `(H, W, 3)` and info `{"success": False, "state": ...}`.
        """
        super().reset(seed=seed)
        self._reset_scene(seed)
        self._steps = 0
        return self.render(), {"success": False, "state": self.state}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Hold `action` (clipped to [-1, 1]) for `action_repeat` simulator steps.

        The reward is the SUM over the sub-steps (what the agent earns while holding the action); success is
        True if any sub-step succeeded.

        Returns:
            frame uint8 `(H, W, 3)`, reward, terminated (always False: the tasks do not end), truncated
            (True on step `max_steps`), info `{"success": bool, "state": ...}`.
        """
        if self._steps is None:
            raise RuntimeError(f"{type(self).__name__}({self.task}): call reset() before step() "
                               "(and after truncation)")
        reward, success = self.advance(action)
        self._steps += 1
        truncated = self._steps >= self.max_steps
        if truncated:
            self._steps = None
        return self.render(), reward, False, truncated, {"success": success, "state": self.state}

    def advance(self, action: np.ndarray) -> tuple[float, bool]:
        """Hold `action` for `action_repeat` simulator steps without rendering or counting a step.

        `step` is this plus the frame and the time limit; a planner that uses the simulator as its model
        calls it between `snapshot` and `restore`, where the episode's time limit does not apply.

        Returns:
            the reward summed over the sub-steps and whether any sub-step succeeded.
        """
        action = np.asarray(action, dtype=np.float32)
        dim = self.action_space.shape[0]
        if action.shape != (dim,) or not np.isfinite(action).all():
            raise ValueError(f"{type(self).__name__}({self.task}): action must be {dim} finite floats, "
                             f"got {action}")
        action = np.clip(action, -1.0, 1.0)
        reward, success = 0.0, False
        for _ in range(self.action_repeat):
            r, s = self._substep(action)
            reward += float(r)
            success |= bool(s)
        return reward, success

    def snapshot(self) -> SimSnapshot:
        """Everything a step changes: MuJoCo's full integration state and the simulator's own counters."""
        state = np.empty(mujoco.mj_stateSize(self._model, _STATE_SPEC))
        mujoco.mj_getState(self._model, self._data, state, _STATE_SPEC)
        return SimSnapshot(state, self._steps, self._save_extra())

    def restore(self, snap: SimSnapshot) -> None:
        """Put the env back exactly where `snapshot` found it (later steps repeat bit for bit)."""
        mujoco.mj_setState(self._model, self._data, snap.mujoco, _STATE_SPEC)
        # derived quantities (body poses, site positions, contacts) are not part of the state: recompute
        # them, as after reset, or the renderer and the reward would read those of the state left behind
        mujoco.mj_forward(self._model, self._data)
        # mj_forward overwrites the solver's warm start with its own solution: put the saved one back, or
        # the next steps differ in the last digits
        mujoco.mj_setState(self._model, self._data, snap.mujoco, _STATE_SPEC)
        self._steps = snap.steps
        self._load_extra(snap.extra)
