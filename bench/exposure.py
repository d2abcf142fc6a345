"""How much does a world model lose to its own mistakes within one imagined frame? Teacher-forced vs greedy.

A frame's future codes are predicted one after another, each reading the codes before it. In training
those are always the true codes (teacher forcing); in a rollout they are the model's own. For clips of Tc
context frames + 1 future frame of held-out episodes, the first imagined frame's codes are taken three
ways and decoded by the model's tokenizer against the same context:

    tokenizer        the true codes (the tokenizer's reconstruction: the ceiling)
    teacher_forced   at each position, the model's argmax after the TRUE codes before it
    greedy           the greedy rollout: each argmax after the model's own codes before it

and scored against the real frame, beside copying the last context frame. Figures per model and way:
`accuracy` (share of the true codes hit), `nll` (the frame's codes' negative log-likelihood under the
model, nats), `psnr` and `psnr_moving` (dB; moving = pixels that differ from the last context frame, as in
`ivideogpt eval`). A greedy rollout far below teacher forcing is either exposure bias (the model never
read its own mistakes, and one wrong code leads to more; the option `self_feed`, docs/method.md §6, trains
on them) or an atypical mode: a greedy frame far likelier than the true one (lower `nll`) yet decoded far
worse says the fault is in what the codes make likely, not in the search. No anchor: a diagnostic of each
model, side by side.

    python bench/exposure.py --models runs/snaps/main5200 --data runs/bench_actions/data/ordinary-r4
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
import tyro
from action_clips import load_action_model
from record import command_line, write_result
from tqdm import tqdm

from ivideogpt.data.clips import ClipDataset, collate_clips
from ivideogpt.data.frames import to_model, to_uint8
from ivideogpt.eval.metrics import moving_psnr, psnr
from ivideogpt.eval.scores import spread_indices
from ivideogpt.media import add_label, hstack_videos, tile_videos, upscale
from ivideogpt.transformer.sampling import generate_frames
from ivideogpt.world_model import WorldModel

WAYS = ("tokenizer", "teacher_forced", "greedy", "copy_last")


@dataclass
class ExposureConfig:
    models: list[Path] = field(default_factory=list)  # world-model folders (with actions)
    data: Path = Path("runs/bench_actions/data/ordinary-r4")  # episodes with actions, never trained on
    clips: int = 128  # clips of Tc + 1 frames, spread evenly over all of the data's clips
    batch: int = 32
    json: Path = Path("bench/results/exposure.json")
    grid: Path | None = None  # also write a PNG per model here: copy-last | truth | the three decodes


@torch.no_grad()
def first_frame_codes(wm: WorldModel, frames: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
    """uint8 clips (B, Tc + 1, H, W, 3) and the first future frame's actions (B, A) -> future codes (B, n)
    of the three ways, and the context codes (B, Tc, N)."""
    tc, model, layout = wm.num_context_frames, wm.transformer, wm.transformer.layout
    context, future = wm.tokenizer.tokenize(to_model(frames.to(wm.device)), tc)
    context, truth = context.flatten(2), future.flatten(2)  # (B, Tc, N), (B, 1, n)
    rows = model.future_action_rows(actions[:, None], tc)
    at = layout.target_positions(tc, 1, context.device)
    vc = layout.context_vocab_size
    logits = model(layout.build(context, truth), rows, logit_positions=at).logits
    forced = logits[..., vc : vc + layout.future_vocab_size].argmax(-1)  # (B, n)
    greedy = generate_frames(model, context, actions[:, None], 1, temperature=0.0, top_k=None)[0][:, 0]
    return {"context": context, "tokenizer": truth[:, 0], "teacher_forced": forced, "greedy": greedy}


@torch.no_grad()
def score_model(wm: WorldModel, data: ClipDataset, picks: np.ndarray, cfg: ExposureConfig
                ) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    """The module docstring's figures for one model, and its first batch's decodes (B, 5, H, W, 3)."""
    tc, grid = wm.num_context_frames, wm.tokenizer.future_grid
    wm.transformer.eval()
    wm.tokenizer.eval()
    hits: dict[str, list[torch.Tensor]] = {way: [] for way in WAYS[:3]}
    nlls: dict[str, list[torch.Tensor]] = {way: [] for way in WAYS[:3]}
    scores: dict[str, list[torch.Tensor]] = {f"{way}/{metric}": [] for way in WAYS
                                             for metric in ("psnr", "psnr_moving")}
    shown = None
    for start in tqdm(range(0, len(picks), cfg.batch), desc="clips", unit="batch", leave=False):
        batch = collate_clips([data[int(i)] for i in picks[start : start + cfg.batch]])
        actions = batch.actions[:, tc].to(wm.device)
        codes = first_frame_codes(wm, batch.frames, actions)
        state = wm.tokenizer.encode_context(to_model(batch.frames[:, :tc].to(wm.device)))  # as `WorldModel`
        real, last = batch.frames[:, tc], batch.frames[:, tc - 1]
        decoded = {way: to_uint8(wm.tokenizer.decode_future(codes[way].view(-1, *grid), state)).cpu()
                   for way in WAYS[:3]}
        decoded["copy_last"] = last
        for way, frame in decoded.items():
            scores[f"{way}/psnr"].append(psnr(real, frame))
            scores[f"{way}/psnr_moving"].append(moving_psnr(real, frame, last))
            if way in hits:
                hits[way].append((codes[way] == codes["tokenizer"]).float().mean(1).cpu())
                nll = wm.transformer.token_nll(codes["context"], codes[way][:, None], actions[:, None])
                nlls[way].append(nll.sum((1, 2)).cpu())
        if shown is None:
            shown = np.stack([last, real, *(decoded[w] for w in WAYS[:3])], axis=1).astype(np.uint8)
    figures: dict[str, dict[str, float]] = {way: {} for way in WAYS}
    for way, hit in hits.items():
        figures[way]["accuracy"] = float(torch.cat(hit).mean())
        figures[way]["nll"] = float(torch.cat(nlls[way]).mean())
    for key, values in scores.items():
        way, metric = key.split("/")
        figures[way][metric] = float(np.nanmean(torch.cat(values).numpy()))
    return figures, shown


def run(cfg: ExposureConfig) -> dict[str, Any]:
    if not cfg.models:
        raise ValueError("give at least one world model: --models DIR [DIR ...]")
    started, results = time.time(), {}
    for path in cfg.models:
        wm, data = load_action_model(path, cfg.data, future_frames=1)
        figures, shown = score_model(wm, data, spread_indices(len(data), cfg.clips), cfg)
        results[str(path)] = figures
        print(f"{path}: " + "; ".join(f"{way} " + ", ".join(f"{k} {v:.3f}" for k, v in f.items())
                                        for way, f in figures.items()))
        if cfg.grid is not None:
            rows = [hstack_videos(list(clip[:, None])) for clip in shown[:8]]  # each (1, H, 5W + pad, 3)
            image = add_label(tile_videos(rows, cols=1), "copy-last | truth | tokenizer | forced | greedy")
            cfg.grid.mkdir(parents=True, exist_ok=True)
            iio.imwrite(cfg.grid / f"{Path(path).name}.png", upscale(image, 3)[0])
    out = {"protocol": {"data": str(cfg.data), "clips": cfg.clips, "frame": "the first imagined one",
                        "command": command_line(), "seconds": round(time.time() - started, 1)},
           "models": results}
    write_result(cfg.json, out)
    return out


if __name__ == "__main__":
    run(tyro.cli(ExposureConfig, description=__doc__.split("\n\n")[0]))
