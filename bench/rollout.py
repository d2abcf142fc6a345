"""Rollout speed: imagined frames/s of our KV-cached decode against the official code's scheme, one run.

Schemes, one transformer shape (a preset, randomly initialised: speed does not depend on training), clips of
1 context frame + 7 or 15 imagined frames, batch 1, 32 and 256:

    kv_cached              ours: context encoded once, each frame = 1 + n single-token steps of the
                           transformer's `DecodeEngine` (static KV cache, fused step), n = 16
    kv_cached_bf16_cache   kv_cached with float32 weights and a bfloat16 KV cache (`WorldModel.precision =
                           "bfloat16-cache"`): half the cache bytes each step reads, which at batch >= 32 are
                           most of its time; at batch 1 it is noise
    kv_cached_forward      the same cache, each token through the general `Transformer.forward` (our
                           rollout before the engine)
    hf_generate_per_frame  THE ANCHOR: the official iVideoGPT code's scheme on a Hugging Face
                           `LlamaForCausalLM` of the same shape: one `generate(use_cache=True, do_sample=True,
                           top_k=100)` per frame over the whole prefix (hf_anchor.py); needs the `bench` extra
    prefix_rerun_frame     the same scheme on our transformer (a fresh cache per frame), as a check

Every scheme's frames/s includes tokenizer decoding of its frames: the clip's frames decoded in one batched
pass (the same cost for every scheme, measured in the same run). kv_cached times whole clips (context,
frames, decoding); the per-frame schemes time frames at a few positions (the prefix grows) and sum the
per-position times over the clip, interpolating linearly in between; the positions are recorded. They run
at the anchor batch sizes (1 and 32): at 256 the prefix re-runs would take an hour.

Planning's pattern (`fanout` cells): ONE context and B action sequences, as MPPI/CEM imagine them.
kv_cached_shared encodes the context once and fans it out (`RolloutState.select`: the context's keys are a
prefix shared by every row, read once per step); kv_cached encodes the context B times; the anchor, as the
official planning code does, runs its per-frame scheme on the context repeated B times.

Also: where kv_cached's time goes (transformer steps, sampling, decoder), the FLOP/s of its token steps
against a same-shape matmul timed in the run, the 138M preset at batch 1, and the shipped model
(`ivideogpt.pretrained_path()`) through `WorldModel.rollout` / `step`. `--device cuda` decodes in bf16 with
the step compiled (`torch.compile(mode="reduce-overhead")`, CUDA graphs).

The schemes themselves (models, timed clips, profile, FLOP count, the per-frame schemes) are in
rollout_schemes.py; this file composes them into cells, prints the table and writes the JSON.

    python bench/rollout.py            # the full run (tens of minutes on 2 CPU cores), writes the JSON
    python bench/rollout.py --quick    # smoke test: tiny models, prints only
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hf_anchor
import numpy as np
import torch
import tyro
from record import command_line, write_result
from rollout_schemes import (
    ANCHOR,
    KV16,
    build_world_model,
    decode_flops,
    decode_seconds,
    kv_clip_seconds,
    kv_profile,
    matmul_flops_per_s,
    per_frame_seconds,
    timed,
)

import ivideogpt
from ivideogpt.transformer.fast_decode import PRECISIONS, DecodeOptions
from ivideogpt.world_model import WorldModel

SCHEMES = ("kv_cached", KV16, "kv_cached_forward", ANCHOR, "prefix_rerun_frame")


@dataclass
class RolloutBenchConfig:
    """Options of the rollout benchmark."""

    tokenizer: str = "metaworld64"  # compressive tokenizer preset (256 context, 16 future tokens a frame)
    transformer: str = "small"  # transformer preset, the same shape for every scheme
    action_dim: int = 4  # actions on every slot (Meta-World's 4)
    batch_sizes: tuple[int, ...] = (1, 32, 256)  # rollouts imagined at once
    anchor_batch_sizes: tuple[int, ...] = (1, 32)  # where the per-frame schemes run too
    fanout_batch_sizes: tuple[int, ...] = (32, 256)  # one context, this many action sequences (planning)
    clip_lengths: tuple[int, ...] = (8, 16)  # context + imagined frames per clip
    context_frames: int = 1  # real frames the clip starts from
    slow_positions: int = 3  # frame positions timed for the per-frame schemes (first and last included)
    repeats: int = 3  # kv_cached clips timed per cell (median; 1 at batch >= 256)
    big_transformer: str | None = "138m"  # preset also timed at batch 1 (None: skip)
    shipped: bool = True  # time the shipped world model at batch 1
    shipped_horizons: tuple[int, ...] = (6, 16)  # its trained clip (2 + 6 frames) and a sliding rollout
    top_k: int = 100  # sampling of every scheme (temperature 1, the official default)
    threads: int | None = None  # torch CPU threads (None: torch's default)
    device: str = "cpu"  # torch device; cuda: bf16 decode with the step compiled
    dtype: str = "float32"  # CPU decode dtype of every scheme, the anchor's too ("bfloat16": AMX CPUs)
    quick: bool = False  # smoke test: tiny presets, small batches, short clips; prints only unless --json
    json: Path | None = None  # where the results go (default bench/results/rollout.json; none for --quick)
    seed: int = 0  # seeds the random weights, codes and sampling

    def __post_init__(self) -> None:
        for name in ("action_dim", "context_frames", "slow_positions", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"RolloutBenchConfig.{name} must be >= 1, got {getattr(self, name)}")
        if min(self.clip_lengths) <= self.context_frames:
            raise ValueError(f"RolloutBenchConfig.clip_lengths {self.clip_lengths} must exceed "
                             f"context_frames ({self.context_frames})")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"RolloutBenchConfig.batch_sizes must be positive, got {self.batch_sizes}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"RolloutBenchConfig.dtype must be float32 or bfloat16, got {self.dtype!r}")
        if self.quick:
            self.tokenizer, self.transformer, self.big_transformer = "tiny", "tiny", None
            self.batch_sizes, self.anchor_batch_sizes, self.clip_lengths = (1, 4), (1, 4), (4,)
            self.fanout_batch_sizes = (4,)
            self.slow_positions, self.repeats, self.shipped_horizons = 2, 1, (2,)

    @property
    def decode_options(self) -> DecodeOptions:
        if torch.device(self.device).type == "cuda":
            return DecodeOptions(dtype=torch.bfloat16, compile=True)
        return PRECISIONS[self.dtype]

    @property
    def torch_dtype(self) -> torch.dtype:
        return self.decode_options.dtype or torch.float32

    @property
    def precision(self) -> str:
        """`WorldModel.precision` of the bench's world models (the tokenizer's autocast follows it)."""
        return "bfloat16" if self.torch_dtype == torch.bfloat16 else "float32"


# ----------------------------------------------------------------------------------------- cells


def clip_cell(cfg: RolloutBenchConfig, wm: WorldModel, b: int, clip: int, gen: torch.Generator,
              anchor: hf_anchor.OfficialScheme | None, schemes: tuple[str, ...]) -> dict[str, Any]:
    """Every scheme at batch b on clips of `clip` frames: frames/s, tokenizer decoding included."""
    future = clip - cfg.context_frames
    decode_s = decode_seconds(wm, b, future, cfg.device)
    kv_clip_seconds(cfg, wm, b, 1, gen)  # warm-up (and compilation, on a GPU)
    repeats = 1 if b >= 256 else cfg.repeats
    seconds = {"kv_cached": float(np.median([kv_clip_seconds(cfg, wm, b, future, gen)
                                             for _ in range(repeats)]))}
    details: dict[str, Any] = {}
    if KV16 in schemes and cfg.decode_options.dtype is None:
        seconds[KV16] = kv_clip_seconds(cfg, wm, b, future, gen, options=PRECISIONS["bfloat16-cache"])
    if "kv_cached_forward" in schemes:
        seconds["kv_cached_forward"] = kv_clip_seconds(cfg, wm, b, future, gen, forward=True)
    for scheme in (ANCHOR, "prefix_rerun_frame"):
        if scheme in schemes and (scheme != ANCHOR or anchor is not None):
            details[scheme] = per_frame_seconds(cfg, wm, scheme, b, future, gen, anchor)
            seconds[scheme] = details[scheme]["seconds"]
    profile = kv_profile(cfg, wm.transformer, b, future, gen)
    profile["decoder_s_per_frame"] = decode_s / future
    total = sum(profile.values())
    profile["fractions"] = {k.removesuffix("_s_per_frame"): v / total for k, v in profile.items()}
    row = {
        "frames_per_s": {s: b * future / (t + decode_s) for s, t in seconds.items()},
        "transformer_frames_per_s": {s: b * future / t for s, t in seconds.items()},
        "decode_seconds_per_clip": decode_s,
        "kv_cached_profile": profile,
        "per_frame_schemes": details,
    }
    if ANCHOR in seconds:
        row["speedup_vs_anchor"] = {s: r / row["frames_per_s"][ANCHOR]
                                    for s, r in row["frames_per_s"].items()}
    return row


def fanout_cell(cfg: RolloutBenchConfig, wm: WorldModel, b: int, clip: int, gen: torch.Generator,
                anchor: hf_anchor.OfficialScheme | None) -> dict[str, Any]:
    """One context, b action sequences: frames/s with a shared context cache, without, and the anchor's."""
    future = clip - cfg.context_frames
    decode_s = decode_seconds(wm, b, future, cfg.device)
    kv_clip_seconds(cfg, wm, b, 1, gen, fan_out=True)  # warm-up
    seconds = {"kv_cached_shared": kv_clip_seconds(cfg, wm, b, future, gen, fan_out=True),
               "kv_cached": kv_clip_seconds(cfg, wm, b, future, gen)}
    if anchor is not None and b in cfg.anchor_batch_sizes:
        seconds[ANCHOR] = per_frame_seconds(cfg, wm, ANCHOR, b, future, gen, anchor)["seconds"]
    row: dict[str, Any] = {
        "frames_per_s": {s: b * future / (t + decode_s) for s, t in seconds.items()},
        "transformer_frames_per_s": {s: b * future / t for s, t in seconds.items()},
        "decode_seconds_per_clip": decode_s,
        "shared_vs_repeated_context": seconds["kv_cached"] / seconds["kv_cached_shared"],
    }
    if ANCHOR in seconds:
        row["speedup_vs_anchor"] = {s: r / row["frames_per_s"][ANCHOR]
                                    for s, r in row["frames_per_s"].items()}
    return row


