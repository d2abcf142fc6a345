"""Inverse-dynamics probes: do a tokenizer's future codes carry what an action did? Pixels as the anchor.

A world model can only learn to respond to an action if the frames it predicts, as tokens, change with
the action in a consistent way. Each probe is a small network trained to recover the actions' xyz part
(Meta-World: the end effector's displacement) and scored by R^2 on held-out episodes:

    codes_step    a_t from the future codes of frames t-1 and t of one clip (token shard, its train/val split)
    codes_cum     a_1 + ... + a_t (the displacement since the last context frame, which a compressive
                  future code is relative to) from frame t's codes and t
    pixels_step   a_t from the real frames t-1 and t (small CNN; episodes split 90/10 by order)
    recon_step /  (--recon TOKENIZER) the same CNN probe on consecutive FUTURE frames of 2 + 6-frame clips,
    real_step     on the tokenizer's reconstructions (what its codes let the decoder draw) and on the real
                  frames of the very same pairs: whether the codes hold the action at all, in any form

R^2 near 0 on held-out data means the probe found nothing that generalises: whatever the codes hold about
the action is not learnable from this much data, so a transformer trained on them has little to learn.

    python bench/action_probe.py --tokens runs/actions/tokens runs/actions-r4/tokens --data data/mw-mix-r4
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro
from record import command_line, write_result
from torch import Tensor, nn
from tqdm import tqdm

from ivideogpt.artifacts import load_any_tokenizer
from ivideogpt.data.store import EpisodeStore


@dataclass
class ProbeConfig:
    tokens: list[Path] = field(default_factory=list)  # token shard folders (with train/ and val/)
    data: list[Path] = field(default_factory=list)  # episode folders for the pixel probe
    steps: int = 4000  # optimizer steps per code probe
    pixel_steps: int = 2000  # optimizer steps per CNN probe (pixels, reconstructions)
    batch_size: int = 256  # code probes
    pixel_batch_size: int = 64  # the pixel probe (a CNN on 64x64 frame pairs: slower per row)
    recon: list[Path] = field(default_factory=list)  # tokenizers for the recon probe, on the first --data
    recon_episodes: int = 200  # episodes reconstructed (every other one of the first 400)
    json: Path = Path("bench/results/action_probe.json")
    seed: int = 0


def r2(pred: Tensor, target: Tensor) -> Tensor:
    """Per-dimension R^2 = 1 - MSE / variance."""
    return 1 - (pred - target).square().mean(0) / target.var(0, correction=0)


def fit(net: nn.Module, train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], steps: int,
        batch_size: int, prep: Any = lambda x: x, desc: str = "probe") -> dict[str, Any]:
    """Train `net` (MSE, AdamW) on `train`, return train/val R^2 (train on at most as many rows as val)."""
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.01)
    x, y = train
    for _ in tqdm(range(steps), desc=desc, unit="step"):
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
    return fit(net, (x, y), (xv, yv), cfg.steps, cfg.batch_size, desc=f"{name} {shard}")


def frame_pair_probe(train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], cfg: ProbeConfig, desc: str
                     ) -> dict[str, Any]:
    """The CNN probe on uint8 frame pairs (N, H, W, 6) -> actions (N, 3)."""
    net = nn.Sequential(nn.Conv2d(6, 32, 4, 2, 1), nn.GELU(), nn.Conv2d(32, 64, 4, 2, 1), nn.GELU(),
                        nn.Conv2d(64, 64, 4, 2, 1), nn.GELU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                        nn.Linear(1024, 128), nn.GELU(), nn.Linear(128, 3))
    prep = lambda x: x.permute(0, 3, 1, 2).float() / 127.5 - 1  # uint8 (B, H, W, 6) -> [-1, 1] (B, 6, H, W)
    return fit(net, train, val, cfg.pixel_steps, cfg.pixel_batch_size, prep, desc=desc)


def pixel_probe(root: Path, cfg: ProbeConfig) -> dict[str, Any]:
    store = EpisodeStore(root)
    episodes = [store[i] for i in range(len(store))]
    n_val = max(1, len(episodes) // 10)

    def pairs(eps: list) -> tuple[Tensor, Tensor]:  # frames (t-1, t) stacked on channels -> a_t, t >= 2
        x = np.concatenate([np.concatenate([e.frames[1:-1], e.frames[2:]], -1) for e in eps])
        y = np.concatenate([e.actions[2:, :3] for e in eps])
        return torch.from_numpy(x), torch.from_numpy(y)

    return frame_pair_probe(pairs(episodes[:-n_val]), pairs(episodes[-n_val:]), cfg, f"pixels_step {root}")


def recon_probe(root: Path, tokenizer_path: Path, cfg: ProbeConfig, tc: int = 2, tf: int = 6
                ) -> dict[str, Any]:
    """CNN probes on consecutive future frames of clips: the tokenizer's reconstructions vs the real ones."""
    tokenizer = load_any_tokenizer(tokenizer_path)
    store = EpisodeStore(root)
    chosen = list(range(0, min(len(store), 2 * cfg.recon_episodes), 2))
    real, recon, actions = [], [], []
    for i in tqdm(chosen, desc=f"reconstruct {tokenizer_path}", unit="episode"):
        ep = store[i]
        starts = range(0, len(ep.frames) - tc - tf + 1, tc + tf)
        clips = torch.stack([torch.from_numpy(ep.frames[s : s + tc + tf]) for s in starts])  # (C, T, H, W, 3)
        x = clips.permute(0, 1, 4, 2, 3).float() / 127.5 - 1
        with torch.no_grad():
            out = torch.cat([tokenizer(x[j : j + 16], tc).recon for j in range(0, len(x), 16)])
        drawn = ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2)
        for frames, kind in ((clips, real), (drawn, recon)):  # future pairs (t-1, t), both in the future
            kind.append(torch.cat([frames[:, tc:-1], frames[:, tc + 1 :]], -1).flatten(0, 1))
        rows = [torch.from_numpy(ep.actions[s + tc + 1 : s + tc + tf, :3]) for s in starts]  # a_t of pairs
        actions.append(torch.stack(rows).flatten(0, 1))
    n_val = max(1, len(chosen) // 10)
    split = sum(len(a) for a in actions[:-n_val])
    y = torch.cat(actions)
    out = {}
    for name, kind in (("real_step", real), ("recon_step", recon)):
        x = torch.cat(kind)
        out[name] = frame_pair_probe((x[:split], y[:split]), (x[split:], y[split:]), cfg, f"{name} {root}")
    return out


def run(cfg: ProbeConfig) -> dict[str, Any]:
    if not cfg.tokens and not cfg.data:
        raise ValueError("give --tokens SHARD [SHARD ...] and/or --data EPISODES")
    if cfg.recon and not cfg.data:
        raise ValueError("--recon reconstructs episodes of the first --data folder: give one")
    torch.manual_seed(cfg.seed)
    start, results = time.perf_counter(), {}
    for shard in cfg.tokens:
        results[str(shard)] = {"codes_step": code_probe(shard, False, cfg),
                               "codes_cum": code_probe(shard, True, cfg)}
    for root in cfg.data:
        results[str(root)] = {"pixels_step": pixel_probe(root, cfg)}
    for tokenizer in cfg.recon:
        results[f"{cfg.data[0]} reconstructed by {tokenizer}"] = recon_probe(cfg.data[0], tokenizer, cfg)
    out = {"command": command_line(),
           "steps": {"codes": cfg.steps, "pixels": cfg.pixel_steps},
           "batch_size": {"codes": cfg.batch_size, "pixels": cfg.pixel_batch_size},
           "anchor": "pixels_step: the same question asked of the real frames",
           "torch_threads": torch.get_num_threads(), "wall_time_s": time.perf_counter() - start,
           "results": results}
    write_result(cfg.json, out)
    for source, probes in results.items():
        for name, r in probes.items():
            print(f"{source} {name}: R^2 val {r['r2_val']:.3f} (train {r['r2_train']:.3f})")
    return out


if __name__ == "__main__":
    run(tyro.cli(ProbeConfig, description=__doc__.split("\n\n")[0]))
