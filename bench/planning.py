"""Visual planning in Meta-World (or RoboDesk): the world-model planner beside random, expert and simulator
planners.

Runs `ivideogpt plan` (`ivideogpt.planning.run`) once with the bench's settings, every agent on the same
scenes, and writes `bench/results/planning.json`: every setting, per task and agent the success rate
(any step and last step), return, time per planning step (ms) and imagined frames per second, and the
issue's targets as pass/fail (`bench/planning_targets.py`: the world-model planner clearly above random on
every task by an exact test, >= 50% of the simulator planner's success on at least two). Runs on other
seeds (`--seed`) pool with `bench/planning_pool.py`.

The defaults are sized for 2 CPU cores (27 min with an 8x8-token model in bf16): MPPI with 32 samples,
horizon 5, one round per plan, replanning every 2 steps of 50-step episodes, 10 episodes per task. VP2's
full setting (200 samples, horizon 10, replanning every step, 100-step episodes) on a GPU:

    python bench/planning.py --device cuda --samples 200 --horizon 10 --replan-every 1 --max-steps 100 \
        --json bench/results/planning_vp2.json

On RoboDesk (`--suite robodesk`, VP2's seven tasks by default; no expert there) the same settings run the
random and simulator agents, and the world-model planner given a model trained on RoboDesk data.

A smoke run (minutes; not for the results folder):

    python bench/planning.py --tasks reach --episodes 2 --samples 8 --horizon 3 --max-steps 10 \
        --work /tmp/bench_planning_smoke --json /tmp/planning_smoke.json
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tyro
from planning_targets import targets
from record import command_line, machine, write_result

from ivideogpt.planning.objectives import ObjectiveConfig
from ivideogpt.planning.planner import PlannerConfig
from ivideogpt.planning.run import PlanConfig, run_plan
from ivideogpt.precision import Precision


@dataclass
class BenchConfig:
    model: Path | None = None  # world-model folder; None: the shipped model
    suite: str = "metaworld"  # or robodesk
    tasks: tuple[str, ...] | None = None  # None: reach, button-press-topdown, drawer-close; RoboDesk: VP2's
    episodes: int = 10  # per task and agent
    # a subset re-runs one planner (the same seeds give the same scenes); None: all the suite has
    agents: tuple[str, ...] | None = None
    method: Literal["mppi", "cem"] = "mppi"  # the planner (VP2: MPPI, CEM the alternative)
    samples: int = 32  # action sequences per plan (VP2: 200)
    horizon: int = 5  # actions per plan (VP2: 10)
    iterations: int = 1  # CEM: use 3 (VP2)
    particles: int = 1  # world-model imaginings per sequence, scored by their mean
    mppi_temperature: float = 0.1  # MPPI's softmax temperature on standardised scores (higher: a softer mean)
    replan_every: int = 2  # plan actions executed before replanning (VP2: 1)
    max_steps: int = 50  # decisions per episode
    camera: str | None = None  # the suite's camera; None: as in the model's training data, else its default
    objective: Literal["reward", "goal", "both", "learned"] = "reward"
    reward_model: Path | None = None  # objective learned: a `ivideogpt train-reward` run
    goal_space: Literal["pixels", "features"] = "pixels"  # objective goal: pixel MSE or tokenizer features
    workers: int = 2
    device: str = "auto"
    precision: Precision = "float32"  # rollout arithmetic; bfloat16 is faster on GPUs and AMX CPUs
    temperature: float | None = None  # imagined codes' sampling temperature (0: greedy); None: the model's
    action_guidance: float | None = None  # None: the model's default
    still_split: bool | None = None  # greedy decides still-or-moved first; None: the model's default
    common_noise: bool = False  # a plan's imagined futures share their sampling noise (common random numbers)
    seed: int = 0
    work: Path = Path("runs/bench_planning")  # the plan output (report.html, videos); replaced
    resume: bool = False  # continue the interrupted run in `work`: its finished episodes are kept
    json: Path = Path("bench/results/planning.json")


def main(cfg: BenchConfig) -> dict[str, Any]:
    planner = PlannerConfig(method=cfg.method, horizon=cfg.horizon, samples=cfg.samples,
                            iterations=cfg.iterations, particles=cfg.particles,
                            temperature=cfg.mppi_temperature, replan_every=cfg.replan_every)
    plan_cfg = PlanConfig(out=cfg.work, model=cfg.model, suite=cfg.suite, tasks=cfg.tasks,
                          episodes=cfg.episodes,
                          agents=cfg.agents,
                          planner=planner,
                          objective=ObjectiveConfig(kind=cfg.objective, reward_model=cfg.reward_model,
                                                    goal_space=cfg.goal_space),
                          max_steps=cfg.max_steps,
                          camera=cfg.camera,
                          workers=cfg.workers, device=cfg.device, precision=cfg.precision,
                          temperature=cfg.temperature, action_guidance=cfg.action_guidance,
                          still_split=cfg.still_split, common_noise=cfg.common_noise, seed=cfg.seed,
                          overwrite=True, resume=cfg.resume)
    record = run_plan(plan_cfg)
    result = {
        "bench": "planning",
        "command": command_line(),
        "seconds": record["seconds"],  # the episodes' wall time, over every session of a resumed run
        "machine": machine(),
        "settings": record["settings"],
        "model": record["model"],
        "tasks": record["tasks"],
        "targets": targets(record["tasks"]),
        "report": str(cfg.work / "report.html"),
    }
    write_result(cfg.json, result, indent=1)
    return result


if __name__ == "__main__":
    main(tyro.cli(BenchConfig))
