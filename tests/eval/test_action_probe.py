"""bench/action_probe.py: the probes' inputs and targets line up with the shard's actions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def _shard(root: Path, n: int = 3, tc: int = 2, tf: int = 4, nf: int = 2, vf: int = 8) -> np.ndarray:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rng.integers(0, vf, (n, tf, nf)).astype(np.uint16).tofile(root / "future.bin")
    actions = rng.uniform(-1, 1, (n, tc + tf, 4)).astype(np.float32)
    np.save(root / "actions.npy", actions)
    meta = {"num_clips": n, "context_frames": tc, "future_frames": tf, "future_tokens": nf,
            "future_vocab_size": vf}
    (root / "meta.json").write_text(json.dumps(meta))
    return actions


def test_code_probe_targets_are_the_actions_that_produced_the_frames(tmp_path: Path, load_script) -> None:
    bench = load_script("action_probe")
    actions = _shard(tmp_path / "train")
    codes = np.fromfile(tmp_path / "train" / "future.bin", np.uint16).reshape(3, 4, 2)
    x, y, vocab = bench.code_pairs(tmp_path / "train", cumulative=False)
    assert x.shape == (3 * 3, 4) and y.shape == (9, 3)
    # pair (clip 1, frames 1 and 2): codes of future frames 1 and 2, the action of future frame 2
    assert x[1 * 3 + 1].tolist() == [*codes[1, 1], *codes[1, 2]]
    assert np.allclose(y[1 * 3 + 1].numpy(), actions[1, 2 + 2, :3])
    x, y, vocab = bench.code_pairs(tmp_path / "train", cumulative=True)
    assert x.shape == (12, 3) and vocab == 8 + 4
    assert x[1 * 4 + 2, -1] == 8 + 2  # frame index as its own token after the codes
    assert np.allclose(y[1 * 4 + 2].numpy(), actions[1, 2:5, :3].sum(0))


def test_r2_is_one_for_a_perfect_fit_and_zero_for_the_mean(load_script) -> None:
    bench = load_script("action_probe")
    target = torch.randn(100, 3)
    assert torch.allclose(bench.r2(target, target), torch.ones(3))
    assert torch.allclose(bench.r2(target.mean(0).expand(100, 3), target), torch.zeros(3), atol=1e-5)
