"""A dataset folder: `meta.json` plus one `episode_000000.npz` per episode.

`meta.json` records where the data came from, the (square) image size, the action size (null for
action-free video), the frame rate and one entry per episode (file, length, optional task/seed/success).
`DatasetWriter` rewrites it atomically after every episode, so an interrupted collection still leaves a
readable dataset; `EpisodeStore` reads it back and validates every episode it returns.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from tyro.conf import Positional

from ivideogpt.atomic import TMP_PREFIX, ReplacedFolder, atomic_path
from ivideogpt.config import read_json
from ivideogpt.data.episode import (
    Episode,
    EpisodeFormatError,
    load_fields,
    read_episode,
    validate_episode,
    write_episode,
)

META_FILE = "meta.json"
FORMAT_VERSION = 1
_REQUIRED_KEYS = ("source", "image_size", "action_dim", "fps", "episodes")
# what a dataset folder holds: meta.json, episode files and the temp files of an interrupted write
_OWNED = re.compile(
    rf"meta\.json|episode_\d+\.npz|{re.escape(TMP_PREFIX)}(meta|episode_\d+)-[0-9a-f]+\.(json|npz)"
)


@dataclass
class EpisodeEntry:
    """One episode as listed in `meta.json`."""

    file: str  # file name relative to the dataset folder
    length: int  # number of frames T
    task: str | None = None  # task name where the source has several (e.g. a Meta-World task)
    seed: int | None = None  # environment seed the episode was collected with
    success: bool | None = None  # the task was solved at some step (None when unknown)
    policy: str | None = None  # behaviour policy that chose the actions (`ivideogpt.data.policies`)
    scene: int | None = None  # counterfactual datasets: episodes of one scene share their start
    branch: int | None = None  # counterfactual datasets: this episode's branch within its scene


@dataclass
class DatasetMeta:
    """Contents of `meta.json`."""

    source: str  # where the episodes came from ("metaworld", "video-import", ...)
    image_size: int  # frames are (image_size, image_size, 3)
    action_dim: int | None  # size of an action vector; None for action-free video
    fps: float  # frames per second of the stored episodes
    episodes: list[EpisodeEntry] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # source-specific settings (camera, repeat, ...)

    @property
    def num_episodes(self) -> int:
        """Number of episodes listed."""
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        """Total frames over all episodes."""
        return sum(e.length for e in self.episodes)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; the counts are stored too, for people reading the file."""
        counts = {"num_episodes": self.num_episodes, "num_frames": self.num_frames}
        data = asdict(self)
        # an episode's unknown optional fields are left out rather than written as null
        data["episodes"] = [{k: v for k, v in e.items() if v is not None} for e in data["episodes"]]
        return {"format_version": FORMAT_VERSION, **counts, **data}


