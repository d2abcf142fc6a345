"""What a plan is scored by: the predicted reward, the distance to a goal image, or both weighted.

`make_objective` returns a `Score` for `Planner.plan`: `score(frames, rewards) -> (N,)`, higher is better.
Any such callable plugs in (a learned cost, a classifier of success, ...).

The goal distance follows VP2's pixel cost: the mean squared error between every imagined frame of the
horizon and the goal image, on [0, 1] pixel values, averaged over the frames (so the plan is rewarded for
getting close early, not only at its last frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ivideogpt.planning.planner import Score


@dataclass
class ObjectiveConfig:
    """How imagined futures are scored (higher is better)."""

    kind: Literal["reward", "goal", "both"] = "reward"  # reward: sum of predicted rewards; goal: -pixel MSE
    reward_weight: float = 1.0  # both: weight of the reward sum
    goal_weight: float = 100.0  # both: weight of the pixel MSE (MSE ~0.01 where rewards sum to ~10)

    def __post_init__(self) -> None:
        if self.kind not in ("reward", "goal", "both"):
            raise ValueError(f"ObjectiveConfig.kind must be 'reward', 'goal' or 'both', got {self.kind!r}")
        for name in ("reward_weight", "goal_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"ObjectiveConfig.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def needs_goal(self) -> bool:
        return self.kind in ("goal", "both")

    @property
    def needs_frames(self) -> bool:
        return self.needs_goal

    @property
    def needs_rewards(self) -> bool:
        return self.kind in ("reward", "both")


def make_objective(cfg: ObjectiveConfig, goal: np.ndarray | None = None) -> Score:
    """The score of `cfg`; `goal` (uint8 (H, W, 3)) is required for the goal kinds.

    Raises:
        ValueError: a goal kind without a goal image.
    """
    if cfg.needs_goal and goal is None:
        raise ValueError(f"objective {cfg.kind!r} needs a goal image")
    target = None if goal is None else goal.astype(np.float32) / 255.0

    def score(frames: np.ndarray | None, rewards: np.ndarray | None) -> np.ndarray:
        total = 0.0
        if cfg.needs_rewards:
            if rewards is None:
                raise ValueError("objective 'reward': the model predicts no rewards (it has no reward head); "
                                 "plan towards a goal image instead (--objective.kind goal)")
            total = total + (1.0 if cfg.kind == "reward" else cfg.reward_weight) * rewards.sum(1)
        if cfg.needs_goal:
            if frames is None:
                raise ValueError("objective: the goal distance needs the imagined frames")
            weight = 1.0 if cfg.kind == "goal" else cfg.goal_weight
            total = total - weight * goal_distance(frames, target)
        return np.asarray(total, np.float64)

    return score


def goal_distance(frames: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Mean pixel MSE of frames uint8 (N, T, H, W, 3) to goal float (H, W, 3) in [0, 1] -> (N,)."""
    if frames.shape[2:] != goal.shape:
        raise ValueError(f"goal image of shape {goal.shape} does not match frames of shape "
                         f"{frames.shape[2:]}")
    diff = frames.astype(np.float32) / 255.0 - goal  # (N, T, H, W, 3)
    return np.square(diff).mean(axis=(1, 2, 3, 4))
