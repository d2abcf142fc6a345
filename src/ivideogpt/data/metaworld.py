"""Collect Meta-World episodes from the scripted experts, rendered in MuJoCo, into a dataset folder.

Each episode is one task with a fresh random object/goal placement, driven by the task's scripted expert
with Gaussian action noise (so the data covers more than the single expert path). Episodes have a fixed
length of `max_steps + 1` frames (the reset frame first) and carry actions, rewards, success and done.

Episodes are recorded by worker processes (spawned, each with its own simulator and renderer) and written
by the main process in job order, so a seed gives the same dataset whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from tqdm import tqdm

from ivideogpt.data.episode import Episode
from ivideogpt.data.store import DatasetWriter
from ivideogpt.sim.metaworld import ACTION_DIM, DEFAULT_TASKS, MetaWorldEnv, expert_policy, task_name


@dataclass
class MetaworldCollectConfig:
    """Settings of `ivideogpt collect metaworld`."""

    out: Path  # dataset folder to create
    tasks: tuple[str, ...] = DEFAULT_TASKS  # Meta-World tasks ("push" or "push-v3"): --tasks push reach
    episodes: int = 10  # episodes per task
    size: int = 64  # frames are size x size
    camera: str = "corner"  # Meta-World camera (corner, corner2, corner3, corner4, topview, ...)
    action_noise: float = 0.1  # std of the Gaussian noise added to expert actions (then clipped to [-1, 1])
    noise_schedule: Literal["fixed", "uniform"] = "uniform"  # uniform: per-episode std ~ U[0, 2*action_noise]
    max_steps: int = 100  # steps per episode (episodes have max_steps + 1 frames)
    action_repeat: int = 2  # simulator steps per action (the frame rate is 80 / action_repeat)
    workers: int = 2  # recording processes; 1 records in this process
    seed: int = 0  # base seed; every episode's seed is derived from it, the task and the episode index
    overwrite: bool = False  # replace an existing dataset at `out`

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if isinstance(self.tasks, str):  # one task named from Python code
            self.tasks = (self.tasks,)
        self.tasks = tuple(self.tasks)
        tasks = self.task_list  # raises on an unknown name
        if not tasks:
            raise ValueError(f"MetaworldCollectConfig.tasks names no task: {self.tasks!r}")
        repeated = [t for t, n in Counter(tasks).items() if n > 1]
        if repeated:
            raise ValueError(f"MetaworldCollectConfig.tasks lists {repeated} more than once")
        for name in ("episodes", "size", "max_steps", "action_repeat", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"MetaworldCollectConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.action_noise >= 0:
            raise ValueError(f"MetaworldCollectConfig.action_noise must be >= 0, got {self.action_noise}")
        if self.noise_schedule not in ("fixed", "uniform"):
            raise ValueError(
                f"MetaworldCollectConfig.noise_schedule must be 'fixed' or 'uniform', got {self.noise_schedule!r}"
            )

    @property
    def task_list(self) -> tuple[str, ...]:
        """The tasks as full Meta-World names, in the order given."""
        return tuple(task_name(t) for t in self.tasks)


class Job(NamedTuple):
    """One episode to record."""

    task: str  # full Meta-World task name
    index: int  # episode index within the task
    seed: int  # env seed (object/goal placement); the action noise is seeded from it too
    noise_std: float  # std of the Gaussian action noise of this episode


def collect_metaworld(cfg: MetaworldCollectConfig) -> Path:
    """Record `cfg.episodes` expert episodes per task into a new dataset at `cfg.out`.

    Episodes are written in job order (episode index major, task minor), so an interrupted collection
    still holds every task. `meta.json` extra records the settings and each episode's noise std.

    Returns:
        `cfg.out`.
    """
    jobs = make_jobs(cfg)
    probe = MetaWorldEnv(jobs[0].task, cfg.size, cfg.camera, 0, cfg.action_repeat, cfg.max_steps)
    fps = probe.metadata["render_fps"]  # also checks the camera name before any worker starts
    probe.close()
    extra = {
        "tasks": list(cfg.task_list),
        "camera": cfg.camera,
        "action_noise": cfg.action_noise,
        "noise_schedule": cfg.noise_schedule,
        "action_repeat": cfg.action_repeat,
        "max_steps": cfg.max_steps,
        "seed": cfg.seed,
        "reward": f"sum over the {cfg.action_repeat} simulator steps of each action",
        "noise_std": [],  # one entry per episode, in file order
    }
    start, successes = time.perf_counter(), Counter()
    with DatasetWriter(cfg.out, "metaworld", cfg.size, ACTION_DIM, fps, extra, cfg.overwrite) as writer:
        bar = tqdm(zip(jobs, record_episodes(cfg, jobs)), total=len(jobs), unit="ep", desc="metaworld")
        for job, ep in bar:
            writer.meta.extra["noise_std"].append(job.noise_std)
            writer.add(ep, task=job.task, seed=job.seed)
            successes[job.task] += bool(ep.success.any())
            bar.set_postfix(success=f"{sum(successes.values()) / writer.meta.num_episodes:.0%}")
        frames = writer.meta.num_frames
    seconds = time.perf_counter() - start
    rates = ", ".join(f"{t} {successes[t] / cfg.episodes:.0%}" for t in cfg.task_list)
    print(f"{len(jobs)} episodes, {frames} frames in {seconds:.1f} s ({frames / seconds:.1f} frames/s, "
          f"{cfg.workers} worker(s)) -> {cfg.out}")
    print(f"expert success: {rates}")
    return cfg.out


def make_jobs(cfg: MetaworldCollectConfig) -> list[Job]:
    """Every episode of the collection, in the order they are written (episode index major)."""
    jobs = []
    for index in range(cfg.episodes):
        for task in cfg.task_list:
            seed = episode_seed(cfg.seed, task, index)
            noise = cfg.action_noise
            if cfg.noise_schedule == "uniform":
                noise = float(np.random.default_rng([seed, 2]).uniform(0.0, 2.0 * cfg.action_noise))
            jobs.append(Job(task, index, seed, noise))
    return jobs


def episode_seed(base_seed: int, task: str, index: int) -> int:
    """A 31-bit seed that depends only on the base seed, the task name and the episode index."""
    entropy = [base_seed, zlib.crc32(task.encode()), index]  # crc32: stable across runs, unlike hash()
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)


def record_episodes(cfg: MetaworldCollectConfig, jobs: list[Job]) -> Iterator[Episode]:
    """Record `jobs` with `cfg.workers` spawned processes (or here when 1), yielding episodes in job order."""
    settings = (cfg.size, cfg.camera, cfg.action_repeat, cfg.max_steps)
    workers = min(cfg.workers, len(jobs))
    if workers == 1:
        recorder = Recorder(*settings)
        try:
            yield from map(recorder, jobs)
        finally:
            recorder.close()
        return
    # spawn, not fork: an EGL context does not survive a fork, and a fresh process pays only imports
    with mp.get_context("spawn").Pool(workers, _init_worker, settings) as pool:
        yield from pool.imap(_record_in_worker, jobs)


class Recorder:
    """Records episodes of any task, keeping one env per task (building one takes about 0.3 s)."""

    def __init__(self, size: int, camera: str, action_repeat: int, max_steps: int) -> None:
        self.env_kwargs = {"size": size, "camera": camera, "action_repeat": action_repeat, "max_steps": max_steps}
        self.envs: dict[str, MetaWorldEnv] = {}

    def __call__(self, job: Job) -> Episode:
        if job.task not in self.envs:
            self.envs[job.task] = MetaWorldEnv(job.task, **self.env_kwargs)
        rng = np.random.default_rng([job.seed, 1])  # not default_rng(seed): that is the env's own stream
        return record_episode(self.envs[job.task], expert_policy(job.task), job.seed, job.noise_std, rng)

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs.clear()


def record_episode(
    env: MetaWorldEnv, policy: Callable[[np.ndarray], np.ndarray], seed: int, noise_std: float, rng: np.random.Generator
) -> Episode:
    """Run one full-length episode of `policy` plus Gaussian noise in `env`, reset with `seed`.

    Returns:
        Episode with T = env.max_steps + 1: frames uint8 `(T, H, W, 3)`, actions float32 `(T, 4)`,
        rewards float32 `(T,)`, success bool `(T,)`, done bool `(T,)`; row 0 (the reset frame) is
        zeros/False. `done` stays False: Meta-World tasks never terminate, and the time limit is a
        truncation, not an outcome the model should predict from the frames.
    """
    T = env.max_steps + 1
    frame, _ = env.reset(seed=seed)
    frames = np.empty((T, *frame.shape), np.uint8)
    actions = np.zeros((T, ACTION_DIM), np.float32)
    rewards = np.zeros(T, np.float32)
    success = np.zeros(T, bool)
    frames[0] = frame
    for t in range(1, T):
        action = policy(env.state) + noise_std * rng.standard_normal(ACTION_DIM)
        actions[t] = np.clip(action, -1.0, 1.0)
        frames[t], rewards[t], _, _, info = env.step(actions[t])
        success[t] = info["success"]
    return Episode(frames, actions, rewards, success, np.zeros(T, bool))


_WORKER_RECORDER: Recorder | None = None  # one per worker process, built by `_init_worker`


def _init_worker(size: int, camera: str, action_repeat: int, max_steps: int) -> None:
    global _WORKER_RECORDER
    _WORKER_RECORDER = Recorder(size, camera, action_repeat, max_steps)


def _record_in_worker(job: Job) -> Episode:
    assert _WORKER_RECORDER is not None, "worker used before _init_worker"
    return _WORKER_RECORDER(job)
