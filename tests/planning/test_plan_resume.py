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


def test_an_interrupted_plan_resumes_to_the_uninterrupted_result(
        model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = run_plan(PlanConfig(out=tmp_path / "whole", model=model_dir, **SETTINGS))

    out = tmp_path / "cut"
    played, call, began = [], run.Player.__call__, time.perf_counter()

    def stop_at_the_third(self: run.Player, job: run.Job) -> object:
        if len(played) == 2:
            raise KeyboardInterrupt
        played.append(job)
        return call(self, job)

    with monkeypatch.context() as patch:
        patch.setattr(run.Player, "__call__", stop_at_the_third)
        with pytest.raises(KeyboardInterrupt):
            run_plan(PlanConfig(out=out, model=model_dir, **SETTINGS))
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
