"""Behaviour policies for collection: the mixture parser, the policies' ranges and character, and the
counterfactual branches of a Meta-World scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ivideogpt.data.collect import MetaworldCollectConfig, collect_episodes
from ivideogpt.data.policies import DEFAULT_MIXTURE, POLICIES, draw_policy, make_policy, parse_mixture
from ivideogpt.data.store import EpisodeStore, read_meta


def constant_expert(state: np.ndarray) -> np.ndarray:
    return np.full(4, 0.3, np.float32)


def run(name: str, steps: int = 400, seed: int = 0) -> np.ndarray:
    policy = make_policy(name, constant_expert, 4, 0.05, np.random.default_rng(seed))
    return np.stack([policy(np.zeros(39)) for _ in range(steps)])


def test_mixture_parsing_normalises_and_names_what_is_wrong() -> None:
    assert parse_mixture("expert:1,random:3") == {"expert": 0.25, "random": 0.75}
    assert parse_mixture("random") == {"random": 1.0}
    assert set(parse_mixture(DEFAULT_MIXTURE)) == set(POLICIES)
    for bad, message in (("expret:1", "unknown collection policy 'expret'"), ("random:0", "positive"),
                         ("random:x", "not a number"), ("random,random", "twice"),
                         ("", "no collection policy")):
        with pytest.raises(ValueError, match=message):
            parse_mixture(bad)


def test_policies_stay_in_range_and_act_as_named() -> None:
    actions = {name: run(name) for name in POLICIES}
    for name, a in actions.items():
        assert a.dtype == np.float32 and a.shape == (400, 4) and np.abs(a).max() <= 1.0, name
    assert np.abs(actions["expert"] - 0.3).max() < 0.3  # the expert plus small noise
    assert actions["expert_noisy"].std() > 2 * actions["expert"].std()

    def lag1(a: np.ndarray) -> float:
        return float(np.mean([np.corrcoef(a[:-1, i], a[1:, i])[0, 1] for i in range(4)]))

    assert lag1(actions["smooth_random"]) > 0.6  # correlated in time
    assert abs(lag1(actions["random"])) < 0.2  # independent
    interrupted = actions["expert_interrupted"]
    off_expert = np.abs(interrupted - 0.3).max(axis=1) > 0.3
    assert 0.05 < off_expert.mean() < 0.9  # mostly the expert, with random segments
    np.testing.assert_array_equal(run("smooth_random", seed=1), run("smooth_random", seed=1))  # seeded


def test_draw_policy_follows_the_weights() -> None:
    rng = np.random.default_rng(0)
    draws = [draw_policy({"expert": 0.8, "random": 0.2}, rng) for _ in range(2000)]
    assert 0.75 < draws.count("expert") / len(draws) < 0.85


def test_branches_share_their_start_and_differ_after_it(tmp_path: Path) -> None:
    out = collect_episodes(MetaworldCollectConfig(out=tmp_path / "cf", tasks=("reach",), episodes=2, size=32,
                                                   branches=3, branch_at=(3, 4), branch_steps=4, workers=1,
                                                   policy="expert", max_steps=20))
    meta = read_meta(out)
    assert meta.num_episodes == 6 and meta.extra["branch_steps"] == 4
    assert [(e.scene, e.branch) for e in meta.episodes] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert [e.policy for e in meta.episodes[:3]] == ["expert", "smooth_random", "random"]
    store = EpisodeStore(out)
    for scene in range(2):
        episodes = [store[3 * scene + k] for k in range(3)]
        branch_at = len(episodes[0]) - 4 - 1
        assert 3 <= branch_at <= 4 and {len(ep) for ep in episodes} == {branch_at + 5}
        for ep in episodes[1:]:
            np.testing.assert_array_equal(ep.frames[: branch_at + 1], episodes[0].frames[: branch_at + 1])
            np.testing.assert_array_equal(ep.actions[: branch_at + 1], episodes[0].actions[: branch_at + 1])
            assert not np.array_equal(ep.actions[branch_at + 1 :], episodes[0].actions[branch_at + 1 :])
            # different actions, other futures
            assert not np.array_equal(ep.frames[-1], episodes[0].frames[-1])


def test_collection_records_each_episodes_policy(tmp_path: Path) -> None:
    out = collect_episodes(MetaworldCollectConfig(out=tmp_path / "mix", tasks=("reach", "push"), episodes=3,
                                                   size=32, max_steps=5, workers=1))
    meta = read_meta(out)
    assert all(e.policy in POLICIES for e in meta.episodes)
    assert meta.extra["policy"] == parse_mixture(DEFAULT_MIXTURE)
    with pytest.raises(ValueError, match="branch_at"):
        MetaworldCollectConfig(out=tmp_path / "x", branches=2, branch_at=(5, 2))
    with pytest.raises(ValueError, match="60 steps .* plus 8 branch steps exceeds max_steps=50"):
        MetaworldCollectConfig(out=tmp_path / "x", branches=2, branch_at=(5, 60), max_steps=50)
