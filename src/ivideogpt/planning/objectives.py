"""What a plan is scored by: the predicted reward, the distance to a goal image, both weighted, or a learned
reward model's reading of the imagined frames.

`make_objective` returns a `Score` for `Planner.plan`: `score(frames, rewards) -> (N,)`, higher is better.
Any such callable plugs in (a learned cost, a classifier of success, ...).

The goal distance follows VP2's pixel cost: the mean squared error between every imagined frame of the
horizon and the goal image, on [0, 1] pixel values, averaged over the frames (so the plan is rewarded for
getting close early, not only at its last frame). With `goal_space="features"` it is taken in the
tokenizer's features instead (`planning/goal_features.py`: 1 - cosine of the context encoder's code vectors,
averaged the same way), which `ivideogpt plan` reads from its world model's tokenizer.

The learned objective (`kind="learned"`) sums a `FrameReward` CNN's reading of every imagined frame
(`planning/frame_reward.py`, trained by `ivideogpt train-reward`): the world model then only has to imagine
the frames, and the reward comes from a model that reads them, not from the transformer's reward head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ivideogpt.planning.planner import Score


@dataclass
class ObjectiveConfig:
    """How imagined futures are scored (higher is better)."""

    # reward: sum of the world model's predicted rewards; goal: -pixel MSE to the goal image; both: weighted;
    # learned: sum of `reward_model`'s reading of the imagined frames
    kind: Literal["reward", "goal", "both", "learned"] = "reward"
    reward_weight: float = 1.0  # both: weight of the reward sum
    goal_weight: float = 100.0  # both: weight of the pixel MSE (MSE ~0.01 where rewards sum to ~10)
    reward_model: Path | None = None  # learned: a `train-reward` run or its reward_model/ folder
    # goal, both: where the distance to the goal image is taken: pixels (VP2's MSE) or features (the
    # tokenizer's context encoder, planning/goal_features.py; on Meta-World frames about 4x the pixel MSE,
    # 0.03-0.06 against 0.006-0.015 from an episode's frames to its last: with both, goal_weight ~25)
    goal_space: Literal["pixels", "features"] = "pixels"
    # goal space features: the world-model (or tokenizer) folder whose tokenizer embeds the frames; `ivideogpt
    # plan` fills in its --model
    features_from: Path | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("reward", "goal", "both", "learned"):
            raise ValueError(f"ObjectiveConfig.kind must be 'reward', 'goal', 'both' or 'learned', "
                             f"got {self.kind!r}")
        if (self.kind == "learned") != (self.reward_model is not None):
            raise ValueError("ObjectiveConfig: --objective.kind learned and --objective.reward-model DIR go "
                             f"together (got kind {self.kind!r}, reward_model {self.reward_model})")
        if self.goal_space not in ("pixels", "features"):
            raise ValueError(f"ObjectiveConfig.goal_space must be 'pixels' or 'features', got "
                             f"{self.goal_space!r}")
        if self.goal_space == "features" and not self.needs_goal:
            raise ValueError(f"ObjectiveConfig: --objective.goal-space features is a goal distance; it goes "
                             f"with --objective.kind goal or both, not {self.kind!r}")
        for name in ("reward_weight", "goal_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"ObjectiveConfig.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def needs_goal(self) -> bool:
        return self.kind in ("goal", "both")

    @property
    def needs_frames(self) -> bool:
        return self.needs_goal or self.kind == "learned"

    @property
    def needs_rewards(self) -> bool:
        return self.kind in ("reward", "both")


def make_objective(cfg: ObjectiveConfig, goal: np.ndarray | None = None, device: str = "cpu") -> Score:
    """The score of `cfg`; `goal` (uint8 (H, W, 3)) is required for the goal kinds; `device` runs the
    feature distance's encoder.

    Raises:
        ValueError: a goal kind without a goal image.
    """
    if cfg.needs_goal and goal is None:
        raise ValueError(f"objective {cfg.kind!r} needs a goal image")
    if cfg.kind == "learned":
        return _learned_score(cfg.reward_model)
    distance = _goal_distance(cfg, goal, device) if cfg.needs_goal else None

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
            total = total - weight * distance(frames)
        return np.asarray(total, np.float64)

    return score


def goal_distance(frames: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Mean pixel MSE of frames uint8 (N, T, H, W, 3) to goal float (H, W, 3) in [0, 1] -> (N,)."""
    if frames.shape[2:] != goal.shape:
        raise ValueError(f"goal image of shape {goal.shape} does not match frames of shape "
                         f"{frames.shape[2:]}")
    diff = frames.astype(np.float32) / 255.0 - goal  # (N, T, H, W, 3)
    return np.square(diff).mean(axis=(1, 2, 3, 4))


def _goal_distance(cfg: ObjectiveConfig, goal: np.ndarray, device: str
                   ) -> Callable[[np.ndarray], np.ndarray]:
    """frames uint8 (N, T, H, W, 3) -> (N,) distances to `goal` in `cfg.goal_space`."""
    if cfg.goal_space == "pixels":
        target = goal.astype(np.float32) / 255.0
        return lambda frames: goal_distance(frames, target)
    if cfg.features_from is None:
        raise ValueError("objective: --objective.goal-space features needs the model whose tokenizer embeds "
                         "the frames (--objective.features-from DIR; `ivideogpt plan` gives its --model)")
    from ivideogpt.planning.goal_features import FeatureGoal  # torch: only for this distance

    return FeatureGoal(cfg.features_from, goal, device).distance


def _learned_score(path: Path) -> Score:
    from ivideogpt.planning.frame_reward import load_frame_reward  # torch: only for this objective

    model = load_frame_reward(path)

    def score(frames: np.ndarray | None, rewards: np.ndarray | None) -> np.ndarray:
        if frames is None:
            raise ValueError("objective 'learned': the reward model needs the imagined frames")
        return model.read(frames).sum(1)  # (N, T) -> (N,)

    return score
