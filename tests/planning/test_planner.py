"""CEM and MPPI on a toy model whose best action sequence is known: reward = -|a - a*| per step."""

from __future__ import annotations

import numpy as np
import pytest

from ivideogpt.planning import (
    Imagined,
    ObjectiveConfig,
    Planner,
    PlannerConfig,
    goal_distance,
    make_objective,
)

HORIZON, DIM = 4, 2
# a*, (T, A): smooth in time, like a real best plan (correlated sampling noise is a smoothness prior)
TARGET = np.array([[0.7, -0.5], [0.6, -0.3], [0.4, 0.0], [0.3, 0.2]], np.float32)
JAGGED = np.array([[0.6, -0.4], [0.2, 0.8], [-0.7, 0.1], [-0.3, -0.6]], np.float32)


class ToyModel:
    """Stands in for a world model: rewards -|a - a*| summed over the action dims, and 2x2 'frames'."""

    action_dim = DIM

    def __init__(self, target: np.ndarray = TARGET) -> None:
        self.target, self.calls = target, []

    def imagine(self, actions: np.ndarray, frames: bool) -> Imagined:
        self.calls.append(actions.shape)
        rewards = -np.abs(actions - self.target[: actions.shape[1]]).sum(-1)  # (N, T)
        video = None
        if frames:  # a frame's brightness is the first action dim mapped to [0, 255]
            level = ((actions[..., 0] + 1) * 127.5).astype(np.uint8)  # (N, T)
            video = np.broadcast_to(level[..., None, None, None], (*level.shape, 2, 2, 3)).copy()
        return Imagined(video, rewards.astype(np.float32))


def reward_sum(frames: np.ndarray | None, rewards: np.ndarray | None) -> np.ndarray:
    return rewards.sum(1)


@pytest.mark.parametrize("cfg, target, atol", [
    (PlannerConfig(method="cem", horizon=HORIZON, samples=200, iterations=6, elite_fraction=0.05), TARGET,
     0.12),
    (PlannerConfig(method="mppi", horizon=HORIZON, samples=200, iterations=6), TARGET, 0.25),
    (PlannerConfig(method="cem", horizon=HORIZON, samples=200, iterations=6, beta=0.0), JAGGED, 0.1),
], ids=["cem", "mppi", "cem-white-noise-jagged"])
def test_finds_the_known_best_sequence(cfg: PlannerConfig, target: np.ndarray, atol: float) -> None:
    model = ToyModel(target)
    for seed in range(3):
        plan = Planner(cfg, DIM, seed=seed).plan(model, reward_sum, needs_frames=False)
        assert plan.actions.shape == (HORIZON, DIM) and plan.actions.dtype == np.float32
        np.testing.assert_allclose(plan.actions, target, atol=atol)
    assert model.calls == [(200, HORIZON, DIM)] * 18  # every iteration is one batch of all samples
    assert plan.imagined == 200 * HORIZON * 6 and plan.seconds > 0


def test_mppi_one_round_per_step_converges_by_warm_start() -> None:
    """VP2's setting: one sampling round per plan, the plan carried over. Held in place, it converges."""
    cfg = PlannerConfig(method="mppi", horizon=HORIZON, samples=100, iterations=1)
    planner = Planner(cfg, DIM, seed=1)
    errors = []
    for _ in range(12):
        plan = planner.plan(ToyModel(), reward_sum)
        errors.append(np.abs(plan.actions - TARGET).mean())
        planner.advance(0)  # nothing executed: the next plan starts from this one
    start = np.abs(TARGET).mean()  # error of the first mean (zeros)
    assert np.mean(errors[-4:]) < 0.12 and start > 0.3 and max(errors) < 0.2


class NoisyToyModel(ToyModel):
    """The toy model whose imagined rewards carry sampling noise, like a world model at temperature 1."""

    def __init__(self, noise: float, seed: int) -> None:
        super().__init__()
        self.noise, self.rng = noise, np.random.default_rng(seed)

    def imagine(self, actions: np.ndarray, frames: bool) -> Imagined:
        out = super().imagine(actions, frames)
        out.rewards += self.noise * self.rng.standard_normal(out.rewards.shape).astype(np.float32)
        return out


def test_particles_average_out_a_noisy_models_scores() -> None:
    """Each sequence is imagined K times side by side and scored by the mean: under noise that swamps
    the reward's differences, more particles find the best sequence more closely."""
    def error(particles: int, seed: int) -> float:
        cfg = PlannerConfig(method="cem", horizon=HORIZON, samples=100, iterations=4, elites=10,
                            particles=particles)
        model = NoisyToyModel(noise=2.0, seed=seed)
        plan = Planner(cfg, DIM, seed=seed).plan(model, reward_sum, needs_frames=False)
        assert model.calls == [(100 * particles, HORIZON, DIM)] * 4
        assert plan.imagined == 100 * particles * HORIZON * 4
        return float(np.abs(plan.actions - TARGET).mean())

    one = np.mean([error(1, seed) for seed in range(4)])
    many = np.mean([error(16, seed) for seed in range(4)])
    assert many < 0.6 * one and many < 0.15


