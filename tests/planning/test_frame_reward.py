"""The learned frame reward: `ivideogpt train-reward` learns a reward read from frames, the planner's
`--objective.kind learned` scores imagined frames with it, and bad input is named."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from ivideogpt.config import to_dict
from ivideogpt.data.episode import Episode
from ivideogpt.data.store import DatasetWriter
from ivideogpt.planning.frame_reward import FrameReward, FrameRewardConfig, load_frame_reward
from ivideogpt.planning.objectives import ObjectiveConfig, make_objective
from ivideogpt.train.checkpoint import save_model
from ivideogpt.train.frame_reward import RewardTrainConfig, random_shift, train_reward_model
from ivideogpt.train.job import TrainLoopConfig
from ivideogpt.train.monitor import read_log
from tests.train.helpers import write_moving_squares

SMALL = FrameRewardConfig(resolution=16, channels=(8, 16), hidden=16, reward_scale=10.0)


def _square(col: int, size: int = 16) -> np.ndarray:
    frame = np.zeros((size, size, 3), np.uint8)
    frame[6:10, col:col + 4] = 255
    return frame


def _write_squares_paid_by_column(root: Path, episodes: int = 12, length: int = 8) -> Path:
    """A white square at a random column of each frame; the reward of arriving in a frame is its column."""
    rng = np.random.default_rng(0)
    with DatasetWriter(root, "test", 16, 2, fps=10.0) as writer:
        for _ in range(episodes):
            cols = rng.integers(0, 13, length)
            rewards = cols.astype(np.float32)
            rewards[0] = 0.0  # nothing produced the first frame
            writer.add(Episode(frames=np.stack([_square(int(c)) for c in cols]),
                               actions=np.zeros((length, 2), np.float32), rewards=rewards))
    return root


def _cfg(data: Path, out: Path, steps: int = 150) -> RewardTrainConfig:
    loop = TrainLoopConfig(steps=steps, batch_size=32, lr=3e-3, warmup_steps=10, schedule="cosine",
                           eval_every=steps, sample_every=0, ckpt_every=steps, log_every=10, num_workers=0,
                           device="cpu")
    return RewardTrainConfig(data=[data], out=out, frame_reward=SMALL, val_fraction=0.25, shift=0, train=loop)


def test_learns_a_reward_read_from_frames_and_exports_it(tmp_path: Path) -> None:
    data = _write_squares_paid_by_column(tmp_path / "squares")
    export = train_reward_model(_cfg(data, tmp_path / "run"))
    log = read_log(tmp_path / "run" / "log.jsonl")
    losses = [r["reward/train/loss"] for r in log if "reward/train/loss" in r]
    assert losses[-1] < 0.2 * losses[0]
    val = [r for r in log if "reward/val/pearson" in r][-1]
    assert val["reward/val/pearson"] > 0.9  # held-out episodes
    model = load_frame_reward(tmp_path / "run")  # the run folder finds its export
    assert load_frame_reward(export).cfg == SMALL and not model.training
    read = model.read(np.stack([_square(c) for c in (1, 6, 11)])[None])  # (1, 3)
    assert read.shape == (1, 3) and read[0, 0] < read[0, 1] < read[0, 2]  # further right pays more


def test_the_learned_objective_sums_the_reading_of_every_imagined_frame(tmp_path: Path) -> None:
    model = FrameReward(SMALL)
    export = save_model(tmp_path / "rm", {"reward": model}, {"frame_reward": to_dict(SMALL)})
    score = make_objective(ObjectiveConfig(kind="learned", reward_model=export))
    frames = np.random.default_rng(0).integers(0, 256, (3, 2, 16, 16, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = model.eval().read(frames).sum(1)
    np.testing.assert_allclose(score(frames, None), expected, rtol=1e-6)
    assert ObjectiveConfig(kind="learned", reward_model=export).needs_frames
    assert not ObjectiveConfig(kind="learned", reward_model=export).needs_rewards


def test_bad_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_frame_reward(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no reward model at"):
        load_frame_reward(tmp_path / "empty")
    other = save_model(tmp_path / "other", {"reward": FrameReward(SMALL)}, {"tokenizer": {}})
    with pytest.raises(ValueError, match="not a reward model"):
        load_frame_reward(other)
    with pytest.raises(ValueError, match="go together"):
        ObjectiveConfig(kind="learned")
    with pytest.raises(ValueError, match="go together"):
        ObjectiveConfig(kind="reward", reward_model=other)
    with pytest.raises(ValueError, match="multiple of 2"):
        FrameRewardConfig(resolution=20, channels=(8, 8, 8))
    data = write_moving_squares(tmp_path / "unpaid")  # rewards of zeros are still rewards: drop them
    _drop_rewards(data)
    with pytest.raises(ValueError, match="carry no rewards"):
        train_reward_model(_cfg(data, tmp_path / "run"))
    with pytest.raises(ValueError, match="resolution is 64"):
        train_reward_model(dataclasses.replace(_cfg(_write_squares_paid_by_column(tmp_path / "sq"),
                                                    tmp_path / "run2"), frame_reward=FrameRewardConfig()))
    with pytest.raises(ValueError, match="no dataset folders"):
        train_reward_model(RewardTrainConfig())
    with pytest.raises(ValueError, match="shift must be >= 0"):
        RewardTrainConfig(shift=-1)


def test_random_shift_moves_content_within_the_pad() -> None:
    frames = torch.zeros(64, 3, 16, 16)
    frames[:, :, 6:10, 6:10] = 1.0
    shifted = random_shift(frames, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == frames.shape
    centres = [torch.nonzero(f[0]).float().mean(0) for f in shifted]
    offsets = {tuple((c - 7.5).round().int().tolist()) for c in centres}
    assert len(offsets) > 5 and all(max(abs(o) for o in off) <= 2 for off in offsets)
    assert torch.equal(random_shift(frames, 0, torch.Generator()), frames)


def _drop_rewards(root: Path) -> None:
    for path in sorted(root.glob("*.npz")):
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files if k != "rewards"}
        np.savez(path, **arrays)
