"""Compressive vs per-frame tokenizers: tokens per future frame, future-frame quality, speed.

Trains four tokenizers with the same preset, data, seed and number of steps (through `train_tokenizer`,
the library's only training loop) and scores each on held-out episodes (the val split, by episode):

    compressive     the preset's tokenizer: 16x16 context tokens, future frames coded against the context
    perframe4x4     per-frame VQGAN downsampled to the compressive future grid (same tokens per future frame)
    perframe16x16   per-frame VQGAN at the compressive context grid (16x more tokens per future frame)
    compressive_blend  the compressive tokenizer with `future_blend` (D_p also outputs a mask blending its
                    frame with the last context frame; our addition, not the reference design)
    compressive_blend_8x8  the same with an 8x8 future grid (patch 2): 4x the tokens per future frame, so
                    4x the transformer steps per imagined frame; is what it buys on moving pixels worth it?
    NAME=DIR        (--trained) a tokenizer trained elsewhere (the shipped world model's, a fine-tune), scored
                    on the same clips without training
    copy_last       no tokenizer: the last context frame repeated, scored on the same clips (the bar a
                    future-frame code must clear to carry any motion)

Rows: tokens per future frame, PSNR/SSIM of FUTURE frames only, PSNR on their moving pixels (where the
truth differs from the last context frame: what the actions move), encode+decode frames/s, future-codebook
perplexity and share of codes used, training time. With `--counterfactual DIR` (branched scenes, e.g.
bench/actions.py's `cf_default`) also each tokenizer's reconstruction discrimination: how often its
reconstruction of a branch is closer to that branch's truth than its reconstruction of another branch, per
step and over steps 5-8; the most a world model on its codes can reach on the counterfactual test. Prints
a table and writes JSON.

    python bench/tokenizer.py --data data/metaworld --preset tokenizer_metaworld64          # the real run
    python bench/tokenizer.py --data data/mw-mix --reuse --json bench/results/tokenizer_grid.json \
        --trained shipped=src/ivideogpt/pretrained/metaworld64      # a trained tokenizer beside the grid
    python bench/tokenizer.py --data data/mw-mix-r4 --no-variants --json bench/results/tokenizer_cf.json \
        --counterfactual runs/bench_actions/data/cf_default \
        --trained shipped=src/ivideogpt/pretrained/metaworld64
    python bench/tokenizer.py --data /tmp/tiny --preset tokenizer_tiny --steps 5 --json /tmp/t.json  # smoke
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import tyro
from record import command_line, write_result

from ivideogpt.artifacts import load_any_tokenizer
from ivideogpt.config import load_yaml, merge
from ivideogpt.data.clips import ClipDataset
from ivideogpt.eval.baselines import copy_last_frame
from ivideogpt.eval.counterfactual import tokenizer_discrimination
from ivideogpt.eval.metrics import finite_mean, moving_psnr, psnr, ssim
from ivideogpt.tokenizer import TokenizerConfig
from ivideogpt.train.distributed import init_runtime
from ivideogpt.train.tokenizer import TokenizerTrainConfig, train_tokenizer
from ivideogpt.train.tokenizer_eval import evaluate_tokenizer, fixed_indices, val_batches

VARIANT_NAMES = ("compressive", "perframe4x4", "perframe16x16", "compressive_blend", "compressive_blend_8x8")


@dataclass
class BenchConfig:
    """Options of the tokenizer benchmark."""

    data: list[Path] = field(default_factory=list)  # dataset folder(s); validation uses their val split
    preset: str = "tokenizer_metaworld64"  # train-tokenizer preset the variants start from
    steps: int | None = None  # training steps per tokenizer (None: the preset's)
    work: Path = Path("runs/bench_tokenizer")  # training runs go to <work>/<name>/
    overwrite: bool = False  # delete earlier runs in <work> first
    reuse: bool = False  # score finished runs in <work> again, not retrain them (train time from their log)
    only: tuple[str, ...] = ()  # variants to run (names as in the table); empty: all of them
    variants: bool = True  # --no-variants: score only the --trained tokenizers and copy-last
    # "NAME=DIR": tokenizers trained elsewhere (export, run or world-model folder), scored beside the variants
    trained: tuple[str, ...] = ()
    counterfactual: Path | None = None  # branched scenes to score reconstruction discrimination on
    counterfactual_scenes: int = 64  # scenes of it scored (spread evenly)
    eval_clips: int = 256  # validation clips scored per tokenizer (spread evenly over the val split)
    eval_batch_size: int = 16  # clips per forward pass when scoring and timing
    json: Path = Path("bench/results/tokenizer.json")  # where the results go
    device: str = "auto"  # training and evaluation device

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"BenchConfig.steps must be >= 1, got {self.steps}")
        unknown = set(self.only) - set(VARIANT_NAMES)
        if unknown:
            raise ValueError(f"BenchConfig.only: unknown variant(s) {sorted(unknown)}; "
                             f"choose from {VARIANT_NAMES}")
        for entry in self.trained:
            name, sep, folder = entry.partition("=")
            if not (sep and name and folder) or name in VARIANT_NAMES or name == "copy_last":
                raise ValueError(f"BenchConfig.trained: {entry!r} is not NAME=DIR with a NAME of its own")
            if not Path(folder).exists():
                raise ValueError(f"BenchConfig.trained: {folder} does not exist")
        for name in ("eval_clips", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"BenchConfig.{name} must be >= 1, got {getattr(self, name)}")


def variants(base: TokenizerConfig) -> dict[str, TokenizerConfig]:
    """The tokenizers compared, all with the preset's widths, codebooks and latent size."""
    if base.kind != "compressive":
        raise ValueError(f"the preset's tokenizer must be compressive, got kind={base.kind!r}")
    per_frame = dataclasses.replace(base, kind="per_frame", cross_attn_resolutions=())
    extra = (base.latent_grid // base.future_grid).bit_length() - 1  # 2x downsamplings to the future grid
    coarse = dataclasses.replace(per_frame, channels=base.channels + (base.channels[-1],) * extra)
    blend = dataclasses.replace(base, future_blend=True)
    blend_8x8 = dataclasses.replace(blend, patch_size=base.patch_size // 2)
    return {"compressive": base, "perframe4x4": coarse, "perframe16x16": per_frame,
            "compressive_blend": blend, "compressive_blend_8x8": blend_8x8}


def train_config(cfg: BenchConfig, name: str, tokenizer: TokenizerConfig) -> TokenizerTrainConfig:
    """The preset's training config with this variant's tokenizer, run folder and step count."""
    base = merge(TokenizerTrainConfig(), load_yaml(cfg.preset))
    train = {"device": cfg.device} | ({"steps": cfg.steps} if cfg.steps is not None else {})
    return dataclasses.replace(merge(base, {"train": train}), data=list(cfg.data), out=cfg.work / name,
                               tokenizer=tokenizer, config=cfg.preset)


def scored_batches(train_cfg: TokenizerTrainConfig, cfg: BenchConfig) -> list:
    """The validation clips every row is scored on (the same ones for each tokenizer and for copy-last)."""
    val = ClipDataset(train_cfg.data, train_cfg.clips, "val")
    return val_batches(val, fixed_indices(val, cfg.eval_clips), cfg.eval_batch_size)


def score(export: Path, train_cfg: TokenizerTrainConfig, cfg: BenchConfig) -> dict[str, float]:
    """Future-frame quality, codebook use and speed of an exported tokenizer on the val split."""
    device = init_runtime(cfg.device).device
    tokenizer = load_any_tokenizer(export, device)
    batches = scored_batches(train_cfg, cfg)
    sizes = {"future": tokenizer.future_vocab_size}
    num_context = train_cfg.clips.context_frames
    evaluate_tokenizer(tokenizer, batches[:1], num_context, sizes, device)  # warm-up: allocations, kernels
    metrics = evaluate_tokenizer(tokenizer, batches, num_context, sizes, device)
    discrimination = {}
    if cfg.counterfactual is not None:
        per_step = tokenizer_discrimination(tokenizer, cfg.counterfactual, num_context,
                                            scenes=cfg.counterfactual_scenes)
        discrimination = {"recon_discrimination_per_step": per_step,
                          "recon_discrimination_steps_5_8": sum(per_step[4:8]) / len(per_step[4:8])}
    return {
        "tokens_per_future_frame": tokenizer.tokens_per_future_frame,
        "psnr": metrics["future_psnr"],
        "ssim": metrics["future_ssim"],
        "psnr_moving": metrics.get("future_psnr_moving"),
        "frames_per_s": metrics["frames_per_s"],
        "codebook_perplexity": metrics["future_perplexity"],
        "codes_used_share": metrics["future_used_share"],
        "val_clips": sum(len(b.frames) for b in batches),
        **discrimination,
    }


def score_copy_last(train_cfg: TokenizerTrainConfig, cfg: BenchConfig) -> dict[str, float]:
    """PSNR/SSIM of repeating the last context frame, on the clips `score` uses."""
    batches = scored_batches(train_cfg, cfg)
    tc = train_cfg.clips.context_frames
    psnrs, ssims, moving = [], [], []
    for batch in batches:
        truth = batch.frames[:, tc:]  # uint8 (B, Tf, H, W, 3)
        copy = torch.from_numpy(copy_last_frame(batch.frames[:, :tc].numpy(), truth.shape[1]))
        psnrs.append(psnr(truth, copy).flatten())
        ssims.append(ssim(truth, copy).flatten())
        moving.append(moving_psnr(truth, copy, copy).flatten())  # the copy is the last context frame
    return {"tokens_per_future_frame": 0, "psnr": float(torch.cat(psnrs).mean()),
            "ssim": float(torch.cat(ssims).mean()), "psnr_moving": finite_mean(torch.cat(moving).numpy()),
            "val_clips": sum(len(b.frames) for b in batches)}


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Train and score the variants and copy-last; print the table and write the JSON (returned too)."""
    if not cfg.data:
        raise ValueError("BenchConfig.data: give the dataset folder(s) with --data")
    start = time.perf_counter()
    rows, steps = [], None
    earlier = {}  # train seconds of the runs --reuse scores again, as the earlier JSON recorded them
    if cfg.reuse and cfg.json.exists():
        earlier = {r["name"]: r["train_time_s"] for r in json.loads(cfg.json.read_text())["rows"]
                   if "train_time_s" in r}  # copy_last has none
    base = merge(TokenizerTrainConfig(), load_yaml(cfg.preset)).tokenizer
    train_cfg = train_config(cfg, "copy_last", base)  # every row is scored on its clips (same for all)
    for name, tokenizer in variants(base).items():
        if not cfg.variants or (cfg.only and name not in cfg.only):
            continue
        train_cfg = train_config(cfg, name, tokenizer)
        steps = train_cfg.train.steps
        finished = train_cfg.out / "tokenizer" / "config.json"
        if cfg.reuse and finished.exists():
            export, train_time = finished.parent, earlier.get(name, logged_train_time(train_cfg.out))
        else:
            if train_cfg.out.exists():
                if not cfg.overwrite:
                    raise FileExistsError(f"{train_cfg.out} exists: pass --overwrite to retrain, --reuse to "
                                          "score it again, or another --work")
                shutil.rmtree(train_cfg.out)
            t0 = time.perf_counter()
            export = train_tokenizer(train_cfg)
            train_time = time.perf_counter() - t0
        rows.append({"name": name, **score(export, train_cfg, cfg), "train_time_s": train_time})
    for entry in cfg.trained:
        name, _, folder = entry.partition("=")
        log = Path(folder) / "log.jsonl"  # a run folder's log gives its training time
        train_time = logged_train_time(Path(folder)) if log.exists() else float("nan")
        rows.append({"name": name, "source": folder, **score(Path(folder), train_cfg, cfg),
                     "train_time_s": train_time})
    rows.append({"name": "copy_last", **score_copy_last(train_cfg, cfg)})
    result = {"command": command_line(), "preset": cfg.preset, "steps": steps,
              "data": [str(d) for d in cfg.data], "device": cfg.device,
              "torch_threads": torch.get_num_threads(),
              "wall_time_s": time.perf_counter() - start, "rows": rows}
    write_result(cfg.json, result)
    print(format_table(rows))
    return result


def logged_train_time(run_dir: Path) -> float:
    """Seconds from the first to the last line of a run's log: about what it cost to train (a lower bound)."""
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    times = [line["time"] for line in lines if "time" in line]
    return times[-1] - times[0] if len(times) > 1 else float("nan")


def format_table(rows: list[dict[str, Any]]) -> str:
    """The result rows as a fixed-width text table."""
    header = f"{'tokenizer':<22}{'tokens/future frame':>21}{'PSNR':>8}{'SSIM':>8}{'PSNR mov':>10}" \
             f"{'frames/s':>10}{'perplexity':>12}{'codes used':>12}{'train s':>9}{'discr 5-8':>11}"
    lines = [header, "-" * len(header)]
    for r in rows:
        moving = "n/a" if r.get("psnr_moving") is None else f"{r['psnr_moving']:.2f}"
        line = (f"{r['name']:<22}{r['tokens_per_future_frame']:>21}{r['psnr']:>8.2f}{r['ssim']:>8.3f}"
                f"{moving:>10}")
        if "frames_per_s" in r:  # a tokenizer (copy_last has quality only)
            line += (f"{r['frames_per_s']:>10.1f}{r['codebook_perplexity']:>12.1f}"
                     f"{r['codes_used_share']:>12.1%}{r['train_time_s']:>9.0f}")
            discr = r.get("recon_discrimination_steps_5_8")
            line += f"{'n/a' if discr is None else f'{discr:.3f}':>11}"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    run(tyro.cli(BenchConfig, description=__doc__.split("\n\n")[0]))
