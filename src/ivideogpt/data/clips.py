"""Training clips cut from one or more dataset folders, a per-source mixture sampler and collation.

A clip is `context_frames + future_frames` frames taken `stride` frames apart from one episode. Every
valid start position (stepping by one frame) is a clip, so an episode of T frames gives
`T - (clip_length - 1) * stride` clips. Train/val splits are made per source by EPISODE, never by clip,
so no validation frame is ever seen in training.

Sources may be action-free video and may have different action sizes: actions are zero-padded to one
width and `has_actions`/`has_rewards` say which rows are real (the fix the reference authors suggested
for mixed action spaces).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ivideogpt.data.episode import Episode
from ivideogpt.data.store import EpisodeStore

Split = Literal["train", "val", "all"]


@dataclass
class ClipConfig:
    """How clips are cut from episodes and how episodes are split."""

    context_frames: int = 2  # frames given as context (tokenized with the full per-frame tokenizer)
    future_frames: int = 6  # frames to predict after the context
    stride: int = 1  # episode frames between consecutive clip frames (>1 subsamples fast video)
    val_fraction: float = 0.1  # share of each source's EPISODES held out for validation
    split_seed: int = 0  # seed of the episode split

    def __post_init__(self) -> None:
        if self.context_frames < 1:
            raise ValueError(f"ClipConfig.context_frames must be >= 1, got {self.context_frames}")
        if self.future_frames < 0:
            raise ValueError(f"ClipConfig.future_frames must be >= 0, got {self.future_frames}")
        if self.stride < 1:
            raise ValueError(f"ClipConfig.stride must be >= 1, got {self.stride}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"ClipConfig.val_fraction must be in [0, 1), got {self.val_fraction}")

    @property
    def clip_length(self) -> int:
        """Frames in one clip."""
        return self.context_frames + self.future_frames

    @property
    def span(self) -> int:
        """Episode frames one clip covers, first to last."""
        return (self.clip_length - 1) * self.stride + 1


@dataclass
class ClipBatch:
    """A batch of clips (`Clip` is the same with no batch dim).

    Attributes:
        frames: uint8 `(B, T, H, W, 3)`.
        actions: float32 `(B, T, A)`; row t produced frame t; zero-padded to A, all zeros where
            `has_actions` is False.
        rewards: float32 `(B, T)`; reward on arriving in frame t; zeros where `has_rewards` is False.
        dones: bool `(B, T)`; episode terminated on arriving in frame t (False where unknown).
        has_actions: bool `(B,)`.
        has_rewards: bool `(B,)`.
        source: int64 `(B,)`; index of the dataset folder the clip came from.
        episode: int64 `(B,)` episode index within its source, or None when not known.
        start: int64 `(B,)` episode frame of the clip's first frame, or None when not known.
    """

    frames: Tensor
    actions: Tensor
    rewards: Tensor
    dones: Tensor
    has_actions: Tensor
    has_rewards: Tensor
    source: Tensor
    episode: Tensor | None = None
    start: Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = True) -> ClipBatch:
        """A copy with every tensor on `device`."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> ClipBatch:
        """A copy in page-locked memory (DataLoader(pin_memory=True) calls this on custom batches)."""
        return self._map(lambda t: t.pin_memory())

    def _map(self, fn: Callable[[Tensor], Tensor]) -> ClipBatch:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return type(self)(**{k: None if v is None else fn(v) for k, v in values.items()})


class Clip(ClipBatch):
    """One clip: the fields of `ClipBatch` without the leading batch dim (`has_*`, `source`, ... 0-d)."""


def collate_clips(clips: Sequence[Clip]) -> ClipBatch:
    """Stack clips into a `ClipBatch` (all clips must share T, H, W and action width)."""
    stacked = {}
    for f in fields(ClipBatch):
        values = [getattr(c, f.name) for c in clips]
        stacked[f.name] = None if any(v is None for v in values) else torch.stack(values)
    return ClipBatch(**stacked)


