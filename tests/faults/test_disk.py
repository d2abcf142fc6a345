"""Read-only output folders and full disks: one line naming the path and cause, exit 2, nothing partial."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from ivideogpt import media
from ivideogpt.atomic import describe_os_error
from ivideogpt.train.checkpoint import load_checkpoint, save_checkpoint
from ivideogpt.world_model import WorldModel
from tests.train.helpers import write_moving_squares

from .helpers import assert_one_error_line, cli

TOKENIZER_ARGS = ["--config", "tokenizer_tiny", "--tokenizer.resolution", "16", "--clips.future-frames", "4",
                  "--clips.val-fraction", "0.34", "--train.device", "cpu", "--train.steps", "2",
                  "--train.ckpt-every", "0", "--train.eval-every", "0", "--train.sample-every", "0"]


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_moving_squares(tmp_path_factory.mktemp("data") / "squares")


def _no_rollouts(monkeypatch: pytest.MonkeyPatch) -> None:
    def rollout(*args: object, **kwargs: object) -> None:
        raise AssertionError("rollouts started before the output folder was checked")

    monkeypatch.setattr(WorldModel, "rollout", rollout)


# ------------------------------------------------------------------------------------- read-only


def test_eval_checks_its_output_folder_before_any_rollout(
        model_dir: Path, data_dir: Path, tmp_path: Path, read_only: Callable[[Path], Path],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = read_only(tmp_path / "ro") / "eval"
    _no_rollouts(monkeypatch)
    code, err = cli(["eval", "--model", str(model_dir), "--data", str(data_dir), "--out", str(out)], capsys)
    assert code == 2
    assert_one_error_line(err, str(out), "Permission denied")


def test_demo_on_a_read_only_folder(model_dir: Path, tmp_path: Path, read_only: Callable[[Path], Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = read_only(tmp_path / "ro") / "demo"
    code, err = cli(["demo", "--model", str(model_dir), "--out", str(out)], capsys)
    assert code == 2
    assert_one_error_line(err, str(out), "Permission denied")


def test_import_into_a_read_only_folder(tmp_path: Path, read_only: Callable[[Path], Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    frames = np.arange(3, dtype=np.uint8)[:, None, None, None] * 60 + np.zeros((3, 16, 16, 3), np.uint8)
    iio.imwrite(src / "clip.gif", frames, extension=".gif")
    out = read_only(tmp_path / "ro") / "data"
    code, err = cli(["import", "videos", str(src), str(out), "--size", "8"], capsys)
    assert code == 2
    assert_one_error_line(err, str(out), "Permission denied")


def test_collect_into_a_read_only_folder(tmp_path: Path, read_only: Callable[[Path], Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = read_only(tmp_path / "ro") / "data"
    argv = ["collect", "metaworld", "--out", str(out), "--tasks", "reach", "--episodes", "1",
            "--workers", "1", "--max-steps", "2", "--size", "16"]
    code, err = cli(argv, capsys)
    assert code == 2
    assert_one_error_line(err, str(out), "Permission denied")


def test_train_tokenizer_checks_its_run_folder_before_training(
        squares: Path, tmp_path: Path, read_only: Callable[[Path], Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    out = read_only(tmp_path / "ro")
    code, err = cli(["train-tokenizer", *TOKENIZER_ARGS, "--data", str(squares), "--out", str(out)], capsys)
    assert code == 2
    assert_one_error_line(err, str(out), "Permission denied")


# ------------------------------------------------------------------------------------- full disk


def test_full_disk_during_a_training_checkpoint(squares: Path, tmp_path: Path, full_disk: Callable[..., None],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    full_disk(run / "ckpt")
    code, err = cli(["train-tokenizer", *TOKENIZER_ARGS, "--data", str(squares), "--out", str(run)], capsys)
    assert code == 2
    assert_one_error_line(err, "no space left on device while writing", str(run / "ckpt"),
                          "model.safetensors")
    assert [p.name for p in (run / "ckpt").iterdir()] == []  # no half-written step folder


@pytest.mark.parametrize(("room", "file"), [(0, "model.safetensors"), (4096, "train_state.pt")])
def test_full_disk_checkpoint_names_the_file_and_keeps_the_previous_one(
        tmp_path: Path, full_disk: Callable[..., None], room: int, file: str) -> None:
    import torch

    model = torch.nn.Linear(4, 4)
    state = {"rng": torch.zeros(100_000, dtype=torch.uint8)}  # the optimizer state and RNG are the big part
    save_checkpoint(tmp_path, 1, {"m": model}, {"hidden": 4}, state)
    full_disk(tmp_path / "ckpt", room=room)
    with pytest.raises(OSError) as caught:  # not torch's "RuntimeError: [enforce fail ...] unexpected pos"
        save_checkpoint(tmp_path, 2, {"m": model}, {"hidden": 4}, state)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename.endswith(file)
    assert describe_os_error(caught.value).startswith("no space left on device while writing ")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["last.txt", "step_000000001"]
    assert load_checkpoint(tmp_path).step == 1


def _eval_argv(model_dir: Path, data_dir: Path, out: Path) -> list[str]:
    return ["eval", "--model", str(model_dir), "--data", str(data_dir), "--out", str(out), "--clips", "1",
            "--video-clips", "1"]


def test_full_disk_leaves_no_partial_scores(model_dir: Path, data_dir: Path, tmp_path: Path,
                                            full_disk: Callable[..., None],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval"
    full_disk(out, room=100, only="scores")
    code, err = cli(_eval_argv(model_dir, data_dir, out), capsys)
    assert code == 2
    assert_one_error_line(err, f"no space left on device while writing {out / 'scores.npz'}")
    assert not [p.name for p in out.iterdir() if "scores" in p.name]  # no 0-byte or temp scores file


def test_truncated_mp4_is_not_kept(model_dir: Path, data_dir: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    write_mp4 = media._write_mp4

    def disk_full_ffmpeg(path: Path, frames: np.ndarray, fps: float) -> None:
        # ffmpeg on a full disk exits with the file cut short and no error imageio would raise
        write_mp4(path, frames, fps)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    monkeypatch.setattr(media, "_write_mp4", disk_full_ffmpeg)
    out = tmp_path / "eval"
    code, err = cli(_eval_argv(model_dir, data_dir, out), capsys)
    assert code == 2
    assert_one_error_line(err, str(out / "predictions.mp4"), "incomplete video")
    assert not [p.name for p in out.iterdir() if ".mp4" in p.name]