def flops_cell(cfg: RolloutBenchConfig, wm: WorldModel, b: int, clip: int,
               row: dict[str, Any]) -> dict[str, Any]:
    """Achieved FLOP/s of kv_cached's token steps at batch b against a same-shape matmul (m = b)."""
    model = wm.transformer
    future = clip - cfg.context_frames
    flops = b * decode_flops(model, model.layout.context_length(cfg.context_frames), future)
    seconds = future * row["kv_cached_profile"]["transformer_s_per_frame"]
    shape = (b, model.cfg.n_embd, 2 * model.cfg.hidden_size)  # the step's widest matmul (gate and up)
    matmul = matmul_flops_per_s(cfg, *shape)
    return {"decode_flops_per_s": flops / seconds, "matmul_flops_per_s": matmul, "matmul_shape": list(shape),
            "fraction_of_matmul": flops / seconds / matmul}


def shipped_cell(cfg: RolloutBenchConfig) -> dict[str, Any]:
    """The shipped model at batch 1 through the public API, with its own sampling defaults."""
    wm = WorldModel.load(ivideogpt.pretrained_path(), cfg.device)
    wm.precision = cfg.precision
    size, tc = wm.image_size, wm.num_context_frames
    rng = np.random.default_rng(cfg.seed)
    frames = rng.integers(0, 256, (1, tc, size, size, 3), np.uint8)
    out: dict[str, Any] = {"sampling": dataclasses.asdict(wm.spec.sampling), "context_frames": tc}
    wm.rollout(frames, rng.uniform(-1, 1, (1, 2, wm.action_dim)).astype(np.float32), seed=0)  # warm-up
    for horizon in cfg.shipped_horizons:
        actions = rng.uniform(-1, 1, (1, horizon, wm.action_dim)).astype(np.float32)
        rollout_s = float(np.median([timed(lambda a=actions: wm.rollout(frames, a, seed=0))
                                     for _ in range(cfg.repeats)]))
        state = wm.reset(frames, seed=0)
        step_s = timed(lambda s=state, a=actions: [wm.step(s, a[:, t]) for t in range(a.shape[1])])
        out[str(horizon)] = {"rollout_frames_per_s": horizon / rollout_s,
                             "step_frames_per_s": horizon / step_s}
    return out


