"""The schemes bench/rollout.py times: random world models of a preset, our KV-cached decode (whole clips,
its per-part profile and FLOP count) and the per-frame schemes that re-run the prefix (the official one on
Hugging Face's `generate`, through hf_anchor.py, and its twin on our transformer). rollout.py composes
these into the table's cells.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import hf_anchor
import numpy as np
import torch
from torch import Tensor

from ivideogpt.tokenizer import tokenizer_preset
from ivideogpt.transformer import KVCache, Transformer, sampling, transformer_preset
from ivideogpt.transformer.fast_decode import DecodeOptions, decode_engine, gumbel_noise, sample_from_logits
from ivideogpt.world_model import WorldModel, WorldModelSpec, layout_fields

if TYPE_CHECKING:
    from rollout import RolloutBenchConfig

ANCHOR = "hf_generate_per_frame"  # the official scheme, the bar every speed-up is measured against
KV16 = "kv_cached_bf16_cache"  # ours with float32 weights and a bfloat16 KV cache

# ----------------------------------------------------------------------------------------- models


def build_world_model(cfg: RolloutBenchConfig, preset: str, future: int) -> WorldModel:
    """Random world model of transformer `preset` on the configured tokenizer."""
    tok = tokenizer_preset(cfg.tokenizer)
    tf = transformer_preset(preset, action_dim=cfg.action_dim, reward_head=True, max_future_frames=future,
                            max_context_frames=cfg.context_frames, **layout_fields(tok))
    spec = WorldModelSpec(tok, tf, cfg.context_frames, future, tok.resolution, cfg.action_dim)
    wm = WorldModel.from_spec(spec).to(cfg.device)
    wm.tokenizer.eval(), wm.transformer.eval()
    wm.precision = cfg.precision
    return wm


def random_codes(model: Transformer, b: int, frames: int, context: bool, device: str) -> Tensor:
    """int64 (B, frames, N or n) uniform codes of the context or future codebook."""
    layout = model.layout
    vocab, per_frame = ((layout.context_vocab_size, layout.context_tokens) if context
                        else (layout.future_vocab_size, layout.future_tokens))
    return torch.randint(0, vocab, (b, frames, per_frame), device=device)


# ------------------------------------------------------------------------------ kv_cached, timed


def decode_seconds(wm: WorldModel, b: int, future: int, device: str) -> float:
    """Seconds to decode a clip's `future` frames per row (batch b) in batched passes (`_decode_frames`)."""
    size = wm.image_size
    frames = torch.randint(0, 256, (b, wm.num_context_frames, size, size, 3), dtype=torch.uint8)
    context = wm._encode_context(frames)
    codes = random_codes(wm.transformer, b, future, False, device)
    wm._decode_frames(codes[:1, :1], context.map(lambda x: x[:1]))  # warm-up
    return timed(lambda: wm._decode_frames(codes, context))


def kv_clip_seconds(cfg: RolloutBenchConfig, wm: WorldModel, b: int, future: int, gen: torch.Generator,
                    forward: bool = False, fan_out: bool = False, options: DecodeOptions | None = None
                    ) -> float:
    """Seconds of one clip's transformer work: the context forward, then `future` frames.

    forward: run each token through `Transformer.forward` instead of the decode engine.
    fan_out: one context encoded once and fanned out to the b rows (a shared cache prefix).
    options: the decode settings (default the bench's `decode_options`).
    """
    options = options or cfg.decode_options
    model, dev = wm.transformer, cfg.device
    ctx = random_codes(model, 1 if fan_out else b, cfg.context_frames, True, dev)
    actions = torch.rand(b, future, cfg.action_dim, generator=gen, device=dev)

    def clip() -> None:
        state = sampling.start(model, ctx, options=options)
        if fan_out:
            state.select(torch.zeros(b, dtype=torch.long, device=dev))
        for t in range(future):
            if forward:
                forward_step(model, state, actions[:, t], cfg.top_k, gen)
            else:
                sampling.step(model, state, actions[:, t], 1.0, cfg.top_k, gen)

    if options != cfg.decode_options:  # warm-up of a decode the cell has not run yet
        clip()
    return timed(clip)


@torch.no_grad()
def forward_step(model: Transformer, state: sampling.RolloutState, action: Tensor, top_k: int,
                 gen: torch.Generator) -> None:
    """One frame through the general forward, token by token (our `sampling.step` before the engine)."""
    layout, b = model.layout, state.batch_size
    token = torch.full((b, 1), layout.slot_id, device=action.device)
    no_logits = torch.zeros(0, dtype=torch.long, device=action.device)
    for j in range(layout.future_tokens + 1):
        last = j == layout.future_tokens
        out = model(token, action[:, None] if j == 0 else None, state.cache, no_logits if last else None)
        if not last:
            token = sampling.sample_codes(out.logits[:, -1], layout, 1.0, top_k, gen)[:, None]
            token = token + layout.context_vocab_size


