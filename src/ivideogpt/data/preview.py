"""A quick look at a dataset: a grid video of a few episodes spread over the whole folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tyro.conf import Positional

from ivideogpt.data.store import EpisodeStore
from ivideogpt.media import VIDEO_SUFFIXES, add_label, save_video, tile_videos, upscale

GRID_COLS = 4  # videos per row of the preview grid


@dataclass
class PreviewConfig:
    """Settings of `ivideogpt preview`."""

    dir: Positional[Path]  # dataset folder
    out: Path | None = None  # .gif or .mp4 to write; None writes DIR/preview.gif
    episodes: int = 8  # how many episodes to show
    max_frames: int = 100  # frames shown per episode (after the stride)
    stride: int = 1  # show every stride-th frame
    fps: float = 10  # playback frame rate
    scale: int = 2  # integer nearest-neighbour upscale (64x64 frames are tiny on screen)
    seed: int = 0  # picks the offset of the evenly spaced episodes

    def __post_init__(self) -> None:
        self.dir = Path(self.dir)
        self.out = None if self.out is None else Path(self.out)
        if self.out is not None and self.out.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(f"PreviewConfig.out must end in one of {VIDEO_SUFFIXES}, got {self.out}")
        for name in ("episodes", "max_frames", "stride", "scale"):
            if getattr(self, name) < 1:
                raise ValueError(f"PreviewConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.fps <= 0:
            raise ValueError(f"PreviewConfig.fps must be > 0, got {self.fps}")


def choose_episodes(num_episodes: int, count: int, seed: int) -> list[int]:
    """`count` episode indices spread evenly over `0..num_episodes-1`, starting at a seeded offset."""
    count = min(count, num_episodes)
    gap = num_episodes / count
    offset = np.random.default_rng(seed).uniform(0, gap)
    return [int(offset + k * gap) for k in range(count)]  # distinct: gap >= 1


def write_preview(cfg: PreviewConfig) -> Path:
    """Write a grid video of `cfg.episodes` episodes of the dataset at `cfg.dir`, each labelled.

    Returns:
        The path written (`cfg.out`, by default `cfg.dir / "preview.gif"`).
    """
    store = EpisodeStore(cfg.dir)
    if len(store) == 0:
        raise ValueError(f"preview: dataset {cfg.dir} has no episodes")
    chosen = choose_episodes(len(store), cfg.episodes, cfg.seed)
    videos = []
    for i in chosen:
        ep = store[i]
        frames = upscale(ep.frames[:: cfg.stride][: cfg.max_frames], cfg.scale)  # (T, sH, sW, 3)
        label = f"ep {i}" if ep.rewards is None else f"ep {i} R={ep.rewards.sum():.1f}"
        videos.append(add_label(frames, label))
    grid = tile_videos(videos, cols=GRID_COLS)
    out = save_video(cfg.out or cfg.dir / "preview.gif", grid, cfg.fps)
    print(f"preview of episodes {chosen} written to {out} ({len(grid)} frames)")
    return out
