"""Collect simulator episodes (Meta-World, RoboDesk; rendered in MuJoCo) into a dataset folder.

Each episode is one task with a fresh random object/goal placement, driven by a behaviour policy drawn
per episode from a mixture (`ivideogpt.data.policies`: the scripted expert with small or large noise,
the expert interrupted by random segments, smooth or uniform random actions), so that actions carry
information the frames do not. RoboDesk has no scripted expert: its mixtures draw from the random
policies only. Episodes have a fixed length of `max_steps + 1` frames (the reset frame
first) and carry actions, rewards, success and done; `meta.json` names each episode's policy.

With `branches=K` the collection is counterfactual instead (the held-out set of `ivideogpt eval
--counterfactual`): each scene runs its policy for T steps (T drawn from `branch_at`), then continues from
that same simulator state with K different action sequences for `branch_steps` steps (branch 0 the expert
where the suite has one, the others random). The state is reached again by replaying the scene's seed and
first T actions (MuJoCo is deterministic; the replayed frames are checked to be identical). Each branch is
written as an episode of T + branch_steps + 1 frames with the scene's id and its branch index.

Episodes are recorded by worker processes (spawned, each with its own simulator and renderer) and written
by the main process in job order, so a seed gives the same dataset whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
from tqdm import tqdm

from ivideogpt.data.episode import Episode
from ivideogpt.data.policies import DEFAULT_MIXTURE, Expert, Policy, draw_policy, make_policy, parse_mixture
from ivideogpt.data.store import DatasetWriter
from ivideogpt.sim import SuiteTasks, load_suite, robodesk
from ivideogpt.sim.base import TaskEnv
from ivideogpt.sim.metaworld import DEFAULT_TASKS


@dataclass
class MetaworldCollectConfig(SuiteTasks):
    """Settings of `ivideogpt collect metaworld`."""

    suite: ClassVar[str] = "metaworld"  # the simulator (`ivideogpt.sim.load_suite`)
    out: Path  # dataset folder to create
    tasks: tuple[str, ...] = DEFAULT_TASKS  # Meta-World tasks ("push" or "push-v3"): --tasks push reach
    episodes: int = 10  # episodes per task
    size: int = 64  # frames are size x size
    camera: str = "corner"  # Meta-World camera (corner, corner2, corner3, corner4, topview, ...)
    policy: str = DEFAULT_MIXTURE  # behaviour policy, or a mixture "name:weight,..." drawn per episode
    action_noise: float = 0.1  # std of the Gaussian noise of the `expert` policy (then clipped to [-1, 1])
    noise_schedule: Literal["fixed", "uniform"] = "uniform"  # uniform: per-episode std ~ U[0, 2*action_noise]
    branches: int = 1  # K > 1: counterfactual scenes of K branches each (`episodes` scenes per task)
    branch_at: tuple[int, int] = (10, 60)  # branches: the branch point T is drawn from U{lo, ..., hi}
    branch_steps: int = 8  # branches: steps of each branch after the branch point
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
            raise ValueError(f"{type(self).__name__}.tasks names no task: {self.tasks!r}")
        repeated = [t for t, n in Counter(tasks).items() if n > 1]
        if repeated:
            raise ValueError(f"{type(self).__name__}.tasks lists {repeated} more than once")
        for name in ("episodes", "size", "max_steps", "action_repeat", "workers", "branches", "branch_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{type(self).__name__}.{name} must be >= 1, got {getattr(self, name)}")
        if not self.action_noise >= 0:
            raise ValueError(f"{type(self).__name__}.action_noise must be >= 0, got {self.action_noise}")
        if self.noise_schedule not in ("fixed", "uniform"):
            raise ValueError(
                f"{type(self).__name__}.noise_schedule must be 'fixed' or 'uniform', "
                f"got {self.noise_schedule!r}"
            )
        expert_led = [p for p in parse_mixture(self.policy) if p.startswith("expert")]  # checks the weights
        if expert_led and not self.simulator.EXPERTS:
            raise ValueError(f"{type(self).__name__}.policy: {self.simulator.NAME} has no scripted expert, "
                             f"so {expert_led} cannot run; use smooth_random and random")
        lo, hi = self.branch_at = tuple(self.branch_at)
        if self.branches > 1 and not 1 <= lo <= hi:
            raise ValueError(f"{type(self).__name__}.branch_at must be 1 <= lo <= hi, got {self.branch_at}")
        if self.branches > 1 and hi + self.branch_steps > self.max_steps:
            raise ValueError(f"{type(self).__name__}: a branch point of up to {hi} steps (branch_at) plus "
                             f"{self.branch_steps} branch steps exceeds max_steps={self.max_steps}")

    @property
    def mixture(self) -> dict[str, float]:
        """The behaviour policies and their weights."""
        return parse_mixture(self.policy)



@dataclass
class RobodeskCollectConfig(MetaworldCollectConfig):
    """Settings of `ivideogpt collect robodesk` (VP2's desk; needs `pip install 'ivideogpt[robodesk]'`)."""

    suite: ClassVar[str] = "robodesk"
    tasks: tuple[str, ...] = robodesk.DEFAULT_TASKS  # RoboDesk tasks ("push_red" or "push-red")
    camera: str = robodesk.DEFAULT_CAMERA  # vp2 (RoboDesk's own render) or vp2-fast (no shadows: 9x faster)
    policy: str = "smooth_random:0.7,random:0.3"  # no scripted expert: the random policies only
    max_steps: int = 50  # steps per episode (episodes have max_steps + 1 frames)
    branch_at: tuple[int, int] = (5, 30)  # branches: the branch point T is drawn from U{lo, ..., hi}
    action_repeat: int = robodesk.DEFAULT_ACTION_REPEAT  # RoboDesk steps (20 ms each) per action


class Job(NamedTuple):
    """One episode to record."""

    task: str  # full task name of the suite
    index: int  # episode index within the task
    seed: int  # env seed (object/goal placement); the policy's randomness is seeded from it too
    noise_std: float  # std of the Gaussian action noise of the expert in this episode
    policy: str  # behaviour policy (of the scene's prefix, when branching)
    branch_at: int  # branching: steps before the branch point; 0 for a plain episode


class Recording(NamedTuple):
    """One recorded episode and how it was made."""

    episode: Episode
    policy: str  # what chose its actions (after the branch point, for a branch)
    branch: int | None  # branch index within its scene; None for a plain episode


# Policies of the branches of a counterfactual scene, cycled: the expert's own continuation, then random (the
# random ones only where the suite has no expert)
BRANCH_POLICIES = ("expert", "smooth_random", "random")


def branch_policies(has_expert: bool) -> tuple[str, ...]:
    """The cycle of branch policies of a suite with or without a scripted expert."""
    return BRANCH_POLICIES if has_expert else BRANCH_POLICIES[1:]


def collect_episodes(cfg: MetaworldCollectConfig) -> Path:
    """Record `cfg.episodes` episodes (or counterfactual scenes of `cfg.branches` episodes) per task into a
    new dataset at `cfg.out`.

    Episodes are written in job order (episode index major, task minor), so an interrupted collection
    still holds every task. `meta.json` records the settings, each episode's policy (and scene, branch)
    and its expert noise std.

    Returns:
        `cfg.out`.
    """
    jobs = make_jobs(cfg)
    sim = cfg.simulator
    probe = sim.Env(jobs[0].task, cfg.size, cfg.camera, 0, cfg.action_repeat, cfg.max_steps)
    fps = probe.metadata["render_fps"]  # also checks the camera name before any worker starts
    probe.close()
    extra = {
        "tasks": list(cfg.task_list),
        "camera": cfg.camera,
        "policy": cfg.mixture,
        "action_noise": cfg.action_noise,
        "noise_schedule": cfg.noise_schedule,
        "action_repeat": cfg.action_repeat,
        "max_steps": cfg.max_steps,
        "seed": cfg.seed,
        "reward": f"sum over the {cfg.action_repeat} simulator steps of each action",
        "noise_std": [],  # one entry per episode, in file order
    }
    if cfg.branches > 1:
        cycle = branch_policies(sim.EXPERTS)
        extra |= {"branches": cfg.branches, "branch_at": list(cfg.branch_at),
                  "branch_steps": cfg.branch_steps,
                  "branch_policies": [cycle[k % len(cycle)] for k in range(cfg.branches)]}
    start, successes = time.perf_counter(), Counter()
    unit, desc = ("scene", f"{cfg.suite} scenes") if cfg.branches > 1 else ("ep", cfg.suite)
    with DatasetWriter(cfg.out, cfg.suite, cfg.size, sim.ACTION_DIM, fps, extra, cfg.overwrite) as writer:
        bar = tqdm(zip(jobs, record_episodes(cfg, jobs), strict=True), total=len(jobs), unit=unit, desc=desc)
        for scene, (job, recordings) in enumerate(bar):
            for rec in recordings:
                writer.meta.extra["noise_std"].append(job.noise_std)
                writer.add(rec.episode, task=job.task, seed=job.seed, policy=rec.policy,
                           scene=None if rec.branch is None else scene, branch=rec.branch)
            successes[job.task] += bool(recordings[0].episode.success.any())
            bar.set_postfix(success=f"{sum(successes.values()) / (scene + 1):.0%}")
        frames, episodes = writer.meta.num_frames, writer.meta.num_episodes
    seconds = time.perf_counter() - start
    rates = ", ".join(f"{t} {successes[t] / cfg.episodes:.0%}" for t in cfg.task_list)
    print(f"{episodes} episodes, {frames} frames in {seconds:.1f} s ({frames / seconds:.1f} frames/s, "
          f"{cfg.workers} worker(s)) -> {cfg.out}")
    print(f"success{' (branch 0)' if cfg.branches > 1 else ''}: {rates}")
    return cfg.out


def make_jobs(cfg: MetaworldCollectConfig) -> list[Job]:
    """Every episode of the collection, in the order they are written (episode index major)."""
    jobs = []
    for index in range(cfg.episodes):
        for task in cfg.task_list:
            seed = episode_seed(cfg.seed, task, index)
            rng = np.random.default_rng([seed, 2])  # not [seed, 1]: that is the policy's stream
            noise = cfg.action_noise
            if cfg.noise_schedule == "uniform":
                noise = float(rng.uniform(0.0, 2.0 * cfg.action_noise))
            policy = draw_policy(cfg.mixture, rng)
            branch_at = int(rng.integers(cfg.branch_at[0], cfg.branch_at[1] + 1)) if cfg.branches > 1 else 0
            jobs.append(Job(task, index, seed, noise, policy, branch_at))
    return jobs


def episode_seed(base_seed: int, task: str, index: int) -> int:
    """A 31-bit seed that depends only on the base seed, the task name and the episode index."""
    entropy = [base_seed, zlib.crc32(task.encode()), index]  # crc32: stable across runs, unlike hash()
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)


