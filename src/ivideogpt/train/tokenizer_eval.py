"""Validation of a tokenizer on held-out clips: reconstruction quality, codebook usage, speed, sample images.

Context and future frames are scored separately: the future frames are the ones a world model predicts
(16 tokens each for the compressive tokenizer), while the context frames get a full per-frame code, so an
average over both would flatter the compressive design (the reference code averages them;
docs/method.md §1).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ivideogpt.data.clips import ClipBatch, ClipDataset, collate_clips
from ivideogpt.data.frames import to_model, to_uint8
from ivideogpt.eval.metrics import finite_mean, moving_psnr, psnr, ssim
from ivideogpt.media import add_label, hstack_videos, save_video, tile_videos
from ivideogpt.modes import eval_mode


def fixed_indices(dataset: ClipDataset, count: int) -> list[int]:
    """`count` clip indices spread evenly over `dataset` (the same clips at every evaluation)."""
    count = min(count, len(dataset))
    return np.linspace(0, len(dataset) - 1, count).round().astype(int).tolist()


def val_batches(dataset: ClipDataset, indices: Sequence[int], batch_size: int) -> list[ClipBatch]:
    """The clips `indices` of `dataset`, collated in batches of `batch_size` (the last may be smaller)."""
    return [collate_clips([dataset[i] for i in indices[s : s + batch_size]])
            for s in range(0, len(indices), batch_size)]


def codebook_usage(counts: Tensor) -> dict[str, float]:
    """Usage statistics of one codebook from its code histogram.

    Args:
        counts: int `(K,)` how often each of the K codes was chosen.

    Returns:
        perplexity (exp of the code entropy: K when all codes are used equally, 1 when one code is used),
        share of codes used at least once, and the number of dead (never used) codes.
    """
    total = counts.sum().clamp_min(1)
    p = counts.double() / total
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    used = int((counts > 0).sum())
    return {"perplexity": float(entropy.exp()), "used_share": used / len(counts),
            "dead_codes": float(len(counts) - used)}


@torch.no_grad()
def evaluate_tokenizer(
    tokenizer: nn.Module,
    batches: Sequence[ClipBatch],
    num_context: int,
    codebook_sizes: dict[str, int],
    device: torch.device,
) -> dict[str, float]:
    """Reconstruct the clips and score them.

    Args:
        tokenizer: a tokenizer whose `forward(clip (B,T,3,H,W) in [-1,1], num_context)` returns an output
            with `recon` (same shape) and integer `context_codes` / `future_codes`.
        batches: validation clips.
        num_context: context frames per clip.
        codebook_sizes: {"context": K_c, "future": K_f} (only the codebooks present).
        device: where to run.

    Returns:
        {"future_psnr", "future_ssim", "future_psnr_moving" (PSNR where the truth differs from the last
        context frame), "context_psnr", "context_ssim", "<codebook>_perplexity",
        "<codebook>_used_share", "<codebook>_dead_codes", "frames_per_s"}: frame metrics are means over
        frames; frames_per_s counts encode+decode of every frame of every clip.
    """
    with eval_mode(tokenizer):
        scores: dict[str, list[Tensor]] = {"future_psnr": [], "future_ssim": [], "context_psnr": [],
                                           "context_ssim": [], "future_psnr_moving": []}
        counts = {name: torch.zeros(size, dtype=torch.long) for name, size in codebook_sizes.items()}
        frames, seconds = 0, 0.0
        for batch in batches:
            truth = batch.frames.to(device)  # uint8 (B, T, H, W, 3)
            t0 = time.perf_counter()
            out = tokenizer(to_model(truth), num_context)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - t0
            frames += truth.shape[0] * truth.shape[1]
            recon = to_uint8(out.recon)  # uint8 (B, T, H, W, 3)
            for part, sl in (("context", slice(0, num_context)), ("future", slice(num_context, None))):
                scores[f"{part}_psnr"].append(psnr(truth[:, sl], recon[:, sl]).flatten().cpu())
                scores[f"{part}_ssim"].append(ssim(truth[:, sl], recon[:, sl]).flatten().cpu())
            future, last = truth[:, num_context:], truth[:, num_context - 1 : num_context]
            if future.shape[1]:  # what moved since the last context frame, scored apart (NaN: nothing moved)
                moving = moving_psnr(future, recon[:, num_context:], last.expand_as(future))
                scores["future_psnr_moving"].append(moving.flatten().cpu())
            for name, hist in counts.items():
                codes = getattr(out, f"{name}_codes")  # int64 (B, T_part, h, w)
                hist += torch.bincount(codes.flatten().cpu(), minlength=len(hist))
    metrics = {k: finite_mean(torch.cat(v).double().numpy()) for k, v in scores.items() if v}
    metrics = {k: v for k, v in metrics.items() if v is not None}  # no moving pixel at all: left out
    for name, c in counts.items():
        if c.sum() > 0:
            metrics.update({f"{name}_{k}": v for k, v in codebook_usage(c).items()})
    metrics["frames_per_s"] = frames / max(seconds, 1e-9)
    return metrics


@torch.no_grad()
def write_reconstructions(
    tokenizer: nn.Module, frames: Tensor, num_context: int, path_stem: Path, device: torch.device,
    fps: float = 4.0,
) -> list[Path]:
    """Write truth vs reconstruction for a few clips as `<stem>.png` (frame strips) and `<stem>.gif`.

    The PNG has two rows per clip (truth, then reconstruction) with the context frames left of a gap
    and the future frames right of it; the GIF plays truth | reconstruction side by side per clip.

    Args:
        tokenizer: as in `evaluate_tokenizer`.
        frames: uint8 `(B, T, H, W, 3)` clips.
        num_context: context frames per clip.
        path_stem: output path without suffix.
        device: where to run.
        fps: GIF frame rate.
    """
    with eval_mode(tokenizer):
        recon = tokenizer(to_model(frames.to(device)), num_context).recon
        recon = to_uint8(recon).cpu().numpy()  # (B, T, H, W, 3)
    truth_np = frames.numpy()
    rows = []
    for t, r in zip(truth_np, recon, strict=True):
        rows += [_strip(t, num_context), _strip(r, num_context)]
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    png = path_stem.with_suffix(".png")
    Image.fromarray(tile_videos([row[None] for row in rows], cols=1)[0]).save(png)
    pairs = [add_label(hstack_videos([t, r]), "truth | recon") for t, r in zip(truth_np, recon, strict=True)]
    grid = tile_videos(pairs, cols=math.ceil(math.sqrt(len(pairs))))
    gif = save_video(path_stem.with_suffix(".gif"), grid, fps)
    return [png, gif]


def _strip(frames: np.ndarray, num_context: int, gap: int = 6) -> np.ndarray:
    """uint8 `(T, H, W, 3)` -> one image row: context frames, a wide white gap, future frames (1 px apart)."""
    h = frames.shape[1]
    parts: list[np.ndarray] = []
    for t, frame in enumerate(frames):
        if t:
            parts.append(np.full((h, gap if t == num_context else 1, 3), 255, np.uint8))
        parts.append(frame)
    return np.concatenate(parts, axis=1)
