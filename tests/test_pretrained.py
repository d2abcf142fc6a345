"""The world model shipped inside the package: it is there, small, loads offline, and runs the demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ivideogpt import pretrained_path
from ivideogpt.demo import DemoConfig, run_demo
from ivideogpt.eval.report import read_metrics_json
from ivideogpt.sim.metaworld import ACTION_DIM
from ivideogpt.world_model import WorldModel

MAX_BYTES = 25 * 2**20  # the budget for weights inside the wheel


def test_shipped_model_is_small_documented_and_loads() -> None:
    folder = pretrained_path()
    assert sum(f.stat().st_size for f in folder.iterdir()) < MAX_BYTES
    card = (folder / "MODEL_CARD.md").read_text()
    for needed in ("ivideogpt train-tokenizer", "ivideogpt train ", "copy_last", "wall time"):
        assert needed in card, needed
    wm = WorldModel.load(folder)
    assert (wm.action_dim, wm.image_size) == (ACTION_DIM, 64)
    assert wm.transformer.cfg.reward_head
    context = np.zeros((2, wm.num_context_frames, 64, 64, 3), np.uint8)
    out = wm.rollout(context, np.zeros((2, 3, ACTION_DIM), np.float32), seed=0)
    assert out.frames.shape == (2, 3, 64, 64, 3) and out.rewards.shape == (2, 3)
    assert np.isfinite(out.rewards).all()


def test_demo_runs_the_shipped_model_on_fresh_episodes(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    report = run_demo(DemoConfig(out=out, tasks=("reach",), episodes=1, clips=2, workers=1))
    metrics = read_metrics_json(out / "metrics.json")
    assert report.is_file() and (out / "predictions.gif").is_file()
    assert set(metrics["methods"]) >= {"model", "copy_last", "tokenizer_recon"}
    assert metrics["protocol"]["clips"] == 2


def test_top_level_names_load_lazily() -> None:
    import subprocess
    import sys

    import ivideogpt
    from ivideogpt.envs import WorldModelEnv

    assert ivideogpt.WorldModel is WorldModel and ivideogpt.WorldModelEnv is WorldModelEnv
    code = "import sys, ivideogpt; assert 'torch' not in sys.modules, 'import ivideogpt loaded torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
