"""Closed-loop episodes in the real simulator: a planner (or a baseline) chooses every action.

Agents see the real frames so far and the env (the baselines read its state: the scripted expert acts on
the state vector, the simulator-as-model planner snapshots it). Success and return are the simulator's.

Goal images are posed as in VP2: the scene of the episode's seed is first solved by the scripted expert,
the frame at its first success is the goal, then the same scene is reset for the agent (so only a suite with
experts, Meta-World, has goal tasks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ivideogpt.data.policies import Expert
from ivideogpt.planning.objectives import ObjectiveConfig, make_objective
from ivideogpt.planning.planner import Planner, RolloutModel
from ivideogpt.sim.base import TaskEnv

ModelFactory = Callable[[TaskEnv, np.ndarray], RolloutModel]  # (env, real frames (T, H, W, 3)) -> model


@dataclass
class AgentStats:
    """What an agent spent on planning during one episode."""

    plans: int = 0  # planning steps
    plan_seconds: float = 0.0  # wall time of all planning steps
    imagined: int = 0  # frames imagined (or steps simulated) for planning


class Agent(Protocol):
    stats: AgentStats
    imagined: np.ndarray | None  # uint8 (horizon, H, W, 3): the plan being executed, as imagined (or None)

    def reset(self, seed: int, goal: np.ndarray | None) -> None: ...

    def act(self, env: TaskEnv, frames: np.ndarray) -> np.ndarray: ...


class RandomAgent:
    """Independent uniform actions in [-1, 1]."""

    def __init__(self) -> None:
        self.stats, self.imagined, self.rng = AgentStats(), None, np.random.default_rng(0)

    def reset(self, seed: int, goal: np.ndarray | None) -> None:
        self.stats, self.rng = AgentStats(), np.random.default_rng([seed, 5])

    def act(self, env: TaskEnv, frames: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, env.action_space.shape[0]).astype(np.float32)


class ExpertAgent:
    """A scripted expert (Meta-World's), acting on the simulator's state vector (no noise)."""

    def __init__(self, policy: Expert) -> None:
        self.policy, self.stats, self.imagined = policy, AgentStats(), None

    def reset(self, seed: int, goal: np.ndarray | None) -> None:
        self.stats = AgentStats()

    def act(self, env: TaskEnv, frames: np.ndarray) -> np.ndarray:
        return self.policy(env.state)


class PlanningAgent:
    """Model-predictive control: plan with `make_model`'s imagination, execute `replan_every` actions, repeat.

    Args:
        planner: CEM / MPPI.
        make_model: builds the rollout model of the current moment (the world model on the latest
            frames, or the simulator from its current state).
        objective: how imagined futures are scored.
        record: also imagine each executed plan once more, with frames, for the episode's video.
        device: where an objective's own network runs (the feature distance's encoder).
    """

    def __init__(self, planner: Planner, make_model: ModelFactory, objective: ObjectiveConfig,
                 record: bool = False, device: str = "cpu") -> None:
        self.planner, self.make_model, self.objective, self.record = planner, make_model, objective, record
        self.device = device
        self.stats, self.imagined = AgentStats(), None
        self._queue: list[np.ndarray] = []

    def reset(self, seed: int, goal: np.ndarray | None) -> None:
        self.planner.reset(seed)
        self.score = make_objective(self.objective, goal, self.device)
        self.stats, self.imagined, self._queue = AgentStats(), None, []

    def act(self, env: TaskEnv, frames: np.ndarray) -> np.ndarray:
        if not self._queue:
            model = self.make_model(env, frames)
            plan = self.planner.plan(model, self.score, self.objective.needs_frames)
            k = self.planner.cfg.replan_every
            self._queue = list(plan.actions[:k])
            self.planner.advance(k)
            self.stats.plans += 1
            self.stats.plan_seconds += plan.seconds
            self.stats.imagined += plan.imagined
            if self.record:
                self.imagined = model.imagine(plan.actions[None], True).frames[0]
        return self._queue.pop(0)


@dataclass
class EpisodeResult:
    """One closed-loop episode (the JSON keeps everything but `video`)."""

    task: str
    agent: str
    index: int  # episode index within the task (the same scene for every agent)
    seed: int
    success: bool  # succeeded at some step (the Meta-World convention)
    final_success: bool  # succeeded at the last step
    first_success: int | None  # first step that succeeded (1-based), None if none
    episode_return: float  # sum of the simulator's rewards
    steps: int
    goal_solved: bool | None  # goal tasks: whether the expert solved the scene for the goal image
    stats: AgentStats = field(default_factory=AgentStats)
    video: np.ndarray | None = None  # uint8 (T, H, W', 3): real frame | the imagined plan, per step


def solved_goal_frame(env: TaskEnv, seed: int, expert: Expert) -> tuple[np.ndarray, bool]:
    """The goal image of the scene of `seed`: the expert's frame at its first success (VP2's goal images).

    Returns:
        the frame uint8 (H, W, 3) (the last frame if the expert never succeeded) and whether it did.
    """
    frame, _ = env.reset(seed=seed)
    for _ in range(env.max_steps):
        frame, _, _, _, info = env.step(expert(env.state))
        if info["success"]:
            return frame, True
    return frame, False


def run_episode(env: TaskEnv, agent: Agent, name: str, index: int, seed: int, objective: ObjectiveConfig,
                record: bool = False, expert: Expert | None = None) -> EpisodeResult:
    """Run `agent` for `env.max_steps` steps in the scene of `seed` (reset first); a goal objective's goal
    image is `expert`'s solved scene."""
    if objective.needs_goal and expert is None:
        raise ValueError("a goal objective needs the scripted expert that solves the scene (its goal image)")
    goal, solved = solved_goal_frame(env, seed, expert) if objective.needs_goal else (None, None)
    frame, _ = env.reset(seed=seed)
    agent.reset(seed, goal)
    frames, rows = [frame], []
    total, success, first = 0.0, False, None
    for t in range(1, env.max_steps + 1):
        action = agent.act(env, np.stack(frames))
        if record:
            rows.append(_video_row(frames[-1], agent.imagined, goal))
        frame, reward, _, _, info = env.step(action)
        frames.append(frame)
        total += reward
        success |= info["success"]
        if info["success"] and first is None:
            first = t
    video = np.stack(rows) if record else None
    return EpisodeResult(env.task, name, index, seed, success, bool(info["success"]), first, total,
                         env.max_steps, solved, agent.stats, video)


def _video_row(real: np.ndarray, imagined: np.ndarray | None, goal: np.ndarray | None) -> np.ndarray:
    """One video frame: [goal |] real frame | the imagined frames of the plan in progress (grey if none)."""
    sep = np.full((real.shape[0], 2, 3), 255, np.uint8)
    parts = [] if goal is None else [goal, sep]
    parts += [real, sep]
    if imagined is None:
        parts.append(np.full_like(real, 128))
    else:
        parts += [x for f in imagined for x in (f, sep[:, :1])][:-1]
    return np.concatenate(parts, axis=1)
