"""Video grids and video files, shared by dataset previews, tokenizer samples and evaluation reports.

Everything here takes and returns uint8 `(T, H, W, 3)` numpy arrays. `save_video` picks the format by
suffix: `.gif` (loops forever, opens anywhere) or `.mp4` (H.264 via imageio-ffmpeg, much smaller).
"""

from __future__ import annotations

import errno
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ivideogpt.atomic import atomic_path

VIDEO_SUFFIXES = (".gif", ".mp4")


def tile_videos(videos: Sequence[np.ndarray], cols: int, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Lay videos out in a grid, row by row, with `pad` pixels of `pad_value` between and around them.

    Shorter videos hold their last frame until the longest one ends; empty cells stay `pad_value`.

    Args:
        videos: uint8 `(T_i, H, W, 3)` each; all share H and W.
        cols: videos per row.

    Returns:
        uint8 `(max T_i, rows * (H + pad) + pad, cols * (W + pad) + pad, 3)`.
    """
    if not videos:
        raise ValueError("tile_videos: no videos given")
    if cols < 1 or pad < 0:
        raise ValueError(f"tile_videos: need cols >= 1 and pad >= 0, got cols={cols}, pad={pad}")
    for i, v in enumerate(videos):
        _check_video(v, f"tile_videos: video {i}")
    h, w = videos[0].shape[1:3]
    sizes = {v.shape[1:3] for v in videos}
    if len(sizes) > 1:
        raise ValueError(f"tile_videos: videos have different frame sizes {sorted(sizes)}")
    t = max(len(v) for v in videos)
    cols = min(cols, len(videos))
    rows = math.ceil(len(videos) / cols)
    grid = np.full((t, rows * (h + pad) + pad, cols * (w + pad) + pad, 3), pad_value, dtype=np.uint8)
    for i, v in enumerate(videos):
        y, x = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        grid[: len(v), y : y + h, x : x + w] = v
        grid[len(v) :, y : y + h, x : x + w] = v[-1]  # hold the last frame
    return grid


def hstack_videos(videos: Sequence[np.ndarray], pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Videos side by side in one row (e.g. truth | prediction); see `tile_videos`."""
    return tile_videos(videos, cols=len(videos), pad=pad, pad_value=pad_value)


def add_label(frames: np.ndarray, text: str, height: int = 12) -> np.ndarray:
    """Add a black strip with white `text` above every frame.

    Args:
        frames: uint8 `(T, H, W, 3)`.
        text: the label; clipped at the right edge if it does not fit.
        height: strip height in pixels (Pillow's built-in bitmap font is ~11 px tall).

    Returns:
        uint8 `(T, H + height, W, 3)`.
    """
    _check_video(frames, "add_label")
    strip = Image.new("RGB", (frames.shape[2], height))
    ImageDraw.Draw(strip).text((2, 0), text, fill=(255, 255, 255), font=ImageFont.load_default())
    strip_arr = np.broadcast_to(np.asarray(strip), (len(frames), height, frames.shape[2], 3))
    return np.concatenate([strip_arr, frames], axis=1)


def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor: uint8 `(T, H, W, 3)` -> `(T, sH, sW, 3)`."""
    if scale < 1:
        raise ValueError(f"upscale: scale must be an integer >= 1, got {scale}")
    return frames if scale == 1 else frames.repeat(scale, axis=1).repeat(scale, axis=2)


def save_video(path: str | Path, frames: np.ndarray, fps: float, scale: int = 1) -> Path:
    """Write frames as a looping `.gif` or an H.264 `.mp4` (chosen by suffix), atomically.

    Args:
        path: destination; its suffix picks the format.
        frames: uint8 `(T, H, W, 3)`.
        fps: playback frame rate.
        scale: integer nearest-neighbour upscale factor (64x64 frames are tiny on screen).

    Returns:
        `path` as a Path.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"save_video: {path}: suffix {path.suffix!r} is not one of {VIDEO_SUFFIXES}")
    if fps <= 0:
        raise ValueError(f"save_video: fps must be > 0, got {fps}")
    _check_video(frames, f"save_video({path})")
    frames = upscale(frames, scale)
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            # GIF delays are whole hundredths of a second; loop=0 loops forever
            iio.imwrite(tmp, frames, extension=".gif", duration=1000.0 / fps, loop=0)
        else:
            _write_mp4(tmp, frames, fps)
            _check_mp4(tmp, path)
    return path


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    # yuv420p (the pixel format every player supports) needs even sides: pad by repeating the edge
    # rather than letting imageio resize to multiples of 16 (macro_block_size=1 turns that off)
    _, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    iio.imwrite(
        path,
        frames,
        plugin="FFMPEG",
        fps=fps,
        codec="libx264",
        pixelformat="yuv420p",
        macro_block_size=1,
        output_params=["-crf", "18"],  # visually lossless; these videos are for looking at details
    )


def _check_mp4(tmp: Path, path: Path) -> None:
    """ffmpeg reports a failed write (a full disk) only on its stderr: check that the file can be opened.

    A truncated MP4 lacks its index (written last), so opening it fails.
    """
    try:
        iio.immeta(tmp, plugin="FFMPEG")
    except (OSError, RuntimeError) as e:
        full = shutil.disk_usage(tmp.parent).free < 2**20 or "No space left" in str(e)
        code = errno.ENOSPC if full else errno.EIO
        raise OSError(code, f"{os.strerror(code)} (ffmpeg wrote an incomplete video)", str(path)) from e


def _check_video(frames: np.ndarray, where: str) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        got = getattr(frames, "dtype", type(frames).__name__)
        raise TypeError(f"{where}: expected a uint8 numpy array, got {got}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"{where}: expected shape (T, H, W, 3) with T >= 1, got {frames.shape}")
