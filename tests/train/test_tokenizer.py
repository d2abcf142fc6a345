"""The train-tokenizer job on a tiny dataset: learning, validation, samples, export, resume, GAN, errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from ivideogpt.artifacts import load_tokenizer
from ivideogpt.config import PRESET_DIR, load_yaml, merge
from ivideogpt.tokenizer import build_tokenizer, tokenizer_preset
from ivideogpt.train.monitor import read_log
from ivideogpt.train.tokenizer import TokenizerTrainConfig, _load_parent, train_tokenizer

from .helpers import write_moving_squares


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_moving_squares(tmp_path_factory.mktemp("data") / "squares")


def _cfg(data: Path, out: Path, **overrides: Any) -> TokenizerTrainConfig:
    """The tiny preset at 16x16 (one future token per frame) on CPU, plus nested overrides."""
    base = merge(TokenizerTrainConfig(), load_yaml("tokenizer_tiny"))
    small = {"data": [str(data)], "out": str(out), "tokenizer": {"resolution": 16},
             "clips": {"future_frames": 4, "val_fraction": 0.34},
             "train": {"device": "cpu", "steps": 8, "warmup_steps": 2, "log_every": 2, "eval_every": 4,
                       "sample_every": 8, "ckpt_every": 4}}
    return merge(merge(base, small), overrides)


def test_trains_validates_samples_and_exports(dataset: Path, tmp_path: Path) -> None:
    cfg = _cfg(dataset, tmp_path / "run", train={"steps": 16, "eval_every": 8, "sample_every": 8})
    export = train_tokenizer(cfg)
    log = read_log(tmp_path / "run" / "log.jsonl")
    losses = [r["tokenizer/train/loss"] for r in log if "tokenizer/train/loss" in r]
    assert losses[-1] < 0.7 * losses[0]
    val = [r for r in log if "tokenizer/val/future_psnr" in r]
    assert [r["step"] for r in val] == [8, 16]
    for key in ("future_ssim", "context_psnr", "context_ssim", "context_perplexity", "future_used_share",
                "future_dead_codes", "frames_per_s"):
        assert f"tokenizer/val/{key}" in val[-1]
    assert val[-1]["tokenizer/val/future_psnr"] > val[0]["tokenizer/val/future_psnr"]
    assert {"tokenizer/train/frames_per_s", "tokenizer/train/grad_norm"} <= set(log[0])
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == [
        "step_000000008.gif", "step_000000008.png", "step_000000016.gif", "step_000000016.png"]

    tok = load_tokenizer(export)
    same = load_tokenizer(tmp_path / "run" / "ckpt" / "step_000000016")  # a checkpoint loads the same way
    clip = torch.rand(2, 6, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(tok(clip, 2).recon, same(clip, 2).recon, rtol=0, atol=0)
    assert tok.tokens_per_future_frame == 1 and not tok.training


def test_resumed_run_equals_uninterrupted(dataset: Path, tmp_path: Path) -> None:
    # dead-code restarts every 2 calls: they draw from the RNG, which the checkpoint must restore
    codebook = {"restart_every": 2, "dead_code_decay": 0.3}
    arch = {"resolution": 16, "context_codebook": codebook, "future_codebook": codebook}
    full = train_tokenizer(_cfg(dataset, tmp_path / "full", tokenizer=arch))
    train_tokenizer(_cfg(dataset, tmp_path / "cut", tokenizer=arch, train={"steps": 3}))
    resumed = train_tokenizer(_cfg(dataset, tmp_path / "cut", tokenizer=arch, resume=True))
    a, b = load_tokenizer(full).state_dict(), load_tokenizer(resumed).state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    # logged losses agree wherever both runs averaged the same steps (the cut run also logged step 3)
    full_log, cut_log = ({r["step"]: r["tokenizer/train/loss"] for r in read_log(run / "log.jsonl")
                          if "tokenizer/train/loss" in r} for run in (tmp_path / "full", tmp_path / "cut"))
    assert sorted(cut_log) == [2, 3, 4, 6, 8]
    assert [full_log[s] for s in (2, 6, 8)] == pytest.approx([cut_log[s] for s in (2, 6, 8)], abs=1e-6)


def test_gan_trains_its_own_optimizer_and_is_checkpointed(dataset: Path, tmp_path: Path) -> None:
    cfg = _cfg(dataset, tmp_path / "run", loss={"disc_enabled": True, "disc_start": 2, "disc_channels": 8,
                                                "disc_layers": 2}, train={"steps": 4, "log_every": 1})
    train_tokenizer(cfg)
    log = read_log(tmp_path / "run" / "log.jsonl")
    train = [r for r in log if "tokenizer/train/loss" in r]
    assert ["tokenizer/train/disc_loss" in r for r in train] == [False, False, True, True]
    state = torch.load(tmp_path / "run" / "ckpt" / "step_000000004" / "train_state.pt", weights_only=True)
    assert sorted(state["optimizers"]) == ["discriminator", "tokenizer"]


def test_bad_inputs_give_clear_errors(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no dataset folders"):
        train_tokenizer(TokenizerTrainConfig(out=tmp_path / "x"))
    with pytest.raises(ValueError, match="resolution is 64 but the frames of .* are 16x16"):
        train_tokenizer(_cfg(dataset, tmp_path / "y", tokenizer={"resolution": 64}))
    with pytest.raises(ValueError, match="weights: 2 weight"):
        _cfg(dataset, tmp_path / "z", weights=[1.0, 2.0])


def test_load_tokenizer_errors(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "nothing")
    export = train_tokenizer(_cfg(dataset, tmp_path / "run", train={"steps": 1}))
    original = (export / "config.json").read_text()
    config = json.loads(original)
    config["tokenizer"]["channels"] = [8, 16, 32]  # another architecture than the weights
    (export / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="another tokenizer config"):
        load_tokenizer(export)
    (export / "config.json").write_text(json.dumps({"transformer": {}}))
    with pytest.raises(ValueError, match="not a tokenizer checkpoint"):
        load_tokenizer(export)
    (export / "config.json").write_text(original)
    (export / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        load_tokenizer(tmp_path / "run" / "tokenizer")


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESET_DIR.glob("tokenizer_*.yaml")))
def test_presets_fill_the_config_and_match_the_tokenizer_presets(preset: str) -> None:
    cfg = merge(TokenizerTrainConfig(), load_yaml(preset))
    assert cfg.tokenizer == tokenizer_preset(preset.removeprefix("tokenizer_"))


def test_bench_variants_share_the_preset_and_differ_in_future_tokens(load_script) -> None:
    bench = load_script("tokenizer")
    base = tokenizer_preset("metaworld64")
    tokens = {name: build_tokenizer(cfg).tokens_per_future_frame
              for name, cfg in bench.variants(base).items()}
    assert tokens == {"compressive": 16, "perframe4x4": 16, "perframe16x16": 256, "compressive_blend": 16,
                      "compressive_blend_8x8": 64}
    assert bench.variants(base)["perframe4x4"] == tokenizer_preset("per_frame4")
    assert bench.variants(base)["perframe16x16"] == tokenizer_preset("per_frame16")
    assert bench.variants(base)["compressive_blend"] == dataclasses.replace(base, future_blend=True)
    assert tuple(bench.variants(base)) == bench.VARIANT_NAMES  # what --only accepts
    with pytest.raises(ValueError, match="unknown variant.*perframe8x8"):
        bench.BenchConfig(data=[Path("d")], only=("compressive", "perframe8x8"))
    with pytest.raises(ValueError, match="NAME=DIR"):
        bench.BenchConfig(data=[Path("d")], trained=("copy_last=.",))  # a name the table already has
    with pytest.raises(ValueError, match="does not exist"):
        bench.BenchConfig(data=[Path("d")], trained=("shipped=/no/such/folder",))


def test_reshape_changes_the_future_grid_and_keeps_the_parents_weights_where_they_fit(
    dataset: Path, tmp_path: Path
) -> None:
    parent = train_tokenizer(_cfg(dataset, tmp_path / "parent"))
    finer = {"init_from": str(parent), "tokenizer": {"patch_size": 2}}
    with pytest.raises(ValueError, match=r"tokenizer.patch_size=2 \(init_from: 4\).*--reshape"):
        train_tokenizer(_cfg(dataset, tmp_path / "refused", **finer))
    asked = _cfg(dataset, tmp_path / "x", **finer).tokenizer
    child, lineage = _load_parent(parent, asked, reshape=True)
    theirs, mine = load_tokenizer(parent).state_dict(), child.state_dict()
    fresh = {k for k in mine if k not in theirs or theirs[k].shape != mine[k].shape}
    assert fresh == {"future_vqgan.to_code.weight", "future_vqgan.from_code.weight",
                     "future_vqgan.from_code.bias"}
    for key in mine.keys() - fresh:
        torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=0, msg=key)
    assert lineage and child.future_grid == (2, 2)
    export = train_tokenizer(_cfg(dataset, tmp_path / "reshaped", reshape=True, **finer))
    assert load_tokenizer(export).future_grid == (2, 2)
