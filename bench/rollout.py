"""Rollout speed: imagined frames/s of the KV-cached rollout against the schemes it replaces.

Schemes, one transformer size (a preset, randomly initialised: speed does not depend on training), 16-frame
clips (1 context + 15 imagined frames), batch 1 and 32:

    kv_cached            ours: context encoded once, each frame = 1 + n cached single-token steps (n = 16)
    prefix_rerun_token   the reference code's scheme: no cache, the whole prefix re-run for every TOKEN
    prefix_rerun_frame   the prefix re-run once per FRAME (a fresh cache per frame, then n cached steps)
    per_frame_16x16      KV-cached, but every frame is 256 tokens (a per-frame 16x16 tokenizer's sequence)

Every scheme's frames/s counts the transformer sampling and the tokenizer decoding of each frame. A frame's
cost depends on its position in the clip (the prefix grows), so each scheme times frames at a few positions
(all 15 for kv_cached, 3 for the slow ones) and sums the per-position times over the clip, interpolating
linearly in between; the positions are recorded. `api_frames_per_s` is the end-to-end
`WorldModel.rollout` (context encoding included) as a check on the kv_cached figure.

Also: training tokens/s of the same transformer on 16-frame clips, and its achieved FLOP/s against a plain
matmul of the model's largest weight shape on the same machine.

    python bench/rollout.py            # the full run (a few minutes on 2 CPU cores), writes the JSON
    python bench/rollout.py --quick    # smoke test: tiny models, prints only
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro
from torch import Tensor

from ivideogpt.data.tokens import TokenBatch
from ivideogpt.tokenizer import VideoTokenizer, tokenizer_preset
from ivideogpt.train.optim import build_adamw
from ivideogpt.transformer import (
    KVCache,
    RolloutState,
    Transformer,
    sample_codes,
    sampling,
    transformer_preset,
)
from ivideogpt.world_model import WorldModel, WorldModelSpec, layout_fields

SCHEMES = ("kv_cached", "prefix_rerun_token", "prefix_rerun_frame", "per_frame_16x16")


@dataclass
class RolloutBenchConfig:
    """Options of the rollout benchmark."""

    tokenizer: str = "metaworld64"  # compressive tokenizer preset (kv_cached and the re-run schemes)
    per_frame_tokenizer: str = "per_frame16"  # per-frame tokenizer preset of the 16x16 scheme
    transformer: str = "small"  # transformer preset, the same size for every scheme
    action_dim: int = 4  # actions on every slot (Meta-World's 4)
    batch_sizes: tuple[int, ...] = (1, 32)  # rollouts imagined at once
    clip_frames: int = 16  # context + imagined frames per clip
    context_frames: int = 1  # real frames the clip starts from
    slow_positions: int = 3  # frame positions timed for the slow schemes (first and last included)
    repeats: int = 3  # timings per position for the fast scheme (median); slow schemes time once
    train_batch: int = 4  # clips per training step in the training-throughput measurement
    train_steps: int = 3  # timed training steps (after one warm-up step)
    threads: int | None = None  # torch CPU threads (None: torch's default)
    device: str = "cpu"  # torch device
    quick: bool = False  # smoke test: tiny presets, batch 1 and 4, short clips; prints only unless --json
    json: Path | None = None  # where the results go (default bench/results/rollout.json; none for --quick)
    seed: int = 0  # seeds the random weights, codes and sampling

    def __post_init__(self) -> None:
        positive = ("action_dim", "context_frames", "slow_positions", "repeats", "train_batch", "train_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"RolloutBenchConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.clip_frames <= self.context_frames:
            raise ValueError(f"RolloutBenchConfig.clip_frames ({self.clip_frames}) must exceed "
                             f"context_frames ({self.context_frames})")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"RolloutBenchConfig.batch_sizes must be positive, got {self.batch_sizes}")
        if self.quick:
            self.tokenizer, self.per_frame_tokenizer, self.transformer = "tiny", "tiny", "tiny"
            self.batch_sizes, self.clip_frames, self.slow_positions = (1, 4), 6, 2
            self.repeats, self.train_steps = 1, 1


# ----------------------------------------------------------------------------------------- models


def build_world_model(cfg: RolloutBenchConfig, tokenizer: str, per_frame_tokens: bool) -> WorldModel:
    """Random world model of the configured transformer preset on `tokenizer`.

    per_frame_tokens: future frames coded like context frames (16x16 tokens of the same codebook size), the
    sequence a per-frame tokenizer gives.
    """
    tok = tokenizer_preset(tokenizer)
    if per_frame_tokens:
        tok = dataclasses.replace(tok, kind="per_frame", cross_attn_resolutions=())
    future = cfg.clip_frames - cfg.context_frames
    tf = transformer_preset(cfg.transformer, action_dim=cfg.action_dim, reward_head=True,
                            max_future_frames=future, max_context_frames=cfg.context_frames,
                            **layout_fields(tok))
    spec = WorldModelSpec(tok, tf, cfg.context_frames, future, tok.resolution, cfg.action_dim)
    wm = WorldModel.from_spec(spec).to(cfg.device)
    wm.tokenizer.eval(), wm.transformer.eval()
    return wm


def random_codes(model: Transformer, b: int, frames: int, context: bool, device: str) -> Tensor:
    """int64 (B, frames, N or n) uniform codes of the context or future codebook."""
    layout = model.layout
    vocab, per_frame = ((layout.context_vocab_size, layout.context_tokens) if context
                        else (layout.future_vocab_size, layout.future_tokens))
    return torch.randint(0, vocab, (b, frames, per_frame), device=device)


# ------------------------------------------------------------------------------ one frame, timed


def time_cached_frame(model: Transformer, b: int, k: int, tc: int, gen: torch.Generator) -> float:
    """Seconds of `sampling.step` for future frame k (k frames already in the KV cache), batch b."""
    dev = str(gen.device)
    state = sampling.start(model, random_codes(model, 1, tc, True, dev))
    _prefill(model, state, k)
    state.select(torch.zeros(b, dtype=torch.long))  # the cache's contents do not change the cost
    action = torch.rand(b, model.cfg.action_dim, generator=gen, device=dev)
    return _timed(lambda: sampling.step(model, state, action, generator=gen))


def _prefill(model: Transformer, state: RolloutState, k: int, chunk_frames: int = 4) -> None:
    """Put k random future frames (and actions) into a batch-1 rollout state, a few frames per forward."""
    dev = state.frames.device
    codes = random_codes(model, 1, k, False, str(dev))
    actions = torch.rand(1, k, model.cfg.action_dim, device=dev)
    for i in range(0, k, chunk_frames):
        c, a = codes[:, i : i + chunk_frames], actions[:, i : i + chunk_frames]
        tokens, rows = model.layout.encode_future(c), model.layout.future_action_rows(a)
        model(tokens, rows, state.cache, torch.zeros(0, dtype=torch.long, device=dev))
    state.frames, state.actions = codes, actions


def time_rerun_frame(
    model: Transformer, b: int, k: int, tc: int, gen: torch.Generator, per_token: bool
) -> float:
    """Seconds to sample future frame k by re-running the whole prefix, per token or once per frame.

    Logits are computed at the last position only, so the baseline pays for no unused LM-head work.
    """
    layout, dev = model.layout, str(gen.device)
    context = layout.encode_context(random_codes(model, b, tc, True, dev))
    codes = random_codes(model, b, k + 1, False, dev)  # the last frame's codes are overwritten as sampled
    acts = torch.rand(b, k + 1, model.cfg.action_dim, generator=gen, device=dev)
    tokens = torch.cat([context, layout.encode_future(codes)], dim=1)
    rows = torch.cat([acts.new_zeros(b, context.shape[1], acts.shape[2]), layout.future_action_rows(acts)], 1)
    start = tokens.shape[1] - layout.frame_length  # position of this frame's SLOT
    offset = layout.context_vocab_size  # future code c is token c + Vc

    def frame() -> None:
        if per_token:
            for j in range(layout.future_tokens + 1):  # the last forward reads the reward head
                end = start + 1 + j
                last = torch.tensor([end - 1], device=dev)
                out = model(tokens[:, :end], rows[:, :end], logit_positions=last)
                if j < layout.future_tokens:
                    tokens[:, end] = sample_codes(out.logits[:, -1], layout, generator=gen) + offset
            return
        cache = KVCache(model.cfg.n_layer, tokens.shape[1])
        out = model(tokens[:, : start + 1], rows[:, : start + 1], cache, torch.tensor([start], device=dev))
        for j in range(layout.future_tokens):
            token = sample_codes(out.logits[:, -1], layout, generator=gen)[:, None] + offset
            out = model(token, None, cache)

    with torch.no_grad():
        return _timed(frame)


def decode_seconds(tokenizer: VideoTokenizer, b: int, tc: int, repeats: int, device: str) -> float:
    """Seconds to decode one future frame per row (batch b) against cached context features."""
    hc, hf = tokenizer.context_grid[0], tokenizer.future_grid[0]
    context = torch.randint(0, tokenizer.context_vocab_size, (b, tc, hc, hc), device=device)
    state = tokenizer.context_from_codes(context)
    codes = torch.randint(0, tokenizer.future_vocab_size, (b, hf, hf), device=device)
    return float(np.median([_timed(lambda: tokenizer.decode_future(codes, state)) for _ in range(repeats)]))


def _timed(fn: Callable[[], Any]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------- schemes


def scheme_rate(
    cfg: RolloutBenchConfig, scheme: str, wm: WorldModel, b: int, gen: torch.Generator
) -> dict[str, Any]:
    """Imagined frames/s of one scheme at batch b over a clip of `clip_frames - context_frames` frames."""
    model, tc = wm.transformer, cfg.context_frames
    future = cfg.clip_frames - tc
    fast = scheme == "kv_cached"
    count = future if fast else min(cfg.slow_positions, future)
    positions = sorted({int(p) for p in np.linspace(0, future - 1, count).round()})
    if scheme in ("kv_cached", "per_frame_16x16"):
        time_frame = lambda k: time_cached_frame(model, b, k, tc, gen)
        ctx = random_codes(model, b, tc, True, str(gen.device))
        prefix = _timed(lambda: sampling.start(model, ctx))  # the context forward, once per clip
    else:
        per_token = scheme == "prefix_rerun_token"
        time_frame = lambda k: time_rerun_frame(model, b, k, tc, gen, per_token)
        prefix = 0.0  # no cache: the context is part of every re-run
    repeats = cfg.repeats if fast else 1
    per_frame = [float(np.median([time_frame(k) for _ in range(repeats)])) for k in positions]
    sampling_s = prefix + float(np.interp(np.arange(future), positions, per_frame).sum())
    decode_s = future * decode_seconds(wm.tokenizer, b, tc, cfg.repeats, cfg.device)
    return {
        "frames_per_s": b * future / (sampling_s + decode_s),
        "transformer_frames_per_s": b * future / sampling_s,
        "clip_seconds": sampling_s + decode_s,
        "positions_timed": positions,
        "seconds_per_frame_at_positions": per_frame,
    }


def api_rate(cfg: RolloutBenchConfig, wm: WorldModel, b: int) -> float:
    """End-to-end `WorldModel.rollout` frames/s (context encoding, sampling, decoding)."""
    future = cfg.clip_frames - cfg.context_frames
    size = wm.image_size
    rng = np.random.default_rng(cfg.seed)
    frames = rng.integers(0, 256, (b, cfg.context_frames, size, size, 3), np.uint8)
    actions = rng.uniform(-1, 1, (b, future, cfg.action_dim)).astype(np.float32)
    return b * future / _timed(lambda: wm.rollout(frames, actions, seed=cfg.seed))


# ------------------------------------------------------------------------------------ training


def training_rate(cfg: RolloutBenchConfig, model: Transformer) -> dict[str, float]:
    """Training tokens/s and achieved FLOP/s on clips, against a plain matmul of the largest weight shape."""
    b, tc, tf, dev = cfg.train_batch, cfg.context_frames, cfg.clip_frames - cfg.context_frames, cfg.device
    layout = model.layout
    batch = TokenBatch(
        context_codes=random_codes(model, b, tc, True, dev),
        future_codes=random_codes(model, b, tf, False, dev),
        actions=torch.rand(b, tc + tf, cfg.action_dim, device=dev),
        rewards=torch.rand(b, tc + tf, device=dev),
        dones=torch.zeros(b, tc + tf, dtype=torch.bool, device=dev),
        has_actions=torch.ones(b, dtype=torch.bool, device=dev),
        has_rewards=torch.ones(b, dtype=torch.bool, device=dev),
    )
    model.train()
    opt = build_adamw(model, 1e-4, 0.01, (0.9, 0.95), torch.device(dev))

    def train_step() -> None:
        loss, _, _ = model.compute_loss(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    train_step()  # warm-up: optimizer state, allocations
    seconds = sum(_timed(train_step) for _ in range(cfg.train_steps))
    model.eval()
    length = layout.sequence_length(tc, tf)
    tokens_per_s = b * length * cfg.train_steps / seconds
    flops = model.estimate_flops_per_token(length) * tokens_per_s
    m, k, n = b * length, model.cfg.n_embd, model.cfg.hidden_size  # the SwiGLU up-projection's shape
    x, w = torch.randn(m, k, device=dev), torch.randn(k, n, device=dev)
    x @ w  # warm-up
    reps = max(1, cfg.train_steps)
    matmul_s = sum(_timed(lambda: x @ w) for _ in range(reps))
    matmul_flops = 2 * m * k * n * reps / matmul_s
    return {
        "sequence_length": length,
        "batch_clips": b,
        "tokens_per_s": tokens_per_s,
        "achieved_flops_per_s": flops,
        "matmul_flops_per_s": matmul_flops,
        "matmul_shape": [m, k, n],
        "fraction_of_matmul": flops / matmul_flops,
    }


# ----------------------------------------------------------------------------------------- main


def run(cfg: RolloutBenchConfig) -> dict[str, Any]:
    """Time every scheme at every batch size and training; print the table, write the JSON (returned)."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    compressive = build_world_model(cfg, cfg.tokenizer, per_frame_tokens=False)
    per_frame = build_world_model(cfg, cfg.per_frame_tokenizer, per_frame_tokens=True)
    gen = torch.Generator(cfg.device).manual_seed(cfg.seed)
    results: dict[str, Any] = {}
    for b in cfg.batch_sizes:
        row = {s: scheme_rate(cfg, s, per_frame if s == "per_frame_16x16" else compressive, b, gen)
               for s in SCHEMES}
        baseline = row["prefix_rerun_token"]["frames_per_s"]
        results[str(b)] = {
            "frames_per_s": {s: r["frames_per_s"] for s, r in row.items()},
            "speedup_vs_prefix_rerun": {s: r["frames_per_s"] / baseline for s, r in row.items()},
            "api_frames_per_s": api_rate(cfg, compressive, b),
            "details": row,
        }
    out = {
        "command": " ".join(["python", *sys.argv]),
        "device": _device_name(cfg.device),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformer_preset": cfg.transformer,
        "transformer_params": compressive.transformer.num_params(),
        "tokenizers": {"compressive": cfg.tokenizer, "per_frame": cfg.per_frame_tokenizer},
        "clip_frames": cfg.clip_frames,
        "context_frames": cfg.context_frames,
        "tokens_per_future_frame": {"compressive": compressive.transformer.layout.future_tokens,
                                    "per_frame_16x16": per_frame.transformer.layout.future_tokens},
        "baseline": "prefix_rerun_token (the reference code's scheme: no KV cache, prefix re-run per token)",
        "batch": results,
        "training": training_rate(cfg, compressive.transformer),
        "wall_time_s": 0.0,
    }
    out["wall_time_s"] = time.perf_counter() - start
    print(format_table(out))
    path = cfg.json if cfg.json is not None or cfg.quick else Path("bench/results/rollout.json")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {path}")
    return out


