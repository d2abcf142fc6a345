"""WorldModel: folder round trip, rollout shapes and seeding, cached = uncached, sliding, bad inputs.

Untrained tiny models: these tests check mechanics (shapes, determinism, equality of paths, errors), not
the quality of imagined frames.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ivideogpt.tokenizer import tokenizer_preset
from ivideogpt.transformer import transformer_preset
from ivideogpt.world_model import (
    SPEC_FILE,
    TOKENIZER_FILE,
    TRANSFORMER_FILE,
    WorldModel,
    WorldModelSpec,
    layout_fields,
)
from tests.transformer.helpers import randomize_zero_init

SIZE = 64  # the tiny tokenizer preset's resolution


def tiny_world_model(
    action_dim: int = 3, heads: bool = True, context_frames: int = 1, future_frames: int = 3,
    still_threshold: float = 0.0,
) -> WorldModel:
    """An untrained tiny world model whose action projection and heads are random (so they show)."""
    tok = tokenizer_preset("tiny")
    if still_threshold:  # still patches get one code (the blend mask copies the context there)
        tok = dataclasses.replace(tok, future_blend=True, still_threshold=still_threshold)
    tf = transformer_preset(
        "tiny", action_dim=action_dim, reward_head=heads, done_head=heads, max_context_frames=context_frames,
        max_future_frames=future_frames, **layout_fields(tok),
    )
    spec = WorldModelSpec(tok, tf, context_frames, future_frames, SIZE, action_dim, fps=10.0)
    torch.manual_seed(0)  # one model every run: a few inits' odds are too flat for the tests that read them
    wm = WorldModel.from_spec(spec)
    randomize_zero_init(wm.transformer)
    wm.tokenizer.eval()
    return wm


def frames(batch: int, count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, count, SIZE, SIZE, 3), dtype=np.uint8)


def actions(batch: int, count: int, dim: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (batch, count, dim)).astype(np.float32)


@pytest.fixture(scope="module")
def wm() -> WorldModel:
    return tiny_world_model()


@pytest.fixture(scope="module")
def saved(wm: WorldModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wm.save(tmp_path_factory.mktemp("run") / "world_model")


# ------------------------------------------------------------------------------------ rollouts


def test_rollout_shapes_and_dtypes(wm: WorldModel) -> None:
    out = wm.rollout(frames(2, 1), actions(2, 4), seed=0)
    assert out.frames.shape == (2, 4, SIZE, SIZE, 3) and out.frames.dtype == np.uint8
    assert out.rewards.shape == (2, 4) and out.rewards.dtype == np.float32
    assert out.dones.shape == (2, 4) and out.dones.dtype == np.float32
    assert ((out.dones >= 0) & (out.dones <= 1)).all()


def test_step_matches_rollout_frames_rewards_and_dones(wm: WorldModel) -> None:
    ctx, acts = frames(2, 1), actions(2, 4)
    out = wm.rollout(ctx, acts, seed=5)
    state = wm.reset(ctx, seed=5)
    steps = [wm.step(state, acts[:, t]) for t in range(4)]
    assert all(f.shape == (2, SIZE, SIZE, 3) and f.dtype == np.uint8 for f, *_ in steps)
    assert all(r.dtype == np.float32 and d.dtype == bool and d.shape == (2,) for _, r, d, _ in steps)
    np.testing.assert_array_equal(np.stack([s[0] for s in steps], 1), out.frames)
    np.testing.assert_allclose(np.stack([s[1] for s in steps], 1), out.rewards, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.stack([s[2] for s in steps], 1), out.dones > 0.5)
    assert state.num_steps == 4 and np.abs(out.rewards).max() > 0  # heads are random, so rewards show


@pytest.mark.parametrize("precision", ["bfloat16-cache", "bfloat16"])
def test_precision_settings_roll_out_close_to_float32(precision: str) -> None:
    model = tiny_world_model()
    ctx, acts = frames(2, 1), actions(2, 3)
    reference = model.rollout(ctx, acts, seed=0, temperature=0)
    model.precision = precision
    out = model.rollout(ctx, acts, seed=0, temperature=0)
    state = model.reset(ctx, seed=0, temperature=0)
    assert state.rollout.cache._keys[0].dtype == torch.bfloat16  # the setting reached the decode
    stepped = np.stack([model.step(state, acts[:, t])[0] for t in range(3)], 1)
    np.testing.assert_array_equal(stepped, out.frames)  # step and rollout share the setting
    assert out.frames.dtype == np.uint8 and out.frames.shape == reference.frames.shape
    error = np.abs(out.frames.astype(float) - reference.frames.astype(float)).mean()
    assert error < 8  # within a few grey levels of float32 (different codes would differ by tens)
    model.precision = "float16"
    with pytest.raises(ValueError, match="precision must be one of"):
        model.rollout(ctx, acts, seed=0)


def test_same_seed_same_frames_different_seed_different(wm: WorldModel) -> None:
    ctx, acts = frames(2, 1), actions(2, 3)
    a, b = wm.rollout(ctx, acts, seed=3), wm.rollout(ctx, acts, seed=3)
    c = wm.rollout(ctx, acts, seed=4)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)


def test_actions_reach_the_model(wm: WorldModel) -> None:
    ctx = frames(1, 1)
    a = wm.rollout(ctx, actions(1, 2, seed=1), seed=0)
    b = wm.rollout(ctx, actions(1, 2, seed=2), seed=0)
    assert not np.allclose(a.rewards, b.rewards)


@pytest.mark.parametrize("horizon,guidance", [(3, None), (7, None), (7, 2.0)])  # 7 > 3 trained frames: slides
def test_cached_rollout_equals_uncached(wm: WorldModel, horizon: int, guidance: float | None) -> None:
    ctx, acts = frames(2, 1), actions(2, horizon)
    cached = wm.rollout(ctx, acts, seed=11, action_guidance=guidance)
    uncached = wm.rollout(ctx, acts, seed=11, cached=False, action_guidance=guidance)
    np.testing.assert_array_equal(cached.frames, uncached.frames)
    np.testing.assert_allclose(cached.rewards, uncached.rewards, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cached.dones, uncached.dones, rtol=1e-4, atol=1e-5)


def test_rollout_slides_past_the_trained_length(wm: WorldModel) -> None:
    ctx, acts = frames(1, 1), actions(1, 10)
    state = wm.reset(ctx, seed=0)
    for t in range(10):
        wm.step(state, acts[:, t])
        assert state.rollout.frames.shape[1] <= wm.window_frames  # never more than the trained 3 frames
    assert state.num_steps == 10 and wm.rollout(ctx, acts, seed=0).frames.shape[1] == 10


def test_extra_context_frames_use_the_last_ones(wm: WorldModel) -> None:
    ctx, acts = frames(1, 3), actions(1, 2)
    np.testing.assert_array_equal(
        wm.rollout(ctx, acts, seed=1).frames, wm.rollout(ctx[:, -1:], acts, seed=1).frames
    )


def test_torch_inputs_and_greedy_sampling_are_deterministic(wm: WorldModel) -> None:
    ctx, acts = torch.from_numpy(frames(1, 1)), torch.from_numpy(actions(1, 2))
    a = wm.rollout(ctx, acts, seed=0, temperature=0.0)
    b = wm.rollout(ctx, acts, seed=1, temperature=0.0)
    np.testing.assert_array_equal(a.frames, b.frames)  # greedy: the seed does not matter


def test_action_guidance_is_a_sampling_setting_that_step_and_rollout_share(wm: WorldModel) -> None:
    ctx, acts = frames(2, 1), actions(2, 4)
    guided = wm.rollout(ctx, acts, seed=2, action_guidance=3.0)
    assert not np.array_equal(guided.frames, wm.rollout(ctx, acts, seed=2).frames)
    state = wm.reset(ctx, seed=2, action_guidance=3.0)
    stepped = np.stack([wm.step(state, acts[:, t])[0] for t in range(4)], 1)
    np.testing.assert_array_equal(stepped, guided.frames)
    with pytest.raises(ValueError, match="action_guidance must be >= 0"):
        wm.rollout(ctx, acts, action_guidance=-0.5)


def test_still_split_is_a_sampling_setting_only_for_tokenizers_with_a_still_code(wm: WorldModel) -> None:
    ctx, acts = frames(2, 1), actions(2, 3)
    with pytest.raises(ValueError, match="still_split needs a tokenizer with a still code"):
        wm.rollout(ctx, acts, temperature=0.0, still_split=True)
    still = tiny_world_model(still_threshold=5.0)
    split = still.rollout(ctx, acts, temperature=0.0, still_split=True)
    state = still.reset(ctx, temperature=0.0, still_split=True)
    stepped = np.stack([still.step(state, acts[:, t])[0] for t in range(3)], 1)
    np.testing.assert_array_equal(stepped, split.frames)  # step and rollout decode alike


def test_select_fans_one_context_out(wm: WorldModel) -> None:
    state = wm.reset(frames(1, 1), seed=0).select([0, 0, 0])
    out, _, _, _ = wm.step(state, actions(3, 1)[:, 0])
    assert out.shape == (3, SIZE, SIZE, 3) and state.batch_size == 3
    assert len({row.tobytes() for row in out}) > 1  # the copies sample different futures


def test_shared_noise_makes_rows_differ_only_by_their_actions(wm: WorldModel) -> None:
    ctx, acts = frames(1, 1), actions(2, 4)
    same = np.repeat(acts[:1], 4, 0)  # four rows, one action sequence
    independent = wm.imagine(wm.reset(ctx, seed=0).select([0] * 4), same).frames
    assert len({row.tobytes() for row in independent}) > 1  # their own draws: different futures
    common = wm.imagine(wm.reset(ctx, seed=0).select([0] * 4).share_noise(), same).frames
    assert len({row.tobytes() for row in common}) == 1  # one draw for all: one future
    # period 2 (two particles per sequence, adjacent): particle k of every sequence shares a draw
    pairs = np.repeat(acts[[0, 0]], 2, 0)  # rows s0p0, s0p1, s1p0, s1p1 of one sequence twice
    out = wm.imagine(wm.reset(ctx, seed=0).select([0] * 4).share_noise(2), pairs).frames
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[1], out[3])
    assert not np.array_equal(out[0], out[1])
    # other actions, the same draw: other futures where the actions move the odds past the noise (this
    # untrained model's are nearly flat, so at T = 1 the shared draw decides alone; at T = 0.1 not)
    mixed = wm.imagine(wm.reset(ctx, seed=0, temperature=0.1).select([0] * 2).share_noise(), acts).frames
    assert not np.array_equal(mixed[0], mixed[1])
    with pytest.raises(ValueError, match="period must be 0 or divide the batch of 4 rows, got 3"):
        wm.reset(ctx).select([0] * 4).share_noise(3)


def test_imagine_fans_out_one_context_and_matches_rollout(wm: WorldModel) -> None:
    ctx, acts = frames(1, 1), actions(3, 5)
    out = wm.imagine(wm.reset(ctx, seed=0).select([0, 0, 0]), acts)  # 5 > 3 trained frames: slides
    assert out.frames.shape == (3, 5, SIZE, SIZE, 3) and out.rewards.shape == (3, 5)
    greedy = wm.imagine(wm.reset(ctx, temperature=0.0).select([0, 0, 0]), acts)
    ref = wm.rollout(np.repeat(ctx, 3, 0), acts, temperature=0.0)  # one context per row: the same futures
    np.testing.assert_array_equal(greedy.frames, ref.frames)
    np.testing.assert_allclose(greedy.rewards, ref.rewards, rtol=1e-4, atol=1e-5)
    lean = wm.imagine(wm.reset(ctx, temperature=0.0).select([0, 0, 0]), acts, decode=False)
    assert lean.frames is None
    np.testing.assert_allclose(lean.rewards, ref.rewards, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"expected shape \(3, 5, 3\)"):
        wm.imagine(wm.reset(ctx).select([0, 0, 0]), actions(3, 5, dim=2))


def test_action_free_model() -> None:
    wm = tiny_world_model(action_dim=0, heads=False)
    out = wm.rollout(frames(2, 1), None, horizon=4, seed=0)
    assert out.frames.shape == (2, 4, SIZE, SIZE, 3) and out.rewards is None and out.dones is None
    state = wm.reset(frames(2, 1), seed=0)
    f, r, d, _ = wm.step(state, None)
    assert f.shape == (2, SIZE, SIZE, 3) and not r.any() and not d.any()
    with pytest.raises(ValueError, match="action-free"):
        wm.step(state, np.zeros((2, 1), np.float32))
    with pytest.raises(ValueError, match="horizon"):
        wm.rollout(frames(2, 1), None)


# -------------------------------------------------------------------------------- save / load


def test_save_load_round_trip(wm: WorldModel, saved: Path) -> None:
    for loaded in (WorldModel.load(saved), WorldModel.load(saved.parent)):  # the folder, or its run folder
        assert loaded.spec == wm.spec
        for mine, theirs in ((wm.tokenizer, loaded.tokenizer), (wm.transformer, loaded.transformer)):
            ref = mine.state_dict()
            assert all(torch.equal(ref[k], v) for k, v in theirs.state_dict().items())
    ctx, acts = frames(1, 1), actions(1, 3)
    expected = wm.rollout(ctx, acts, seed=2).frames
    np.testing.assert_array_equal(loaded.rollout(ctx, acts, seed=2).frames, expected)
    raw = json.loads((saved / SPEC_FILE).read_text())
    assert raw["format"] == "ivideogpt-world-model" and raw["version"] == 1 and raw["context_frames"] == 1


def test_save_replaces_a_world_model_but_not_other_folders(wm: WorldModel, tmp_path: Path) -> None:
    target = wm.save(tmp_path / "wm")
    wm.save(target)  # overwriting a world model is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wm"]  # no temp folders left behind
    other = tmp_path / "data"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a world-model folder"):
        wm.save(other)


def test_save_over_a_world_model_keeps_the_other_files_in_its_folder(wm: WorldModel, tmp_path: Path) -> None:
    target = wm.save(tmp_path / "wm")
    (target / "MODEL_CARD.md").write_text("# my card")
    (target / "plots").mkdir()
    (target / "plots" / "psnr.png").write_bytes(b"png")
    (target / TRANSFORMER_FILE).write_bytes(b"corrupt")
    wm.save(target)
    WorldModel.load(target)  # the world model was replaced (its corrupt weights with good ones)
    assert (target / "MODEL_CARD.md").read_text() == "# my card"  # the user's files were not deleted
    assert (target / "plots" / "psnr.png").read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wm"]


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (frames(1, 1).astype(np.float32), TypeError, "uint8"),
        (frames(1, 1)[0], ValueError, r"add a batch axis"),
        (np.zeros((1, 1, 32, 32, 3), np.uint8), ValueError, r"\(B, T, 64, 64, 3\)"),
        (np.zeros((1, 1, SIZE, SIZE, 4), np.uint8), ValueError, r"\(B, T, 64, 64, 3\)"),
    ],
)
def test_bad_context_frames(wm: WorldModel, bad: np.ndarray, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        wm.reset(bad)


def test_too_few_context_frames() -> None:
    wm = tiny_world_model(context_frames=2)
    with pytest.raises(ValueError, match="at least 2 context frame"):
        wm.rollout(frames(1, 1), actions(1, 2))


def test_bad_actions(wm: WorldModel) -> None:
    state = wm.reset(frames(2, 1), seed=0)
    with pytest.raises(ValueError, match=r"expected shape \(2, 3\).*got \(2, 4\)"):
        wm.step(state, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"expected shape \(2, 3\).*got \(3, 3\)"):
        wm.step(state, np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        wm.step(state, np.full((2, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"expected shape \(2, 5, 3\)"):
        wm.rollout(frames(2, 1), actions(2, 4), horizon=5)
    with pytest.raises(ValueError, match=r"expected shape \(2, 4, 3\).*got \(2, 4, 2\)"):
        wm.rollout(frames(2, 1), actions(2, 4, dim=2))
    with pytest.raises(ValueError, match="temperature"):
        wm.rollout(frames(2, 1), actions(2, 4), temperature=-1.0)


def test_actions_without_a_batch_axis_or_not_numbers(wm: WorldModel) -> None:
    with pytest.raises(ValueError, match=r"got \(4, 3\): the batch axis is missing \(pass actions\[None\]"):
        wm.rollout(frames(1, 1), actions(1, 4)[0])  # (T, A): not read as a batch of 4 one-dim actions
    with pytest.raises(ValueError, match=r"got \(4, 3\): the batch axis is missing"):
        wm.rollout(frames(1, 1), actions(1, 4)[0], horizon=4)
    with pytest.raises(ValueError, match=r"got \(3,\): the batch axis is missing"):
        wm.step(wm.reset(frames(1, 1), seed=0), np.zeros(3, np.float32))
    for bad in ("left", ["up", "down"], np.array([["a", "b", "c"]])):
        message = r"^actions: expected real-valued actions .*got (str|list|ndarray)"
        with pytest.raises(TypeError, match=message):
            wm.rollout(frames(1, 1), bad, horizon=1)
    with pytest.raises(TypeError, match=r"^context_frames: expected uint8 frames .*got str"):
        wm.rollout("frames.png", actions(1, 4))


def test_spec_must_fit_the_models() -> None:
    tok = tokenizer_preset("tiny")
    tf = transformer_preset("tiny", **layout_fields(tok))
    with pytest.raises(ValueError, match="action_dim is 2 but the transformer.action_dim is 0"):
        WorldModelSpec(tok, tf, 1, 3, SIZE, action_dim=2)
    with pytest.raises(ValueError, match="context_vocab_size is 8192 but the tokenizer context codebook"):
        WorldModelSpec(tok, transformer_preset("tiny"), 1, 3, SIZE, action_dim=0)
    spec = WorldModelSpec(tok, tf, 1, 3, SIZE, action_dim=0)
    other = WorldModel.from_spec(dataclasses.replace(spec, transformer=dataclasses.replace(tf, n_layer=3)))
    with pytest.raises(ValueError, match=r"spec.transformer differs .*\['n_layer'\]"):
        WorldModel(other.tokenizer, other.transformer, spec)


def _copy(saved: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "wm"
    folder.mkdir()
    for name in (SPEC_FILE, TOKENIZER_FILE, TRANSFORMER_FILE):
        (folder / name).write_bytes((saved / name).read_bytes())
    return folder


def test_missing_and_corrupt_files(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        WorldModel.load(tmp_path / "nothing")
    folder = _copy(saved, tmp_path)
    (folder / TRANSFORMER_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="transformer.safetensors is missing"):
        WorldModel.load(folder)
    (folder / TRANSFORMER_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="transformer.safetensors: cannot be read"):
        WorldModel.load(folder)
    (folder / TRANSFORMER_FILE).write_bytes((saved / TOKENIZER_FILE).read_bytes())  # the wrong weights
    with pytest.raises(ValueError, match="transformer.safetensors"):
        WorldModel.load(folder)
    (folder / SPEC_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        WorldModel.load(folder)


def test_weights_holding_nan_or_inf_are_refused(saved: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = _copy(saved, tmp_path)
    state = load_file(folder / TRANSFORMER_FILE)
    state["heads.reward.weight"][0, 3] = float("nan")
    save_file(state, folder / TRANSFORMER_FILE)
    message = r"transformer.safetensors: tensor 'heads.reward.weight' holds 1 NaN"
    with pytest.raises(ValueError, match=message):
        WorldModel.load(folder)


def test_transformer_weights_of_another_model_name_the_differing_fields(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    tok = tokenizer_preset("tiny")
    other = transformer_preset("tiny", n_layer=3, n_embd=48, n_head=2, action_dim=3, reward_head=True,
                               **(layout_fields(tok) | {"future_vocab_size": 128}))
    from ivideogpt.atomic import save_safetensors
    from ivideogpt.transformer import Transformer

    save_safetensors(Transformer(other).state_dict(), folder / TRANSFORMER_FILE)
    with pytest.raises(ValueError, match="does not fit the transformer config in world_model.json") as caught:
        WorldModel.load(folder)
    message = str(caught.value)
    assert "n_layer: 3 in the weights, 2 in the config" in message
    assert "n_embd: 48 in the weights, 32 in the config" in message
    assert "vocabulary rows" in message and "done_head: False in the weights, True in the config" in message
    assert "another tokenizer config" not in message


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"format": "ivideogpt-tokenizer"}, "not an 'ivideogpt-world-model' file"),
        ({"version": 2}, "version 2 is not one this library reads"),
        ({"context_frames": "one"}, "context_frames"),
        ({"transformer": {"n_layer": 2, "bogus": 1}}, "bogus"),
    ],
)
def test_spec_of_another_format_or_version(saved: Path, tmp_path: Path, edit: dict, match: str) -> None:
    folder = _copy(saved, tmp_path)
    raw = json.loads((folder / SPEC_FILE).read_text())
    (folder / SPEC_FILE).write_text(json.dumps({**raw, **edit}))
    with pytest.raises(ValueError, match=match):
        WorldModel.load(folder)


def test_a_tokenizer_export_is_not_a_world_model(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="tokenizer export"):
        WorldModel.load(tmp_path)
