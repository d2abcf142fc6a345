"""Import a folder of videos (or of frame-image folders) as an action-free dataset.

Each `.mp4/.gif/.webm/.avi/.mov` file and each sub-folder of `.png/.jpg` frames (natural name order)
becomes one episode with `actions=None, rewards=None`, for action-free pretraining. Frames are
streamed, center-cropped to a square (or squashed), resized with Pillow and optionally resampled in
time, so a long high-resolution video never has to fit in memory at full size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Literal

import imageio.v3 as iio
import numpy as np
from PIL import Image
from tqdm import tqdm
from tyro.conf import Positional

from ivideogpt.data.episode import Episode
from ivideogpt.data.store import DatasetWriter

VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".avi", ".mov")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# what a broken or unsupported file can raise inside Pillow / imageio / ffmpeg
_READ_ERRORS = (OSError, ValueError, RuntimeError, EOFError, SyntaxError, KeyError, IndexError)


@dataclass
class VideoImportConfig:
    """Settings of `ivideogpt import`."""

    src: Positional[Path]  # folder of video files and/or sub-folders of frame images
    out: Positional[Path]  # dataset folder to create
    size: int = 64  # output frames are size x size
    crop: Literal["center", "none"] = "center"  # center: crop to a square then resize; none: squash
    fps: float | None = None  # resample every video to this frame rate; None keeps the source rate
    folder_fps: float = 10.0  # frame rate assumed for folders of frame images (they carry none)
    max_frames: int | None = None  # keep at most this many frames per episode (after resampling)
    min_frames: int = 2  # skip videos shorter than this (after resampling)
    overwrite: bool = False  # replace an existing dataset at `out`

    def __post_init__(self) -> None:
        self.src, self.out = Path(self.src), Path(self.out)
        if self.size < 1:
            raise ValueError(f"VideoImportConfig.size must be >= 1, got {self.size}")
        if self.crop not in ("center", "none"):
            raise ValueError(f"VideoImportConfig.crop must be 'center' or 'none', got {self.crop!r}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"VideoImportConfig.fps must be > 0 or None, got {self.fps}")
        if self.folder_fps <= 0:
            raise ValueError(f"VideoImportConfig.folder_fps must be > 0, got {self.folder_fps}")
        if self.min_frames < 1:
            raise ValueError(f"VideoImportConfig.min_frames must be >= 1, got {self.min_frames}")
        if self.max_frames is not None and self.max_frames < self.min_frames:
            raise ValueError(
                f"VideoImportConfig.max_frames ({self.max_frames}) must be >= min_frames ({self.min_frames})"
            )


def import_videos(cfg: VideoImportConfig) -> Path:
    """Convert every video / frame folder in `cfg.src` into an episode of a new dataset at `cfg.out`.

    Unreadable or too-short items are skipped, reported and listed in `meta.json` under
    `extra["skipped"]`; the imported file names are in `extra["files"]`.
    The dataset appears at `cfg.out` only once complete, and an earlier one there (`cfg.overwrite`) is
    replaced only then: a failed or interrupted import leaves `cfg.out` as it was.

    Returns:
        `cfg.out`.

    Raises:
        ValueError: `cfg.src` holds nothing importable, nothing could be read, or (with `fps=None`) the
            items have different frame rates.
    """
    items = find_items(cfg.src)
    skipped: list[str] = []
    rates = {}
    for item in items:
        try:
            rates[item] = cfg.folder_fps if item.is_dir() else _video_fps(item)
        except _READ_ERRORS as e:
            skipped.append(f"{item.name}: unreadable ({_reason(e)})")
    if not rates:
        raise _nothing_usable(cfg.src, skipped)
    fps = cfg.fps if cfg.fps is not None else _common_fps(rates)
    imported: list[str] = []
    extra = {"src": str(cfg.src), "crop": cfg.crop}
    # the writer checks the output folder before anything is decoded; the dataset appears (or replaces an
    # earlier one) only when the import is complete
    with DatasetWriter(cfg.out, "video-import", cfg.size, None, fps, extra, cfg.overwrite,
                       all_or_nothing=True) as writer:
        for item in tqdm(list(rates), desc=f"import {cfg.src.name}", unit="video"):
            try:
                frames = _read_frames(item, cfg, rates[item], fps)
            except _READ_ERRORS as e:
                skipped.append(f"{item.name}: unreadable ({_reason(e)})")
                continue
            if len(frames) < cfg.min_frames:
                skipped.append(f"{item.name}: {len(frames)} frame(s), fewer than min_frames={cfg.min_frames}")
                continue
            writer.add(Episode(frames=frames))
            imported.append(item.name)
        if not imported:
            raise _nothing_usable(cfg.src, skipped)
        writer.meta.extra.update(files=imported, skipped=skipped)
    print(f"imported {len(imported)} video(s), {writer.meta.num_frames} frames, into {cfg.out}")
    if skipped:
        print(f"skipped {len(skipped)}:\n  " + "\n  ".join(skipped))
    return cfg.out


def _nothing_usable(src: Path, skipped: list[str]) -> ValueError:
    reasons = "\n  ".join(skipped)
    return ValueError(f"import: no usable video in {src} ({len(skipped)} skipped):\n  {reasons}")


def _reason(e: BaseException) -> str:
    """One line from an exception; ffmpeg errors carry its whole banner, keep its first and last lines."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [""]
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return f"{type(e).__name__}: {text[:300]}"