def read_meta(root: str | Path) -> DatasetMeta:
    """Read and validate `root/meta.json`, checking that every listed episode file exists.

    Raises:
        EpisodeFormatError: naming the folder/file and the problem (missing file, bad JSON, missing or
            mistyped key, listed episode file missing).
    """
    path = Path(root) / META_FILE
    if not path.is_file():
        what = "folder does not exist" if not Path(root).is_dir() else f"no {META_FILE} in it"
        raise EpisodeFormatError(f"{root}: not a dataset folder ({what})")
    raw = read_json(path, EpisodeFormatError)
    if not isinstance(raw, dict):
        raise EpisodeFormatError(f"{path}: top level must be an object, got {type(raw).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in raw]
    if missing:
        raise EpisodeFormatError(f"{path}: missing key(s) {missing}")
    _check_type(path, "source", raw["source"], str)
    _check_type(path, "image_size", raw["image_size"], int)
    _check_type(path, "action_dim", raw["action_dim"], int, optional=True)
    _check_type(path, "fps", raw["fps"], (int, float))
    _check_type(path, "episodes", raw["episodes"], list)
    _check_type(path, "extra", raw.get("extra", {}), dict)
    version = raw.get("format_version", FORMAT_VERSION)
    _check_type(path, "format_version", version, int)
    if version > FORMAT_VERSION:
        raise EpisodeFormatError(f"{path}: format_version {version} is newer than this library reads")
    if raw["image_size"] < 1:
        raise EpisodeFormatError(f"{path}: key 'image_size' must be >= 1, got {raw['image_size']}")
    episodes = [_parse_entry(path, i, e) for i, e in enumerate(raw["episodes"])]
    if "num_episodes" in raw and raw["num_episodes"] != len(episodes):  # a count for people; it must not lie
        raise EpisodeFormatError(f"{path}: key 'num_episodes' is {raw['num_episodes']!r} "
                                 f"but 'episodes' lists {len(episodes)}")
    for entry in episodes:
        if not (Path(root) / entry.file).is_file():
            raise EpisodeFormatError(f"{path}: lists episode file {entry.file!r}, which is missing")
    return DatasetMeta(
        source=raw["source"],
        image_size=raw["image_size"],
        action_dim=raw["action_dim"],
        fps=float(raw["fps"]),
        episodes=episodes,
        extra=raw.get("extra", {}),
    )


def _parse_entry(path: Path, i: int, raw: Any) -> EpisodeEntry:
    where = f"episodes[{i}]"
    if not isinstance(raw, dict) or "file" not in raw or "length" not in raw:
        raise EpisodeFormatError(f"{path}: {where} must be an object with 'file' and 'length', got {raw!r}")
    unknown = set(raw) - {f.name for f in fields(EpisodeEntry)}
    if unknown:
        raise EpisodeFormatError(f"{path}: {where} has unknown key(s) {sorted(unknown)}")
    _check_type(path, f"{where}.file", raw["file"], str)
    file = Path(raw["file"])
    if file.is_absolute() or ".." in file.parts or not file.parts:
        raise EpisodeFormatError(f"{path}: key '{where}.file' is {raw['file']!r}, which leaves the dataset "
                                 "folder; episode files are named relative to it, inside it")
    _check_type(path, f"{where}.length", raw["length"], int)
    _check_type(path, f"{where}.task", raw.get("task"), str, optional=True)
    _check_type(path, f"{where}.seed", raw.get("seed"), int, optional=True)
    _check_type(path, f"{where}.success", raw.get("success"), bool, optional=True)
    _check_type(path, f"{where}.policy", raw.get("policy"), str, optional=True)
    _check_type(path, f"{where}.scene", raw.get("scene"), int, optional=True)
    _check_type(path, f"{where}.branch", raw.get("branch"), int, optional=True)
    if raw["length"] < 1:
        raise EpisodeFormatError(f"{path}: key '{where}.length' must be >= 1, got {raw['length']}")
    return EpisodeEntry(**raw)


def _check_type(
    path: Path, key: str, value: Any, types: type | tuple[type, ...], optional: bool = False
) -> None:
    if value is None and optional:
        return
    # bool is an int in Python; a JSON `true` is never a valid size or seed
    if not isinstance(value, types) or (isinstance(value, bool) and types is not bool):
        raise EpisodeFormatError(f"{path}: key {key!r} has the wrong type: {value!r}")


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write `data` with one key per line and one episode entry per line (readable and diffable)."""
    rows = [
        f' "{k}": [\n' + ",\n".join(f"  {json.dumps(e)}" for e in v) + "\n ]"
        if k == "episodes" and v
        else f' "{k}": {json.dumps(v)}'
        for k, v in data.items()
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("{\n" + ",\n".join(rows) + "\n}\n")


class DatasetWriter:
    """Writes episodes into a new dataset folder, keeping `meta.json` current after every episode.

    A dataset being replaced (`overwrite`) stays untouched until the new one is complete: the new episodes
    go to a hidden sibling folder that `close` swaps in; an error inside the `with` block (or `abort`)
    deletes them and keeps the old dataset. A new folder is written in place, so an interrupted collection
    still leaves the episodes recorded so far (unless `all_or_nothing`).

    Usage:
        with DatasetWriter("data/push", "metaworld", 64, action_dim=4, fps=10) as w:
            w.add(episode, task="push-v3", seed=0)
    """

    def __init__(
        self,
        root: str | Path,
        source: str,
        image_size: int,
        action_dim: int | None,
        fps: float,
        extra: dict[str, Any] | None = None,
        overwrite: bool = False,
        all_or_nothing: bool = False,
    ) -> None:
        if image_size < 1:
            raise ValueError(f"DatasetWriter: image_size must be >= 1, got {image_size}")
        if action_dim is not None and action_dim < 1:
            raise ValueError(f"DatasetWriter: action_dim must be >= 1 or None, got {action_dim}")
        if fps <= 0:
            raise ValueError(f"DatasetWriter: fps must be > 0, got {fps}")
        self.root = Path(root)
        self._folder = _claim_folder(self.root, overwrite, all_or_nothing)
        self.meta = DatasetMeta(source, image_size, action_dim, float(fps), [], dict(extra or {}))
        self._write_meta()  # an empty but valid dataset from the start

    def add(self, ep: Episode, task: str | None = None, seed: int | None = None, policy: str | None = None,
            scene: int | None = None, branch: int | None = None) -> Path:
        """Validate `ep` against the dataset, write it as the next episode file and update `meta.json`.

        Returns:
            The path of the episode file written.
        """
        index = self.meta.num_episodes
        path = self._folder.work / f"episode_{index:06d}.npz"
        validate_episode(ep, f"episode {index} for {self.root}")
        size = self.meta.image_size
        if ep.image_size != (size, size):
            raise EpisodeFormatError(
                f"episode {index} for {self.root}: frames are {ep.image_size}, dataset image size is {size}"
            )
        if ep.action_dim != self.meta.action_dim:
            raise EpisodeFormatError(
                f"episode {index} for {self.root}: action dim {ep.action_dim}, dataset action dim is "
                f"{self.meta.action_dim}"
            )
        write_episode(path, ep)
        success = None if ep.success is None else bool(ep.success.any())
        entry = EpisodeEntry(path.name, len(ep), task, seed, success, policy, scene, branch)
        self.meta.episodes.append(entry)
        self._write_meta()
        return path

    def close(self) -> None:
        """Write `meta.json` a last time (it saves `extra`) and put the dataset in place at `root`."""
        self._write_meta()
        self._folder.commit()

    def abort(self) -> None:
        """Stop after an error: a dataset being replaced is kept and the new episodes are deleted."""
        self._folder.discard()

    def _write_meta(self) -> None:
        _write_json_atomic(self._folder.work / META_FILE, self.meta.to_json())

    def __enter__(self) -> DatasetWriter:  # noqa: PYI034
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _claim_folder(root: Path, overwrite: bool, all_or_nothing: bool) -> ReplacedFolder:
    """Where to write: refuses a non-empty folder unless `overwrite`, and then replaces only a dataset."""
    # only ever replace something that is recognisably a dataset, never an arbitrary folder
    if overwrite and root.is_dir() and any(root.iterdir()) and not (root / META_FILE).is_file():
        raise FileExistsError(f"{root}: refusing to overwrite a non-empty folder that has no {META_FILE}")
    return ReplacedFolder(root, "dataset", lambda name: bool(_OWNED.fullmatch(name)), overwrite,
                          always_stage=all_or_nothing, flag="overwrite=True / --overwrite")


class EpisodeStore:
    """Read-only access to a dataset folder; every episode returned is validated against `meta.json`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.meta = read_meta(self.root)

    def __len__(self) -> int:
        return self.meta.num_episodes

    @property
    def lengths(self) -> list[int]:
        """Frame count of every episode, from `meta.json` (no file is opened)."""
        return [e.length for e in self.meta.episodes]

    def path(self, i: int) -> Path:
        """File of episode `i`."""
        return self.root / self.meta.episodes[i].file

    def __getitem__(self, i: int) -> Episode:
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.root}: episode index {i} out of range ({len(self)} episodes)")
        entry = self.meta.episodes[i]
        path = self.path(i)
        ep = read_episode(path)
        size = self.meta.image_size
        if len(ep) != entry.length:
            raise EpisodeFormatError(f"{path}: has {len(ep)} frames but {META_FILE} says {entry.length}")
        if ep.image_size != (size, size):
            raise EpisodeFormatError(f"{path}: frames are {ep.image_size} but {META_FILE} says {size}")
        if ep.action_dim != self.meta.action_dim:
            raise EpisodeFormatError(
                f"{path}: field 'actions' has dim {ep.action_dim} but {META_FILE} says {self.meta.action_dim}"
            )
        return ep