def test_particles_of_a_sequence_are_adjacent_rows() -> None:
    seen = []

    class Recorder(ToyModel):
        def imagine(self, actions: np.ndarray, frames: bool) -> Imagined:
            seen.append(actions)
            return super().imagine(actions, frames)

    Planner(PlannerConfig(horizon=2, samples=5, particles=3), DIM, seed=0).plan(Recorder(), reward_sum)
    rows = seen[0].reshape(5, 3, 2, DIM)
    assert (rows == rows[:, :1]).all() and not (rows[:, 0] == rows[:1, 0]).all()


def test_goal_image_objective_steers_the_plan() -> None:
    """Score by pixel distance to a goal frame whose brightness encodes a*'s first dimension = 0.6."""
    goal = np.full((2, 2, 3), int((0.6 + 1) * 127.5), np.uint8)
    cfg = PlannerConfig(method="cem", horizon=2, samples=100, iterations=5, elites=10)
    score = make_objective(ObjectiveConfig(kind="goal"), goal)
    plan = Planner(cfg, DIM, seed=0).plan(ToyModel(), score, needs_frames=True)
    np.testing.assert_allclose(plan.actions[:, 0], 0.6, atol=0.1)


def test_warm_start_shifts_the_plan_and_bounds_clip_it() -> None:
    cfg = PlannerConfig(method="cem", horizon=HORIZON, samples=100, iterations=5, action_low=-0.5,
                        action_high=0.5)
    planner = Planner(cfg, DIM, seed=0)
    plan = planner.plan(ToyModel(), reward_sum)
    assert plan.actions.min() >= -0.5 and plan.actions.max() <= 0.5
    np.testing.assert_allclose(plan.actions, np.clip(TARGET, -0.5, 0.5), atol=0.1)  # a* clipped into bounds
    planner.advance(1)
    np.testing.assert_array_equal(planner.mean[:-1], plan.actions[1:])
    np.testing.assert_array_equal(planner.mean[-1], plan.actions[-1])  # padded with the last action
    planner.reset()
    assert planner.mean is None


def test_correlated_noise_is_smoother_than_white_noise() -> None:
    def roughness(beta: float) -> float:
        planner = Planner(PlannerConfig(horizon=20, samples=500, beta=beta), 1, seed=0)
        samples = planner.sample(np.zeros((20, 1), np.float32), np.full((20, 1), 0.3, np.float32))
        return float(np.abs(np.diff(samples, axis=1)).mean())

    assert roughness(0.5) < 0.6 * roughness(0.0)


def test_goal_distance() -> None:
    frames = np.zeros((2, 3, 4, 4, 3), np.uint8)
    frames[1] = 255
    np.testing.assert_allclose(goal_distance(frames, np.zeros((4, 4, 3), np.float32)), [0.0, 1.0])
    with pytest.raises(ValueError, match="does not match"):
        goal_distance(frames, np.zeros((8, 8, 3), np.float32))


@pytest.mark.parametrize("kwargs, match", [
    ({"horizon": 0}, "horizon must be >= 1"),
    ({"samples": 0}, "samples must be >= 1"),
    ({"particles": 0}, "particles must be >= 1"),
    ({"method": "cem", "samples": 4, "elites": 10}, r"samples \(4\) < elites \(10\)"),
    ({"method": "cem", "samples": 10, "elite_fraction": 0.05}, "leaves no elite; use >= 20 samples"),
    ({"method": "bogus"}, "method must be 'mppi' or 'cem'"),
    ({"replan_every": 11}, "replan_every"),
    ({"beta": 1.0}, "beta must be in"),
    ({"temperature": 0.0}, "temperature must be > 0"),
    ({"action_low": 1.0, "action_high": -1.0}, "action_low"),
])
def test_bad_settings_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PlannerConfig(**kwargs)


def test_wrong_action_size_and_bad_scores() -> None:
    planner = Planner(PlannerConfig(horizon=2, samples=8), action_dim=3)
    with pytest.raises(ValueError, match="model takes 2-dim actions, the planner plans 3-dim"):
        planner.plan(ToyModel(), reward_sum)
    planner = Planner(PlannerConfig(horizon=2, samples=8), action_dim=DIM)
    with pytest.raises(ValueError, match="8 finite numbers"):
        planner.plan(ToyModel(), lambda frames, rewards: rewards)  # (N, T), not (N,)
    with pytest.raises(ValueError, match="needs a goal image"):
        make_objective(ObjectiveConfig(kind="goal"))
    with pytest.raises(ValueError, match="kind must be"):
        ObjectiveConfig(kind="pixels")
