"""`ivideogpt demo` with a tiny untrained model on real, short Meta-World episodes; --train is slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ivideogpt import demo
from ivideogpt.data.collect import MetaworldCollectConfig, make_jobs
from ivideogpt.data.store import read_meta
from ivideogpt.demo import DemoConfig, run_demo
from ivideogpt.eval.report import read_metrics_json

from .test_predict import SIZE, make_world_model


def test_demo_evaluates_a_given_model_on_fresh_episodes(tmp_path: Path) -> None:
    model = make_world_model(tmp_path / "wm")  # provenance: trained on reach-v3, 12-step episodes
    out = tmp_path / "demo"
    report = run_demo(DemoConfig(out=out, model=model, episodes=2, clips=3, workers=1))
    assert report == out / "report.html" and report.is_file()
    metrics = read_metrics_json(out / "metrics.json")
    assert metrics["protocol"]["clips"] == 3 and "seed 10000" in metrics["protocol"]["note"]
    meta = read_meta(out / "episodes")
    assert meta.extra["tasks"] == ["reach-v3"] and meta.image_size == SIZE  # the model's tasks and size
    assert [e.length for e in meta.episodes] == [13, 13]  # the recorded max_steps, + the reset frame
    training_seeds = {job.seed for job in make_jobs(MetaworldCollectConfig(out=tmp_path, tasks=("reach",),
                                                                           episodes=100, seed=0))}
    assert not training_seeds & {e.seed for e in meta.episodes}  # never a training episode
    run_demo(DemoConfig(out=out, model=model, episodes=1, clips=2, workers=1))  # a demo folder may be reused
    assert read_metrics_json(out / "metrics.json")["protocol"]["clips"] == 2


def test_demo_errors_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "PRETRAINED", "no-such-model")
    with pytest.raises(FileNotFoundError, match="ivideogpt demo --train"):
        run_demo(DemoConfig(out=tmp_path / "a"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_demo(DemoConfig(out=tmp_path / "b", model=tmp_path / "nowhere"))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    model = make_world_model(tmp_path / "wm")
    with pytest.raises(FileExistsError, match="a demo did not write"):
        run_demo(DemoConfig(out=foreign, model=model))
    assert (foreign / "notes.txt").read_text() == "keep me"
    three = make_world_model(tmp_path / "wm3", action_dim=3)
    with pytest.raises(ValueError, match="3-dim actions, but the demo runs Meta-World"):
        run_demo(DemoConfig(out=tmp_path / "c", model=three))
    with pytest.raises(ValueError, match="not both"):
        DemoConfig(model=model, train=True)


@pytest.mark.slow
def test_demo_trains_the_whole_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    cfg = DemoConfig(out=out, train=True, train_tasks=("reach",), train_episodes=3, tokenizer_steps=3,
                     transformer_steps=3, tasks=("reach",), episodes=1, clips=2, workers=1)
    report = run_demo(cfg)
    assert report.is_file()
    for stage in ("data/meta.json", "tokenizer/tokenizer/model.safetensors", "tokens/train/meta.json",
                  "transformer/world_model/world_model.json", "episodes/meta.json", "predictions.gif"):
        assert (out / stage).is_file(), stage
    spec = json.loads((out / "transformer/world_model/world_model.json").read_text())
    metrics = read_metrics_json(out / "metrics.json")
    assert metrics["protocol"]["context"] == spec["context_frames"] == 2
    assert "reward_mse" in metrics["methods"]["model"]  # Meta-World has rewards; the model a reward head
