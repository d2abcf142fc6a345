"""`ivideogpt plan`: closed-loop control of a simulator (Meta-World, RoboDesk) with every action chosen in
imagination, beside baselines.

For every task and episode index, the same scene (seed) is played by each agent:

    world_model   CEM / MPPI imagining with the world model from the latest real frames
    simulator     the same planner imagining with the simulator itself (a snapshot per sample): its upper
                  bound, free of model error
    random        independent uniform actions
    expert        the suite's scripted expert (on the state vector; Meta-World only)

Outputs in `out/`: `plan.json` (every setting, per task and agent the success rate, return, time per
planning step and imagined frames/s, and every episode), `report.html` (the tables and the videos: real
frame | the plan being executed as imagined, per step) and `videos/`. Each finished episode is saved as
it ends (`planning/progress.py`), so `--resume` continues an interrupted run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from tqdm import tqdm

from ivideogpt.atomic import ReplacedFolder, partial_path
from ivideogpt.config import to_dict
from ivideogpt.data.collect import episode_seed
from ivideogpt.planning.episodes import (
    Agent,
    EpisodeResult,
    ExpertAgent,
    PlanningAgent,
    RandomAgent,
    run_episode,
)
from ivideogpt.planning.models import SimulatorRollouts, WorldModelRollouts
from ivideogpt.planning.objectives import ObjectiveConfig
from ivideogpt.planning.planner import Planner, PlannerConfig
from ivideogpt.planning.progress import FREE_SETTINGS, PlanProgress, episode_key
from ivideogpt.planning.report import PLAN_FILE, summarize, write_plan_outputs
from ivideogpt.precision import Precision
from ivideogpt.sim import SuiteTasks, load_suite
from ivideogpt.sim.base import TaskEnv

if TYPE_CHECKING:
    from ivideogpt.world_model import WorldModel

AGENTS = ("world_model", "simulator", "random", "expert")
SEED_OFFSET = 30_000  # scenes use seed + this: disjoint from training data, the demo and bench/actions.py
# tasks planned when none are named: Meta-World's three of the bench, RoboDesk's VP2 seven
DEFAULT_PLAN_TASKS = {"metaworld": ("reach", "button-press-topdown", "drawer-close")}


@dataclass
class PlanConfig(SuiteTasks):
    """Settings of `ivideogpt plan`."""

    out: Path = Path("plan")  # output folder: plan.json, report.html, videos/
    model: Path | None = None  # world-model folder; None: the pretrained model shipped in the package
    suite: str = "metaworld"  # the simulator: metaworld, or robodesk (needs ivideogpt[robodesk])
    # the suite's tasks ("push" or "push-v3"; "push_red"): --tasks push reach; None: reach,
    # button-press-topdown, drawer-close on Meta-World, VP2's seven on RoboDesk
    tasks: tuple[str, ...] | None = None
    episodes: int = 10  # episodes (scenes) per task, played by every agent
    # which of world_model, simulator, random, expert to run; None: all the suite has (no expert on RoboDesk)
    agents: tuple[str, ...] | None = None
    planner: PlannerConfig = field(default_factory=PlannerConfig)  # --planner.horizon, --planner.samples, ...
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)  # --objective.kind goal, ...
    max_steps: int = 100  # steps per episode
    action_repeat: int | None = None  # simulator steps per action; None: as in the model's training data
    camera: str | None = None  # the suite's camera; None: as in the model's training data, else its default
    videos: int = 1  # episodes per task and planner written as videos (real | imagined plan)
    workers: int = 1  # episode processes; each loads its own world model
    seed: int = 0  # scenes use seeds derived from seed + 30000, the task and the episode index
    device: str = "auto"  # world model device: "auto" (CUDA if available), "cpu", "cuda", "cuda:N"
    precision: Precision = "float32"  # rollout arithmetic (WorldModel.precision); bfloat16 for GPUs/AMX CPUs
    # how the world model samples its imagined codes; None: the model's defaults (world_model.json). At 0 the
    # imagined futures are greedy, so samples differ only by their actions, not by sampling noise
    temperature: float | None = None
    action_guidance: float | None = None  # w of action guidance (transformer/sampling.py)
    still_split: bool | None = None  # greedy decides still-or-moved first (transformer/fast_decode.py)
    # common random numbers: the futures imagined for one plan share their sampling noise, so they differ by
    # what their actions do, not by the luck of the draw (transformer/sampling.py)
    common_noise: bool = False
    overwrite: bool = False  # replace an earlier plan output at `out` (or an interrupted run's episodes)
    resume: bool = False  # continue an interrupted run: keep the episodes it finished, play the rest

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        sim = self.simulator  # raises on an unknown suite
        if self.tasks is None:
            self.tasks = DEFAULT_PLAN_TASKS.get(self.suite, sim.DEFAULT_TASKS)
        if self.agents is None:
            self.agents = AGENTS if sim.EXPERTS else tuple(a for a in AGENTS if a != "expert")
        self.tasks = (self.tasks,) if isinstance(self.tasks, str) else tuple(self.tasks)
        self.agents = (self.agents,) if isinstance(self.agents, str) else tuple(self.agents)
        if not self.tasks:
            raise ValueError("PlanConfig.tasks names no task")
        names = self.task_list  # raises on an unknown task, suggesting close names
        for what, values in (("tasks", names), ("agents", self.agents)):
            repeated = [v for v, n in Counter(values).items() if n > 1]
            if repeated:
                raise ValueError(f"PlanConfig.{what} lists {repeated} more than once")
        unknown = [a for a in self.agents if a not in AGENTS]
        if unknown or not self.agents:
            raise ValueError(f"PlanConfig.agents: unknown {unknown or 'none given'}; choose from "
                             f"{', '.join(AGENTS)}")
        if not sim.EXPERTS and "expert" in self.agents:
            raise ValueError(f"PlanConfig.agents: {sim.NAME} has no scripted expert to run")
        if not sim.EXPERTS and self.objective.needs_goal:
            raise ValueError(f"PlanConfig.objective: goal images are the scripted expert's solved scenes, "
                             f"and {sim.NAME} has no expert; use --objective.kind reward")
        for name in ("episodes", "max_steps", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"PlanConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.action_repeat is not None and self.action_repeat < 1:
            raise ValueError(f"PlanConfig.action_repeat must be >= 1, got {self.action_repeat}")
        if self.videos < 0:
            raise ValueError(f"PlanConfig.videos must be >= 0, got {self.videos}")
        # SamplingConfig checks these too, but only once the model is read; refused here before any work
        for name in ("temperature", "action_guidance"):
            if (value := getattr(self, name)) is not None and not value >= 0:
                raise ValueError(f"PlanConfig.{name} must be >= 0, got {value}")

    @property
    def sampling_overrides(self) -> dict[str, float | bool]:
        """The sampling settings given here, which replace the model's defaults (`WorldModel.reset`)."""
        names = ("temperature", "action_guidance", "still_split")
        return {k: v for k in names if (v := getattr(self, k)) is not None}