def format_table(out: dict[str, Any]) -> str:
    """The results as aligned text."""
    params = out["transformer_params"] / 1e6
    lines = [
        (f"rollout benchmark: {out['transformer_preset']} transformer ({params:.1f}M params), "
         f"{out['clip_frames']}-frame clips, {out['device']}, {out['torch_threads']} thread(s)"),
        f"{'scheme':<22}" + "".join(f"{'B=' + b + ' frames/s':>18}{'speedup':>9}" for b in out["batch"]),
    ]
    for s in SCHEMES:
        cells = "".join(f"{r['frames_per_s'][s]:>18.2f}{r['speedup_vs_prefix_rerun'][s]:>8.1f}x"
                        for r in out["batch"].values())
        lines.append(f"{s:<22}{cells}")
    api = "".join(f"{r['api_frames_per_s']:>18.2f}{'':>9}" for r in out["batch"].values())
    lines.append(f"{'WorldModel.rollout':<22}{api}")
    t = out["training"]
    shape = "x".join(map(str, t["matmul_shape"]))
    lines.append(f"training: {t['tokens_per_s']:.0f} tokens/s ({t['batch_clips']} clips x "
                 f"{t['sequence_length']} tokens), {t['achieved_flops_per_s'] / 1e9:.2f} GFLOP/s = "
                 f"{t['fraction_of_matmul']:.0%} of a "
                 f"plain {shape} matmul ({t['matmul_flops_per_s'] / 1e9:.2f} GFLOP/s)")
    lines.append(f"wall time {out['wall_time_s']:.0f} s")
    return "\n".join(lines)


def _device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"cpu ({names[0] if names else cpu})"


if __name__ == "__main__":
    run(tyro.cli(RolloutBenchConfig))
