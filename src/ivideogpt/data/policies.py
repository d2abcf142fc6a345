"""Behaviour policies for data collection: what drives the robot while an episode is recorded.

A world model learns to use its actions only when the actions carry information the frames do not. A
scripted expert acts smoothly and predictably: two frames already tell where its arm goes next, so a model
trained on expert video alone can ignore the actions and still predict well (docs/method.md §6). The policies
here make actions vary independently of the scene, while some keep the expert
in the loop so that task success (and so reward) stays in the data:

- `expert`: the scripted expert plus Gaussian noise of the episode's std (small; the original data).
- `expert_noisy`: the expert plus large Gaussian noise (std `NOISY_STD`).
- `expert_interrupted`: the expert, interrupted at random moments by segments of smooth random actions;
  it recovers from wherever the segment left the arm, so it still often succeeds.
- `smooth_random`: correlated random actions (AR(1) noise) that sometimes stick to the previous action.
- `random`: independent uniform actions in [-1, 1].

`parse_mixture("expert:0.2,random:0.1")` reads a weighted mixture, `draw_policy` picks one policy per
episode from it, deterministically for a seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Expert = Callable[[np.ndarray], np.ndarray]  # state (39,) -> action (A,)
Policy = Callable[[np.ndarray], np.ndarray]  # state -> action in [-1, 1]^A; holds its episode's memory

POLICIES = ("expert", "expert_noisy", "expert_interrupted", "smooth_random", "random")
# The training default: about half the episodes keep the expert in charge (success and reward stay in the
# data), the rest move the arm in ways the frames cannot foretell.
DEFAULT_MIXTURE = "expert:0.2,expert_noisy:0.15,expert_interrupted:0.35,smooth_random:0.2,random:0.1"
NOISY_STD = 0.5  # std of the Gaussian noise of `expert_noisy`
SMOOTH_BETA = 0.8  # AR(1) coefficient of `smooth_random`: a_t = beta a_{t-1} + sqrt(1 - beta^2) eps
SMOOTH_STD = 0.7  # stationary std of `smooth_random` before clipping
STICKY_PROB = 0.25  # `smooth_random` repeats its previous action with this probability
INTERRUPT_PROB = 0.08  # per expert step, the chance that `expert_interrupted` starts a random segment
INTERRUPT_STEPS = (4, 16)  # a random segment lasts U{lo, ..., hi} steps


def parse_mixture(spec: str) -> dict[str, float]:
    """`"expert:0.2,random:0.1"` (or one name, weight 1) -> normalised `{policy: weight}`.

    Raises:
        ValueError: an unknown policy, a repeated one, or a weight that is not a positive number.
    """
    weights: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, weight = part.partition(":")
        name = name.strip()
        if name not in POLICIES:
            raise ValueError(f"unknown collection policy {name!r} in {spec!r}; known: {', '.join(POLICIES)}")
        if name in weights:
            raise ValueError(f"collection policy {name!r} appears twice in {spec!r}")
        try:
            w = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise ValueError(f"weight of {name!r} in {spec!r} is not a number: {weight!r}") from None
        if not w > 0 or not np.isfinite(w):
            raise ValueError(f"weight of {name!r} in {spec!r} must be a positive number, got {weight!r}")
        weights[name] = w
    if not weights:
        raise ValueError(f"no collection policy named in {spec!r}; known: {', '.join(POLICIES)}")
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items()}


def draw_policy(mixture: dict[str, float], rng: np.random.Generator) -> str:
    """One policy name drawn with the mixture's weights."""
    names = list(mixture)
    return names[int(rng.choice(len(names), p=[mixture[n] for n in names]))]


def make_policy(
    name: str, expert: Expert | None, action_dim: int, noise_std: float, rng: np.random.Generator
) -> Policy:
    """A fresh episode's policy `name` (see the module docstring); `rng` drives all of its randomness.

    Args:
        name: one of `POLICIES`.
        expert: the task's scripted expert (None in a suite without: then only the random policies run).
        action_dim: size of an action.
        noise_std: std of the Gaussian noise of `expert` (the other policies have their own settings).
        rng: the episode's generator (the policy keeps a reference and draws from it every step).
    """
    if name.startswith("expert") and expert is None:
        raise ValueError(f"collection policy {name!r} needs a scripted expert, and this task has none")
    if name == "expert":
        return lambda state: _clip(expert(state) + noise_std * rng.standard_normal(action_dim))
    if name == "expert_noisy":
        return lambda state: _clip(expert(state) + NOISY_STD * rng.standard_normal(action_dim))
    if name == "random":
        return lambda state: rng.uniform(-1.0, 1.0, action_dim).astype(np.float32)
    if name == "smooth_random":
        return SmoothRandom(action_dim, rng)
    if name == "expert_interrupted":
        return InterruptedExpert(expert, action_dim, noise_std, rng)
    raise ValueError(f"unknown collection policy {name!r}; known: {', '.join(POLICIES)}")


class SmoothRandom:
    """Correlated random actions: AR(1) noise, sometimes holding the previous action (sticky)."""

    def __init__(self, action_dim: int, rng: np.random.Generator) -> None:
        self.rng = rng
        self.noise = SMOOTH_STD * rng.standard_normal(action_dim)  # start from the stationary law
        self.action = _clip(self.noise)

    def __call__(self, state: np.ndarray) -> np.ndarray:
        if self.rng.random() >= STICKY_PROB:
            eps = self.rng.standard_normal(self.noise.shape)
            self.noise = SMOOTH_BETA * self.noise + np.sqrt(1 - SMOOTH_BETA**2) * SMOOTH_STD * eps
            self.action = _clip(self.noise)
        return self.action


class InterruptedExpert:
    """The expert (with its small noise), now and then replaced by a segment of `SmoothRandom` actions."""

    def __init__(self, expert: Expert, action_dim: int, noise_std: float, rng: np.random.Generator) -> None:
        self.expert, self.action_dim, self.noise_std, self.rng = expert, action_dim, noise_std, rng
        self.segment: SmoothRandom | None = None
        self.left = 0  # steps left in the current random segment

    def __call__(self, state: np.ndarray) -> np.ndarray:
        if self.left == 0 and self.rng.random() < INTERRUPT_PROB:
            self.segment = SmoothRandom(self.action_dim, self.rng)
            self.left = int(self.rng.integers(INTERRUPT_STEPS[0], INTERRUPT_STEPS[1] + 1))
        if self.left > 0:
            self.left -= 1
            return self.segment(state)
        return _clip(self.expert(state) + self.noise_std * self.rng.standard_normal(self.action_dim))


def _clip(action: np.ndarray) -> np.ndarray:
    return np.clip(action, -1.0, 1.0).astype(np.float32)
