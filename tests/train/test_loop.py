"""The generic loop: loss falls, logs, exact resumption after Ctrl-C, refusal to overwrite or mis-resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from ivideogpt.train.checkpoint import CheckpointError, load_checkpoint
from ivideogpt.train.distributed import init_runtime
from ivideogpt.train.job import TrainLoopConfig
from ivideogpt.train.loop import run_training, seed_everything

from .helpers import ToyConfig, ToyJob


def _job(cfg: ToyConfig, interrupt_at: int | None = None) -> ToyJob:
    seed_everything(cfg.train.seed)
    return ToyJob(cfg, init_runtime("cpu"), interrupt_at)


def _run(cfg: ToyConfig, out: Path, resume: bool = False, interrupt_at: int | None = None) -> ToyJob:
    job = _job(cfg, interrupt_at)
    run_training(job, job.runtime, cfg.train, out, resume)
    return job


def test_loss_falls_and_log_keys(tmp_path: Path) -> None:
    cfg = ToyConfig(train=dataclasses.replace(ToyConfig().train, steps=40, eval_every=20))
    job = _run(cfg, tmp_path)
    assert sum(job.losses[-5:]) < 0.5 * sum(job.losses[:5])
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if "toy/train/loss" in r]
    assert [r["step"] for r in train] == list(range(2, 41, 2))
    assert {"toy/train/lr", "toy/train/grad_norm", "toy/train/samples_per_s"} <= set(train[0])
    val = [r for r in records if "toy/val/loss" in r]
    assert [r["step"] for r in val] == [20, 40] and val[-1]["toy/val/loss"] < val[0]["toy/val/loss"]
    assert job.samples_written == [6, 12, 18, 24, 30, 36, 40]
    # keep_checkpoints=2: only the two newest step folders remain, and last.txt names the final one
    kept = sorted(p.name for p in (tmp_path / "ckpt").iterdir() if p.is_dir())
    assert kept == ["step_000000036", "step_000000040"]
    assert (tmp_path / "ckpt" / "last.txt").read_text().strip() == "step_000000040"


def test_interrupt_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    cfg = ToyConfig()
    full = _run(cfg, tmp_path / "full")

    with pytest.raises(KeyboardInterrupt):
        _run(cfg, tmp_path / "cut", interrupt_at=6)  # SIGINT during step 6: finish it, save step 7, stop
    ckpt = load_checkpoint(tmp_path / "cut")
    assert ckpt.step == 7
    resumed = _run(cfg, tmp_path / "cut", resume=True)

    assert len(resumed.losses) == cfg.train.steps - 7
    assert resumed.losses == full.losses[7:]  # same batches, same dropout masks, same updates
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the log of the resumed run reads as one run: no step logged twice
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()
             if "toy/train/loss" in line]
    assert steps == sorted(set(steps)) and steps[-1] == cfg.train.steps


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(tmp_path: Path) -> None:
    cfg = ToyConfig(train=dataclasses.replace(ToyConfig().train, steps=2))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        _run(cfg, tmp_path, resume=True)
    _run(cfg, tmp_path)
    with pytest.raises(FileExistsError, match="already holds a run"):
        _run(cfg, tmp_path)


def test_resume_with_another_architecture_names_the_key(tmp_path: Path) -> None:
    cfg = ToyConfig(train=dataclasses.replace(ToyConfig().train, steps=2))
    _run(cfg, tmp_path)
    longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=4))
    assert _run(longer, tmp_path, resume=True).losses  # more steps: allowed, continues
    with pytest.raises(CheckpointError, match=r"hidden: saved 16, now 32"):
        _run(dataclasses.replace(longer, hidden=32), tmp_path, resume=True)


def test_train_loop_config_validation_names_field() -> None:
    with pytest.raises(ValueError, match="batch_size .*grad_accum"):
        TrainLoopConfig(batch_size=6, grad_accum=4)
    with pytest.raises(ValueError, match="TrainLoopConfig.steps"):
        TrainLoopConfig(steps=0)
    with pytest.raises(ValueError, match="TrainLoopConfig.schedule"):
        TrainLoopConfig(schedule="linear")  # type: ignore[arg-type]
