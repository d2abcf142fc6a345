from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from ivideogpt.data.episode import Episode, EpisodeFormatError, read_episode, validate_episode, write_episode
from ivideogpt.data.frames import to_model, to_uint8

from .helpers import random_episode


def test_frame_conversion_round_trip_any_leading_dims():
    frames = torch.randint(0, 256, (2, 3, 5, 4, 3), dtype=torch.uint8)  # (B, T, H, W, 3)
    x = to_model(frames)
    assert x.shape == (2, 3, 3, 5, 4) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    pixel = torch.tensor([[[0, 255, 0]]], dtype=torch.uint8)  # (1, 1, 3)
    assert to_model(pixel).flatten().tolist() == [-1.0, 1.0, -1.0]
    assert torch.equal(to_uint8(x), frames)
    assert torch.equal(to_uint8(to_model(frames[0, 0])), frames[0, 0])  # a single (H, W, 3) frame


def test_to_uint8_clamps_and_rounds():
    x = torch.tensor([-3.0, 3.0, 0.0, 1.0 / 127.5 * 0.6 - 1.0]).reshape(1, 1, 4).expand(3, 1, 4)
    assert to_uint8(x)[0, :, 0].tolist() == [0, 255, 128, 1]  # 0.0 -> 127.5 rounds to even (128)


def test_frame_conversion_rejects_wrong_dtype_and_layout():
    with pytest.raises(TypeError, match="uint8"):
        to_model(torch.zeros(1, 4, 4, 3))
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W, 3\)"):
        to_model(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        to_uint8(torch.zeros(1, 4, 4, 3))


@pytest.mark.parametrize("action_dim", [3, None])
def test_round_trip(tmp_path, action_dim):
    ep = random_episode(np.random.default_rng(0), 6, action_dim=action_dim)
    if action_dim is None:
        ep = dataclasses.replace(ep, rewards=None, success=None, done=None)
    write_episode(tmp_path / "ep.npz", ep)
    back = read_episode(tmp_path / "ep.npz")
    assert len(back) == 6 and back.action_dim == action_dim
    for name, value in ep.arrays().items():
        np.testing.assert_array_equal(getattr(back, name), value)
        assert getattr(back, name).dtype == value.dtype
    assert set(back.arrays()) == set(ep.arrays())


def test_writer_leaves_no_temp_files(tmp_path, monkeypatch):
    ep = random_episode(np.random.default_rng(0), 4)
    write_episode(tmp_path / "a.npz", ep)
    write_episode(tmp_path / "a.npz", ep)  # replacing works too
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        write_episode(tmp_path / "b.npz", ep)
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]  # no b.npz, no temp file


def _bad(field: str, value: np.ndarray | None, length: int = 5) -> Episode:
    return dataclasses.replace(random_episode(np.random.default_rng(0), length), **{field: value})


@pytest.mark.parametrize(
    ("episode", "message"),
    [
        (_bad("frames", np.zeros((5, 8, 8, 3), np.float32)), "'frames' must have dtype uint8, got float32"),
        (_bad("actions", np.zeros((5, 2), np.float64)), "'actions' must have dtype float32, got float64"),
        (_bad("success", np.zeros(5, np.float32)), "'success' must have dtype bool"),
        (_bad("frames", np.zeros((8, 8, 3), np.uint8)), "'frames' must have rank 4"),
        (_bad("actions", np.zeros(5, np.float32)), "'actions' must have rank 2"),
        (_bad("rewards", np.zeros((5, 1), np.float32)), "'rewards' must have rank 1"),
        (_bad("frames", np.zeros((5, 8, 8, 4), np.uint8)), r"'frames' must be \(T, H, W, 3\)"),
        (_bad("actions", np.zeros((4, 2), np.float32)), "'actions' has 4 rows but 'frames' has T=5"),
        (_bad("done", np.zeros(6, bool)), "'done' has 6 rows but 'frames' has T=5"),
        (_bad("actions", np.full((5, 2), np.nan, np.float32)), "'actions' has a NaN/inf value at index"),
        (_bad("rewards", np.array([0, 1, np.inf, 0, 0], np.float32)), r"'rewards' has a NaN/inf .* \[2\]"),
        (_bad("actions", np.zeros((5, 0), np.float32)), "action dim 0"),
        (Episode(np.zeros((0, 8, 8, 3), np.uint8)), "T >= 1"),
        (_bad("frames", None), "'frames' is missing"),
        (_bad("rewards", [0.0] * 5), "'rewards' must be a numpy array"),
    ],
)
def test_validation_errors_name_the_field(tmp_path, episode, message):
    with pytest.raises(EpisodeFormatError, match=message) as info:
        validate_episode(episode, "somewhere")
    assert str(info.value).startswith("somewhere: ")
    with pytest.raises(EpisodeFormatError, match=message):
        write_episode(tmp_path / "bad.npz", episode)
    assert not (tmp_path / "bad.npz").exists()


FRAMES = np.zeros((3, 8, 8, 3), np.uint8)


def _write_raw(path, **arrays) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would otherwise append .npz to the name
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"frames": np.zeros((3, 8, 8, 3), np.float32)}, "'frames' must have dtype uint8"),
        ({"frames": np.zeros((3, 8, 8), np.uint8)}, "'frames' must have rank 4"),
        ({"frames": FRAMES, "actions": np.zeros((2, 2), np.float32)}, "'actions' has 2 rows"),
        ({"actions": np.zeros((2, 2), np.float32)}, "'frames' is missing"),
        ({"frames": FRAMES, "action": np.zeros((3, 2), np.float32)}, r"unknown field\(s\) \['action'\]"),
        ({"frames": np.array([{}, {}], dtype=object)}, "'frames' is unreadable .*allow_pickle"),
    ],
)
def test_read_errors_name_file_and_field(tmp_path, arrays, message):
    path = tmp_path / "ep.npz"
    _write_raw(path, **arrays)
    with pytest.raises(EpisodeFormatError, match=message) as info:
        read_episode(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[: len(b) // 2], "not a readable .npz"),  # truncated
        (lambda b: b[:-10], "not a readable .npz"),  # truncated at the very end (zip directory)
        (lambda b: b[:400] + bytes(200) + b[600:], "'frames' is unreadable .*CRC"),  # corrupt bytes inside
        (lambda b: b"", "not an .npz archive"),  # empty
        (lambda b: b"hello, not an archive" * 10, "not an .npz archive"),
    ],
)
def test_damaged_files_raise_with_path(tmp_path, damage, message):
    path = tmp_path / "ep.npz"
    write_episode(path, random_episode(np.random.default_rng(0), 5, size=16))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(EpisodeFormatError, match=message) as info:
        read_episode(path)
    assert str(path) in str(info.value)


def test_non_npz_files_are_rejected(tmp_path):
    np.save(tmp_path / "frames.npy", np.zeros((3, 8, 8, 3), np.uint8))
    with pytest.raises(EpisodeFormatError, match="frames.npy: not an .npz archive"):
        read_episode(tmp_path / "frames.npy")
    (tmp_path / "p.npz").write_bytes(pickle.dumps({"frames": np.zeros((3, 8, 8, 3), np.uint8)}))
    with pytest.raises(EpisodeFormatError, match="p.npz: not an .npz archive"):
        read_episode(tmp_path / "p.npz")
    with pytest.raises(EpisodeFormatError, match="missing.npz: episode file not found"):
        read_episode(tmp_path / "missing.npz")
