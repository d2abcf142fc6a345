"""Where does a world model's uncertainty sit, and where do its actions reduce it? Moving vs static patches.

For clips of Tc context + Tf future frames, every future code is scored teacher-forced (its negative
log-likelihood, nats) under the clip's own actions and under another clip's (the clips rolled by one),
and sorted by whether its image patch moves: a patch is "moving" when any of its pixels differs from the
last context frame by more than `--threshold` grey levels (mean over RGB). The figures per model:

    share_moving         share of future codes whose patch moves
    nll_moving/_static   mean NLL per code of each group (own actions)
    nll_share_moving     share of the total NLL that moving codes carry
    gain_moving/_static  mean NLL under another clip's actions minus under its own, per code (nats): how
                         much the actions inform each group (0: not at all)

A low `nll_share_moving` says most of the model's loss, and so of its training signal, goes to codes of
patches where nothing changed: the tokenizer codes still content ambiguously. No anchor: it is a
diagnostic of one model at a time, side by side over the models given.

    python bench/code_nll.py --models runs/actions-p2/wm3000 --data runs/bench_actions/data/cf_default-r4
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro
from action_clips import load_action_model
from record import command_line, write_result
from tqdm import tqdm

from ivideogpt.data.clips import ClipDataset, collate_clips
from ivideogpt.data.frames import to_model
from ivideogpt.data.motion import MOVING_THRESHOLD, moving_codes
from ivideogpt.eval.scores import spread_indices
from ivideogpt.world_model import WorldModel


@dataclass
class CodeNllConfig:
    models: list[Path] = field(default_factory=list)  # world-model folders (with actions)
    data: Path = Path("runs/bench_actions/data/cf_default-r4")  # episodes with actions, never trained on
    clips: int = 480  # clips of Tc + Tf frames, spread evenly over all of the data's clips (as eval picks)
    threshold: float = MOVING_THRESHOLD  # grey levels: a patch moves when a pixel changed more than this
    batch: int = 16
    json: Path = Path("bench/results/code_nll.json")


@torch.no_grad()
def score_model(wm: WorldModel, data: ClipDataset, picks: np.ndarray, cfg: CodeNllConfig) -> dict[str, float]:
    """The module docstring's figures for one model on clips `picks` of `data` (Tc + Tf frames)."""
    tc, model = wm.num_context_frames, wm.transformer.eval()
    wm.tokenizer.eval()
    own_nll, other_nll, moving = [], [], []
    for start in tqdm(range(0, len(picks), cfg.batch), desc="clips", unit="batch", leave=False):
        batch = collate_clips([data[int(i)] for i in picks[start : start + cfg.batch]])
        context, future = wm.tokenizer.tokenize(to_model(batch.frames.to(wm.device)), tc)
        grid = future.shape[2]  # future codes (B, Tf, grid, grid)
        context, future = context.flatten(2), future.flatten(2)
        own = batch.actions[:, tc:].to(wm.device)
        other = own.roll(1, dims=0)  # another clip's actions
        own_nll.append(model.token_nll(context, future, own).cpu())
        other_nll.append(model.token_nll(context, future, other).cpu())
        moving.append(moving_codes(batch.frames, tc, grid, cfg.threshold))
    own, other, mask = torch.cat(own_nll), torch.cat(other_nll), torch.cat(moving)
    gain = other - own
    return {
        "codes": int(mask.numel()),
        "share_moving": float(mask.float().mean()),
        "nll_moving": float(own[mask].mean()),
        "nll_static": float(own[~mask].mean()),
        "nll_share_moving": float(own[mask].sum() / own.sum()),
        "gain_moving": float(gain[mask].mean()),
        "gain_static": float(gain[~mask].mean()),
    }


def run(cfg: CodeNllConfig) -> dict[str, Any]:
    if not cfg.models:
        raise ValueError("give at least one world model: --models DIR [DIR ...]")
    started, results = time.time(), {}
    for path in cfg.models:
        wm, data = load_action_model(path, cfg.data)
        picks = spread_indices(len(data), cfg.clips)
        results[str(path)] = score_model(wm, data, picks, cfg)
        print(f"{path}: " + ", ".join(f"{k} {v:.4g}" for k, v in results[str(path)].items()))
    out = {"protocol": {"data": str(cfg.data), "clips": cfg.clips, "threshold": cfg.threshold,
                        "command": command_line(),
                        "seconds": round(time.time() - started, 1)},
           "models": results}
    write_result(cfg.json, out)
    return out


if __name__ == "__main__":
    run(tyro.cli(CodeNllConfig, description=__doc__.split("\n\n")[0]))
