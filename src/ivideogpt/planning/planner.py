"""CEM and MPPI over action sequences: sample around a mean plan, imagine all samples in one batch, refit.

Both follow VP2 (Tian et al., "A Control-Centric Benchmark for Video Prediction", ICLR 2023), the planning
benchmark of iVideoGPT's §4.2 (docs/method.md §4):

- Samples are the mean plan plus correlated noise, `u_t = beta * u_{t-1} + (1 - beta) * eps_t` along the
  horizon (the filtered noise of PDDM, Nagabandi et al. 2019; VP2 uses beta = 0.5), scaled by a per-step
  std and clipped to the action bounds.
- MPPI refits the mean as the softmax-weighted average of all samples; CEM as the mean (and the std as the
  std) of the best `elites`.
- A stochastic model's one sample of a sequence's future is a noisy score of it; with `particles` > 1 each
  sequence is imagined that many times and scored by the mean (the particles of PETS, Chua et al. 2018).
- Receding horizon: the plan is re-made every step (or every `replan_every`) from the latest frames. With
  warm start the previous mean, shifted by the steps executed since and padded with its last action, is
  the next plan's starting mean.

Departure: MPPI weights `exp(z / temperature)` use the scores standardised over the batch (z-scores), so
one temperature works for rewards and pixel distances alike; VP2 weights raw rewards by `exp(gamma * r)`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

# score(frames, rewards) -> (N,), higher is better
Score = Callable[[np.ndarray | None, np.ndarray | None], np.ndarray]


@dataclass
class Imagined:
    """What a rollout model predicts for N action sequences of T steps."""

    frames: np.ndarray | None  # uint8 (N, T, H, W, 3); None when not asked for
    rewards: np.ndarray | None  # float32 (N, T); None when the model predicts none


class RolloutModel(Protocol):
    """What a planner imagines with: a world model from the current frames, or the simulator itself."""

    action_dim: int

    def imagine(self, actions: np.ndarray, frames: bool) -> Imagined:
        """actions float32 (N, T, A) -> the predicted future of each sequence (frames only if asked)."""
        ...


@dataclass
class PlannerConfig:
    """Settings of CEM / MPPI (VP2's MPPI: 200 samples, horizon 10, 1 iteration, beta 0.5)."""

    method: Literal["mppi", "cem"] = "mppi"  # MPPI: weighted mean of all samples; CEM: refit to the elites
    horizon: int = 10  # actions per plan (imagined frames per sample)
    samples: int = 200  # action sequences imagined per iteration (one batch)
    iterations: int = 1  # sampling rounds per plan (VP2: MPPI 1, CEM 3)
    particles: int = 1  # imaginings per sequence, its score their mean (for a model that samples; VP2: 1)
    elite_fraction: float = 0.05  # CEM: share of samples refitted to (VP2: 0.05)
    elites: int | None = None  # CEM: number of elites; None: elite_fraction x samples
    temperature: float = 0.1  # MPPI: softmax temperature on the standardised scores (lower: greedier)
    beta: float = 0.5  # noise correlation along the horizon (0: white noise)
    init_std: float = 0.5  # std of the sampling noise at the start of every plan
    min_std: float = 0.05  # CEM: lower bound of the refitted std
    warm_start: bool = True  # start from the previous plan, shifted by the steps executed since
    replan_every: int = 1  # execute this many actions of a plan before planning again (1: every step)
    action_low: float = -1.0  # action bounds: samples and plans are clipped to [low, high]
    action_high: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in ("mppi", "cem"):
            raise ValueError(f"PlannerConfig.method must be 'mppi' or 'cem', got {self.method!r}")
        for name in ("horizon", "samples", "iterations", "particles", "replan_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"PlannerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.replan_every > self.horizon:
            raise ValueError(f"PlannerConfig.replan_every ({self.replan_every}) must be <= horizon "
                             f"({self.horizon}): a plan has only `horizon` actions to execute")
        if not 0.0 < self.elite_fraction <= 1.0:
            raise ValueError(f"PlannerConfig.elite_fraction must be in (0, 1], got {self.elite_fraction}")
        if self.method == "cem":
            if self.elites is not None and self.elites > self.samples:
                raise ValueError(f"PlannerConfig: samples ({self.samples}) < elites ({self.elites}); "
                                 "CEM keeps its elites among the samples")
            if self.num_elites < 1:
                raise ValueError(f"PlannerConfig: {self.samples} samples x elite_fraction "
                                 f"{self.elite_fraction} "
                                 f"leaves no elite; use >= {math.ceil(1 / self.elite_fraction)} samples")
        if not self.temperature > 0:
            raise ValueError(f"PlannerConfig.temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.beta < 1.0:
            raise ValueError(f"PlannerConfig.beta must be in [0, 1), got {self.beta}")
        if not 0.0 <= self.min_std <= self.init_std:
            raise ValueError(f"PlannerConfig: need 0 <= min_std <= init_std, got {self.min_std}, "
                             f"{self.init_std}")
        if not self.action_low < self.action_high:
            raise ValueError(f"PlannerConfig: action_low ({self.action_low}) must be < action_high "
                             f"({self.action_high})")

    @property
    def num_elites(self) -> int:
        return self.elites if self.elites is not None else int(self.samples * self.elite_fraction)

    @property
    def imagined_per_plan(self) -> int:
        """Imagined frames (or simulated steps) per plan: samples x particles x horizon x iterations."""
        return self.samples * self.particles * self.horizon * self.iterations


@dataclass
class Plan:
    """The outcome of one planning step."""

    actions: np.ndarray  # float32 (horizon, A): the plan; its first `replan_every` actions are executed
    score: float  # the best sample's score in the last iteration
    seconds: float  # wall time of the planning step
    imagined: int  # frames imagined (samples x particles x horizon x iterations)


class Planner:
    """Receding-horizon CEM / MPPI for one episode at a time (`reset` between episodes)."""

    def __init__(self, cfg: PlannerConfig, action_dim: int, seed: int = 0) -> None:
        if action_dim < 1:
            raise ValueError(f"Planner: action_dim must be >= 1, got {action_dim}")
        self.cfg, self.action_dim = cfg, action_dim
        self.rng = np.random.default_rng(seed)
        self.mean: np.ndarray | None = None  # float32 (horizon, A): the last plan, for warm start

    def reset(self, seed: int | None = None) -> None:
        """Forget the previous plan (a new episode); reseed the sampling noise when `seed` is given."""
        self.mean = None
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def plan(self, model: RolloutModel, score: Score, needs_frames: bool = True) -> Plan:
        """Choose the next `horizon` actions by imagining `samples` sequences per iteration with `model`.

        Each sequence is imagined `particles` times in the same batch (its rows next to each other) and
        scored by the mean of its particles' scores.

        Args:
            model: predicts each sequence's future from the current state.
            score: `score(frames uint8 (N, T, H, W, 3) | None, rewards (N, T) | None) -> (N,)`, higher better.
            needs_frames: whether `score` reads frames (False lets a world model skip decoding them).
        """
        cfg = self.cfg
        if model.action_dim != self.action_dim:
            raise ValueError(f"Planner: the model takes {model.action_dim}-dim actions, the planner plans "
                             f"{self.action_dim}-dim ones")
        start = time.perf_counter()
        mean = self._initial_mean()  # (T, A)
        std = np.full_like(mean, cfg.init_std)
        best = -np.inf
        for _ in range(cfg.iterations):
            actions = self.sample(mean, std)  # (N, T, A)
            out = model.imagine(np.repeat(actions, cfg.particles, axis=0), needs_frames)  # (N * K, ...)
            scores = np.asarray(score(out.frames, out.rewards), np.float64)
            rows = cfg.samples * cfg.particles
            if scores.shape != (rows,) or not np.isfinite(scores).all():
                bad = "" if scores.shape != (rows,) else " with NaN/inf"
                raise ValueError(f"Planner: the score must be {rows} finite numbers (one per imagined "
                                 f"row), got shape {scores.shape}{bad}")
            scores = scores.reshape(cfg.samples, cfg.particles).mean(1)
            best = float(scores.max())
            mean, std = self._refit(actions, scores, std)
        self.mean = mean
        return Plan(mean.copy(), best, time.perf_counter() - start, cfg.imagined_per_plan)

    def advance(self, steps: int) -> None:
        """`steps` actions of the last plan were executed: shift it for the next warm start."""
        if self.mean is None or not self.cfg.warm_start:
            self.mean = None
            return
        steps = min(steps, len(self.mean))
        self.mean = np.concatenate([self.mean[steps:], np.repeat(self.mean[-1:], steps, axis=0)])

    def sample(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """mean, std (T, A) -> clipped samples (N, T, A) with noise correlated along T."""
        cfg = self.cfg
        eps = self.rng.standard_normal((cfg.samples, *mean.shape))  # (N, T, A)
        noise = np.empty_like(eps)
        noise[:, 0] = eps[:, 0]
        for t in range(1, mean.shape[0]):
            noise[:, t] = cfg.beta * noise[:, t - 1] + (1.0 - cfg.beta) * eps[:, t]
        actions = mean[None] + std[None] * noise
        if cfg.method == "cem" or cfg.iterations > 1:
            actions[0] = mean  # keep the current mean among the samples: a refit never loses the best so far
        return np.clip(actions, cfg.action_low, cfg.action_high).astype(np.float32)

    # ---------------------------------------------------------------------------------------- helpers

    def _initial_mean(self) -> np.ndarray:
        cfg = self.cfg
        if cfg.warm_start and self.mean is not None:
            return self.mean.copy()
        middle = 0.5 * (cfg.action_low + cfg.action_high)
        return np.full((cfg.horizon, self.action_dim), middle, np.float32)

    def _refit(
        self, actions: np.ndarray, scores: np.ndarray, std: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.cfg
        if cfg.method == "cem":
            elites = actions[np.argsort(-scores, kind="stable")[: cfg.num_elites]]  # (E, T, A)
            return elites.mean(0), np.maximum(elites.std(0), cfg.min_std).astype(np.float32)
        z = (scores - scores.mean()) / (scores.std() + 1e-8)  # standardised: one temperature for all
        w = np.exp((z - z.max()) / cfg.temperature)
        w /= w.sum()
        mean = np.einsum("n,nta->ta", w, actions).astype(np.float32)
        return np.clip(mean, cfg.action_low, cfg.action_high), std