def find_items(src: Path) -> list[Path]:
    """Video files and frame-image folders directly inside `src`, in natural name order."""
    if not src.is_dir():
        raise ValueError(f"import: source folder {src} does not exist or is not a folder")
    items = [
        p
        for p in src.iterdir()
        if not p.name.startswith(".")
        and ((p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES) or (p.is_dir() and _images_in(p)))
    ]
    if not items:
        raise ValueError(
            f"import: {src} has no video files ({', '.join(VIDEO_SUFFIXES)}) and no sub-folders of "
            f"frame images ({', '.join(IMAGE_SUFFIXES)})"
        )
    return sorted(items, key=lambda p: natural_key(p.name))


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders embedded numbers by value: frame2.png before frame10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _images_in(folder: Path) -> list[Path]:
    images = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(images, key=lambda p: natural_key(p.name))


def _video_fps(path: Path) -> float:
    if path.suffix.lower() == ".gif":
        duration_ms = iio.immeta(path, plugin="pillow").get("duration") or 100  # GIFs without one: 10 fps
        return 1000.0 / duration_ms
    fps = iio.immeta(path, plugin="FFMPEG").get("fps")
    if not fps or not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"no valid frame rate in the file (got {fps!r})")
    return float(fps)


def _common_fps(rates: dict[Path, float]) -> float:
    """The single source frame rate (fps=None keeps frames as they are, so all must agree within 1%)."""
    values = sorted(set(rates.values()))
    if values[-1] > values[0] * 1.01:
        examples = ", ".join(f"{p.name}: {r:g}" for p, r in list(rates.items())[:5])
        raise ValueError(
            f"import: sources have different frame rates ({values[0]:g} to {values[-1]:g} fps; {examples}); "
            "set fps to resample them all to one rate"
        )
    return values[0]


def _read_frames(item: Path, cfg: VideoImportConfig, src_fps: float, dst_fps: float) -> np.ndarray:
    """All kept frames of one item, resized: uint8 `(T, size, size, 3)`."""
    if item.is_dir():
        raw: Iterator[np.ndarray] = (_load_image(p) for p in _images_in(item))
    elif item.suffix.lower() == ".gif":
        raw = iio.imiter(item, plugin="pillow", mode="RGB")
    else:
        raw = iio.imiter(item, plugin="FFMPEG")
    with closing(raw):  # stops the decoder (an ffmpeg process) as soon as we have enough frames
        frames = _resample(raw, src_fps, dst_fps)
        out = [resize_frame(f, cfg.size, cfg.crop) for f in islice(frames, cfg.max_frames)]
    return np.stack(out) if out else np.zeros((0, cfg.size, cfg.size, 3), np.uint8)


def _load_image(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _resample(frames: Iterable[np.ndarray], src_fps: float, dst_fps: float) -> Iterator[np.ndarray]:
    """Stream frames at `dst_fps`: output frame j is the last source frame at or before time j / dst_fps."""
    ratio = src_fps / dst_fps
    j = 0
    for i, frame in enumerate(frames):
        # the small epsilon keeps exact multiples (e.g. 30 -> 10 fps) from flooring one frame early
        while int(j * ratio + 1e-6) == i:
            yield frame
            j += 1


def resize_frame(frame: np.ndarray, size: int, crop: Literal["center", "none"]) -> np.ndarray:
    """One uint8 `(H, W, 3)` image to `(size, size, 3)`: optional center square crop, then Lanczos."""
    img = Image.fromarray(frame)
    if crop == "center":
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    # reducing_gap first shrinks by an integer factor with a box filter: much faster on big frames
    img = img.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(img, dtype=np.uint8)