class Job(NamedTuple):
    task: str
    index: int
    seed: int
    agent: str
    record: bool


class Settings(NamedTuple):
    """What a worker needs to play any job (picklable)."""

    suite: str  # the simulator (ivideogpt.sim.load_suite)
    model: str | None  # world-model folder (None when no job uses it)
    device: str
    precision: Precision
    sampling: dict[str, float | bool]  # WorldModel.reset overrides: temperature, action_guidance, still_split
    common_noise: bool  # the world model's futures of one plan share their sampling noise
    planner: PlannerConfig
    objective: ObjectiveConfig
    size: int
    camera: str
    action_repeat: int
    max_steps: int


def run_plan(cfg: PlanConfig) -> dict[str, Any]:
    """Play every task x episode x agent, write plan.json, report.html and videos to `cfg.out`.

    Returns:
        The contents of plan.json.
    """
    settings, model_info = resolve_settings(cfg)
    owns = {PLAN_FILE, "report.html", "videos"}.__contains__
    jobs = make_jobs(cfg)
    # an interrupted run was allowed to replace `out`; resuming it keeps that permission
    resuming = cfg.resume and partial_path(cfg.out).exists()
    with ReplacedFolder(cfg.out, "plan output", owns, cfg.overwrite or resuming) as work:
        progress = PlanProgress(cfg.out, _identity(cfg, model_info), cfg.resume, cfg.overwrite)
        keys = [episode_key(job) for job in jobs]
        results = {k: r for k, r in progress.load().items() if k in keys}  # `--episodes` may have shrunk
        if results:
            print(f"plan: resuming, {len(results)} of {len(jobs)} episodes already played ({progress.root})")
        todo = [job for job, key in zip(jobs, keys, strict=True) if key not in results]
        start = time.perf_counter()
        bar = tqdm(play(settings, todo, cfg.workers), total=len(jobs), initial=len(results), unit="ep",
                   desc="plan")
        try:
            for result in bar:
                progress.save(result, time.perf_counter() - start)
                results[episode_key(result)] = result
                mine = [r for r in results.values() if r.agent == result.agent]
                bar.set_postfix_str(f"{result.agent} success {np.mean([r.success for r in mine]):.0%}")
        except KeyboardInterrupt:
            print(f"plan: interrupted; {len(results)} of {len(jobs)} episodes are kept in {progress.root}: "
                  "continue with --resume")
            raise
        played = [results[key] for key in keys]  # in job order
        seconds = progress.earlier_seconds + time.perf_counter() - start
        record = summarize(cfg, settings._asdict(), model_info, played, seconds)
        write_plan_outputs(work, record, played, fps=model_info["fps"])
    progress.remove()
    _print_table(record, cfg.out)
    return record


