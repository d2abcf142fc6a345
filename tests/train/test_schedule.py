"""Learning-rate schedule: warm-up ramp, constant plateau, cosine end."""

from __future__ import annotations

import itertools
import math

import pytest

from ivideogpt.train.schedule import lr_at


def test_warmup_ramps_linearly_from_above_zero() -> None:
    values = [lr_at(s, 1e-3, warmup_steps=4, total_steps=100) for s in range(6)]
    assert values == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])


def test_constant_after_warmup() -> None:
    assert lr_at(10_000, 5e-4, 500, 1000, "constant") == 5e-4


def test_cosine_midpoint_and_end() -> None:
    kw = {"lr": 1.0, "warmup_steps": 10, "total_steps": 110, "schedule": "cosine", "min_lr": 0.1}
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)  # halfway: mean of lr and min_lr
    assert lr_at(110, **kw) == pytest.approx(0.1)
    assert lr_at(500, **kw) == pytest.approx(0.1)  # stays at the floor past the end
    steps = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(steps))


def test_no_warmup_and_bad_input() -> None:
    assert lr_at(0, 1.0, 0, 10, "cosine") == 1.0
    assert math.isclose(lr_at(5, 1.0, 0, 10, "cosine"), 0.5)
    with pytest.raises(ValueError, match="schedule"):
        lr_at(0, 1.0, 0, 10, "step")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step must be >= 0"):
        lr_at(-1, 1.0, 0, 10)

