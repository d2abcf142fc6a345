"""bench/control_lag.py: the regression credits each displacement to the action that made it."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("lag", [0, 1])
def test_lag_figures_find_the_action_that_moved_the_hand(load_script, lag: int) -> None:
    bench = load_script("control_lag")
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (3, 40, 4))
    # hands[t + 1] - hands[t] is made by actions[t] (lag 0) or, for a hand one frame late, by actions[t - 1]
    made_by = actions[:, :, :3] if lag == 0 else np.concatenate([np.zeros((3, 1, 3)), actions[:, :-1, :3]], 1)
    hands = np.concatenate([np.zeros((3, 1, 3)), np.cumsum(0.01 * made_by, 1)], 1)
    figures = bench.lag_figures(actions, hands)
    own, before = figures["r2_action_t"], figures["r2_action_t_minus_1"]
    assert (own, before) == ((pytest.approx(1.0), pytest.approx(0.0, abs=0.05)) if lag == 0 else
                             (pytest.approx(0.0, abs=0.05), pytest.approx(1.0)))
    assert figures["r2_both"] == pytest.approx(1.0)
    assert figures["displacement_m"] == pytest.approx(0.005, rel=0.1)  # 0.01 x E|U(-1, 1)|