def _identity(cfg: PlanConfig, model_info: dict[str, Any]) -> dict[str, Any]:
    """What decides a run's episodes: its settings and the model's weights (a resumed run must match)."""
    settings = {k: v for k, v in to_dict(cfg).items() if k not in FREE_SETTINGS}
    return settings | {"weights_sha256": model_info["weights_sha256"]}


def resolve_settings(cfg: PlanConfig) -> tuple[Settings, dict[str, Any]]:
    """The env settings (from the model's training data where not given) and what the JSON says of the model.

    Raises:
        FileNotFoundError: no model at `cfg.model`.
        ValueError: the model does not take the suite's actions, or predicts no rewards for a reward
            objective.
    """
    from ivideogpt.demo import recorded_collection, resolve_model
    from ivideogpt.world_model import read_spec
    from ivideogpt.world_model_io import weights_digest

    needs_model = "world_model" in cfg.agents
    folder = resolve_model(cfg.model)
    spec, sim = read_spec(folder), cfg.simulator
    if needs_model and spec.action_dim != sim.ACTION_DIM:
        raise ValueError(f"{folder}: the world model takes {spec.action_dim}-dim actions (action_dim="
                         f"{spec.action_dim}), but {sim.NAME}'s are {sim.ACTION_DIM}-dim: give --model one "
                         f"trained on {sim.NAME} episodes, or --agents without world_model for the baselines")
    if needs_model and cfg.objective.needs_rewards and not spec.transformer.reward_head:
        raise ValueError(f"{folder}: the world model has no reward head, so objective {cfg.objective.kind!r} "
                         "cannot score its futures; use --objective.kind goal")
    if cfg.objective.kind == "learned":  # refused before any episode: a missing or mismatched reward model
        from ivideogpt.planning.frame_reward import load_frame_reward

        side, size = load_frame_reward(cfg.objective.reward_model).cfg.resolution, spec.image_size
        if side != size:
            raise ValueError(f"{cfg.objective.reward_model}: the reward model reads {side}x{side} frames, "
                             f"the world model imagines {size}x{size}")
    objective = cfg.objective
    if objective.goal_space == "features":  # the frames are embedded by the planning model's own tokenizer
        objective = replace(objective, features_from=objective.features_from or folder)
        from ivideogpt.artifacts import load_any_tokenizer

        side = load_any_tokenizer(objective.features_from).resolution  # refused here: a missing tokenizer
        if side != spec.image_size:
            raise ValueError(f"{objective.features_from}: its tokenizer reads {side}x{side} frames, the "
                             f"world model imagines {spec.image_size}x{spec.image_size}")
    recorded = recorded_collection(spec)
    # the env settings of the model's data apply where the data came from this suite (its tasks are ours)
    same_suite = all(_is_task(sim, t) for t in recorded.get("tasks", ["?"]))
    env_defaults = recorded if same_suite else {}
    overrides = cfg.sampling_overrides
    sampling = asdict(replace(spec.sampling, **overrides))  # what the rollouts use, for plan.json
    settings = Settings(
        suite=cfg.suite, model=str(folder) if needs_model else None, device=cfg.device,
        precision=cfg.precision, sampling=overrides, common_noise=cfg.common_noise, planner=cfg.planner,
        objective=objective, size=spec.image_size,
        camera=cfg.camera or env_defaults.get("camera", sim.DEFAULT_CAMERA),
        action_repeat=cfg.action_repeat or env_defaults.get("action_repeat", sim.DEFAULT_ACTION_REPEAT),
        max_steps=cfg.max_steps)
    probe = sim.Env(cfg.task_list[0], settings.size, settings.camera, 0, settings.action_repeat, 1)
    fps = probe.metadata["render_fps"]  # also checks the camera name before any episode runs
    probe.close()
    info = {"path": str(folder), "weights_sha256": weights_digest(folder),  # runs pool only on equal weights
            "context_frames": spec.context_frames, "image_size": spec.image_size, "sampling": sampling,
            "trained_on": recorded, "fps": fps}
    return settings, info


