"""Training-step speed of the recipe's transformer on this machine: what each setting of the step costs.

The recipe (`scripts/train_pretrained.sh`, stage 4) trains a 4-layer, width-256 transformer on clips of 2
context frames of 16x16 codes and 6 future frames of 8x8 codes (903 tokens), 8 clips a step, bf16 autocast
on CPUs with AMX. On 2 CPU cores that step took 2.4 s, so its 6,000 steps outlast a working session. The
variants, each a real step through `train.job.optimizer_step` (autocast, loss, backward, clipping, AdamW) on
random codes of the recipe's shapes (speed does not depend on the values), timed side by side in rounds:

    before             the step as the recipe ran it: attention dropout 0.1 (docs/method.md §2), AdamW's
                       default on CPUs (a loop over the tensors), eager          THE BASELINE
    attn_dropout_0     no attention dropout: scaled_dot_product_attention can then take its fused flash
                       kernel instead of materialising, masking and dropping every 903x903 score matrix
    fused_adamw        and AdamW's fused kernel (`train.optim.build_adamw` on CPUs now)
    compiled           and the loss through `torch.compile` (`--train.compile`); its compile time is
                       reported apart

    python bench/train_step.py                       # writes bench/results/train_step.json
    python bench/train_step.py --quick               # smoke test: 2 timed steps a variant, prints only
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro
from record import command_line, write_result

from ivideogpt.config import load_yaml, merge
from ivideogpt.data.tokens import TokenBatch
from ivideogpt.train.distributed import init_runtime
from ivideogpt.train.job import optimizer_step
from ivideogpt.train.optim import param_groups
from ivideogpt.train.transformer import TransformerTrainConfig
from ivideogpt.transformer import TokenLayout, Transformer, TransformerConfig


@dataclass
class Args:
    json: Path | None = Path("bench/results/train_step.json")  # None: print only
    batch_size: int = 8  # clips a step (the recipe's)
    rounds: int = 3  # timed rounds; each times every variant in turn, so load hits them alike
    steps: int = 4  # timed steps a variant per round (after 2 warm-up steps)
    amp: str = "auto"  # "auto": bf16 autocast where the CPU has AMX (as the recipe), else float32
    quick: bool = False  # 1 round of 2 steps, nothing written


VARIANTS = {  # name: (attention dropout, fused AdamW, compiled)
    "before": (0.1, False, False),
    "attn_dropout_0": (0.0, False, False),
    "fused_adamw": (0.0, True, False),
    "compiled": (0.0, True, True),
}


def recipe_config(attn_dropout: float) -> TransformerConfig:
    """configs/transformer_metaworld64.yaml as the recipe trains it, on its tokenizer's codes (2 context
    frames of 16x16 codes, 6 future frames of 8x8, 1024-code books) and its data (4-d actions, rewards)."""
    model = merge(TransformerTrainConfig(), load_yaml("transformer_metaworld64")).model
    return dataclasses.replace(
        model, attn_dropout=attn_dropout, action_to="frame", context_vocab_size=1024, future_vocab_size=1024,
        tokens_per_context_frame=256, tokens_per_future_frame=64, max_context_frames=2, max_future_frames=6,
        action_dim=4, reward_head=True,
    )


def random_batch(cfg: TransformerConfig, b: int) -> TokenBatch:
    tc, tf = cfg.max_context_frames, cfg.max_future_frames
    t = tc + tf
    return TokenBatch(
        context_codes=torch.randint(0, cfg.context_vocab_size, (b, tc, cfg.tokens_per_context_frame)),
        future_codes=torch.randint(0, cfg.future_vocab_size, (b, tf, cfg.tokens_per_future_frame)),
        actions=torch.rand(b, t, cfg.action_dim) * 2 - 1, rewards=torch.rand(b, t) * 10,
        dones=torch.zeros(b, t, dtype=torch.bool), has_actions=torch.ones(b, dtype=torch.bool),
        has_rewards=torch.ones(b, dtype=torch.bool),
    )


def build_step(variant: str, batch: TokenBatch, amp: str) -> tuple[Callable[[], None], float]:
    """A closure running one training step of `variant`, and the seconds its first two steps took."""
    attn_dropout, fused, compiled = VARIANTS[variant]
    torch.manual_seed(0)
    model = Transformer(recipe_config(attn_dropout))
    runtime = init_runtime("cpu", amp)
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4, betas=(0.9, 0.99), fused=fused)
    loss_of = runtime.wrap(model, compile=compiled, method="compute_loss")

    def loss_fn(b: TokenBatch) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics, _ = loss_of(b)
        return loss, metrics

    def step() -> None:
        optimizer_step(loss_of, opt, loss_fn, [batch], runtime, 1.0)

    start = time.perf_counter()
    step(), step()  # warm-up: allocator, and for `compiled` the compilation
    return step, time.perf_counter() - start


def main(args: Args) -> None:
    if args.quick:
        args.rounds, args.steps, args.json = 1, 2, None
    amp = args.amp
    if amp == "auto":
        has_amx = "amx_bf16" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
        amp = "bf16" if has_amx else "off"
    cfg = recipe_config(0.0)
    batch = random_batch(cfg, args.batch_size)
    steps, warmup = {}, {}
    for name in VARIANTS:
        steps[name], warmup[name] = build_step(name, batch, amp)
        print(f"{name}: built, first two steps {warmup[name]:.1f} s")
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for r in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - start) / args.steps)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()))
    base = statistics.median(times["before"])
    rows = {name: {"s_per_step": statistics.median(t), "rounds": t, "speedup": base / statistics.median(t),
                   "first_two_steps_s": warmup[name]} for name, t in times.items()}
    print(f"\n{'variant':<16}{'s/step':>8}{'speedup':>9}{'first 2 steps':>15}")
    for name, row in rows.items():
        print(f"{name:<16}{row['s_per_step']:>8.2f}{row['speedup']:>8.2f}x{row['first_two_steps_s']:>14.1f}s")
    if args.json is not None:
        write_result(args.json, {
            "command": command_line(),
            "baseline": "before: the recipe's step as it ran (attention dropout 0.1, AdamW's default, eager)",
            "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                        "load_avg_at_end": os.getloadavg()},
            "torch": torch.__version__, "amp": amp, "batch_size": args.batch_size,
            "tokens_per_clip": TokenLayout(cfg).sequence_length(2, 6),
            "variants": rows,
        })


if __name__ == "__main__":
    main(tyro.cli(Args))
