"""The goal distance in the tokenizer's features (`--objective.goal-space features`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ivideogpt.artifacts import load_any_tokenizer
from ivideogpt.cli import main
from ivideogpt.data.frames import to_model
from ivideogpt.planning.goal_features import FeatureGoal
from ivideogpt.planning.objectives import ObjectiveConfig, make_objective
from ivideogpt.planning.planner import PlannerConfig
from ivideogpt.planning.run import PlanConfig, run_plan
from tests.eval.test_predict import SIZE, make_world_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world_model(tmp_path_factory.mktemp("wm") / "world_model")


def _frames(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def test_the_goal_is_nearest_to_itself_and_the_embedding_is_what_encode_quantizes(model_dir: Path) -> None:
    goal, others = _frames(1, 0)[0], _frames(3, 1)
    distance = FeatureGoal(model_dir, goal).distance
    # sequence 0 reaches the goal at its last frame, 1 sits on it throughout, 2 never comes near
    frames = np.stack([np.stack([others[0], goal]), np.stack([goal, goal]), others[1:]])
    d = distance(frames)
    assert d.shape == (3,) and d[1] == pytest.approx(0.0, abs=1e-5)
    assert d[1] < d[0] < d[2]  # cosine distances averaged over the horizon: half way is half the cost
    assert d[0] == pytest.approx(distance(others[None, :1])[0] / 2, rel=1e-4)

    vqgan = load_any_tokenizer(model_dir).context_vqgan
    x = to_model(torch.from_numpy(others))
    with torch.no_grad():
        embedded, _ = vqgan.embed(x)
        torch.testing.assert_close(vqgan.quantizer(embedded).codes, vqgan.encode(x)[0].codes, rtol=0, atol=0)


def test_bad_goal_space_settings_and_shapes_are_named(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="goal_space must be 'pixels' or 'features'"):
        ObjectiveConfig(kind="goal", goal_space="latents")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="goes with --objective.kind goal or both, not 'reward'"):
        ObjectiveConfig(kind="reward", goal_space="features")
    goal = _frames(1, 0)[0]
    with pytest.raises(ValueError, match="--objective.features-from DIR"):
        make_objective(ObjectiveConfig(kind="goal", goal_space="features"), goal)
    with pytest.raises(ValueError, match=r"reads \(32, 32, 3\) frames"):
        FeatureGoal(model_dir, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="do not match the goal image"):
        FeatureGoal(model_dir, goal).distance(np.zeros((2, 1, 8, 8, 3), np.uint8))
    with pytest.raises(FileNotFoundError):
        FeatureGoal(model_dir.parent / "missing", goal)


def test_plan_with_the_feature_goal_end_to_end(model_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = PlanConfig(out=tmp_path / "plan", model=model_dir, tasks=("reach",), episodes=1, max_steps=3,
                     agents=("world_model", "simulator"),
                     objective=ObjectiveConfig(kind="goal", goal_space="features"),
                     planner=PlannerConfig(horizon=2, samples=4))
    record = run_plan(cfg)
    assert record["settings"]["objective"]["features_from"] == str(model_dir)  # the plan's own tokenizer
    for agent in ("world_model", "simulator"):
        assert record["tasks"]["reach-v3"][agent]["plans_per_episode"] == 3
    # a features model that is not there is refused before any episode, with its path, not a traceback
    with pytest.raises(SystemExit):
        main(["plan", "--model", str(model_dir), "--tasks", "reach", "--episodes", "1", "--out",
              str(tmp_path / "refused"), "--objective.kind", "goal", "--objective.goal-space", "features",
              "--objective.features-from", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert str(tmp_path / "missing") in err and "Traceback" not in err
    assert not (tmp_path / "refused").exists()