def record_episodes(cfg: MetaworldCollectConfig, jobs: list[Job]) -> Iterator[list[Recording]]:
    """Record `jobs` with `cfg.workers` spawned processes (or here when 1), yielding each job's episodes
    (one, or one per branch) in job order."""
    settings = (cfg.suite, cfg.size, cfg.camera, cfg.action_repeat, cfg.max_steps, cfg.branches,
                cfg.branch_steps)
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
    """Records episodes of any task of a suite, keeping one env per task (building one takes about 0.3 s)."""

    def __init__(
        self, suite: str, size: int, camera: str, action_repeat: int, max_steps: int, branches: int = 1,
        branch_steps: int = 8,
    ) -> None:
        self.sim = load_suite(suite)
        self.env_kwargs = {"size": size, "camera": camera, "action_repeat": action_repeat,
                           "max_steps": max_steps}
        self.branches, self.branch_steps = branches, branch_steps
        self.envs: dict[str, TaskEnv] = {}

    def __call__(self, job: Job) -> list[Recording]:
        if job.task not in self.envs:
            self.envs[job.task] = self.sim.Env(job.task, **self.env_kwargs)
        env = self.envs[job.task]
        rng = np.random.default_rng([job.seed, 1])  # not default_rng(seed): that is the env's own stream
        expert = self.sim.expert_policy(job.task) if self.sim.EXPERTS else None  # stateless: one serves all
        policy = make_policy(job.policy, expert, self.sim.ACTION_DIM, job.noise_std, rng)
        if self.branches == 1:
            return [Recording(record_episode(env, policy, job.seed), job.policy, None)]
        return record_branches(env, job, policy, self.branches, self.branch_steps, expert)

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs.clear()


