"""Inverse-dynamics probes: do a tokenizer's future codes carry what an action did? Pixels as the anchor.

A world model can only learn to respond to an action if the frames it predicts, as tokens, change with
the action in a consistent way. Each probe is a small network trained to recover the actions' xyz part
(Meta-World: the end effector's displacement) and scored by R^2 on held-out episodes:

    codes_step    a_t from the future codes of frames t-1 and t of one clip (token shard, its train/val split)
    codes_cum     a_1 + ... + a_t (the displacement since the last context frame, which a compressive
                  future code is relative to) from frame t's codes and t
    pixels_step   a_t from the real frames t-1 and t (small CNN; episodes split 90/10 by order)

R^2 near 0 on held-out data means the probe found nothing that generalises: whatever the codes hold about
the action is not learnable from this much data, so a transformer trained on them has little to learn.

    python bench/action_probe.py --tokens runs/actions/tokens runs/actions-r4/tokens --data data/mw-mix-r4
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro
from torch import Tensor, nn
from tqdm import tqdm

from ivideogpt.data.store import EpisodeStore


@dataclass
class ProbeConfig:
    tokens: list[Path] = field(default_factory=list)  # token shard folders (with train/ and val/)
    data: list[Path] = field(default_factory=list)  # episode folders for the pixel probe
    steps: int = 4000  # optimizer steps per probe
    batch_size: int = 256  # code probes
    pixel_batch_size: int = 64  # the pixel probe (a CNN on 64x64 frame pairs: slower per row)
    json: Path = Path("bench/results/action_probe.json")
    seed: int = 0


def r2(pred: Tensor, target: Tensor) -> Tensor:
    """Per-dimension R^2 = 1 - MSE / variance."""
    return 1 - (pred - target).square().mean(0) / target.var(0, correction=0)


def fit(net: nn.Module, train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], cfg: ProbeConfig,
        batch_size: int, prep: Any = lambda x: x, desc: str = "probe") -> dict[str, Any]:
    """Train `net` (MSE, AdamW) on `train`, return train/val R^2 (train on at most as many rows as val)."""
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.01)
    x, y = train
    for _ in tqdm(range(cfg.steps), desc=desc, unit="step"):
        i = torch.randint(0, len(x), (batch_size,))
        loss = (net(prep(x[i])) - y[i]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()

    def score(xs: Tensor, ys: Tensor) -> list[float]:
        with torch.no_grad():
            pred = torch.cat([net(prep(xs[s : s + 1024])) for s in range(0, len(xs), 1024)])
        return r2(pred, ys).tolist()

    n = len(val[0])
    val_r2, train_r2 = score(*val), score(x[:n], y[:n])
    return {"pairs_train": len(x), "pairs_val": n, "r2_val_xyz": val_r2, "r2_val": float(np.mean(val_r2)),
            "r2_train": float(np.mean(train_r2))}


def code_pairs(split: Path, cumulative: bool) -> tuple[Tensor, Tensor, int]:
    """Inputs (N, L) int64 and targets (N, 3) of a code probe from one shard split; also the input vocab."""
    meta = json.loads((split / "meta.json").read_text())
    n, tc, tf, nf = meta["num_clips"], meta["context_frames"], meta["future_frames"], meta["future_tokens"]
    vf = meta["future_vocab_size"]
    fut = np.fromfile(split / "future.bin", np.uint16).reshape(n, tf, nf).astype(np.int64)
    act = np.load(split / "actions.npy")[:, tc:, :3]  # (n, Tf, 3): row t produced future frame t
    if cumulative:
        step_token = np.broadcast_to(vf + np.arange(tf)[None, :, None], (n, tf, 1))  # t as an extra token
        x, y = np.concatenate([fut, step_token], 2).reshape(n * tf, nf + 1), np.cumsum(act, 1).reshape(-1, 3)
    else:
        x, y = np.concatenate([fut[:, :-1], fut[:, 1:]], 2).reshape(-1, 2 * nf), act[:, 1:].reshape(-1, 3)
    return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(y)), vf + tf


def code_probe(shard: Path, cumulative: bool, cfg: ProbeConfig) -> dict[str, Any]:
    x, y, vocab = code_pairs(shard / "train", cumulative)
    xv, yv, _ = code_pairs(shard / "val", cumulative)
    net = nn.Sequential(nn.Embedding(vocab, 16), nn.Flatten(), nn.Dropout(0.3),
                        nn.Linear(x.shape[1] * 16, 128), nn.GELU(), nn.Linear(128, 3))
    name = "codes_cum" if cumulative else "codes_step"
    return fit(net, (x, y), (xv, yv), cfg, cfg.batch_size, desc=f"{name} {shard}")


def pixel_probe(root: Path, cfg: ProbeConfig) -> dict[str, Any]:
    store = EpisodeStore(root)
    episodes = [store[i] for i in range(len(store))]
    n_val = max(1, len(episodes) // 10)

    def pairs(eps: list) -> tuple[Tensor, Tensor]:  # frames (t-1, t) stacked on channels -> a_t, t >= 2
        x = np.concatenate([np.concatenate([e.frames[1:-1], e.frames[2:]], -1) for e in eps])
        y = np.concatenate([e.actions[2:, :3] for e in eps])
        return torch.from_numpy(x), torch.from_numpy(y)

    net = nn.Sequential(nn.Conv2d(6, 32, 4, 2, 1), nn.GELU(), nn.Conv2d(32, 64, 4, 2, 1), nn.GELU(),
                        nn.Conv2d(64, 64, 4, 2, 1), nn.GELU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                        nn.Linear(1024, 128), nn.GELU(), nn.Linear(128, 3))
    prep = lambda x: x.permute(0, 3, 1, 2).float() / 127.5 - 1  # uint8 (B, H, W, 6) -> [-1, 1] (B, 6, H, W)
    return fit(net, pairs(episodes[:-n_val]), pairs(episodes[-n_val:]), cfg, cfg.pixel_batch_size, prep,
               desc=f"pixels_step {root}")


def run(cfg: ProbeConfig) -> dict[str, Any]:
    if not cfg.tokens and not cfg.data:
        raise ValueError("give --tokens SHARD [SHARD ...] and/or --data EPISODES")
    torch.manual_seed(cfg.seed)
    start, results = time.perf_counter(), {}
    for shard in cfg.tokens:
        results[str(shard)] = {"codes_step": code_probe(shard, False, cfg),
                               "codes_cum": code_probe(shard, True, cfg)}
    for root in cfg.data:
        results[str(root)] = {"pixels_step": pixel_probe(root, cfg)}
    out = {"command": " ".join(["python", *sys.argv]), "steps": cfg.steps,
           "batch_size": {"codes": cfg.batch_size, "pixels": cfg.pixel_batch_size},
           "anchor": "pixels_step: the same question asked of the real frames",
           "torch_threads": torch.get_num_threads(), "wall_time_s": time.perf_counter() - start,
           "results": results}
    cfg.json.parent.mkdir(parents=True, exist_ok=True)
    cfg.json.write_text(json.dumps(out, indent=2) + "\n")
    for source, probes in results.items():
        for name, r in probes.items():
            print(f"{source} {name}: R^2 val {r['r2_val']:.3f} (train {r['r2_train']:.3f})")
    print(f"wrote {cfg.json}")
    return out


if __name__ == "__main__":
    run(tyro.cli(ProbeConfig, description=__doc__.split("\n\n")[0]))
