"""A learned reward read from single frames: an objective for the planner besides the world model's head.

The world model's reward head is one linear layer on the transformer's last token of a frame; it follows
rewards across episodes, but orders the futures of one state poorly (README "Visual planning", the ranking
bench). A small CNN trained on real frames alone reads the same reward from pixels; the planner applies it
to every imagined frame and sums over the horizon (`ObjectiveConfig(kind="learned")`). It is trained by
`ivideogpt train-reward` (`ivideogpt.train.frame_reward`) on any dataset folders with rewards.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ivideogpt.config import from_dict
from ivideogpt.data.frames import to_model
from ivideogpt.filenames import REWARD_MODEL_EXPORT

SECTION = "frame_reward"  # the architecture's section in the export's config.json


@dataclass
class FrameRewardConfig:
    """The reward CNN: stride-2 4x4 convolutions, then a two-layer head."""

    resolution: int = 64  # frames are resolution x resolution
    channels: tuple[int, ...] = (32, 64, 128, 128)  # one stride-2 convolution each
    hidden: int = 256  # width of the head's hidden layer
    reward_scale: float = 60.0  # the network predicts reward / reward_scale (about the rewards' spread)

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        if not self.channels or min(self.channels) < 1 or self.hidden < 1:
            raise ValueError(f"FrameRewardConfig: channels and hidden must be positive, got {self.channels} "
                             f"and {self.hidden}")
        if self.resolution < 2 ** len(self.channels) or self.resolution % 2 ** len(self.channels):
            raise ValueError(f"FrameRewardConfig.resolution {self.resolution} must be a multiple of "
                             f"2^{len(self.channels)} (one halving per convolution)")
        if not self.reward_scale > 0:
            raise ValueError(f"FrameRewardConfig.reward_scale must be > 0, got {self.reward_scale}")


class FrameReward(nn.Module):
    """frames (B, 3, H, W) in [-1, 1] -> the reward received on arriving in each (B,)."""

    def __init__(self, cfg: FrameRewardConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        width = 3
        for channels in cfg.channels:
            layers += [nn.Conv2d(width, channels, 4, stride=2, padding=1), nn.SiLU()]
            width = channels
        side = cfg.resolution // 2 ** len(cfg.channels)
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * side * side, cfg.hidden), nn.SiLU(),
                                 nn.Linear(cfg.hidden, 1))

    def forward(self, frames: Tensor) -> Tensor:
        return self.net(frames).squeeze(1) * self.cfg.reward_scale

    @torch.no_grad()
    def read(self, frames: np.ndarray, batch: int = 512) -> np.ndarray:
        """uint8 frames (..., H, W, 3) -> their rewards (...), float64 (call in eval mode)."""
        if frames.shape[-3:] != (self.cfg.resolution, self.cfg.resolution, 3):
            raise ValueError(f"reward model: frames of shape {frames.shape[-3:]}, but it reads "
                             f"{self.cfg.resolution}x{self.cfg.resolution} RGB frames")
        flat = frames.reshape(-1, *frames.shape[-3:])
        device = next(self.parameters()).device
        out = [self(to_model(torch.from_numpy(flat[i:i + batch]).to(device))).float().cpu()
               for i in range(0, len(flat), batch)]
        return torch.cat(out).numpy().astype(np.float64).reshape(frames.shape[:-3])


def load_frame_reward(path: str | Path) -> FrameReward:
    """The reward model exported to `path` (a `train-reward` run's `reward_model/` or the run folder), in
    eval mode on the CPU.

    Raises:
        FileNotFoundError: no export there.
        ValueError: the folder holds another kind of model or its config does not fit this version.
    """
    return _load(Path(path).resolve())


@lru_cache(maxsize=4)  # planning episodes reload their objective; read each export once
def _load(path: Path) -> FrameReward:
    from ivideogpt.train.checkpoint import CheckpointError, load_model, load_weights

    folder = path / REWARD_MODEL_EXPORT if (path / REWARD_MODEL_EXPORT).is_dir() else path
    if not folder.is_dir():
        raise FileNotFoundError(f"reward model {path} does not exist (`ivideogpt train-reward` makes one)")
    try:
        weights, config = load_model(folder)
    except CheckpointError as e:
        raise FileNotFoundError(f"no reward model at {path}: {e}") from e
    if SECTION not in config:
        raise ValueError(f"{folder}: not a reward model (its config has no {SECTION!r} section; found "
                         f"{sorted(config)})")
    try:
        cfg = from_dict(FrameRewardConfig, config[SECTION], SECTION)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{folder}: the {SECTION!r} section does not fit this version ({e})") from e
    model = FrameReward(cfg)
    load_weights({"reward": model}, weights, str(folder))
    return model.eval()
