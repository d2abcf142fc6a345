"""The tokenize job: shards hold the tokenizer's codes of every selected clip, per split; bad inputs fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ivideogpt.artifacts import load_tokenizer, tokenizer_fingerprint
from ivideogpt.config import from_dict, load_yaml, to_dict
from ivideogpt.data.clips import ClipConfig, ClipDataset
from ivideogpt.data.episode import Episode
from ivideogpt.data.frames import to_model
from ivideogpt.data.motion import moving_codes
from ivideogpt.data.store import DatasetWriter
from ivideogpt.data.tokens import TokenShardError, TokenShards, TokenShardWriter
from ivideogpt.tokenizer import TokenizerConfig, build_tokenizer
from ivideogpt.train.checkpoint import save_model
from ivideogpt.train.tokenize import TokenizeConfig, tokenize_dataset
from ivideogpt.train.transformer_setup import shard_tokenizer

SIZE = 16  # 16x16 frames: the tiny tokenizer gives 4x4 = 16 codes per context frame and 1 per future frame


def write_squares(
    root: Path, action_dim: int | None = 2, episodes: int = 6, length: int = 10, size: int = SIZE
) -> Path:
    """A white square sliding right by its action; reward = its column (learnable from the frame)."""
    rng = np.random.default_rng(0)
    with DatasetWriter(root, "test", size, action_dim, fps=10.0) as writer:
        for e in range(episodes):
            frames = np.zeros((length, size, size, 3), np.uint8)
            row, cols = int(rng.integers(0, size - 4)), (e + 2 * np.arange(length)) % (size - 4)
            for t, col in enumerate(cols):
                frames[t, row : row + 4, col : col + 4] = 255
            actions = None
            if action_dim is not None:
                actions = np.zeros((length, action_dim), np.float32)
                actions[1:, 0] = np.diff(cols) / 2  # row t produced frame t
            rewards = None if action_dim is None else (cols / size).astype(np.float32)
            writer.add(Episode(frames=frames, actions=actions, rewards=rewards))
    return root


def write_tokenizer(path: Path, seed: int = 0, clips: dict | None = None) -> Path:
    """An (untrained) tiny tokenizer export at 16x16; `clips` is what it records as its training clips."""
    cfg = from_dict(TokenizerConfig, {**load_yaml("tokenizer_tiny")["tokenizer"], "resolution": SIZE})
    torch.manual_seed(seed)
    recorded = {"context_frames": 2, "future_frames": 4, "val_fraction": 0.34, "split_seed": 0}
    return save_model(
        path,
        {"tokenizer": build_tokenizer(cfg)},
        {"tokenizer": to_dict(cfg), "clips": recorded if clips is None else clips},
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tokenize")
    return write_squares(root / "data"), write_tokenizer(root / "tokenizer")


def test_shards_hold_the_tokenizers_codes_of_every_selected_clip(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    data, tok_path = inputs
    out = tokenize_dataset(
        TokenizeConfig(
            tokenizer=tok_path, data=[data], out=tmp_path / "tok", start_stride=2, batch_size=5, device="cpu"
        )
    )
    tokenizer = load_tokenizer(tok_path)
    clip_cfg = ClipConfig(context_frames=2, future_frames=4, val_fraction=0.34, split_seed=0)  # recorded ones
    seen_episodes = []
    for split in ("train", "val"):
        shards, clips = TokenShards(out / split), ClipDataset([data], clip_cfg, split)
        expected = [i for i in range(len(clips)) if clips.locate(i)[2] % 2 == 0]
        assert len(shards) == len(expected) > 0
        index = shards.arrays["index"]  # (N, 3) source, episode, start
        assert [tuple(r) for r in index] == [clips.locate(i) for i in expected]
        seen_episodes.append(set(index[:, 1].tolist()))
        clip = clips[expected[-1]]
        context, future = tokenizer.tokenize(to_model(clip.frames[None]), 2)
        got = shards[len(shards) - 1]
        torch.testing.assert_close(got.context_codes, context.flatten(2), rtol=0, atol=0)
        torch.testing.assert_close(got.future_codes, future.flatten(2), rtol=0, atol=0)
        torch.testing.assert_close(got.actions[0], clip.actions)
        torch.testing.assert_close(got.rewards[0], clip.rewards)
        assert bool(got.has_actions) and bool(got.has_rewards)
        torch.testing.assert_close(got.moving, moving_codes(clip.frames[None], 2, tuple(future.shape[-2:])))
        m = shards.meta
        assert (m.context_frames, m.future_frames, m.context_tokens, m.future_tokens, m.action_dim) == (
            2,
            4,
            16,
            1,
            2,
        )
        assert m.tokenizer == to_dict(tokenizer.cfg) and m.extra["split"] == split
        assert m.extra["tokenizer_path"] == str(tok_path.resolve())
        assert m.extra["tokenizer_fingerprint"] == tokenizer_fingerprint(tokenizer)
        assert m.extra["fps"] == 10.0
    assert not seen_episodes[0] & seen_episodes[1]  # split by episode


def test_shards_find_their_tokenizer_when_both_move_together(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    data, tok_path = inputs
    shutil.copytree(tok_path, tmp_path / "a" / "tokenizer")
    tokenize_dataset(TokenizeConfig(tokenizer=tmp_path / "a" / "tokenizer", data=[data],
                                    out=tmp_path / "a" / "tokens", device="cpu"))
    (tmp_path / "a").rename(tmp_path / "b")  # a clone of the repository elsewhere
    moved = tmp_path / "b" / "tokens"
    tokenizer = shard_tokenizer(TokenShards(moved / "train").meta, moved)
    assert tokenizer_fingerprint(tokenizer) == tokenizer_fingerprint(load_tokenizer(tok_path))
    shutil.rmtree(tmp_path / "b" / "tokenizer")  # moved without it: the recorded path is named
    with pytest.raises(FileNotFoundError, match="cannot be loaded any more"):
        shard_tokenizer(TokenShards(moved / "train").meta, moved)


def test_explicit_clip_shape_and_action_free_data(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    _, tok_path = inputs
    video = write_squares(tmp_path / "video", action_dim=None)
    out = tokenize_dataset(
        TokenizeConfig(
            tokenizer=tok_path,
            data=[video],
            out=tmp_path / "tok",
            context_frames=1,
            future_frames=3,
            val_fraction=0.5,
            splits=("train",),
            device="cpu",
        )
    )
    shards = TokenShards(out / "train")
    assert not (out / "val").exists()
    assert (shards.meta.context_frames, shards.meta.future_frames, shards.meta.action_dim) == (1, 3, 0)
    assert len(shards) == 3 * (10 - 4 + 1)  # half of 6 episodes, every start
    assert not shards.arrays["flags"].any()  # no actions, no rewards


def test_bad_inputs_fail_clearly(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    data, tok_path = inputs

    def run(**kw: object) -> Path:
        return tokenize_dataset(
            TokenizeConfig(
                **{"tokenizer": tok_path, "data": [data], "out": tmp_path / "o", "device": "cpu", **kw}
            )
        )

    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(tokenizer=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="8x8 but the tokenizer expects 16x16"):
        run(data=[write_squares(tmp_path / "small", size=8)])
    with pytest.raises(ValueError, match="different action sizes"):
        run(data=[data, write_squares(tmp_path / "wide", action_dim=3)])
    with pytest.raises(ValueError, match="context_frames: not given and not recorded"):
        run(tokenizer=write_tokenizer(tmp_path / "bare", clips={}))
    with pytest.raises(ValueError, match="no dataset folders"):
        run(data=[])
    with pytest.raises(ValueError, match="start_stride must be >= 1"):
        TokenizeConfig(start_stride=0)
    (tmp_path / "o" / "val").mkdir(parents=True)
    (tmp_path / "o" / "val" / "meta.json").write_text("{}")
    with pytest.raises(FileExistsError, match="--overwrite"):
        run()
    assert not (tmp_path / "o" / "train").exists()  # refused before any work
    run(overwrite=True, splits=("val",))
    assert len(TokenShards(tmp_path / "o" / "val")) > 0
    with pytest.raises(ValueError, match="'val' split .* holds no episode"):  # one episode: all of it train
        run(data=[write_squares(tmp_path / "one", episodes=1)], out=tmp_path / "o1")
    assert not (tmp_path / "o1").exists()  # the train split was not written before val was found empty


def test_an_interrupted_tokenize_resumes_to_the_same_shards(
    inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, tok_path = inputs

    def run(out: Path, **kw: object) -> Path:
        cfg = TokenizeConfig(tokenizer=tok_path, data=[data], out=out, batch_size=4, device="cpu", **kw)
        return tokenize_dataset(cfg)

    whole = run(tmp_path / "whole")
    add, calls = TokenShardWriter.add, []

    def dies_on_the_third_batch(self: TokenShardWriter, *args: object) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        add(self, *args)

    with monkeypatch.context() as m:
        m.setattr(TokenShardWriter, "add", dies_on_the_third_batch)
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "cut")
    assert not (tmp_path / "cut" / "train").exists()
    with pytest.raises(FileExistsError, match="continue it with --resume"):
        run(tmp_path / "cut")
    with pytest.raises(ValueError, match="pick one"):
        run(tmp_path / "cut", resume=True, overwrite=True)
    run(tmp_path / "cut", resume=True)
    for split in ("train", "val"):
        got, want = TokenShards(tmp_path / "cut" / split), TokenShards(whole / split)
        assert len(got) == len(want) > 8
        assert np.array_equal(got.context, want.context) and np.array_equal(got.future, want.future)
        assert np.array_equal(got.arrays["index"], want.arrays["index"])
        assert np.array_equal(got.moving, want.moving)
    written = (tmp_path / "cut" / "train" / "meta.json").stat().st_mtime_ns
    run(tmp_path / "cut", resume=True)  # nothing left to do: finished splits are kept as they are
    assert (tmp_path / "cut" / "train" / "meta.json").stat().st_mtime_ns == written
    with pytest.raises(TokenShardError, match="other settings .differing: extra.start_stride."):
        run(tmp_path / "cut", resume=True, start_stride=2)


def test_bf16_tokenize_is_recorded_and_not_mixed_with_float32(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    data, tok_path = inputs

    def run(out: Path, **kw: object) -> Path:
        return tokenize_dataset(TokenizeConfig(tokenizer=tok_path, data=[data], out=out, device="cpu", **kw))

    bf16 = TokenShards(run(tmp_path / "bf16", amp="bf16") / "train")
    fp32 = TokenShards(run(tmp_path / "fp32") / "train")
    assert bf16.meta.extra["amp"] == "bf16" and "amp" not in fp32.meta.extra
    assert bf16.context.shape == fp32.context.shape and bf16.future.shape == fp32.future.shape
    agree = (bf16.context == fp32.context).mean()
    assert agree > 0.9, agree  # the nearest-code search runs in float32 under autocast too
    with pytest.raises(TokenShardError, match="differing: extra.amp"):
        run(tmp_path / "bf16", resume=True)
