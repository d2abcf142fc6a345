"""Gymnasium environments backed by a world model: imagined frames as observations.

`WorldModelEnv` is one imagined episode at a time; `WorldModelVectorEnv` steps `num_envs` of them as one
batch through the model (gymnasium 1.x `VectorEnv`, next-step autoreset). Both start every episode from
real context frames drawn with the env's seeded RNG from a dataset folder or an array, and take reward and
termination from the model's heads (0 / never where the model has no such head). Episodes are truncated
after `max_steps` imagined steps.

A KV cache holds one prefix length for the whole batch, so rows that restart at different times cannot
share it: the vector env keeps "cohorts" of rows that started together, each with its own batched state.
Rows that only ever truncate (the usual case: tasks without a termination head) stay in one cohort.

    env = WorldModelEnv("runs/metaworld64", context="data/metaworld", max_steps=50)
    frame, info = env.reset(seed=0)                     # uint8 (H, W, 3): the last real context frame
    frame, reward, terminated, truncated, info = env.step(env.action_space.sample())
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from ivideogpt.data.store import EpisodeStore
from ivideogpt.world_model import WorldModel, WorldModelState

_SEED_BOUND = 2**62  # world-model seeds drawn from the env's RNG


class ContextSource:
    """Real context clips of `num_frames` frames, drawn uniformly over every window of every episode.

    Args:
        source: a dataset folder, or uint8 frames (T, H, W, 3) / (N, T, H, W, 3) (N episodes of T frames).
        num_frames: frames per context clip (the world model's Tc).
        image_size: the model's H = W; the source must match it.
    """

    def __init__(self, source: str | Path | np.ndarray, num_frames: int, image_size: int) -> None:
        self.num_frames = num_frames
        if isinstance(source, (str, Path)):
            self._store: EpisodeStore | None = EpisodeStore(source)
            self._arrays: np.ndarray | None = None
            lengths, size, where = self._store.lengths, self._store.meta.image_size, str(source)
        else:
            arrays = np.asarray(source)
            arrays = arrays[None] if arrays.ndim == 4 else arrays
            if arrays.dtype != np.uint8 or arrays.ndim != 5 or arrays.shape[-1] != 3:
                raise ValueError(f"context: expected uint8 frames (T, H, W, 3) or (N, T, H, W, 3), got "
                                 f"{np.asarray(source).dtype} {np.asarray(source).shape}")
            self._store, self._arrays = None, arrays
            lengths, size, where = [arrays.shape[1]] * arrays.shape[0], arrays.shape[2], "the context array"
            if arrays.shape[2] != arrays.shape[3]:
                raise ValueError(f"context: frames must be square, got {arrays.shape[2]}x{arrays.shape[3]}")
        if size != image_size:
            raise ValueError(f"{where}: frames are {size}x{size}, the world model expects {image_size}x"
                             f"{image_size}")
        # number of context windows in each episode; episodes shorter than a window get none
        self._windows = np.maximum(np.asarray(lengths, dtype=np.int64) - num_frames + 1, 0)
        if self._windows.sum() == 0:
            raise ValueError(f"{where}: no episode has the {num_frames} frame(s) a context needs "
                             f"(lengths: {sorted(set(lengths))[:5]})")

    def sample(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """`count` context clips uint8 (count, Tc, H, W, 3) and their (episode, start frame) (count, 2)."""
        flat = rng.integers(0, int(self._windows.sum()), size=count)
        ends = np.cumsum(self._windows)
        episodes = np.searchsorted(ends, flat, side="right")
        starts = flat - (ends[episodes] - self._windows[episodes])
        clips = [self._frames(int(e))[s : s + self.num_frames] for e, s in zip(episodes, starts, strict=True)]
        return np.stack(clips), np.stack([episodes, starts], axis=1)

    def _frames(self, episode: int) -> np.ndarray:
        return self._arrays[episode] if self._store is None else self._store[episode].frames


def _load(world_model: WorldModel | str | Path, device: str) -> WorldModel:
    wm = world_model if isinstance(world_model, WorldModel) else WorldModel.load(world_model, device)
    if wm.action_dim < 1:
        raise ValueError("WorldModelEnv: the world model is action-free (action_dim=0); an env needs actions")
    return wm


def _check_settings(max_steps: int, action_bound: float) -> None:
    if max_steps < 1:
        raise ValueError(f"WorldModelEnv: max_steps must be >= 1, got {max_steps}")
    if not action_bound > 0:
        raise ValueError(f"WorldModelEnv: action_bound must be > 0, got {action_bound}")


class WorldModelEnv(gym.Env):
    """One imagined episode at a time (see the module docstring).

    Args:
        world_model: a loaded `WorldModel` or a folder to load one from.
        context: dataset folder or uint8 frame array that reset draws real context frames from.
        max_steps: imagined steps before truncation.
        action_bound: the action space is [-bound, bound]^A (actions are passed to the model unclipped).
        temperature, top_k: sampling overrides (default: the model's).
        device: where to load `world_model` when given as a folder.
        render_mode: None or "rgb_array" (render returns the current frame).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        world_model: WorldModel | str | Path,
        context: str | Path | np.ndarray,
        max_steps: int = 100,
        action_bound: float = 1.0,
        temperature: float | None = None,
        top_k: int | None = None,
        device: str = "cpu",
        render_mode: str | None = None,
    ) -> None:
        _check_settings(max_steps, action_bound)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"WorldModelEnv: render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.world_model = _load(world_model, device)
        wm = self.world_model
        self.contexts = ContextSource(context, wm.num_context_frames, wm.image_size)
        self.max_steps, self.temperature, self.top_k = max_steps, temperature, top_k
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": wm.spec.fps or 10.0}
        self.observation_space = gym.spaces.Box(0, 255, (wm.image_size, wm.image_size, 3), np.uint8)
        self.action_space = gym.spaces.Box(-action_bound, action_bound, (wm.action_dim,), np.float32)
        self._state: WorldModelState | None = None
        self._frame = np.zeros(self.observation_space.shape, np.uint8)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start from real context frames: drawn with the env's RNG, or `options["context"]` (Tc', H, W, 3).

        Returns:
            The last context frame uint8 (H, W, 3) and info {"episode", "start"} (-1 for given frames).
        """
        super().reset(seed=seed)
        given = (options or {}).get("context")
        if given is None:
            clips, where = self.contexts.sample(self.np_random, 1)
        else:
            clips, where = np.asarray(given)[None], np.array([[-1, -1]])
        wm_seed = int(self.np_random.integers(_SEED_BOUND))
        self._state = self.world_model.reset(clips, wm_seed, temperature=self.temperature, top_k=self.top_k)
        self._frame = clips[0, -1].copy()
        return self._frame.copy(), {"episode": int(where[0, 0]), "start": int(where[0, 1])}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Imagine the next frame under `action` float (A,).

        Returns:
            frame uint8 (H, W, 3), predicted reward, terminated (done head), truncated (at `max_steps`), {}.
        """
        if self._state is None:
            raise RuntimeError("WorldModelEnv: call reset() before step() (and after an episode ends)")
        action = np.asarray(action, dtype=np.float32)  # validated by the world model
        frames, rewards, dones, state = self.world_model.step(self._state, action[None])
        self._frame = frames[0]
        terminated, truncated = bool(dones[0]), state.num_steps >= self.max_steps
        if terminated or truncated:
            self._state = None
        return self._frame.copy(), float(rewards[0]), terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        """The current frame uint8 (H, W, 3) in "rgb_array" mode; None otherwise."""
        return self._frame.copy() if self.render_mode == "rgb_array" else None


