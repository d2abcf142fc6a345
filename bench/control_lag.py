"""Which action shows in which frame? The hand's response to an action, per control rate, in the simulator.

A world model conditioned on the action that produced frame t can only tell actions apart in frame t as far
as that action moves something by then. Meta-World moves the hand through a mocap weld, so the hand lags
its target: part of an action's motion lands in the next frame. For each action repeat, episodes of
uniform random actions are run in MuJoCo (no rendering) and the hand's displacement into frame t is
regressed on the actions (least squares with an intercept, per axis, then averaged over x, y, z):

    r2_action_t         R^2 from a_t, the action that produced frame t (what the model gets for frame t)
    r2_action_t_minus_1 R^2 from a_{t-1} alone (the action of the frame before)
    r2_both             R^2 from both
    displacement_m      mean |displacement| per frame and axis, metres

A diagnostic of the data, no anchor (docs/actions-log.md, "A coarser control rate, and which action shows
where").

    MUJOCO_GL=egl python bench/control_lag.py          # ~1 min on 2 CPU cores
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro
from record import command_line, write_result
from tqdm import tqdm

from ivideogpt.sim.metaworld import MetaWorldEnv


@dataclass
class ControlLagConfig:
    repeats: tuple[int, ...] = (2, 4, 8, 16)  # action repeats (simulator steps per frame) to compare
    tasks: tuple[str, ...] = ("reach", "push", "drawer-close")
    episodes: int = 4  # per task and repeat
    steps: int = 60  # frames per episode
    seed: int = 0
    json: Path = Path("bench/results/control_lag.json")


def hand_track(task: str, repeat: int, episodes: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random actions and the hand position after each: actions (E, S, 4), positions (E, S + 1, 3)."""
    env = MetaWorldEnv(task, 64, "corner", seed, repeat, steps)
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, (episodes, steps, 4)).astype(np.float32)
    hands = np.zeros((episodes, steps + 1, 3))
    try:
        for e in range(episodes):
            env.reset(seed=seed + e)
            hands[e, 0] = env.state[:3]
            for t in range(steps):
                env.advance(actions[e, t])
                hands[e, t + 1] = env.state[:3]
    finally:
        env.close()
    return actions, hands


def r2(features: np.ndarray, target: np.ndarray) -> float:
    """In-sample R^2 of a least-squares fit with an intercept (a few parameters, thousands of rows)."""
    design = np.concatenate([features, np.ones((len(features), 1))], 1)
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return float(1 - np.var(target - design @ coef) / np.var(target))


def lag_figures(actions: np.ndarray, hands: np.ndarray) -> dict[str, Any]:
    moved = hands[:, 1:] - hands[:, :-1]  # (E, S, 3): the displacement into frame t+1, made by actions[:, t]
    now = actions[:, 1:, :3].reshape(-1, 3)  # frame t's own action, from the second frame on
    before = actions[:, :-1, :3].reshape(-1, 3)
    target = moved[:, 1:].reshape(-1, 3)
    per_axis = {"r2_action_t": [r2(now, target[:, i]) for i in range(3)],
                "r2_action_t_minus_1": [r2(before, target[:, i]) for i in range(3)],
                "r2_both": [r2(np.concatenate([now, before], 1), target[:, i]) for i in range(3)]}
    figures = {k: round(float(np.mean(v)), 3) for k, v in per_axis.items()}
    figures["displacement_m"] = round(float(np.abs(target).mean()), 4)
    return figures


def run(cfg: ControlLagConfig) -> dict[str, Any]:
    started, results = time.time(), {}
    jobs = [(r, t) for r in cfg.repeats for t in cfg.tasks]
    tracks: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {r: [] for r in cfg.repeats}
    for repeat, task in tqdm(jobs, desc="control lag", unit="task"):
        tracks[repeat].append(hand_track(task, repeat, cfg.episodes, cfg.steps, cfg.seed))
    for repeat, pairs in tracks.items():
        actions = np.concatenate([a for a, _ in pairs])
        hands = np.concatenate([h for _, h in pairs])
        results[str(repeat)] = lag_figures(actions, hands)
        print(f"action repeat {repeat}: " + ", ".join(f"{k} {v}" for k, v in results[str(repeat)].items()))
    protocol = {"policy": "uniform random actions", "tasks": list(cfg.tasks), "episodes": cfg.episodes,
                "steps": cfg.steps, "seed": cfg.seed, "command": command_line(),
                "seconds": round(time.time() - started, 1)}
    out = {"protocol": protocol, "action_repeat": results}
    write_result(cfg.json, out)
    return out


if __name__ == "__main__":
    run(tyro.cli(ControlLagConfig, description=__doc__.split("\n\n")[0]))
