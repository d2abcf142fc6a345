"""Scoring predicted futures: per-frame metrics, FVD features, reward agreement and the clips shown.

`ivideogpt.eval.predict` rolls models out batch by batch; a `ScoreSheet` collects what each batch scores
and reduces it to the `methods` part of metrics.json at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ivideogpt.data.clips import ClipBatch
from ivideogpt.eval.fvd import FeatureStats, fvd_from_features, i3d_features
from ivideogpt.eval.metrics import Aggregate, FrameScores, MetricModels, score_frames

METHODS = ("model", "copy_last", "tokenizer_recon")


@dataclass
class Predictions:
    """Predicted futures of a batch of B clips: uint8 frames `(B, K, T, H, W, 3)` per method."""

    frames: dict[str, np.ndarray]  # method -> (B, K, T, H, W, 3); K = 1 for the deterministic baselines
    rewards: np.ndarray | None  # float32 (B, K, T) rewards the model predicted; None without a reward head


def pixel_mean(samples: np.ndarray, axis: int) -> np.ndarray:
    """uint8 frames averaged over the samples' `axis`, rounded back to uint8: the squared-error-optimal
    prediction of a stochastic model, scored as one."""
    return samples.astype(np.float32).mean(axis=axis).round().astype(np.uint8)


class ScoreSheet:
    """Accumulates frame scores, FVD features, rewards and the grid's videos over the batches."""

    def __init__(self, models: MetricModels, video_rows: np.ndarray) -> None:
        self.models = models
        self.video_rows = set(video_rows.tolist())  # indices (in evaluation order) of the clips shown
        self.scores: dict[str, list[FrameScores]] = {m: [] for m in METHODS}
        self.real_features, self.fake_features = FeatureStats(), {m: FeatureStats() for m in METHODS}
        self.rewards: list[tuple[np.ndarray, np.ndarray]] = []  # (predicted (B', K, T), true (B', T))
        self.has_reward_head = False
        self.videos: list[dict[str, np.ndarray]] = []  # per shown clip: grid column -> (Tc + T, H, W, 3)
        self.num_clips = 0

    def add(self, batch: ClipBatch, pred: Predictions, num_context: int) -> None:
        """Score one batch of clips against its true future frames."""
        frames = batch.frames.numpy()  # (B, Tc + T, H, W, 3)
        truth = frames[:, num_context:]
        last_context = frames[:, num_context - 1]  # what moved is scored apart (psnr_moving)
        for method, samples in pred.frames.items():
            self.scores[method].append(score_frames(truth, samples, self.models.lpips,
                                                    reference=last_context))
        if self.models.i3d is not None:
            self._add_features(frames, pred, num_context)
        self.has_reward_head = pred.rewards is not None
        real = batch.has_rewards.numpy()
        if pred.rewards is not None and real.any():
            self.rewards.append((pred.rewards[real], batch.rewards[:, num_context:].numpy()[real]))
        for row in range(len(frames)):
            if self.num_clips + row in self.video_rows:
                context = frames[row, :num_context]
                self.videos.append({"truth": frames[row]} | {
                    m: np.concatenate([context, pred.frames[m][row, 0]]) for m in ("model", "copy_last")})
        self.num_clips += len(frames)

    def _add_features(self, frames: np.ndarray, pred: Predictions, num_context: int) -> None:
        """I3D features of whole clips: context + true future (real), context + each prediction (fake)."""
        detector = self.models.i3d
        self.real_features.update(i3d_features(detector, torch.from_numpy(frames)))
        context = frames[:, :num_context]
        for method, samples in pred.frames.items():
            k = samples.shape[1]  # every sample is a generated clip (the iVideoGPT FVD protocol)
            clips = np.concatenate([context.repeat(k, axis=0), samples.reshape(-1, *samples.shape[2:])], 1)
            self.fake_features[method].update(i3d_features(detector, torch.from_numpy(clips)))

    def metrics(self, aggregate: Aggregate) -> dict[str, Any]:
        """metrics.json without its protocol: methods and the reasons for missing metrics."""
        unavailable = dict(self.models.unavailable)
        with_fvd = self.models.i3d is not None and self.real_features.count >= 2
        if self.models.i3d is not None and not with_fvd:
            unavailable["fvd"] = "FVD needs at least 2 test clips (a covariance of I3D features)"
        methods = {}
        for method in METHODS:
            summary = FrameScores.cat(self.scores[method]).summary(aggregate)
            fvd = fvd_from_features(self.real_features, self.fake_features[method]) if with_fvd else None
            methods[method] = {**summary, "fvd": fvd}
        if any(values.get("psnr_moving", 0.0) is None for values in methods.values()):
            unavailable["psnr_moving"] = ("no pixel moved in any test frame "
                                          "(the truth equals the last context)")
        reward, reason = self._reward_metrics()
        methods["model"].update(reward)
        unavailable.update(reason)
        return {"methods": methods, "unavailable": unavailable}

    def _reward_metrics(self) -> tuple[dict[str, float], dict[str, str]]:
        if not self.has_reward_head:
            return {}, {"reward": "the world model has no reward head"}
        if not self.rewards:
            return {}, {"reward": "the test data has no rewards"}
        pred = np.concatenate([p for p, _ in self.rewards])  # (N, K, T)
        true = np.broadcast_to(np.concatenate([t for _, t in self.rewards])[:, None], pred.shape)
        return reward_metrics(pred, true)

    def arrays(self) -> dict[str, np.ndarray]:
        """`<method>_<metric>` -> float64 (clips, samples, steps), for scores.npz."""
        return {f"{m}_{name}": values for m in METHODS
                for name, values in FrameScores.cat(self.scores[m]).arrays().items()}


def reward_metrics(pred: np.ndarray, true: np.ndarray) -> tuple[dict[str, float], dict[str, str]]:
    """MSE and Pearson correlation of predicted vs true rewards (same shapes, every entry one pair).

    Returns:
        `{"reward_mse": float, "reward_pearson": float}` and `{}`; when either side is constant the
        correlation is undefined and left out, with its reason in the second dict.
    """
    pred, true = np.asarray(pred, np.float64).ravel(), np.asarray(true, np.float64).ravel()
    out = {"reward_mse": float(np.mean((pred - true) ** 2))}
    if pred.std() == 0 or true.std() == 0:
        side = "true" if true.std() == 0 else "predicted"
        return out, {"reward_pearson": f"undefined: the {side} rewards are constant over the test clips"}
    out["reward_pearson"] = float(np.corrcoef(pred, true)[0, 1])
    return out, {}


def spread_indices(count: int, n: int) -> np.ndarray:
    """`min(n, count)` distinct indices of `range(count)`, evenly spread from the first to the last: the
    clips (or scenes) an evaluation scores and shows, the same ones in every run."""
    if count < 1:
        raise ValueError(f"spread_indices: nothing to pick from (count={count})")
    return np.unique(np.linspace(0, count - 1, min(n, count)).round().astype(np.int64))
