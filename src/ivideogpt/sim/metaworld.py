"""Meta-World tasks as a small pixel environment, with the scripted expert policies.

`MetaWorldEnv` holds one Meta-World (v3) task and returns rendered uint8 `(H, W, 3)` frames as
observations; the 39-d state vector the scripted experts need stays available as `env.state`. It follows
the MBRL setting of iVideoGPT (docs/method.md §4: 64x64 frames from a corner camera, action repeat 2,
100-step episodes), as in the reference `mbrl/metaworld_env.py`: the goal-observable task class with a
fresh random object/goal placement on every reset, rewards summed over the repeated sub-steps and
success if any sub-step succeeded.

Rendering reuses one `mujoco.Renderer` on the env's own model/data with shadows, reflections and
multisampling switched off: about 10x faster at 64x64 than Meta-World's default render path, and at this
size the image barely changes.
"""

from __future__ import annotations

import os

# Offscreen rendering without a display (works on a CPU through EGL); must be set before mujoco loads.
os.environ.setdefault("MUJOCO_GL", "egl")

import difflib
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE
from metaworld.policies import ENV_POLICY_MAP

# Varied tasks (reaching, pushing, grasping, articulated objects, buttons) on which the scripted expert
# succeeds in 100 steps at action repeat 2; measured success rates are in the README.
DEFAULT_TASKS: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "window-open-v3",
    "faucet-open-v3",
    "coffee-push-v3",
    "plate-slide-v3",
)
ACTION_DIM = 4  # end-effector xyz displacement + gripper effort, each in [-1, 1]
MAX_REWARD = 10.0  # Meta-World v3 rewards per simulator step lie in [0, 10]
_SUFFIX = "-v3"


def task_name(task: str) -> str:
    """The full Meta-World name of a task: `"push"` and `"push-v3"` both give `"push-v3"`.

    Raises:
        ValueError: the task has no scripted expert in Meta-World (the message suggests close names).
    """
    name = task.strip()
    name = name if name.endswith(_SUFFIX) else name + _SUFFIX
    if name not in ENV_POLICY_MAP:
        close = difflib.get_close_matches(name, list(ENV_POLICY_MAP), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(ENV_POLICY_MAP)}"
        raise ValueError(f"unknown Meta-World task {task!r}{hint}")
    return name


