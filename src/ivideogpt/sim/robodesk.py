"""RoboDesk (the desk of VP2's planning tasks) as the same small pixel environment as `sim.metaworld`.

`robodesk` 1.0.0 is wrapped, not forked: its physics, action conversion (end-effector deltas through
inverse kinematics), rewards and camera are its own. What the wrapper adds is what this package's
collectors and planners need from every simulator: the gymnasium step API, seeded resets (RoboDesk draws
its scene from the global `np.random`; here a seed gives the same scene whatever ran before), an
`advance` that steps without rendering, and `snapshot`/`restore` of the full MuJoCo state for the
simulator-as-model planner.

Two things in `robodesk` 1.0.0 need help on current libraries: it imports the old `gym` (installed beside
gymnasium; only its spaces are used) and resizes with Pillow's `Image.ANTIALIAS`, removed in Pillow 10,
which is the same filter as `Image.LANCZOS`.

Cameras: `vp2` is RoboDesk's own render (a 120x120 view with a 4096-pixel shadow map and 4x multisampling,
cropped and resized to the frame size), the images VP2 scores; on this machine's software OpenGL it
renders about 4 frames/s. `vp2-fast` is the same view without shadows or multisampling, about 9x faster
on a CPU, but darker (the scene's light is drawn differently without its shadow map; about 13.5 dB PSNR
from `vp2`): for data whose models plan in the same `vp2-fast` env, not for comparisons with VP2.

Rewards are RoboDesk's dense rewards (in [0, 1] per simulator step), summed over the repeated steps;
success is its `success` test, True if any repeated step succeeded. RoboDesk 1.0.0 keeps the objects'
starting positions as views of the live positions, so its "other objects did not move" terms always hold
and `*_off_table`'s dense reward has no "pushed" part; we keep its rewards as they are.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import PIL.Image

from ivideogpt.sim.base import TaskEnv, unknown_task

# VP2's RoboDesk tasks (docs/method.md §4), the suite's defaults
DEFAULT_TASKS: tuple[str, ...] = (
    "push_red",
    "push_green",
    "push_blue",
    "open_drawer",
    "open_slide",
    "flat_block_off_table",
    "upright_block_off_table",
)
# every task of robodesk 1.0.0 (RoboDesk.reward_functions), VP2's first
TASKS: tuple[str, ...] = DEFAULT_TASKS + (
    "stack",
    "flat_block_in_bin",
    "flat_block_in_shelf",
    "lift_upright_block",
    "lift_ball",
    "ball_off_table",
    "upright_block_in_bin",
    "ball_in_bin",
    "upright_block_in_shelf",
    "ball_in_shelf",
    "lift_flat_block",
)
NAME = "RoboDesk"  # as messages write it
CAMERAS = ("vp2", "vp2-fast")
DEFAULT_CAMERA = "vp2"
# RoboDesk steps per action. One step asks the arm for at most 1 cm but its controller covers about 0.15 cm
# in the step's 20 ms; at 10 an action moves the hand up to 1.6 cm (about a pixel at 64x64), 5 frames/s
DEFAULT_ACTION_REPEAT = 10
ACTION_DIM = 5  # end-effector xyz displacement, wrist rotation, gripper; each in [-1, 1]
MAX_REWARD = 1.0  # RoboDesk's dense reward per simulator step lies in [0, 1]
EXPERTS = False  # RoboDesk has no scripted policies: collection and planning baselines do without


def task_name(task: str) -> str:
    """RoboDesk's name of a task: `"push-red"` and `"push_red"` both give `"push_red"`.

    Raises:
        ValueError: not a RoboDesk task (the message suggests close names).
    """
    name = task.strip().replace("-", "_")
    if name not in TASKS:
        raise unknown_task(NAME, task, name, TASKS)
    return name


class RoboDeskEnv(TaskEnv):
    """One RoboDesk task: uint8 frames, actions in [-1, 1]^5, the interface of every env here (`sim.base`).

    Episodes never terminate; they are truncated after `max_steps` steps. `reset(seed=s)` gives the same
    scene as a fresh env reset with `seed=s`; `reset()` draws the next scene from the env's `seed`.

    Attributes:
        state: float64 `(qpos,)`, the simulator's joint positions (robot and objects).
        sim_dt: simulated seconds per step (action repeat included); the frame rate is `1 / sim_dt`.
    """

    def __init__(
        self,
        task: str,
        size: int = 64,
        camera: str = DEFAULT_CAMERA,
        seed: int = 0,
        action_repeat: int = DEFAULT_ACTION_REPEAT,
        max_steps: int = 50,
    ) -> None:
        if camera not in CAMERAS:
            raise ValueError(f"unknown camera {camera!r}; RoboDesk has {list(CAMERAS)}")
        super().__init__(task_name(task), size, ACTION_DIM, action_repeat, max_steps)
        robodesk = _import_robodesk()
        # episode_length 0: RoboDesk's own time limit is off (ours is in `step`; a planner looks past it)
        self._desk = robodesk.RoboDesk(task=self.task, reward="dense", action_repeat=1, episode_length=0,
                                       image_size=size)
        self._desk._get_obs = lambda: None  # its step and reset render a frame; we render when asked
        physics = self._desk.physics
        if camera == "vp2-fast":  # read when the GL context is made, at the first render
            physics.model.vis.quality.shadowsize = 0
            physics.model.vis.quality.offsamples = 0
        self._bind(physics.model.ptr, physics.data.ptr, float(physics.model.opt.timestep) * 10)  # 10 per step
        self._seeds = np.random.default_rng(seed)  # scene seeds of resets given none

    @property
    def state(self) -> np.ndarray:
        return self._data.qpos.copy()

    def _reset_scene(self, seed: int | None) -> None:
        scene = int(self._seeds.integers(2**31)) if seed is None else seed
        saved = np.random.get_state()  # RoboDesk draws its scene from the global generator: lend it one
        np.random.seed(scene)
        try:
            self._desk.reset()
        finally:
            np.random.set_state(saved)

    def _substep(self, action: np.ndarray) -> tuple[float, bool]:
        _, reward, _, _ = self._desk.step(action)
        return reward, bool(self._desk._get_task_reward(self.task, "success"))

    def render(self) -> np.ndarray:
        """The current frame, uint8 `(H, W, 3)` (RoboDesk's own render)."""
        return np.ascontiguousarray(self._desk.render(resize=True), dtype=np.uint8)

    def _load_extra(self, extra: None) -> None:
        # the inverse-kinematics copy starts each action from the robot's pose (RoboDesk syncs it per step);
        # its starting object positions are views of the live ones (module docstring): nothing to restore
        self._desk.physics_copy.data.qpos[:] = self._data.qpos

    def close(self) -> None:
        self._desk.physics.free()
        self._desk.physics_copy.free()


Env = RoboDeskEnv  # the suite's env class (sim.load_suite)


def _import_robodesk() -> Any:
    """The `robodesk` module, imported on first use (an optional dependency: its absence is named)."""
    try:
        if not hasattr(PIL.Image, "ANTIALIAS"):  # removed in Pillow 10; RoboDesk's resize still names it
            PIL.Image.ANTIALIAS = PIL.Image.LANCZOS
        with contextlib.redirect_stderr(io.StringIO()):  # gym 0.26 prints a page urging gymnasium on import
            import robodesk
    except ImportError as error:
        raise ValueError(
            "RoboDesk is not installed: `pip install 'ivideogpt[robodesk]'` installs robodesk 1.0.0 with the "
            f"dm_control and gym versions it runs with beside Meta-World's MuJoCo ({error})"
        ) from error
    return robodesk


def expert_policy(task: str) -> None:
    """RoboDesk has no scripted expert (`EXPERTS` is False); named so that every suite module has one."""
    raise ValueError(f"RoboDesk has no scripted expert for {task!r}; choose policies and agents without one")