@dataclass
class InfoConfig:
    """Settings of `ivideogpt data info`."""

    dir: Positional[Path]  # dataset folder
    json: bool = False  # print the summary as JSON instead of aligned text
    quick: bool = False  # check meta.json and read only the rewards, not every episode's arrays

    def __post_init__(self) -> None:
        self.dir = Path(self.dir)


def print_info(cfg: InfoConfig) -> dict[str, Any]:
    """Print `summarize(cfg.dir, cfg.quick)` as text (or JSON) and return it."""
    summary = summarize(cfg.dir, quick=cfg.quick)
    print(json.dumps(summary, indent=1, allow_nan=False) if cfg.json else format_summary(summary))
    return summary


def summarize(root: str | Path, quick: bool = False) -> dict[str, Any]:
    """Counts and reward/success statistics of a dataset, every episode validated on the way.

    Args:
        root: the dataset folder.
        quick: read only each episode's rewards (checked: dtype, rank, length, finite), not its frames.

    Raises:
        EpisodeFormatError: naming the file and field at fault (see `EpisodeStore.__getitem__`).

    Returns:
        dict with keys root, source, episodes, frames, image_size, action_dim, fps, episode_length
        (min/mean/max), rewards (min/max/mean over all stored steps, or None), success_rate (over the
        episodes where success is known, or None), success_known, tasks ({task: episode count}).
    """
    store = EpisodeStore(root)
    meta = store.meta
    read = _quick_rewards if quick else lambda s, i: s[i].rewards
    rewards = [r for r in (read(store, i) for i in range(len(store))) if r is not None]
    known = [e.success for e in meta.episodes if e.success is not None]
    lengths = np.array(store.lengths if len(store) else [0])
    flat = np.concatenate(rewards) if rewards else None
    return {
        "root": str(store.root),
        "source": meta.source,
        "episodes": meta.num_episodes,
        "frames": meta.num_frames,
        "image_size": meta.image_size,
        "action_dim": meta.action_dim,
        "fps": meta.fps,
        "episode_length": _stats(lengths),
        "rewards": None if flat is None else _stats(flat),
        "success_rate": float(np.mean(known)) if known else None,
        "success_known": len(known),
        "tasks": dict(Counter(e.task for e in meta.episodes if e.task is not None)),
    }


