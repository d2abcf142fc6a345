"""One episode in memory and on disk: frames plus optional actions, rewards, success and done flags.

An episode file is an uncompressed `.npz` (frames are already compact at 64x64 and uncompressed archives
load several times faster). Row t of `actions`/`rewards`/`success`/`done` describes the step that PRODUCED
frame t, so row 0 is zeros/False (nothing produced the first frame).

Files are written atomically (`ivideogpt.atomic`: a temp file in the same folder, then a rename) and read with
`allow_pickle=False`; every problem is raised as `EpisodeFormatError` naming the file and the field.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ivideogpt.atomic import atomic_path

# field name -> (dtype, rank); every field has time as its first axis
FIELD_SPECS: dict[str, tuple[np.dtype, int]] = {
    "frames": (np.dtype(np.uint8), 4),  # (T, H, W, 3)
    "actions": (np.dtype(np.float32), 2),  # (T, A)
    "rewards": (np.dtype(np.float32), 1),  # (T,)
    "success": (np.dtype(np.bool_), 1),  # (T,)
    "done": (np.dtype(np.bool_), 1),  # (T,)
}
OPTIONAL_FIELDS = ("actions", "rewards", "success", "done")
_ZIP_MAGIC = b"PK\x03\x04"  # every .npz is a zip archive
# what a damaged archive can raise while numpy reads it
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError)


class EpisodeFormatError(ValueError):
    """An episode (in memory or in a file) that does not match the format; the message says where."""


@dataclass
class Episode:
    """One trajectory. Optional fields are None when unknown (e.g. action-free video).

    Attributes:
        frames: uint8 `(T, H, W, 3)`.
        actions: float32 `(T, A)`; row t is the action that produced frame t (row 0 zeros).
        rewards: float32 `(T,)`; reward received on arriving in frame t (row 0 zero).
        success: bool `(T,)`; task solved in frame t.
        done: bool `(T,)`; episode terminated on arriving in frame t.
    """

    frames: np.ndarray
    actions: np.ndarray | None = None
    rewards: np.ndarray | None = None
    success: np.ndarray | None = None
    done: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def action_dim(self) -> int | None:
        """Size of one action vector, or None for an action-free episode."""
        return None if self.actions is None else int(self.actions.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the frames."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def arrays(self) -> dict[str, np.ndarray]:
        """The fields that are present, by name (what goes into the file)."""
        return {name: getattr(self, name) for name in FIELD_SPECS if getattr(self, name) is not None}


def validate_episode(ep: Episode, where: str) -> None:
    """Check dtypes, ranks, frame layout, lengths and finiteness; raise `EpisodeFormatError` naming `where`.

    Args:
        ep: the episode to check.
        where: what to call it in errors (a file path, "episode 3 from metaworld/...").
    """
    for name, (dtype, rank) in FIELD_SPECS.items():
        value = getattr(ep, name)
        if value is None:
            if name == "frames":
                raise EpisodeFormatError(f"{where}: field 'frames' is missing")
            continue
        if not isinstance(value, np.ndarray):
            got = type(value).__name__
            raise EpisodeFormatError(f"{where}: field {name!r} must be a numpy array, got {got}")
        if value.dtype != dtype:
            raise EpisodeFormatError(f"{where}: field {name!r} must have dtype {dtype}, got {value.dtype}")
        if value.ndim != rank:
            raise EpisodeFormatError(
                f"{where}: field {name!r} must have rank {rank}, got shape {tuple(value.shape)}"
            )
    frames = ep.frames
    if frames.shape[-1] != 3 or min(frames.shape[1:3]) < 1:
        raise EpisodeFormatError(f"{where}: field 'frames' must be (T, H, W, 3), got {tuple(frames.shape)}")
    t = frames.shape[0]
    if t < 1:
        raise EpisodeFormatError(f"{where}: field 'frames' has no frames (T=0); an episode needs T >= 1")
    for name in OPTIONAL_FIELDS:
        value = getattr(ep, name)
        if value is not None and value.shape[0] != t:
            raise EpisodeFormatError(
                f"{where}: field {name!r} has {value.shape[0]} rows but 'frames' has T={t}"
            )
    if ep.actions is not None and ep.actions.shape[1] < 1:
        raise EpisodeFormatError(f"{where}: field 'actions' has action dim 0; use actions=None instead")
    for name in ("actions", "rewards"):
        value = getattr(ep, name)
        if value is not None and not np.isfinite(value).all():
            bad = np.argwhere(~np.isfinite(value))[0].tolist()
            raise EpisodeFormatError(f"{where}: field {name!r} has a NaN/inf value at index {bad}")


def write_episode(path: str | Path, ep: Episode) -> None:
    """Validate `ep` and write it atomically as an uncompressed `.npz` at `path`."""
    path = Path(path)
    validate_episode(ep, str(path))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **ep.arrays())


def read_episode(path: str | Path) -> Episode:
    """Read and validate one episode file.

    Raises:
        EpisodeFormatError: naming the file (and the field where there is one) when the file is missing,
            not an `.npz` archive, truncated or corrupt, holds pickled objects or unknown fields, or any
            field has the wrong dtype, rank or length.
    """
    arrays = load_fields(path, FIELD_SPECS)
    if "frames" not in arrays:
        raise EpisodeFormatError(f"{path}: field 'frames' is missing (found {sorted(arrays)})")
    ep = Episode(**arrays)
    validate_episode(ep, str(path))
    return ep


def load_fields(path: str | Path, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Load the named fields that are present in an episode file (unvalidated), rejecting unknown fields.

    Reading only a subset is cheap: `.npz` members are read lazily, so e.g. rewards load without frames.
    """
    if not Path(path).is_file():
        raise EpisodeFormatError(f"{path}: episode file not found")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != _ZIP_MAGIC:
        raise EpisodeFormatError(f"{path}: not an .npz archive (starts with {magic!r}, not {_ZIP_MAGIC!r})")
    try:
        with np.load(path, allow_pickle=False) as data:
            unknown = sorted(set(data.files) - set(FIELD_SPECS))
            if unknown:
                raise EpisodeFormatError(f"{path}: unknown field(s) {unknown}; known: {list(FIELD_SPECS)}")
            arrays = {}
            for name in names:
                if name in data.files:
                    try:
                        arrays[name] = data[name]
                    except _READ_ERRORS as e:
                        msg = f"{path}: field {name!r} is unreadable ({_describe(e)})"
                        raise EpisodeFormatError(msg) from e
            return arrays
    except EpisodeFormatError:
        raise
    except _READ_ERRORS as e:
        raise EpisodeFormatError(f"{path}: not a readable .npz episode file ({_describe(e)})") from e


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"
