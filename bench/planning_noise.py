"""How well must a model order a plan's samples for the planner to succeed? The simulator planner, blurred.

`bench/plan_ranking.py` measures how well the world model orders the planner's action sequences (Spearman's
rho between predicted and true returns: 0.07 imagined, 0.25 with the reward head on real frames). This bench
asks the converse: the planner of `bench/planning.py`, imagining with the simulator itself (true returns, no
model error), but with each plan's returns replaced by scores that correlate with them only at a chosen
level c: score = c z(R) + sqrt(1 - c^2) e, with z(R) the returns standardised within the plan and e standard
normal noise. At c = 1 it is the simulator planner of `bench/planning.py` (MPPI standardises the scores
anyway), on the same scenes. Per task and level: the success rate and return, and the Spearman's rho the
noisy scores really had (mean over plans whose returns differ), to set beside the world model's.

    python bench/planning_noise.py --json bench/results/planning_noise.json    # ~15 min on 2 cores

The environment (frame size, camera, action repeat) is the one the world model's data used (`--model`), so
the scenes and control rate are those of the planning bench's runs of that model.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro
from record import planning_header, write_result
from scipy.stats import spearmanr
from tqdm import tqdm

from ivideogpt.data.collect import episode_seed
from ivideogpt.planning.episodes import Agent, EpisodeResult, PlanningAgent
from ivideogpt.planning.models import SimulatorRollouts
from ivideogpt.planning.objectives import ObjectiveConfig
from ivideogpt.planning.planner import Imagined, Planner, PlannerConfig
from ivideogpt.planning.report import success_interval
from ivideogpt.planning.run import SEED_OFFSET, Job, PlanConfig, Player, Settings, resolve_settings


@dataclass
class NoiseBenchConfig:
    model: Path = Path("checkpoints/metaworld64-actions-r16")  # only for its data's env settings
    tasks: tuple[str, ...] = ("faucet-open", "window-open")
    correlations: tuple[float, ...] = (1.0, 0.6, 0.4, 0.25, 0.1)  # c of the scores with the true returns
    episodes: int = 10  # per task and level, the planning bench's scenes
    samples: int = 32  # the planning bench's CPU settings
    horizon: int = 5
    mppi_temperature: float = 0.1
    replan_every: int = 2
    max_steps: int = 50
    workers: int = 2
    seed: int = 0
    json: Path = Path("bench/results/planning_noise.json")

    def __post_init__(self) -> None:
        bad = [c for c in self.correlations if not 0 <= c <= 1]
        if bad or not self.correlations:
            raise SystemExit(f"planning_noise: correlations must lie in [0, 1], "
                             f"got {list(self.correlations)}")


class NoisyReturns:
    """The simulator's rollouts, each plan's summed returns replaced by scores correlated with them at `c`.

    The score goes into the first imagined reward (the reward objective sums them); the rank correlation each
    plan's scores really had is appended to `rhos`.
    """

    def __init__(self, simulator: SimulatorRollouts, c: float, rng: np.random.Generator, rhos: list[float]
                 ) -> None:
        self.simulator, self.c, self.rng, self.rhos = simulator, c, rng, rhos
        self.action_dim = simulator.action_dim

    def imagine(self, actions: np.ndarray, frames: bool) -> Imagined:
        real = self.simulator.imagine(actions, frames)
        returns = real.rewards.sum(1)
        if returns.std() == 0:  # nothing to order: every sequence earns the same
            return real
        z = (returns - returns.mean()) / returns.std()
        scores = self.c * z + math.sqrt(1 - self.c**2) * self.rng.standard_normal(len(z))
        self.rhos.append(float(spearmanr(scores, returns)[0]))
        rewards = np.zeros_like(real.rewards)
        rewards[:, 0] = scores
        return Imagined(real.frames, rewards)


class BlurredPlayer(Player):
    """`ivideogpt plan`'s episode player (one env per task), whose simulator planner sees blurred returns."""

    def play(self, task: str, index: int, seed: int, c: float) -> tuple[EpisodeResult, list[float]]:
        """One episode of the scene of `seed` at correlation `c`, and the rank correlations of its plans."""
        rhos: list[float] = []
        rng = np.random.default_rng([seed, round(c * 1000)])
        self.blur = lambda env, frames: NoisyReturns(SimulatorRollouts(env), c, rng, rhos)
        return self(Job(task, index, seed, "simulator", False)), rhos

    def agent(self, job: Job) -> Agent:
        return PlanningAgent(Planner(self.s.planner, self.sim.ACTION_DIM), self.blur, self.s.objective)


_PLAYER: BlurredPlayer | None = None  # one per worker process (or this one with a single worker)


def _init(settings: Settings) -> None:
    global _PLAYER
    _PLAYER = BlurredPlayer(settings)


def _play(job: tuple[str, int, int, float]) -> tuple[str, float, EpisodeResult, list[float]]:
    assert _PLAYER is not None, "worker used before _init"
    task, index, seed, c = job
    return task, c, *_PLAYER.play(task, index, seed, c)


def main(cfg: NoiseBenchConfig) -> dict[str, Any]:
    planner = PlannerConfig(samples=cfg.samples, horizon=cfg.horizon, temperature=cfg.mppi_temperature,
                            replan_every=cfg.replan_every)
    plan_cfg = PlanConfig(model=cfg.model, tasks=cfg.tasks, agents=("simulator",), planner=planner,
                          max_steps=cfg.max_steps, seed=cfg.seed)
    settings, model_info = resolve_settings(plan_cfg)
    settings = settings._replace(objective=ObjectiveConfig())
    jobs = [(task, i, episode_seed(cfg.seed + SEED_OFFSET, task, i), c)
            for c in cfg.correlations for i in range(cfg.episodes) for task in plan_cfg.task_list]
    results: dict[tuple[str, float], list[tuple[EpisodeResult, list[float]]]] = {}
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if cfg.workers > 1:  # spawn, not fork: an EGL context does not survive a fork
            pool = stack.enter_context(mp.get_context("spawn").Pool(cfg.workers, _init, (settings,)))
            played = pool.imap(_play, jobs)
        else:
            _init(settings)
            stack.callback(_PLAYER.close)  # the in-process envs (a worker's go with it)
            played = map(_play, jobs)
        for task, c, episode, rhos in tqdm(played, total=len(jobs), desc="blurred planner"):
            results.setdefault((task, c), []).append((episode, rhos))
    table: dict[str, dict[str, Any]] = {}
    for (task, c), runs in sorted(results.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        wins = sum(e.success for e, _ in runs)
        rhos = [r for _, rs in runs for r in rs]
        table.setdefault(task, {})[f"{c:g}"] = {
            "success_rate": wins / len(runs), "successes": wins, "episodes": len(runs),
            "success_ci95": success_interval(wins, len(runs)),
            "mean_return": float(np.mean([e.episode_return for e, _ in runs])),
            "spearman_mean": float(np.mean(rhos)) if rhos else None, "plans_ranked": len(rhos)}
        rho = np.mean(rhos) if rhos else float("nan")
        print(f"{task} c={c:g}: success {wins}/{len(runs)}, rho {rho:.2f}")
    result = {
        **planning_header("planning_noise", cfg, settings, planner, start),
        "model_env_from": model_info["path"],
        "anchor": "c = 1 is bench/planning.py's simulator planner on the same scenes and settings",
        "tasks": table,
    }
    write_result(cfg.json, result)
    return result


if __name__ == "__main__":
    main(tyro.cli(NoiseBenchConfig))