def _quick_rewards(store: EpisodeStore, i: int) -> np.ndarray | None:
    """Episode `i`'s rewards alone, checked as `validate_episode` checks them (no frames are read)."""
    path, length = store.path(i), store.meta.episodes[i].length
    rewards = load_fields(path, ("rewards",)).get("rewards")
    if rewards is not None:
        rows = np.zeros((length, 1, 1, 3), np.uint8)  # stands in for the unread frames: T from meta.json
        validate_episode(Episode(rows, rewards=rewards), f"{path} (quick check: rewards only)")
    return rewards


def _stats(x: np.ndarray) -> dict[str, float]:
    # .item() keeps integer counts integers in the JSON output
    return {"min": x.min().item(), "mean": float(x.mean()), "max": x.max().item()}


def format_summary(summary: dict[str, Any]) -> str:
    """The output of `summarize` as a few aligned lines for a terminal."""
    s = summary
    n, r, rate = s["episode_length"], s["rewards"], s["success_rate"]
    mmm = "min {min:.4g} / mean {mean:.4g} / max {max:.4g}"
    rows = {
        "dataset": f"{s['root']} (source {s['source']})",
        "episodes": f"{s['episodes']}, {s['frames']} frames (length {mmm.format(**n)})",
        "frames": f"{s['image_size']}x{s['image_size']} RGB at {s['fps']:g} fps",
        "actions": "none (action-free video)" if s["action_dim"] is None else f"dim {s['action_dim']}",
        "rewards": "unknown" if r is None else mmm.format(**r),
        "success": "unknown" if rate is None else f"{rate:.1%} of {s['success_known']} episodes",
    }
    if s["tasks"]:
        rows["tasks"] = ", ".join(f"{t} ({k})" for t, k in sorted(s["tasks"].items()))
    return "\n".join(f"{key:<10} {value}" for key, value in rows.items())