def split_episodes(num_episodes: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic train/val split of episode indices `0..num_episodes-1`.

    At least one validation episode when `val_fraction > 0` and there are two or more episodes, and at
    least one training episode always (a single-episode dataset goes to train).

    Returns:
        (train indices, val indices), each sorted.
    """
    n_val = round(val_fraction * num_episodes)
    if val_fraction > 0 and num_episodes >= 2:
        n_val = min(max(n_val, 1), num_episodes - 1)
    else:
        n_val = 0
    perm = np.random.default_rng([seed, num_episodes]).permutation(num_episodes)
    return sorted(perm[n_val:].tolist()), sorted(perm[:n_val].tolist())


class EmptySplitError(ValueError):
    """No episode of the dataset falls in the requested split (too few episodes for its val_fraction)."""


class ClipDataset(Dataset):
    """Every clip of every episode in the chosen split of one or more dataset folders.

    Index layout: clips are grouped by source, then episode, then start frame, so the clips of source s
    are `range(source_offsets[s], source_offsets[s + 1])` (what `mixture_sampler` relies on). Episodes
    are loaded on first use and kept in memory (per DataLoader worker) unless `cache=False`.

    Args:
        sources: dataset folders; all must share the image size.
        cfg: clip shape and episode split.
        split: "train", "val" or "all" episodes of every source.
        action_dim: width actions are zero-padded to; default the widest source (0 if all are
            action-free).
        cache: keep loaded episodes in memory.
    """

    def __init__(
        self,
        sources: Sequence[str | Path],
        cfg: ClipConfig,
        split: Split,
        action_dim: int | None = None,
        cache: bool = True,
    ) -> None:
        if not sources:
            raise ValueError("ClipDataset: no sources given")
        if split not in ("train", "val", "all"):
            raise ValueError(f"ClipDataset: split must be 'train', 'val' or 'all', got {split!r}")
        self.cfg, self.split, self.cache = cfg, split, cache
        self.stores = [EpisodeStore(s) for s in sources]
        self._check_sources()
        dims = [s.meta.action_dim or 0 for s in self.stores]
        self.action_dim = max(dims) if action_dim is None else action_dim
        if max(dims) > self.action_dim:
            raise ValueError(f"ClipDataset: action_dim={action_dim} is smaller than a source's ({max(dims)})")
        self._cache: dict[tuple[int, int], Episode] = {}
        self._build_index()

    def _check_sources(self) -> None:
        sizes = {str(s.root): s.meta.image_size for s in self.stores}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"ClipDataset: sources have different image sizes: {sizes}")
        for s in self.stores:
            if s.meta.action_dim is not None and self.cfg.stride > 1:
                # a strided clip would skip the actions between its frames: the dynamics would be wrong
                raise ValueError(
                    f"ClipDataset: {s.root} has actions, so stride must be 1 (got {self.cfg.stride}); "
                    "collect with an action repeat instead"
                )

    def _build_index(self) -> None:
        span, self.skipped_episodes = self.cfg.span, 0
        rows = []  # (source, episode, number of clips)
        for s, store in enumerate(self.stores):
            train, val = split_episodes(len(store), self.cfg.val_fraction, self.cfg.split_seed)
            for e in {"train": train, "val": val, "all": sorted(train + val)}[self.split]:
                n = store.lengths[e] - span + 1
                if n < 1:
                    self.skipped_episodes += 1
                else:
                    rows.append((s, e, n))
        ep_source, ep_index, ep_clips = np.array(rows, dtype=np.int64).reshape(-1, 3).T
        self.episodes = [(s, e) for s, e, _ in rows]  # (source, episode) pairs that give clips
        self._ep_source, self._ep_index = ep_source, ep_index  # (E,) each
        self._ep_end = np.cumsum(ep_clips)  # (E,) clip index one past each episode's last clip
        counts = np.bincount(ep_source, weights=ep_clips, minlength=len(self.stores)).astype(np.int64)
        self.source_offsets = np.concatenate([[0], np.cumsum(counts)])  # (S + 1,)
        if self.skipped_episodes:
            warnings.warn(
                f"ClipDataset[{self.split}]: skipped {self.skipped_episodes} episode(s) shorter than a clip "
                f"({span} frames)",
                stacklevel=3,
            )
        roots = [str(s.root) for s in self.stores]
        if len(self) == 0 and not self.skipped_episodes:  # no episode was drawn into this split at all
            total = sum(len(store) for store in self.stores)
            raise EmptySplitError(
                f"ClipDataset[{self.split}]: the {self.split!r} split of {roots} holds no episode ({total} "
                f"in all, val_fraction {self.cfg.val_fraction}): record more episodes, or change "
                "val_fraction (0 trains without a held-out split where the command allows)"
            )
        if len(self) == 0:
            raise ValueError(
                f"ClipDataset[{self.split}]: no clips: every episode of {roots} in this split is shorter "
                f"than a clip ({span} frames)"
            )

    @property
    def clips_per_source(self) -> np.ndarray:
        """int64 `(S,)` number of clips each source contributes."""
        return np.diff(self.source_offsets)

    def __len__(self) -> int:
        return int(self.source_offsets[-1])

    def locate(self, i: int) -> tuple[int, int, int]:
        """(source, episode, start frame) of clip `i`."""
        if not 0 <= i < len(self):
            raise IndexError(f"ClipDataset: clip index {i} out of range ({len(self)} clips)")
        k = int(np.searchsorted(self._ep_end, i, side="right"))
        first = int(self._ep_end[k - 1]) if k > 0 else 0
        return int(self._ep_source[k]), int(self._ep_index[k]), i - first

    def episode(self, source: int, index: int) -> Episode:
        """Episode `index` of source `source`, from the in-memory cache when enabled."""
        key = (source, index)
        ep = self._cache.get(key)
        if ep is None:
            ep = self.stores[source][index]
            if self.cache:
                self._cache[key] = ep
        return ep

    def __getitem__(self, i: int) -> Clip:
        source, index, start = self.locate(int(i))
        ep = self.episode(source, index)
        rows = slice(start, start + self.cfg.span, self.cfg.stride)  # T frames, stride apart
        t = self.cfg.clip_length
        actions = np.zeros((t, self.action_dim), dtype=np.float32)
        if ep.actions is not None:
            actions[:, : ep.action_dim] = ep.actions[rows]
        # with stride > 1 (action-free sources only) a clip step spans several episode steps
        rewards = np.zeros(t, np.float32) if ep.rewards is None else _per_step(ep.rewards, start, self.cfg)
        dones = np.zeros(t, bool) if ep.done is None else _per_step(ep.done, start, self.cfg)
        return Clip(
            frames=torch.from_numpy(ep.frames[rows].copy()),  # a copy: writing to it cannot touch the cache
            actions=torch.from_numpy(actions),
            rewards=torch.from_numpy(rewards),
            dones=torch.from_numpy(dones),
            has_actions=torch.tensor(ep.actions is not None),
            has_rewards=torch.tensor(ep.rewards is not None),
            source=torch.tensor(source, dtype=torch.int64),
            episode=torch.tensor(index, dtype=torch.int64),
            start=torch.tensor(start, dtype=torch.int64),
        )


def _per_step(values: np.ndarray, start: int, cfg: ClipConfig) -> np.ndarray:
    """Rewards (summed) or done flags (any) over the episode steps between consecutive clip frames.

    Clip row k covers episode steps (f_k - stride, f_k] with f_k = start + k * stride, clipped at the
    episode's first step; with stride 1 this is just row f_k.
    """
    s = cfg.stride
    window = values[start + 1 - s : start + cfg.span] if start + 1 >= s else values[: start + cfg.span]
    pad = cfg.clip_length * s - len(window)  # left-pad the first row when the episode starts mid-window
    window = np.concatenate([np.zeros(pad, values.dtype), window]).reshape(cfg.clip_length, s)
    return window.any(axis=1) if values.dtype == np.bool_ else window.sum(axis=1, dtype=np.float32)


class MixtureSampler(Sampler[int]):
    """Draws `num_samples` clip indices: a source by its weight, then a clip uniformly within it.

    Deterministic for (`seed`, epoch); call `set_epoch` between passes for fresh draws.
    """

    def __init__(
        self, dataset: ClipDataset, weights: Sequence[float] | None, num_samples: int, seed: int
    ) -> None:
        counts = dataset.clips_per_source
        if weights is None:
            # no weights: every clip equally likely, i.e. sources weighted by their clip counts
            weights = counts.astype(np.float64).tolist()
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != counts.shape or (w < 0).any() or w.sum() <= 0:
            raise ValueError(
                f"mixture: weights must be {len(counts)} non-negative numbers, not all 0; got {weights}"
            )
        empty = [str(dataset.stores[s].root) for s in np.flatnonzero((w > 0) & (counts == 0))]
        if empty:
            raise ValueError(f"mixture: source(s) {empty} have a positive weight but no clips in this split")
        if num_samples < 1:
            raise ValueError(f"mixture: num_samples must be >= 1, got {num_samples}")
        self.probs, self.counts, self.offsets = w / w.sum(), counts, dataset.source_offsets[:-1]
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Draw a different (but reproducible) sequence on the next pass."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        src = rng.choice(len(self.probs), size=self.num_samples, p=self.probs)  # (N,)
        within = (rng.random(self.num_samples) * self.counts[src]).astype(np.int64)  # uniform in [0, count)
        yield from (self.offsets[src] + within).tolist()


def mixture_sampler(
    dataset: ClipDataset, weights: Sequence[float] | None, num_samples: int, seed: int
) -> MixtureSampler:
    """A sampler drawing clips so that source s is picked with probability `weights[s] / sum(weights)`.

    Args:
        dataset: the clips to draw from.
        weights: one non-negative weight per source; None weights sources by their clip counts (uniform
            over all clips).
        num_samples: clip indices per pass.
        seed: makes the draws reproducible.
    """
    return MixtureSampler(dataset, weights, num_samples, seed)


def make_loader(
    dataset: ClipDataset,
    batch_size: int,
    num_samples: int,
    weights: Sequence[float] | None = None,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of `ClipBatch`es drawn with `mixture_sampler` (drops the last incomplete batch)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=mixture_sampler(dataset, weights, num_samples, seed),
        num_workers=num_workers,
        collate_fn=collate_clips,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=num_workers > 0,
    )
