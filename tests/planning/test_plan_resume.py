"""An interrupted `ivideogpt plan` keeps its finished episodes and resumes to the uninterrupted result."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ivideogpt.atomic import partial_path
from ivideogpt.planning import run
from ivideogpt.planning.planner import PlannerConfig
from ivideogpt.planning.run import PlanConfig, run_plan
from tests.eval.test_predict import make_world_model

SETTINGS = {"tasks": ("reach",), "agents": ("world_model", "random"), "episodes": 2, "max_steps": 3,
            "planner": PlannerConfig(horizon=2, samples=4), "temperature": 0.0}  # greedy: deterministic


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world_model(tmp_path_factory.mktemp("wm") / "world_model")


def _outcomes(record: dict) -> list[tuple]:
    return [(e["task"], e["agent"], e["index"], e["seed"], e["success"], e["episode_return"], e["plans"])
            for e in record["episodes"]]


def _interrupt_after_two(out: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the plan of SETTINGS into `out` and stop it (Ctrl-C) once two episodes are played."""
    played, call = [], run.Player.__call__

    def stop_at_the_third(self: run.Player, job: run.Job) -> object:
        if len(played) == 2:
            raise KeyboardInterrupt
        played.append(job)
        return call(self, job)

    with monkeypatch.context() as patch:
        patch.setattr(run.Player, "__call__", stop_at_the_third)
        with pytest.raises(KeyboardInterrupt):
            run_plan(PlanConfig(out=out, model=model_dir, **SETTINGS))


def test_an_interrupted_plan_resumes_to_the_uninterrupted_result(
        model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = run_plan(PlanConfig(out=tmp_path / "whole", model=model_dir, **SETTINGS))

    out, began = tmp_path / "cut", time.perf_counter()
    _interrupt_after_two(out, model_dir, monkeypatch)
    saved = partial_path(out)
    assert not (out / "plan.json").exists()
    assert sorted(p.name for p in saved.glob("*.json")) == [
        "reach-v3_random_0000.json", "reach-v3_world_model_0000.json", "settings.json"]

    with pytest.raises(FileExistsError, match="--resume"):  # never started over silently
        run_plan(PlanConfig(out=out, model=model_dir, **SETTINGS))
    episode = saved / "reach-v3_random_0000.json"
    kept = episode.read_text()
    episode.write_text("{")
    with pytest.raises(ValueError, match="reach-v3_random_0000.json: not valid JSON"):
        run_plan(PlanConfig(out=out, model=model_dir, resume=True, **SETTINGS))
    episode.write_text(kept)
    with pytest.raises(ValueError, match="other settings .*max_steps"):
        run_plan(PlanConfig(out=out, model=model_dir, resume=True, **SETTINGS | {"max_steps": 4}))

    resumed = run_plan(PlanConfig(out=out, model=model_dir, resume=True, **SETTINGS))
    assert _outcomes(resumed) == _outcomes(whole)
    assert 0 < resumed["seconds"] <= time.perf_counter() - began  # both sessions' time, each counted once
    assert resumed["tasks"]["reach-v3"]["world_model"]["successes"] == \
        whole["tasks"]["reach-v3"]["world_model"]["successes"]
    assert (out / "videos" / "reach-v3_world_model_ep0.mp4").is_file()  # the saved episode's video too
    assert not saved.exists()  # removed once the outputs are written
    with pytest.raises(FileNotFoundError, match="no interrupted plan"):
        run_plan(PlanConfig(out=tmp_path / "fresh", model=model_dir, resume=True, **SETTINGS))


def test_a_resumed_plan_may_play_more_or_fewer_episodes(
        model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = run_plan(PlanConfig(out=tmp_path / "whole", model=model_dir, **SETTINGS | {"episodes": 3}))
    more = tmp_path / "more"
    _interrupt_after_two(more, model_dir, monkeypatch)  # index 0 of both agents played, of 2 episodes
    grown = run_plan(PlanConfig(out=more, model=model_dir, resume=True, **SETTINGS | {"episodes": 3}))
    assert _outcomes(grown) == _outcomes(whole)  # a scene depends on its task and index, not the count
    assert grown["settings"]["episodes"] == 3

    fewer = tmp_path / "fewer"
    _interrupt_after_two(fewer, model_dir, monkeypatch)
    cut = run_plan(PlanConfig(out=fewer, model=model_dir, resume=True, **SETTINGS | {"episodes": 1}))
    assert _outcomes(cut) == [e for e in _outcomes(whole) if e[2] == 0]  # the saved episodes, none else
    assert cut["tasks"]["reach-v3"]["random"]["episodes"] == 1