@torch.no_grad()
def kv_profile(cfg: RolloutBenchConfig, model: Transformer, b: int, future: int, gen: torch.Generator
               ) -> dict[str, float]:
    """Seconds per frame of kv_cached's parts: transformer steps (+ logits), sampling; one clip, synced."""
    dev, layout = cfg.device, model.layout
    state = sampling.start(model, random_codes(model, b, cfg.context_frames, True, dev),
                           options=cfg.decode_options)
    engine = decode_engine(model, cfg.decode_options)
    n, cache = layout.future_tokens, state.cache
    transformer_s = sampling_s = 0.0
    for _ in range(future):
        rotations = engine.rotations(cache.length, n + 1)
        noise = gumbel_noise((n, b, layout.future_vocab_size), gen, torch.device(dev))
        x = engine.slot_input(torch.rand(b, cfg.action_dim, device=dev), b)
        for j in range(n + 1):
            t0 = now()
            x = engine.run_step(x, cache, rotations[j])
            if j == n:
                engine.read_heads(x)
                transformer_s += now() - t0
                break
            logits = engine.logits(x)
            t1 = now()
            code = sample_from_logits(logits, noise[j], 1.0, cfg.top_k)
            t2 = now()
            x = engine.code_input(code)
            transformer_s += (t1 - t0) + (now() - t2)
            sampling_s += t2 - t1
    return {"transformer_s_per_frame": transformer_s / future, "sampling_s_per_frame": sampling_s / future}


def decode_flops(model: Transformer, context_length: int, future: int) -> int:
    """FLOPs of one row's token steps over `future` frames: 2 per weight used, plus attention (4 L d)."""
    cfg, layout = model.cfg, model.layout
    d, h = cfg.n_embd, cfg.hidden_size
    weights = cfg.n_layer * (3 * d * d + d * d + 2 * d * h + h * d)
    head = d * layout.future_vocab_size
    steps = future * layout.frame_length
    attended = sum(context_length + i + 1 for i in range(steps))  # keys each step attends to
    return 2 * (weights * steps + head * future * layout.future_tokens) + 4 * cfg.n_layer * d * attended


def matmul_flops_per_s(cfg: RolloutBenchConfig, m: int, k: int, n: int) -> float:
    """FLOP/s of x (m, k) @ w (k, n) in the decode dtype on this device (median of 5 after a warm-up)."""
    x = torch.randn(m, k, device=cfg.device, dtype=cfg.torch_dtype)
    w = torch.randn(k, n, device=cfg.device, dtype=cfg.torch_dtype)
    reps = 20
    run = lambda: [x @ w for _ in range(reps)]
    run()
    return 2 * m * k * n * reps / float(np.median([timed(run) for _ in range(5)]))


# ---------------------------------------------------------------------------- per-frame schemes


def per_frame_seconds(cfg: RolloutBenchConfig, wm: WorldModel, scheme: str, b: int, future: int,
                      gen: torch.Generator, anchor: hf_anchor.OfficialScheme | None) -> dict[str, Any]:
    """Transformer seconds of a clip for a scheme that re-runs the prefix once per frame."""
    model, dev, layout = wm.transformer, cfg.device, wm.transformer.layout
    positions = sorted({int(p) for p in np.linspace(0, future - 1, min(cfg.slow_positions, future)).round()})
    times = []
    for k in positions:
        context = layout.encode_context(random_codes(model, b, cfg.context_frames, True, dev))
        codes = random_codes(model, b, k + 1, False, dev)  # frame k's own codes are overwritten
        prefix = torch.cat([context, layout.encode_future(codes)], dim=1)[:, : -layout.future_tokens]
        action = torch.rand(b, cfg.action_dim, generator=gen, device=dev)
        if scheme == ANCHOR:
            times.append(timed(lambda p=prefix, a=action: anchor.frame(p, a, cfg.top_k)))
        else:
            times.append(timed(lambda p=prefix, a=action: rerun_frame(model, p, a, cfg.top_k, gen)))
    return {"seconds": float(np.interp(np.arange(future), positions, times).sum()),
            "positions_timed": positions, "seconds_per_frame_at_positions": times}


@torch.no_grad()
def rerun_frame(model: Transformer, prefix: Tensor, action: Tensor, top_k: int, gen: torch.Generator) -> None:
    """prefix_rerun_frame on our transformer: a fresh cache over the prefix, then the frame's n tokens."""
    layout, (b, length) = model.layout, prefix.shape
    rows = torch.zeros(b, length, action.shape[1], device=action.device)
    rows[:, -1] = action
    cache = KVCache(model.cfg.n_layer, length + layout.future_tokens)
    out = model(prefix, rows, cache, torch.tensor([length - 1], device=prefix.device))
    for _ in range(layout.future_tokens):
        token = sampling.sample_codes(out.logits[:, -1], layout, 1.0, top_k, gen)[:, None]
        out = model(token + layout.context_vocab_size, None, cache)


def now() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def timed(fn: Callable[[], Any]) -> float:
    t0 = now()
    with torch.no_grad():
        fn()
    return now() - t0