def record_episode(
    env: TaskEnv, policy: Policy, seed: int, steps: int | None = None, replay: np.ndarray | None = None
) -> Episode:
    """Run one episode of `policy` in `env`, reset with `seed`: `steps` steps (default: `env.max_steps`).

    `replay`, float32 `(R, A)`, gives the first R actions instead of asking the policy (to reach the
    state of an earlier episode again: MuJoCo is deterministic).

    Returns:
        Episode with T = env.max_steps + 1: frames uint8 `(T, H, W, 3)`, actions float32 `(T, A)`,
        rewards float32 `(T,)`, success bool `(T,)`, done bool `(T,)`; row 0 (the reset frame) is
        zeros/False. `done` stays False: the tasks never terminate, and the time limit is a
        truncation, not an outcome the model should predict from the frames.
    """
    num_frames = (env.max_steps if steps is None else steps) + 1
    if num_frames - 1 > env.max_steps:
        raise ValueError(f"record_episode: {num_frames - 1} steps is more than the env's "
                         f"max_steps={env.max_steps}")
    action_dim = env.action_space.shape[0]
    replay = np.zeros((0, action_dim), np.float32) if replay is None else replay
    frame, _ = env.reset(seed=seed)
    frames = np.empty((num_frames, *frame.shape), np.uint8)
    actions = np.zeros((num_frames, action_dim), np.float32)
    rewards = np.zeros(num_frames, np.float32)
    success = np.zeros(num_frames, bool)
    frames[0] = frame
    for t in range(1, num_frames):
        actions[t] = replay[t - 1] if t - 1 < len(replay) else policy(env.state)
        frames[t], rewards[t], _, _, info = env.step(actions[t])
        success[t] = info["success"]
    return Episode(frames, actions, rewards, success, np.zeros(num_frames, bool))


