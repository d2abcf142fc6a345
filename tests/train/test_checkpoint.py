"""Checkpoints: complete, atomic, pruned, and loud about what is missing or does not fit."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ivideogpt.train import checkpoint as ckpt_mod
from ivideogpt.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    load_weights,
    rng_state,
    save_checkpoint,
    save_model,
    set_rng_state,
)


def _modules(width: int = 3) -> dict[str, nn.Module]:
    return {"net": nn.Linear(2, width), "disc": nn.Conv2d(3, 4, 3)}


def _save(run: Path, step: int, keep: int = 0, width: int = 3) -> Path:
    opt = torch.optim.AdamW(_modules(width)["net"].parameters())
    state = {"optimizers": {"adamw": opt.state_dict()}, "rng": [rng_state()]}
    return save_checkpoint(run, step, _modules(width), {"model": {"width": width}}, state, keep=keep)


def test_round_trip_is_complete(tmp_path: Path) -> None:
    modules = _modules()
    tied = nn.Linear(2, 2)
    tied.bias = nn.Parameter(tied.weight[0])  # shares memory with the weight: safetensors would refuse it
    modules["tied"] = tied
    opt = torch.optim.AdamW(modules["net"].parameters())
    modules["net"](torch.randn(1, 2)).sum().backward()
    opt.step()
    folder = save_checkpoint(tmp_path, 5, modules, {"a": {"b": 1}},
                             {"optimizers": {"adamw": opt.state_dict()}})
    assert folder.name == "step_000000005"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "train_state.pt"]
    loaded = load_checkpoint(tmp_path)  # a run folder resolves through ckpt/last.txt
    assert loaded.step == 5 and loaded.config == {"a": {"b": 1}}
    fresh = {"net": nn.Linear(2, 3), "disc": nn.Conv2d(3, 4, 3), "tied": nn.Linear(2, 2)}
    load_weights(fresh, loaded.weights, "test")
    for name in modules:
        for a, b in zip(modules[name].state_dict().values(), fresh[name].state_dict().values(), strict=True):
            torch.testing.assert_close(a, b)
    opt2 = torch.optim.AdamW(fresh["net"].parameters())
    opt2.load_state_dict(loaded.train_state["optimizers"]["adamw"])
    torch.testing.assert_close(opt2.state_dict()["state"][0]["exp_avg"],
                               opt.state_dict()["state"][0]["exp_avg"])


def test_failed_save_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _save(tmp_path, 1)

    def broken_save(obj: object, f: Any) -> None:  # torch.save writes through a Python file
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path, 2)
    monkeypatch.undo()
    root = tmp_path / "ckpt"
    assert sorted(p.name for p in root.iterdir()) == ["last.txt", "step_000000001"]  # no temp left behind
    assert load_checkpoint(tmp_path).step == 1


def test_keeps_the_newest_and_never_the_one_just_written(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    (root / ".tmp-step_000000001-dead").mkdir(parents=True)  # left by a save that was killed
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, keep=2)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["step_000000003", "step_000000004"]
    # a stale newer folder (a run resumed from an older step) must not push out the one just written
    _save(tmp_path, 9, keep=1)
    _save(tmp_path, 5, keep=1)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["step_000000005", "step_000000009"]
    assert load_checkpoint(tmp_path).step == 5


def test_missing_things_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path)
    folder = _save(tmp_path, 1)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_checkpoint(tmp_path)
    export = save_model(tmp_path / "export", _modules(), {"x": 1})
    with pytest.raises(CheckpointError, match="train_state.pt is missing"):
        load_checkpoint(export)
    (tmp_path / "ckpt" / "last.txt").write_text("step_000000077\n")
    with pytest.raises(CheckpointError, match="step_000000077, which does not exist"):
        load_checkpoint(tmp_path)
    (tmp_path / "export" / "config.json").write_bytes(b"\xff\xfe garbage")  # not even text
    with pytest.raises(CheckpointError, match=r"export/config.json: not valid JSON"):
        load_model(tmp_path / "export")


def test_weights_of_another_shape_name_the_key(tmp_path: Path) -> None:
    save_model(tmp_path / "m", _modules(width=3), {"model": {"width": 3}})
    weights, config = load_model(tmp_path / "m")
    assert config == {"model": {"width": 3}} and sorted(weights) == ["disc", "net"]
    with pytest.raises(CheckpointError, match=r"net.*weight: saved \(3, 2\), model \(5, 2\)"):
        load_weights(_modules(width=5), weights, "m")
    with pytest.raises(CheckpointError, match=r"no weights for module\(s\) \['extra'\]"):
        load_weights({**_modules(), "extra": nn.Linear(1, 1)}, weights, "m")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_weights({"net": nn.Sequential(nn.Linear(2, 3))}, weights, "m")


def test_save_model_replaces_an_old_export(tmp_path: Path) -> None:
    save_model(tmp_path / "m", _modules(width=3), {"v": 1})
    save_model(tmp_path / "m", _modules(width=5), {"v": 2})
    weights, config = load_model(tmp_path / "m")
    assert config == {"v": 2} and weights["net"]["weight"].shape == (5, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_rng_state_round_trip(tmp_path: Path) -> None:
    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_weights_holding_nan_or_inf_are_refused_on_load(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight[1, 2] = float("inf")
    save_checkpoint(tmp_path, 1, {"head": model}, {}, {})
    with pytest.raises(ValueError, match=r"model.safetensors: tensor 'head.weight' holds 1 NaN/infinite"):
        load_checkpoint(tmp_path)