def big_cell(cfg: RolloutBenchConfig, gen: torch.Generator) -> dict[str, Any]:
    """The big preset at batch 1 on the longest clip: kv_cached, its forward twin and the anchor."""
    clip = max(cfg.clip_lengths)
    wm = build_world_model(cfg, cfg.big_transformer, clip - cfg.context_frames)
    anchor = (hf_anchor.OfficialScheme(wm.transformer, cfg.device, cfg.torch_dtype)
              if hf_anchor.available() else None)
    row = clip_cell(cfg, wm, 1, clip, gen, anchor, ("kv_cached", "kv_cached_forward", ANCHOR))
    return {"preset": cfg.big_transformer, "params": wm.transformer.num_params(), "clip_frames": clip,
            "batch": 1, **row}


# ----------------------------------------------------------------------------------------- main


def run(cfg: RolloutBenchConfig) -> dict[str, Any]:
    """Time every cell; print the table, write the JSON (returned)."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    start, load_before = time.perf_counter(), os.getloadavg()
    gen = torch.Generator(cfg.device).manual_seed(cfg.seed)
    if not hf_anchor.available():
        print(f"{ANCHOR}: skipped, `transformers` is not installed (pip install -e '.[bench]')")
    cells: dict[str, Any] = {}
    flops: dict[str, Any] = {}
    fanout: dict[str, Any] = {}
    anchor_info = None
    for clip in cfg.clip_lengths:
        wm = build_world_model(cfg, cfg.transformer, clip - cfg.context_frames)
        anchor = (hf_anchor.OfficialScheme(wm.transformer, cfg.device, cfg.torch_dtype)
                  if hf_anchor.available() else None)
        anchor_info = anchor.describe() if anchor is not None else None
        for b in cfg.batch_sizes:
            schemes = SCHEMES if b in cfg.anchor_batch_sizes else ("kv_cached", KV16)
            cells[f"clip{clip}_b{b}"] = clip_cell(cfg, wm, b, clip, gen, anchor, schemes)
            print(format_cell(f"clip {clip}, batch {b}", cells[f"clip{clip}_b{b}"]), flush=True)
        b = max(cfg.batch_sizes)
        flops[f"clip{clip}_b{b}"] = flops_cell(cfg, wm, b, clip, cells[f"clip{clip}_b{b}"])
        if clip == min(cfg.clip_lengths):
            for b in cfg.fanout_batch_sizes:
                fanout[f"clip{clip}_b{b}"] = fanout_cell(cfg, wm, b, clip, gen, anchor)
                print(format_fanout(f"one context, clip {clip}, {b} samples", fanout[f"clip{clip}_b{b}"]),
                      flush=True)
    params = wm.transformer.num_params()
    out = {
        "command": command_line(),
        "device": _device_name(cfg.device),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "decode_options": {"dtype": str(cfg.torch_dtype), "compile": cfg.decode_options.compile},
        "load_average_1min": {"start": load_before[0], "end": 0.0},
        "transformer_preset": cfg.transformer,
        "transformer_params": params,
        "tokenizer": cfg.tokenizer,
        "context_frames": cfg.context_frames,
        "top_k": cfg.top_k,
        "anchor": anchor_info or f"{ANCHOR} skipped: transformers not installed",
        "cells": cells,
        "flops": flops,
        "fanout": fanout,
        "big_preset_batch1": big_cell(cfg, gen) if cfg.big_transformer else None,
        "shipped_model_batch1": shipped_cell(cfg) if cfg.shipped else None,
        "wall_time_s": 0.0,
    }
    out["load_average_1min"]["end"] = os.getloadavg()[0]
    out["wall_time_s"] = time.perf_counter() - start
    print(format_summary(out))
    path = cfg.json if cfg.json is not None or cfg.quick else Path("bench/results/rollout.json")
    if path is not None:
        write_result(path, out)
    return out


def scheme_lines(name: str, row: dict[str, Any]) -> list[str]:
    """A cell's name, then one line per scheme: frames/s and speed-up over the anchor."""
    lines = [name]
    for s, rate in row["frames_per_s"].items():
        speedup = row.get("speedup_vs_anchor", {}).get(s)
        lines.append(f"  {s:<24}{rate:>10.2f} frames/s" + (f"{speedup:>8.2f}x anchor" if speedup else ""))
    return lines