def record_branches(
    env: TaskEnv, job: Job, policy: Policy, branches: int, steps: int, expert: Expert | None
) -> list[Recording]:
    """One counterfactual scene: `job.policy` for `job.branch_at` steps, then `branches` continuations.

    Branch k follows `branch_policies(...)[k]`, cycled (fresh, seeded from the job and k), for `steps`
    steps from the branch point, reached again for every branch by replaying the scene's seed and first
    actions.

    Raises:
        RuntimeError: the replay did not reproduce the scene (the simulator was not deterministic).
    """
    total = job.branch_at + steps
    if total > env.max_steps:
        raise ValueError(f"branch point {job.branch_at} + {steps} branch steps exceeds "
                         f"max_steps={env.max_steps}")
    prefix = record_episode(env, policy, job.seed, job.branch_at)
    recordings, cycle = [], branch_policies(expert is not None)
    for k in range(branches):
        name = cycle[k % len(cycle)]
        rng = np.random.default_rng([job.seed, 3, k])
        branch_policy = make_policy(name, expert, env.action_space.shape[0], job.noise_std, rng)
        ep = record_episode(env, branch_policy, job.seed, total, replay=prefix.actions[1:])
        if not np.array_equal(ep.frames[: job.branch_at + 1], prefix.frames):
            raise RuntimeError(f"{job.task} seed {job.seed}: replaying the first {job.branch_at} actions "
                               "did not reproduce the scene's frames; branches would not share a state")
        recordings.append(Recording(ep, name, k))
    return recordings


_WORKER_RECORDER: Recorder | None = None  # one per worker process, built by `_init_worker`


def _init_worker(*settings: Any) -> None:
    global _WORKER_RECORDER
    _WORKER_RECORDER = Recorder(*settings)


def _record_in_worker(job: Job) -> list[Recording]:
    assert _WORKER_RECORDER is not None, "worker used before _init_worker"
    return _WORKER_RECORDER(job)
