"""Pool several `bench/planning.py` results run on disjoint scenes, and test the targets on the pool.

Ten episodes a task leave a success rate uncertain by about +-0.3, so "clearly above random" at 0.3 vs 0.1
is not yet a finding. This pools runs of the same model and planner that differ only in `--seed` (which
draws other scenes for every agent) and, per task and agent, sums episodes and successes; it then gives
each success rate a 95% Wilson interval, and judges the issue's targets on the pooled episodes as
`bench/planning.py` does on one run (`bench/planning_targets.py`: a one-sided Fisher exact test against
random, the share of the simulator planner's success).

    python bench/planning_pool.py --runs bench/results/planning_r16e.json \
        bench/results/planning_r16e_more.json bench/results/planning_r16e_seed1.json \
        --json bench/results/planning_pooled.json

A task is pooled over the runs that include it. Runs whose model (path or weights: plan.json's sha256,
where recorded) or settings differ (other than seed, tasks, episodes, workers and output folder), or that
repeat a seed on the same task, are refused: their episodes are not draws from one experiment.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro
from planning_targets import successes, targets
from record import command_line, write_result

from ivideogpt.planning.report import success_interval
from ivideogpt.sim.metaworld import task_name

RUN_SPECIFIC = ("out", "tasks", "seed", "episodes", "workers")  # settings that may differ between runs


@dataclass
class PoolConfig:
    runs: tuple[Path, ...] = ()  # bench/planning.py JSON files to pool
    tasks: tuple[str, ...] | None = None  # pool and judge only these (e.g. drawer-close); None: every task
    json: Path = Path("bench/results/planning_pooled.json")


def load_runs(paths: tuple[Path, ...]) -> list[dict[str, Any]]:
    """The runs, checked to be one experiment: one model and settings, no task twice on a seed."""
    if not paths:
        raise ValueError("give at least one planning result with --runs")
    runs = []
    for path in paths:
        try:
            run = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read planning result {path}: {err}") from err
        if run.get("bench") != "planning":
            raise ValueError(f"{path} is not a bench/planning.py result ('bench': {run.get('bench')!r})")
        runs.append(run | {"path": str(path)})

    def shared(run: dict[str, Any]) -> dict[str, Any]:
        return {"model": run["model"], **shared_settings(run)}

    first = shared(runs[0])
    for run in runs[1:]:
        differ = sorted(k for k in first.keys() | shared(run).keys() if first.get(k) != shared(run).get(k))
        if differ:
            raise ValueError(f"{run['path']} differs from {runs[0]['path']} in {', '.join(differ)}: "
                             "only runs that differ in --seed and --tasks can be pooled")
    seen: dict[tuple[str, int], str] = {}
    for run in runs:
        for task in run["tasks"]:
            key = (task, run["settings"]["seed"])
            if key in seen:
                raise ValueError(f"{run['path']} and {seen[key]} both ran {task} with seed {key[1]}: "
                                 "the same scenes twice are not more episodes")
            seen[key] = run["path"]
    return runs


def shared_settings(run: dict[str, Any]) -> dict[str, Any]:
    """The settings every pooled run must share (runs from before RoboDesk were all Meta-World's, before
    common noise all sampled each future's own, and before feature goals all measured pixels)."""
    before = {"suite": "metaworld", "common_noise": False}
    settings = before | run["settings"]
    if "objective" in settings:
        settings["objective"] = {"goal_space": "pixels", "features_from": None} | settings["objective"]
    return {k: v for k, v in settings.items() if k not in RUN_SPECIFIC}


def pool_agent(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One agent's figures over several runs of a task: episode-weighted rates, pooled return spread."""
    n = np.array([p["episodes"] for p in parts])
    total, wins = int(n.sum()), sum(successes(p) for p in parts)

    def per_run(key: str) -> np.ndarray:
        return np.array([p[key] for p in parts])

    def weighted(key: str) -> float:  # the runs' figures, weighted by their episodes
        return float(n @ per_run(key) / total)

    mean, means, stds = weighted("mean_return"), per_run("mean_return"), per_run("std_return")
    std = float(np.sqrt(n @ (stds**2 + (means - mean) ** 2) / total))  # population std, as per run
    pooled = {
        "episodes": total,
        "successes": wins,
        "success_rate": wins / total,
        "success_ci95": success_interval(wins, total),
        "final_success_rate": weighted("final_success_rate"),
        "mean_return": mean,
        "std_return": std,
    }
    if "ms_per_plan" in parts[0]:
        pooled["ms_per_plan"] = weighted("ms_per_plan")
    return pooled


def main(cfg: PoolConfig) -> dict[str, Any]:
    runs = load_runs(cfg.runs)
    ran = list(dict.fromkeys(t for run in runs for t in run["tasks"]))  # first-seen order
    chosen = ran if cfg.tasks is None else [task_name(t) for t in cfg.tasks]
    if not set(chosen) <= set(ran):
        raise ValueError(f"no run has {', '.join(sorted(set(chosen) - set(ran)))}; they ran {', '.join(ran)}")
    tasks: dict[str, dict[str, Any]] = {}
    for task in chosen:
        parts = [run["tasks"][task] for run in runs if task in run["tasks"]]
        agents = [a for a in parts[0] if all(a in p for p in parts)]
        tasks[task] = {a: pool_agent([p[a] for p in parts]) for a in agents}
    result = {
        "bench": "planning_pool",
        "command": command_line(),
        "runs": [{"path": run["path"], "seed": run["settings"]["seed"], "tasks": list(run["tasks"]),
                  "episodes": run["settings"]["episodes"]} for run in runs],
        "settings": shared_settings(runs[0]),
        "model": runs[0]["model"],
        "tasks": tasks,
        "targets": targets(tasks),
    }
    for task, agents in tasks.items():
        cells = "  ".join(f"{a} {v['successes']}/{v['episodes']}" for a, v in agents.items())
        p = result["targets"]["per_task"].get(task, {}).get("p_above_random")
        print(f"{task}: {cells}  p(above random) {p}")
    write_result(cfg.json, result, indent=1)
    return result


if __name__ == "__main__":
    try:
        main(tyro.cli(PoolConfig))
    except ValueError as err:
        sys.exit(f"error: {err}")
