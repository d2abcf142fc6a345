"""`ivideogpt plan` end to end on a tiny untrained world model (numbers test the plumbing only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ivideogpt.cli import main
from ivideogpt.planning.objectives import ObjectiveConfig
from ivideogpt.planning.planner import PlannerConfig
from ivideogpt.planning.run import AGENTS, PlanConfig, run_plan
from tests.eval.test_predict import make_world_model

TINY = PlannerConfig(horizon=2, samples=4)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world_model(tmp_path_factory.mktemp("wm") / "world_model")


def test_one_tiny_plan_episode_per_agent_end_to_end(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan"
    record = run_plan(PlanConfig(out=out, model=model_dir, tasks=("reach",), episodes=1, max_steps=3,
                                 planner=TINY, temperature=0.0))
    assert set(record["tasks"]["reach-v3"]) == set(AGENTS)
    assert record["model"]["sampling"]["temperature"] == 0.0  # the override, beside the other defaults
    assert record["model"]["sampling"]["action_guidance"] == 0.0
    wm = record["tasks"]["reach-v3"]["world_model"]
    assert wm["episodes"] == 1 and wm["plans_per_episode"] == 3 and wm["ms_per_plan"] > 0
    assert wm["imagined_per_s"] > 0 and 0 <= wm["success_rate"] <= 1
    assert "ms_per_plan" not in record["tasks"]["reach-v3"]["random"]
    saved = json.loads((out / "plan.json").read_text())
    assert saved["settings"]["planner"]["samples"] == 4 and saved["settings"]["imagined_per_plan"] == 8
    assert saved["settings"]["env"] == {"size": 32, "camera": "corner", "action_repeat": 2, "max_steps": 3}
    seeds = {e["agent"]: e["seed"] for e in saved["episodes"]}
    assert len(set(seeds.values())) == 1  # every agent plays the same scene
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert videos == ["reach-v3_simulator_ep0.mp4", "reach-v3_world_model_ep0.mp4"]
    assert "world_model planner" in (out / "report.html").read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):  # an earlier output is never replaced silently
        run_plan(PlanConfig(out=out, model=model_dir, tasks=("reach",), episodes=1, max_steps=3,
                            planner=TINY))


def test_goal_image_task_and_the_simulator_planner_beats_nothing(model_dir: Path, tmp_path: Path) -> None:
    """Goal objective (VP2): the goal frame comes from the expert solving the same scene."""
    cfg = PlanConfig(out=tmp_path / "goal", model=model_dir, tasks=("reach",), episodes=1, max_steps=4,
                     agents=("world_model", "simulator"), objective=ObjectiveConfig(kind="goal"),
                     planner=PlannerConfig(horizon=2, samples=4, method="cem", iterations=2, elites=2))
    record = run_plan(cfg)
    for agent in ("world_model", "simulator"):
        assert record["tasks"]["reach-v3"][agent]["goal_solved_rate"] in (0.0, 1.0)
    assert record["settings"]["elites"] == 2


def test_workers_give_the_same_results(model_dir: Path, tmp_path: Path) -> None:
    kwargs = {"model": model_dir, "tasks": ("reach",), "episodes": 2, "max_steps": 2,
              "agents": ("random", "simulator"),
              "planner": TINY, "videos": 0}
    one = run_plan(PlanConfig(out=tmp_path / "one", workers=1, **kwargs))
    two = run_plan(PlanConfig(out=tmp_path / "two", workers=2, **kwargs))
    key = ("task", "agent", "seed", "episode_return", "success")
    assert [[e[k] for k in key] for e in one["episodes"]] == [[e[k] for k in key] for e in two["episodes"]]
    assert not (tmp_path / "one" / "videos").exists() or not any((tmp_path / "one" / "videos").iterdir())


@pytest.mark.parametrize("kwargs, match", [
    ({"tasks": ("reech",)}, "unknown Meta-World task 'reech'; did you mean reach-v3"),
    ({"agents": ("world_model", "oracle")}, r"agents: unknown \['oracle'\]"),
    ({"episodes": 0}, "episodes must be >= 1"),
    ({"tasks": ("push", "push-v3")}, "more than once"),
    ({"temperature": -0.5}, "temperature must be >= 0"),
])
def test_bad_settings_are_named(kwargs: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        PlanConfig(out=tmp_path, **kwargs)


def test_a_model_with_the_wrong_action_size_is_refused(tmp_path: Path) -> None:
    model = make_world_model(tmp_path / "wm3", action_dim=3)
    with pytest.raises(ValueError, match="3-dim actions .* Meta-World's are 4-dim"):
        run_plan(PlanConfig(out=tmp_path / "out", model=model, tasks=("reach",), episodes=1, max_steps=2,
                            planner=TINY))
    assert not (tmp_path / "out").exists()  # refused before anything is written


def _squeezed(text: str) -> str:
    return "".join(c for c in text if c.isalnum() or c in "()<>=.,;'")  # tyro draws a box and may wrap lines


@pytest.mark.parametrize("args, message", [
    (["--planner.horizon", "0"], "PlannerConfig.horizon must be >= 1, got 0"),
    (["--planner.method", "cem", "--planner.samples", "4", "--planner.elites", "10"],
     "PlannerConfig: samples (4) < elites (10)"),
    (["--tasks", "reach", "nope"], "unknown Meta-World task 'nope'"),
])
def test_command_line_errors_name_the_setting(args: list[str], message: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "--out", str(tmp_path / "x"), *args])
    assert exit_info.value.code == 2
    assert _squeezed(message) in _squeezed(capsys.readouterr().err)
    assert not (tmp_path / "x").exists()


def test_command_line_refuses_to_overwrite(model_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "plan.json").write_text("{}")
    with pytest.raises(SystemExit):
        main(["plan", "--model", str(model_dir), "--out", str(tmp_path / "x"), "--episodes", "1"])
    err = capsys.readouterr().err
    assert err.startswith("ivideogpt plan: error:") and "pass --overwrite" in err and err.count("\n") == 1


def test_world_model_rollouts_pad_a_short_context(model_dir: Path) -> None:
    from ivideogpt.planning.models import WorldModelRollouts
    from ivideogpt.world_model import WorldModel

    wm = WorldModel.load(model_dir)
    frames = np.zeros((1, 32, 32, 3), np.uint8)
    out = WorldModelRollouts(wm, frames).imagine(np.zeros((3, 2, 4), np.float32), frames=True)
    assert out.frames.shape == (3, 2, 32, 32, 3) and out.rewards.shape == (3, 2)


def test_greedy_imagination_differs_only_by_the_actions(model_dir: Path) -> None:
    from ivideogpt.planning.models import WorldModelRollouts
    from ivideogpt.world_model import WorldModel

    wm = WorldModel.load(model_dir)
    frames = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    actions = np.zeros((3, 2, 4), np.float32)

    def imagined(seed: int, **sampling: float) -> np.ndarray:
        return WorldModelRollouts(wm, frames, seed, sampling).imagine(actions, frames=True).frames

    assert not np.array_equal(imagined(0), imagined(1))  # the model's default samples at temperature 1
    assert np.array_equal(imagined(0, temperature=0.0), imagined(1, temperature=0.0))


def test_plan_passes_only_the_sampling_settings_given(model_dir: Path, tmp_path: Path) -> None:
    cfg = PlanConfig(out=tmp_path / "p", model=model_dir, tasks=("reach",), temperature=0.0, still_split=True)
    assert cfg.sampling_overrides == {"temperature": 0.0, "still_split": True}
    assert PlanConfig(out=tmp_path / "q", model=model_dir, tasks=("reach",)).sampling_overrides == {}
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        PlanConfig(out=tmp_path / "r", model=model_dir, tasks=("reach",), temperature=-1.0)


def test_bench_targets_compare_only_with_the_agents_that_ran(load_script) -> None:
    bench = load_script("planning")
    rates = {"world_model": 0.6, "random": 0.4, "simulator": 1.0}
    full = {task: {a: {"success_rate": r} for a, r in rates.items()} for task in ("reach", "push")}
    assert bench.targets(full) == {
        "per_task": {t: {"above_random": True, "share_of_simulator": 0.6} for t in full},
        "above_random_on_every_task": True, "half_of_simulator_on_two_tasks": True}
    full["push"]["random"]["success_rate"] = 0.55  # 5 points above random is not clearly above
    assert bench.targets(full)["above_random_on_every_task"] is False
    alone = bench.targets({"reach": {"world_model": {"success_rate": 0.6}}})  # `--agents world_model`
    assert alone["above_random_on_every_task"] is None and alone["half_of_simulator_on_two_tasks"] is None