class MetaWorldEnv(gym.Env):
    """One Meta-World task rendered from a fixed camera: uint8 frames in, actions in [-1, 1]^4 out.

    Episodes never terminate; they are truncated after `max_steps` steps. `reset(seed=s)` gives the same
    episode as a fresh env built with `seed=s`, whatever ran before.

    Attributes:
        state: the last float64 `(39,)` state observation (hand, gripper, objects, goal), for the experts.
        sim_dt: simulated seconds per step (action repeat included); the frame rate is `1 / sim_dt`.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        task: str,
        size: int = 64,
        camera: str = "corner",
        seed: int = 0,
        action_repeat: int = 2,
        max_steps: int = 100,
    ) -> None:
        if size < 1:
            raise ValueError(f"MetaWorldEnv: size must be >= 1, got {size}")
        if action_repeat < 1:
            raise ValueError(f"MetaWorldEnv: action_repeat must be >= 1, got {action_repeat}")
        if max_steps < 1:
            raise ValueError(f"MetaWorldEnv: max_steps must be >= 1, got {max_steps}")
        self.task = task_name(task)
        self.action_repeat, self.max_steps = action_repeat, max_steps
        self._env = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[self.task + "-goal-observable"](seed=seed)
        # new object/goal placement on every reset, drawn from the env's own seeded generator (not the
        # global np.random), so episodes depend only on the seed
        self._env._freeze_rand_vec = False
        self._env.seeded_rand_vec = True
        # Meta-World refuses to step past its max_path_length (500); the time limit is ours (`step`), and a
        # planner's look-ahead (`advance`) goes past the episode's end, so its own is switched off
        self._env.max_path_length = sys.maxsize
        self._renderer = SceneRenderer(self._env.model, self._env.data, size, camera)
        self.sim_dt = float(self._env.model.opt.timestep) * self._env.frame_skip * action_repeat
        self.metadata = {**self.metadata, "render_fps": 1.0 / self.sim_dt}
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self.state = np.zeros(self._env.observation_space.shape, np.float64)
        self._steps: int | None = None  # None until reset, and again once truncated

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode (reseeding first when `seed` is given).

        Returns:
            frame uint8 `(H, W, 3)` and info `{"success": False, "state": (39,) float64}`.
        """
        super().reset(seed=seed)
        if seed is not None:
            self._env.seed(seed)
        self.state, _ = self._env.reset()
        # Meta-World's reset sets qpos/qvel but leaves the derived body poses of the previous episode in
        # `data`, and the renderer draws those: without this, frame 0 shows where the last episode ended
        mujoco.mj_forward(self._env.model, self._env.data)
        self._steps = 0
        return self._renderer.render(), {"success": False, "state": self.state}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Hold `action` (clipped to [-1, 1]) for `action_repeat` simulator steps.

        The reward is the SUM over the sub-steps (what the agent earns while holding the action, so
        returns match the reference DrQ-v2/MBPO numbers; range [0, 10 * action_repeat]); success is True
        if any sub-step succeeded.

        Returns:
            frame uint8 `(H, W, 3)`, reward, terminated (always False: Meta-World tasks do not end),
            truncated (True on step `max_steps`), info `{"success": bool, "state": (39,) float64}`.
        """
        if self._steps is None:
            raise RuntimeError(f"MetaWorldEnv({self.task}): call reset() before step() "
                               "(and after truncation)")
        reward, success = self.advance(action)
        self._steps += 1
        truncated = self._steps >= self.max_steps
        if truncated:
            self._steps = None
        return self._renderer.render(), reward, False, truncated, {"success": success, "state": self.state}

    def render(self) -> np.ndarray:
        """The current frame, uint8 `(H, W, 3)`."""
        return self._renderer.render()

    def advance(self, action: np.ndarray) -> tuple[float, bool]:
        """Hold `action` for `action_repeat` simulator steps without rendering or counting a step.

        `step` is this plus the frame and the time limit; a planner that uses the simulator as its model
        calls it between `snapshot` and `restore`, where the episode's time limit does not apply.

        Returns:
            the reward summed over the sub-steps and whether any sub-step succeeded.
        """
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (ACTION_DIM,) or not np.isfinite(action).all():
            raise ValueError(f"MetaWorldEnv({self.task}): action must be {ACTION_DIM} finite floats, "
                             f"got {action}")
        action = np.clip(action, -1.0, 1.0)
        reward, success = 0.0, False
        for _ in range(self.action_repeat):
            self.state, r, _, _, info = self._env.step(action)
            reward += float(r)
            success |= bool(info["success"])
        return reward, success

    def snapshot(self) -> SimSnapshot:
        """Everything a step changes: MuJoCo's full integration state and the env objects' own counters."""
        env = self._env
        state = np.empty(mujoco.mj_stateSize(env.model, _STATE_SPEC))
        mujoco.mj_getState(env.model, env.data, state, _STATE_SPEC)
        return SimSnapshot(state, self.state.copy(), self._steps, env.curr_path_length, env._prev_obs.copy(),
                           None if env._last_stable_obs is None else env._last_stable_obs.copy(),
                           env._did_see_sim_exception)

    def restore(self, snap: SimSnapshot) -> None:
        """Put the env back exactly where `snapshot` found it (later steps repeat bit for bit)."""
        env = self._env
        mujoco.mj_setState(env.model, env.data, snap.mujoco, _STATE_SPEC)
        # derived quantities (body poses, site positions, contacts) are not part of the state: recompute
        # them, as after reset, or the renderer and the reward would read those of the state left behind
        mujoco.mj_forward(env.model, env.data)
        # mj_forward overwrites the solver's warm start with its own solution: put the saved one back, or
        # the next steps differ in the last digits
        mujoco.mj_setState(env.model, env.data, snap.mujoco, _STATE_SPEC)
        self.state, self._steps = snap.state.copy(), snap.steps
        env.curr_path_length, env._prev_obs = snap.path_length, snap.prev_obs.copy()
        env._last_stable_obs = None if snap.last_stable_obs is None else snap.last_stable_obs.copy()
        env._did_see_sim_exception = snap.sim_exception

    def close(self) -> None:
        self._renderer.close()
        self._env.close()


# qpos, qvel, act, warm-start accelerations, controls, mocap poses, time, ...: what the next step depends on
_STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


@dataclass(frozen=True)
class SimSnapshot:
    """A `MetaWorldEnv`'s state at one moment (`MetaWorldEnv.snapshot` / `restore`)."""

    mujoco: np.ndarray  # float64, MuJoCo's full integration state (mj_getState)
    state: np.ndarray  # the (39,) observation the experts read
    steps: int | None  # steps of the episode so far (None: not reset)
    path_length: int  # Meta-World's own step counter
    prev_obs: np.ndarray  # Meta-World's frame-stacking buffer (half of the next observation)
    last_stable_obs: np.ndarray | None  # what Meta-World returns if the simulation goes unstable
    sim_exception: bool  # whether the simulation went unstable


class SceneRenderer:
    """Renders an existing MuJoCo model/data from one named camera into uint8 `(size, size, 3)` frames.

    Meta-World's corner cameras are mounted upside down (their up axis points at the floor). Such frames
    are rotated by 180 degrees, which is exactly a camera rolled upright. The common fix of flipping rows
    only (`img[::-1]`) leaves the scene mirrored left-right; `tests/envs` checks the rotation against a
    camera turned upright.
    """

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, size: int, camera: str) -> None:
        self.camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if self.camera_id < 0:
            names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
            raise ValueError(f"unknown camera {camera!r}; this model has {names}")
        self.data = data
        # read when the GL context is created, so set before building the renderer
        model.vis.quality.offsamples = 0  # no multisampling
        model.vis.quality.shadowsize = 0  # no shadow map
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, size)
        self._renderer = mujoco.Renderer(model, size, size)
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0

    def render(self) -> np.ndarray:
        """The current scene, uint8 `(size, size, 3)`, upright."""
        self._renderer.update_scene(self.data, camera=self.camera_id)
        frame = self._renderer.render()
        # column 1 of the camera's world rotation is its up axis; a negative z component means upside down
        up_z = self.data.cam_xmat[self.camera_id].reshape(3, 3)[2, 1]
        return np.ascontiguousarray(frame[::-1, ::-1]) if up_z < 0 else frame

    def close(self) -> None:
        self._renderer.close()


def expert_policy(task: str) -> Callable[[np.ndarray], np.ndarray]:
    """Meta-World's scripted expert for `task`, as a function of the state observation.

    Returns:
        `policy(state)`: float64 `(39,)` state (`MetaWorldEnv.state`) -> float32 `(4,)` action in [-1, 1].
    """
    scripted = ENV_POLICY_MAP[task_name(task)]()

    def policy(state: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            # the experts use high gains and warn on every large move; the env clips actions anyway
            warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
            action = scripted.get_action(state)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    return policy
