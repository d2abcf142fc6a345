"""Killed runs: a SIGKILL in the middle of a checkpoint or token-shard write, a log line cut short; all resume
exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ivideogpt.cli import main
from ivideogpt.data.tokens import TokenShards
from ivideogpt.train.checkpoint import load_checkpoint
from ivideogpt.train.distributed import init_runtime
from ivideogpt.train.loop import run_training, seed_everything
from ivideogpt.train.monitor import read_log
from tests.faults.helpers import cli
from tests.train.helpers import ToyConfig, ToyJob
from tests.train.test_tokenize import write_squares, write_tokenizer

ROOT = Path(__file__).resolve().parents[2]

# Trains the toy job (12 steps, a checkpoint every 4) and stops dead halfway through writing the step-8
# checkpoint's train_state.pt, after telling the test (by creating MARKER) that it is there.
_KILLED_RUN = """
import io, sys, time
from pathlib import Path
import torch
from ivideogpt.train import checkpoint
from ivideogpt.train.distributed import init_runtime
from ivideogpt.train.loop import run_training, seed_everything
from tests.train.helpers import ToyConfig, ToyJob

run, marker = Path(sys.argv[1]), Path(sys.argv[2])
save_torch = checkpoint.save_torch

def stalling_save(obj, path):
    if obj["step"] == 8:
        data = io.BytesIO()
        torch.save(obj, data)
        with open(path, "wb") as f:
            f.write(data.getvalue()[: len(data.getvalue()) // 2])
            f.flush()
        marker.touch()
        time.sleep(600)
    save_torch(obj, path)

checkpoint.save_torch = stalling_save
cfg = ToyConfig()
seed_everything(cfg.train.seed)
job = ToyJob(cfg, init_runtime("cpu"))
run_training(job, job.runtime, cfg.train, run, False)
"""


def _run(cfg: ToyConfig, out: Path, resume: bool = False, interrupt_at: int | None = None) -> ToyJob:
    seed_everything(cfg.train.seed)
    job = ToyJob(cfg, init_runtime("cpu"), interrupt_at)
    run_training(job, job.runtime, cfg.train, out, resume)
    return job


def _kill_when_marked(script: str, args: list[str], marker: Path, where: str) -> None:
    """Run `script` with `args` in a subprocess; SIGKILL it once it creates `marker` (stalled at `where`)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-c", script, *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, f"it never reached {where}"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one_and_resumes_exactly(tmp_path: Path) -> None:
    run, marker = tmp_path / "killed", tmp_path / "writing"
    _kill_when_marked(_KILLED_RUN, [str(run), str(marker)], marker, "its step-8 checkpoint")
    assert load_checkpoint(run).step == 4  # the half-written step 8 is not what last.txt names

    cfg = ToyConfig()
    resumed = _run(cfg, run, resume=True)
    full = _run(cfg, tmp_path / "full")
    assert resumed.losses == full.losses[4:]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the torn save is gone
    assert not [p.name for p in (run / "ckpt").iterdir() if p.name.startswith(".tmp")]


def test_a_torn_last_log_line_is_dropped_with_a_warning(tmp_path: Path) -> None:
    cfg = ToyConfig()
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, tmp_path, interrupt_at=6)  # checkpoint at step 7
    log = tmp_path / "log.jsonl"
    lines = log.read_text().splitlines()
    with log.open("a") as f:
        f.write('{"step": 7, "toy/train/lo')  # the process died in the middle of this line
    with pytest.warns(UserWarning, match=rf"log.jsonl: line {len(lines) + 1} is cut short"):
        _run(cfg, tmp_path, resume=True)
    steps = [r["step"] for r in read_log(log) if "toy/train/loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == cfg.train.steps


def test_a_broken_middle_log_line_is_named(tmp_path: Path) -> None:
    cfg = ToyConfig()
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, tmp_path, interrupt_at=6)
    log = tmp_path / "log.jsonl"
    lines = log.read_text().splitlines()
    lines[1] = lines[1][:20]
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{log}: line 2 is not valid JSON"):
        _run(cfg, tmp_path, resume=True)
    assert log.read_text().splitlines() == lines  # nothing dropped from a log it could not read
    assert json.loads(lines[0])["step"] == 2


# Tokenizes in batches of 4 clips and stops dead in the middle of the third batch's chunk file (its codes
# are already appended to the .bin files), after telling the test (by creating MARKER) that it is there.
_KILLED_TOKENIZE = """
import sys, time
from pathlib import Path
import numpy as np
from ivideogpt.cli import main

marker, savez, calls = Path(sys.argv[1]), np.savez, []

def stalling_savez(f, **arrays):
    calls.append(1)
    if len(calls) == 3:
        f.write(b"PK half a chunk")
        f.flush()
        marker.touch()
        time.sleep(600)
    savez(f, **arrays)

np.savez = stalling_savez
main(sys.argv[2:])
"""


def test_sigkill_in_the_middle_of_a_tokenize_batch_resumes_to_the_same_shards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, tokenizer = write_squares(tmp_path / "data"), write_tokenizer(tmp_path / "tokenizer")
    args = ["tokenize", "--tokenizer", str(tokenizer), "--data", str(data), "--batch-size", "4",
            "--device", "cpu"]
    cut, marker = tmp_path / "cut", tmp_path / "writing"
    _kill_when_marked(_KILLED_TOKENIZE, [str(marker), *args, "--out", str(cut)], marker, "its third batch")
    assert not (cut / "train").exists()

    code, err = cli([*args, "--out", str(cut)], capsys)
    assert code == 2 and "continue it with --resume" in err
    main([*args, "--out", str(cut), "--resume"])
    assert "resuming train after 8 of" in capsys.readouterr().out  # two whole batches were kept
    assert cli([*args, "--out", str(tmp_path / "whole")], capsys)[0] == 0
    for split in ("train", "val"):
        got, want = TokenShards(cut / split), TokenShards(tmp_path / "whole" / split)
        assert len(got) == len(want) > 8
        assert np.array_equal(got.context, want.context) and np.array_equal(got.future, want.future)
        for name in ("actions", "rewards", "index"):
            assert np.array_equal(got.arrays[name], want.arrays[name]), name
    assert not [p.name for p in cut.iterdir() if p.name.startswith(".")]  # no partial shard left behind