@dataclass
class _Cohort:
    """Rows of a vector env that started together and share one batched world-model state."""

    rows: np.ndarray  # int (k,) env indices, in the state's batch order
    state: WorldModelState


class WorldModelVectorEnv(VectorEnv):
    """`num_envs` imagined episodes stepped as one batch (gymnasium 1.x, next-step autoreset).

    Arguments as `WorldModelEnv`, plus `num_envs`. A row whose episode ended is reset on the following
    `step` call (its action is ignored; reward 0, not terminated or truncated), as gymnasium's
    `AutoresetMode.NEXT_STEP` specifies.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["rgb_array"],
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        world_model: WorldModel | str | Path,
        context: str | Path | np.ndarray,
        num_envs: int,
        max_steps: int = 100,
        action_bound: float = 1.0,
        temperature: float | None = None,
        top_k: int | None = None,
        device: str = "cpu",
        render_mode: str | None = None,
    ) -> None:
        _check_settings(max_steps, action_bound)
        if num_envs < 1:
            raise ValueError(f"WorldModelVectorEnv: num_envs must be >= 1, got {num_envs}")
        self.world_model = _load(world_model, device)
        wm = self.world_model
        self.contexts = ContextSource(context, wm.num_context_frames, wm.image_size)
        self.num_envs, self.max_steps = num_envs, max_steps
        self.temperature, self.top_k, self.render_mode = temperature, top_k, render_mode
        self.metadata = {**self.metadata, "render_fps": wm.spec.fps or 10.0}
        self.single_observation_space = gym.spaces.Box(0, 255, (wm.image_size, wm.image_size, 3), np.uint8)
        self.single_action_space = gym.spaces.Box(-action_bound, action_bound, (wm.action_dim,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._cohorts: list[_Cohort] = []
        self._frames = np.zeros(self.observation_space.shape, np.uint8)  # (N, H, W, 3)
        self._needs_reset = np.zeros(num_envs, bool)  # ended last step: reset on the next one
        self._was_reset = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every row from freshly drawn real context frames.

        Returns:
            frames uint8 (N, H, W, 3) (each row's last context frame) and info {"episode", "start"} (N,).
        """
        super().reset(seed=seed)
        self._cohorts, self._was_reset = [], True
        episodes, starts = self._start(np.arange(self.num_envs))
        present = np.ones(self.num_envs, bool)  # gymnasium's vector-info masks: every row has both keys
        info = {"episode": episodes, "_episode": present, "start": starts, "_start": present}
        return self._frames.copy(), info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every row with actions float (N, A); rows that ended last step are reset instead.

        Returns:
            frames uint8 (N, H, W, 3), rewards float32 (N,), terminated (N,), truncated (N,), info {}.
        """
        if not self._was_reset:
            raise RuntimeError("WorldModelVectorEnv: call reset() before step()")
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != self.action_space.shape:
            raise ValueError(f"WorldModelVectorEnv: actions must have shape {self.action_space.shape}, "
                             f"got {actions.shape}")
        rewards = np.zeros(self.num_envs, np.float32)
        terminated = np.zeros(self.num_envs, bool)
        truncated = np.zeros(self.num_envs, bool)
        restarting = np.flatnonzero(self._needs_reset)
        self._drop(restarting)
        for cohort in self._cohorts:
            frames, r, d, state = self.world_model.step(cohort.state, actions[cohort.rows])
            self._frames[cohort.rows], rewards[cohort.rows], terminated[cohort.rows] = frames, r, d
            truncated[cohort.rows] = state.num_steps >= self.max_steps
        if len(restarting):
            self._start(restarting)
        self._needs_reset = terminated | truncated
        return self._frames.copy(), rewards, terminated, truncated, {}

    def render(self) -> tuple[np.ndarray, ...] | None:
        """Every row's current frame uint8 (H, W, 3) in "rgb_array" mode; None otherwise."""
        return tuple(self._frames.copy()) if self.render_mode == "rgb_array" else None

    def _start(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start `rows` (int (k,)) from new contexts as one new cohort; returns their episodes and starts."""
        clips, where = self.contexts.sample(self.np_random, len(rows))
        wm_seed = int(self.np_random.integers(_SEED_BOUND))
        state = self.world_model.reset(clips, wm_seed, temperature=self.temperature, top_k=self.top_k)
        self._cohorts.append(_Cohort(rows, state))
        self._frames[rows] = clips[:, -1]
        self._needs_reset[rows] = False
        return where[:, 0], where[:, 1]

    def _drop(self, rows: np.ndarray) -> None:
        """Remove `rows` from their cohorts (their episodes ended); empty cohorts disappear."""
        if not len(rows):
            return
        kept = []
        for cohort in self._cohorts:
            keep = ~np.isin(cohort.rows, rows)
            if keep.all():
                kept.append(cohort)
            elif keep.any():
                cohort.state.select(np.flatnonzero(keep))
                kept.append(_Cohort(cohort.rows[keep], cohort.state))
        self._cohorts = kept
