"""ivideogpt export: float16 weights that load back, the new default sampling, provenance, bad targets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ivideogpt.cli import main
from ivideogpt.export import ExportConfig, export_world_model
from ivideogpt.world_model import TRANSFORMER_FILE, WorldModel
from tests.test_world_model import actions, frames, tiny_world_model


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir())


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    return tiny_world_model().save(tmp_path / "wm")


def test_export_casts_weights_and_sets_sampling(saved: Path, tmp_path: Path) -> None:
    out = export_world_model(ExportConfig(saved, tmp_path / "shipped", "float16", temperature=0.0,
                                          top_k=None, action_guidance=1.5))
    stored = load_file(str(out / TRANSFORMER_FILE))
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}
    assert folder_bytes(out) < 0.6 * folder_bytes(saved)

    shipped, original = WorldModel.load(out), WorldModel.load(saved)
    assert (shipped.spec.sampling.temperature, shipped.spec.sampling.top_k) == (0.0, None)
    assert shipped.spec.sampling.action_guidance == 1.5
    assert shipped.spec.provenance["export"]["dtype"] == "float16"
    assert shipped.spec.provenance["export"]["sampling_before"] == {"temperature": 1.0, "top_k": 100,
                                                                   "action_guidance": 0.0,
                                                                   "still_split": False}
    # greedy rollouts of the fp16 copy match the float32 original given the same (greedy) sampling
    ctx, act = frames(2, 1), actions(2, 3)
    a = shipped.rollout(ctx, act, seed=0)
    b = original.rollout(ctx, act, seed=0, temperature=0.0, top_k=None, action_guidance=1.5)
    assert (a.frames == b.frames).mean() > 0.95


def test_export_keeps_sampling_unless_asked(saved: Path, tmp_path: Path) -> None:
    main(["export", "--model", str(saved), "--out", str(tmp_path / "copy"), "--dtype", "float32"])
    copy = WorldModel.load(tmp_path / "copy")
    assert (copy.spec.sampling.temperature, copy.spec.sampling.top_k) == (1.0, 100)


def test_export_refuses_bad_targets(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model folder itself"):
        ExportConfig(saved, saved)
    with pytest.raises(ValueError, match="temperature"):
        ExportConfig(saved, tmp_path / "x", temperature=-1.0)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a world-model folder"):
        export_world_model(ExportConfig(saved, tmp_path / "other"))
    with pytest.raises(ValueError, match="still_split needs a tokenizer with a still code"):
        export_world_model(ExportConfig(saved, tmp_path / "split", still_split=True))
    assert not (tmp_path / "split").exists()
    with pytest.raises(FileNotFoundError):
        export_world_model(ExportConfig(tmp_path / "missing", tmp_path / "y"))


def test_export_replaces_a_world_model_only_with_overwrite(saved: Path, tmp_path: Path) -> None:
    out = export_world_model(ExportConfig(saved, tmp_path / "shipped", "float32"))
    before = (out / TRANSFORMER_FILE).read_bytes()
    with pytest.raises(FileExistsError, match="already holds a world model; pass --overwrite"):
        export_world_model(ExportConfig(saved, out, "float16"))
    assert (out / TRANSFORMER_FILE).read_bytes() == before  # untouched
    with pytest.raises(SystemExit):  # the CLI names the problem instead of a traceback
        main(["export", "--model", str(saved), "--out", str(out)])
    main(["export", "--model", str(saved), "--out", str(out), "--overwrite"])
    assert WorldModel.load(out).spec.provenance["export"]["dtype"] == "float16"