def _is_task(sim: ModuleType, name: str) -> bool:
    try:
        sim.task_name(name)
    except ValueError:
        return False
    return True


def make_jobs(cfg: PlanConfig) -> list[Job]:
    """Every episode to play, episode index major: an interrupted run has played every task and agent."""
    jobs = []
    for index in range(cfg.episodes):
        for task in cfg.task_list:
            seed = episode_seed(cfg.seed + SEED_OFFSET, task, index)
            for agent in cfg.agents:
                record = index < cfg.videos and agent in ("world_model", "simulator")
                jobs.append(Job(task, index, seed, agent, record))
    return jobs


def play(settings: Settings, jobs: list[Job], workers: int) -> Iterator[EpisodeResult]:
    """Play `jobs` in `workers` spawned processes (or here when 1), yielding results in job order."""
    if not jobs:  # a resumed run whose every episode was saved: only its outputs are left to write
        return
    workers = min(workers, len(jobs))
    if workers == 1:
        player = Player(settings)
        try:
            yield from map(player, jobs)
        finally:
            player.close()
        return
    # spawn, not fork: an EGL context does not survive a fork
    with mp.get_context("spawn").Pool(workers, _init_worker, (settings, workers)) as pool:
        yield from pool.imap(_play_in_worker, jobs)


class Player:
    """Plays jobs of any task and agent, keeping one env per task and one world model (loaded when needed)."""

    def __init__(self, settings: Settings) -> None:
        self.s, self.sim = settings, load_suite(settings.suite)
        self.envs: dict[str, TaskEnv] = {}
        self._wm: WorldModel | None = None

    def __call__(self, job: Job) -> EpisodeResult:
        s = self.s
        if job.task not in self.envs:
            self.envs[job.task] = self.sim.Env(job.task, s.size, s.camera, 0, s.action_repeat, s.max_steps)
        env = self.envs[job.task]
        agent = self.agent(job)
        expert = self.sim.expert_policy(job.task) if s.objective.needs_goal else None
        return run_episode(env, agent, job.agent, job.index, job.seed, s.objective, job.record, expert)

    def agent(self, job: Job) -> Agent:
        if job.agent == "random":
            return RandomAgent()
        if job.agent == "expert":
            return ExpertAgent(self.sim.expert_policy(job.task))
        if job.agent == "simulator":  # deterministic: a second particle would replay the same future
            planner = Planner(replace(self.s.planner, particles=1), self.sim.ACTION_DIM)
            return PlanningAgent(planner, lambda env, frames: SimulatorRollouts(env), self.s.objective,
                                 job.record, self.s.device)
        wm, s = self.world_model(), self.s
        period = s.planner.particles if s.common_noise else 0  # a sequence's K particles: adjacent rows
        return PlanningAgent(Planner(s.planner, self.sim.ACTION_DIM),
                             lambda env, frames: WorldModelRollouts(wm, frames, job.seed, s.sampling, period),
                             s.objective, job.record, s.device)

    def world_model(self) -> WorldModel:
        """Loaded on first use (and imported then: the baselines never need torch)."""
        if self._wm is None:
            from ivideogpt.device import resolve_device
            from ivideogpt.world_model import WorldModel

            self._wm = WorldModel.load(self.s.model, resolve_device(self.s.device))
            self._wm.precision = self.s.precision
        return self._wm

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs.clear()


_WORKER_PLAYER: Player | None = None  # one per worker process, built by `_init_worker`


def _init_worker(settings: Settings, workers: int) -> None:
    global _WORKER_PLAYER
    # Ctrl-C is the main process's to handle (it saves what finished and stops the pool): a worker killed by
    # it would be replaced by the pool and play on, and the main would wait for it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if "OMP_NUM_THREADS" not in os.environ:  # share the cores between the workers, not fight over them
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    _WORKER_PLAYER = Player(settings)


def _play_in_worker(job: Job) -> EpisodeResult:
    assert _WORKER_PLAYER is not None, "worker used before _init_worker"
    return _WORKER_PLAYER(job)


def _print_table(record: dict[str, Any], out: Path) -> None:
    for task, agents in record["tasks"].items():
        cells = []
        for agent, v in agents.items():
            low, high = v["success_ci95"]
            rate = f"{v['success_rate']:.0%} [{low:.0%}-{high:.0%}]"
            cells.append(f"{agent} {rate} (return {v['mean_return']:.0f})")
        print(f"{task}: {'  '.join(cells)}")
    print(f"plan: report written to {(out / 'report.html').resolve()}")
