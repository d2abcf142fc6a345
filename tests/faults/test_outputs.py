"""Nothing is lost: existing outputs are replaced only when asked, only by complete ones, only if ours."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from ivideogpt.data.store import DatasetWriter, read_meta
from ivideogpt.data.videos import VideoImportConfig, import_videos
from ivideogpt.eval.predict import EvalConfig, evaluate_predictions
from ivideogpt.train.distributed import init_runtime
from ivideogpt.train.loop import run_training, seed_everything
from tests.data.helpers import random_episode
from tests.train.helpers import ToyConfig, ToyJob

from .helpers import assert_one_error_line, cli


def _dataset(root: Path, lengths: tuple[int, ...] = (4, 5)) -> Path:
    rng = np.random.default_rng(0)
    with DatasetWriter(root, "test", 8, None, fps=10.0) as writer:
        for length in lengths:
            writer.add(random_episode(rng, length, action_dim=None))
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def test_failed_import_with_overwrite_keeps_the_old_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _dataset(tmp_path / "data")
    before = _files(old)
    src = tmp_path / "src"
    src.mkdir()
    iio.imwrite(src / "one_frame.gif", np.zeros((1, 16, 16, 3), np.uint8), extension=".gif")
    code, err = cli(["import", "videos", str(src), str(old), "--overwrite"], capsys)
    assert code == 2 and "no usable video" in err
    assert _files(old) == before  # the old dataset, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]  # no half-built folder left


def test_successful_import_replaces_the_dataset_only_when_complete(tmp_path: Path) -> None:
    old = _dataset(tmp_path / "data", (4, 5, 6))
    src = tmp_path / "src"
    src.mkdir()
    frames = np.arange(3, dtype=np.uint8)[:, None, None, None] * 60 + np.zeros((3, 16, 16, 3), np.uint8)
    iio.imwrite(src / "clip.gif", frames, extension=".gif")
    import_videos(VideoImportConfig(src, old, size=8, overwrite=True))
    assert read_meta(old).num_episodes == 1 and sorted(p.name for p in old.iterdir()) == [
        "episode_000000.npz", "meta.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]


def test_interrupted_overwrite_keeps_the_old_dataset(tmp_path: Path) -> None:
    old = _dataset(tmp_path / "data")
    before = _files(old)
    rng = np.random.default_rng(1)
    with pytest.raises(KeyboardInterrupt), DatasetWriter(old, "new", 8, None, 10.0, overwrite=True) as writer:
        writer.add(random_episode(rng, 3, action_dim=None))
        raise KeyboardInterrupt
    assert _files(old) == before and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_overwrite_never_deletes_files_the_dataset_does_not_own(tmp_path: Path) -> None:
    old = _dataset(tmp_path / "data")
    (old / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"notes.txt is not part of the dataset"):
        DatasetWriter(old, "new", 8, None, 10.0, overwrite=True)
    assert (old / "notes.txt").read_text() == "keep me" and read_meta(old).num_episodes == 2


def _toy(tmp_path: Path) -> tuple[ToyJob, ToyConfig]:
    cfg = ToyConfig(train=dataclasses.replace(ToyConfig().train, steps=4))
    seed_everything(0)
    job = ToyJob(cfg, init_runtime("cpu"))
    job.export_dir = "export"
    return job, cfg


@pytest.mark.parametrize("left", ["log.jsonl", "samples", "export"])
def test_a_run_without_checkpoints_is_still_not_overwritten(tmp_path: Path, left: str) -> None:
    job, cfg = _toy(tmp_path)
    run = tmp_path / "run"
    run_training(job, job.runtime, cfg.train, run, resume=False)
    (run / "samples").mkdir()  # what a real job writes beside the loop's log and checkpoints
    (run / "export").mkdir()
    (run / "export" / "model.safetensors").write_bytes(b"the exported model")
    log = (run / "log.jsonl").read_text()
    for name in ("ckpt", "log.jsonl", "samples", "export"):  # the user deleted all but `left`
        if name != left:
            shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()
    job, cfg = _toy(tmp_path)
    with pytest.raises(FileExistsError, match=rf"already holds a run \({left}\).*no checkpoint"):
        run_training(job, job.runtime, cfg.train, run, resume=False)
    assert sorted(p.name for p in run.iterdir()) == [left]
    if left == "log.jsonl":
        assert (run / "log.jsonl").read_text() == log
    if left == "export":
        assert (run / "export" / "model.safetensors").read_bytes() == b"the exported model"


def test_eval_refuses_to_replace_an_earlier_evaluation(model_dir: Path, data_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval"
    cfg = EvalConfig(model=model_dir, data=[data_dir], out=out, clips=1, video_clips=1)
    evaluate_predictions(cfg)
    (out / "notes.txt").write_text("mine")
    metrics = (out / "metrics.json").read_text()
    argv = ["eval", "--model", str(model_dir), "--data", str(data_dir), "--out", str(out), "--clips", "1"]
    code, err = cli(argv, capsys)
    assert code == 2
    assert_one_error_line(err, str(out), "earlier evaluation", "--overwrite")
    assert (out / "metrics.json").read_text() == metrics
    assert cli([*argv, "--overwrite"], capsys)[0] == 0
    assert json.loads((out / "metrics.json").read_text())["protocol"]["clips"] == 1
    assert (out / "notes.txt").read_text() == "mine"  # what is not the evaluation's stays
