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

import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np
from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE
from metaworld.policies import ENV_POLICY_MAP

from ivideogpt.sim.base import TaskEnv, unknown_task

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
NAME = "Meta-World"  # as messages write it
DEFAULT_CAMERA = "corner"  # the MBRL setting's camera (docs/method.md §4)
DEFAULT_ACTION_REPEAT = 2  # the MBRL setting's (docs/method.md §4)
EXPERTS = True  # every task has a scripted expert (`expert_policy`)
_SUFFIX = "-v3"


def task_name(task: str) -> str:
    """The full Meta-World name of a task: `"push"` and `"push-v3"` both give `"push-v3"`.

    Raises:
        ValueError: the task has no scripted expert in Meta-World (the message suggests close names).
    """
    name = task.strip()
    name = name if name.endswith(_SUFFIX) else name + _SUFFIX
    if name not in ENV_POLICY_MAP:
        raise unknown_task(NAME, task, name, list(ENV_POLICY_MAP))
    return name


class MetaWorldEnv(TaskEnv):
    """One Meta-World task rendered from a fixed camera: uint8 frames in, actions in [-1, 1]^4 out.

    Episodes never terminate; they are truncated after `max_steps` steps (`sim.base.TaskEnv`, which also
    holds the action, sums the rewards and snapshots the state). `reset(seed=s)` gives the same episode as
    a fresh env built with `seed=s`, whatever ran before. Rewards per simulator step lie in [0, 10] (summed
    over the action repeat, so returns match the reference DrQ-v2/MBPO numbers).

    Attributes:
        state: the last float64 `(39,)` state observation (hand, gripper, objects, goal), for the experts.
        sim_dt: simulated seconds per step (action repeat included); the frame rate is `1 / sim_dt`.
    """

    def __init__(
        self,
        task: str,
        size: int = 64,
        camera: str = DEFAULT_CAMERA,
        seed: int = 0,
        action_repeat: int = DEFAULT_ACTION_REPEAT,
        max_steps: int = 100,
    ) -> None:
        super().__init__(task_name(task), size, ACTION_DIM, action_repeat, max_steps)
        self._env = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[self.task + "-goal-observable"](seed=seed)
        # new object/goal placement on every reset, drawn from the env's own seeded generator (not the
        # global np.random), so episodes depend only on the seed
        self._env._freeze_rand_vec = False
        self._env.seeded_rand_vec = True
        # Meta-World refuses to step past its max_path_length (500); the time limit is ours (`step`), and a
        # planner's look-ahead (`advance`) goes past the episode's end, so its own is switched off
        self._env.max_path_length = sys.maxsize
        self._renderer = SceneRenderer(self._env.model, self._env.data, size, camera)
        substep = float(self._env.model.opt.timestep) * self._env.frame_skip  # Meta-World's frame skip
        self._bind(self._env.model, self._env.data, substep)
        self.state = np.zeros(self._env.observation_space.shape, np.float64)

    def _reset_scene(self, seed: int | None) -> None:
        if seed is not None:
            self._env.seed(seed)
        self.state, _ = self._env.reset()
        # Meta-World's reset sets qpos/qvel but leaves the derived body poses of the previous episode in
        # `data`, and the renderer draws those: without this, frame 0 shows where the last episode ended
        mujoco.mj_forward(self._env.model, self._env.data)

    def _substep(self, action: np.ndarray) -> tuple[float, bool]:
        self.state, reward, _, _, info = self._env.step(action)
        return reward, info["success"]

    def render(self) -> np.ndarray:
        """The current frame, uint8 `(H, W, 3)`."""
        return self._renderer.render()

    def _save_extra(self) -> MetaWorldCounters:
        env = self._env
        return MetaWorldCounters(self.state.copy(), env.curr_path_length, env._prev_obs.copy(),
                                 None if env._last_stable_obs is None else env._last_stable_obs.copy(),
                                 env._did_see_sim_exception)

    def _load_extra(self, extra: MetaWorldCounters) -> None:
        env = self._env
        self.state = extra.state.copy()
        env.curr_path_length, env._prev_obs = extra.path_length, extra.prev_obs.copy()
        env._last_stable_obs = None if extra.last_stable_obs is None else extra.last_stable_obs.copy()
        env._did_see_sim_exception = extra.sim_exception

    def close(self) -> None:
        self._renderer.close()
        self._env.close()


Env = MetaWorldEnv  # the suite's env class (sim.load_suite)


@dataclass(frozen=True)
class MetaWorldCounters:
    """What Meta-World keeps beside MuJoCo's state, in a snapshot (`TaskEnv.snapshot`)."""

    state: np.ndarray  # the (39,) observation the experts read
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