def format_cell(name: str, row: dict[str, Any]) -> str:
    """One cell's schemes as aligned text."""
    lines = scheme_lines(name, row)
    p = row["kv_cached_profile"]["fractions"]
    lines.append("  kv_cached time: " + ", ".join(f"{k} {v:.0%}" for k, v in p.items()))
    return "\n".join(lines)


def format_fanout(name: str, row: dict[str, Any]) -> str:
    """A fan-out cell as aligned text."""
    ratio = row["shared_vs_repeated_context"]
    return "\n".join([*scheme_lines(name, row), f"  shared context: transformer {ratio:.2f}x repeated"])


def format_summary(out: dict[str, Any]) -> str:
    """FLOP/s, big preset and shipped model lines."""
    lines = []
    for name, f in out["flops"].items():
        lines.append(f"{name}: decode {f['decode_flops_per_s'] / 1e9:.1f} GFLOP/s = "
                     f"{f['fraction_of_matmul']:.0%} of a {'x'.join(map(str, f['matmul_shape']))} matmul "
                     f"({f['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s)")
    if out["big_preset_batch1"]:
        big = out["big_preset_batch1"]
        lines.append(format_cell(f"{big['preset']} preset, clip {big['clip_frames']}, batch 1", big))
    if out["shipped_model_batch1"]:
        for horizon, r in out["shipped_model_batch1"].items():
            if isinstance(r, dict) and "rollout_frames_per_s" in r:
                lines.append(f"shipped model, batch 1, {horizon} frames: rollout "
                             f"{r['rollout_frames_per_s']:.1f} frames/s (context encoding included), "
                             f"step {r['step_frames_per_s']:.1f} frames/s")
    lines.append(f"load average {out['load_average_1min']}, wall time {out['wall_time_s']:.0f} s")
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
