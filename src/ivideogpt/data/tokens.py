"""Token shards: pre-tokenized clips on disk, memory-mapped for transformer training.

Like nanoGPT's `.bin` files, codes are flat uint16 arrays; a shard folder holds one split:

    meta.json     grids, vocab sizes, clip shape, tokenizer config, clip count
    context.bin   uint16 (num_clips, Tc, Nc)   context-frame codes
    future.bin    uint16 (num_clips, Tf, Nf)   future-frame codes (coded relative to that clip's context)
    actions.npy   float32 (num_clips, Tc+Tf, A)  (A = 0 for action-free data)
    rewards.npy   float32 (num_clips, Tc+Tf)
    dones.npy     bool    (num_clips, Tc+Tf)
    flags.npy     bool    (num_clips, 2)        has_actions, has_rewards
    index.npy     int64   (num_clips, 3)        source, episode, first frame
    moving.npy    bool    (num_clips, Tf, Nf)   whether each future code's patch moved (data/motion.py);
                                                absent in shards written before it existed

The compressive tokenizer codes future frames relative to the context frames, so a clip's future codes
are only valid with its own context: shards store whole clips, not a frame stream.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ivideogpt.atomic import atomic_path, commit, discard, partial_path
from ivideogpt.config import read_json

CODES_DTYPE = np.uint16


class TokenShardError(ValueError):
    """A token shard folder that is missing, incomplete or inconsistent."""


@dataclass
class TokenShardMeta:
    context_frames: int  # Tc: context frames per clip
    future_frames: int  # Tf: future frames per clip
    context_tokens: int  # Nc: codes per context frame
    future_tokens: int  # Nf: codes per future frame
    context_vocab_size: int  # codes in the context codebook
    future_vocab_size: int  # codes in the future codebook
    action_dim: int  # A: 0 for action-free data
    num_clips: int = 0  # clips written
    tokenizer: dict[str, Any] = field(default_factory=dict)  # config of the tokenizer that made the codes
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: sources, split, strides

    @property
    def clip_frames(self) -> int:
        return self.context_frames + self.future_frames


@dataclass
class TokenBatch:
    """A batch of pre-tokenized clips, ready for the transformer."""

    context_codes: torch.Tensor  # int64 (B, Tc, Nc)
    future_codes: torch.Tensor  # int64 (B, Tf, Nf)
    actions: torch.Tensor  # float32 (B, T, A)
    rewards: torch.Tensor  # float32 (B, T)
    dones: torch.Tensor  # bool (B, T)
    has_actions: torch.Tensor  # bool (B,)
    has_rewards: torch.Tensor  # bool (B,)
    moving: torch.Tensor | None = None  # bool (B, Tf, Nf): future codes whose patch moved; None: unknown

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(**{k: None if v is None else v.to(device, non_blocking=True)
                             for k, v in vars(self).items()})

    def split(self, n: int) -> list[TokenBatch]:
        """Cut into `n` micro-batches along the batch dim (for gradient accumulation)."""
        parts = {k: [None] * n if v is None else v.chunk(n) for k, v in vars(self).items()}
        return [TokenBatch(**{k: v[i] for k, v in parts.items()}) for i in range(n)]


ARRAYS = ("actions", "rewards", "dones", "flags", "index", "moving")  # the per-clip arrays beside the codes
PROGRESS_FILE = "progress.json"  # in a partial shard: the clips and chunks written so far, and the settings


def settings(meta: TokenShardMeta) -> dict[str, Any]:
    """What makes two shards' clips interchangeable: the meta without its clip count, as JSON reads it."""
    return json.loads(json.dumps({k: v for k, v in asdict(meta).items() if k != "num_clips"}))


def require_settings(saved: dict[str, Any], meta: TokenShardMeta, where: Path, fix: str) -> None:
    """Refuse to continue or keep the shard at `where` if it was written with settings other than `meta`'s."""
    mine = settings(meta)
    changed = []
    for key in sorted(set(saved) | set(mine)):
        a, b = saved.get(key), mine.get(key)
        if isinstance(a, dict) and isinstance(b, dict):  # name the provenance field: extra.start_stride
            changed += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            changed.append(key)
    if changed:
        raise TokenShardError(f"{where} was written with other settings (differing: {', '.join(changed)}); "
                              f"{fix}")


class TokenShardWriter:
    """Appends tokenized clips to a shard folder; the folder appears only when `close()` succeeds.

    The shard is built in `partial_path(root)`: codes appended to the `.bin` files, each batch's other
    arrays saved as one chunk file, and after every batch `progress.json` records how many clips are
    complete (written after their data, so it never counts a clip that is not on disk). A writer killed at
    any moment leaves that folder behind; one opened with `resume=True` with the same settings cuts
    whatever came after the last record and continues from `meta.num_clips`.
    """

    def __init__(
        self, root: Path, meta: TokenShardMeta, overwrite: bool = False, resume: bool = False
    ) -> None:
        self.root = Path(root)
        if self.root.exists() and any(self.root.iterdir()) and not overwrite:
            raise FileExistsError(f"{self.root} exists and is not empty (pass overwrite to replace it)")
        self.meta = meta
        self.partial = partial_path(self.root)
        self._settings = settings(meta)  # fixed for the writer's life; each progress record repeats them
        self._chunks = 0
        self._moving: bool | None = None  # whether batches carry `moving` (fixed by the first one)
        progress = None if overwrite else _read_progress(self.partial)
        if progress is not None and resume:
            self._restore(progress)
        else:
            if progress is not None and progress["num_clips"]:
                raise FileExistsError(
                    f"{self.partial} holds an interrupted tokenize ({progress['num_clips']} clips written); "
                    "resume it (--resume) or start over (--overwrite)"
                )
            discard(self.partial)
            (self.partial / "chunks").mkdir(parents=True)
            meta.num_clips = 0
        self._context = open(self.partial / "context.bin", "ab")  # noqa: SIM115 (closed by close())
        self._future = open(self.partial / "future.bin", "ab")  # noqa: SIM115

    def _restore(self, progress: dict[str, Any]) -> None:
        """Continue the partial shard: drop what was written after its last record."""
        require_settings(progress["settings"], self.meta, self.partial, "start over with --overwrite")
        m = self.meta
        m.num_clips, self._chunks = progress["num_clips"], progress["chunks"]
        self._moving = progress["moving"]
        for name, per_clip in (("context.bin", m.context_frames * m.context_tokens),
                               ("future.bin", m.future_frames * m.future_tokens)):
            path = self.partial / name
            size = m.num_clips * per_clip * np.dtype(CODES_DTYPE).itemsize
            if path.stat().st_size < size:
                raise TokenShardError(f"{path}: shorter than the {m.num_clips} clips its progress records")
            os.truncate(path, size)
        for chunk in (self.partial / "chunks").iterdir():
            if not chunk.name.startswith(".") and int(chunk.stem) < self._chunks:
                continue
            discard(chunk)  # a chunk written after the last record, or one cut short

    def add(self, batch: TokenBatch, index: np.ndarray) -> None:
        """Append B clips; `index` is int64 (B, 3): source, episode, first frame."""
        m = self.meta
        b = batch.context_codes.shape[0]
        expected = {
            "context_codes": (b, m.context_frames, m.context_tokens),
            "future_codes": (b, m.future_frames, m.future_tokens),
            "actions": (b, m.clip_frames, m.action_dim),
        }
        if batch.moving is not None:
            expected["moving"] = (b, m.future_frames, m.future_tokens)
        if self._moving is not None and (batch.moving is not None) != self._moving:
            raise TokenShardError("moving: give it with every batch of a shard or with none")
        for name, shape in expected.items():
            got = tuple(getattr(batch, name).shape)
            if got != shape:
                raise TokenShardError(f"{name} has shape {got}, shard expects {shape}")
        context = _codes(batch.context_codes, m.context_vocab_size, "context_codes")
        future = _codes(batch.future_codes, m.future_vocab_size, "future_codes")
        arrays = {
            "actions": batch.actions.float().cpu().numpy(),
            "rewards": batch.rewards.float().cpu().numpy(),
            "dones": batch.dones.bool().cpu().numpy(),
            "flags": torch.stack([batch.has_actions, batch.has_rewards], 1).bool().cpu().numpy(),  # (B, 2)
            "index": np.asarray(index, dtype=np.int64).reshape(b, 3),
        }
        if batch.moving is not None:
            arrays["moving"] = batch.moving.bool().cpu().numpy()
        for f, codes in ((self._context, context), (self._future, future)):
            f.write(codes.tobytes())
            f.flush()
            os.fsync(f.fileno())  # on disk before the progress record that counts them
        with atomic_path(self.partial / "chunks" / f"{self._chunks:06d}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        self._chunks += 1
        m.num_clips += b
        self._moving = batch.moving is not None
        progress = {"num_clips": m.num_clips, "chunks": self._chunks, "moving": self._moving,
                    "settings": self._settings}
        with atomic_path(self.partial / PROGRESS_FILE) as tmp:
            tmp.write_text(json.dumps(progress))

    def close(self) -> Path:
        self._context.close()
        self._future.close()
        if self.meta.num_clips == 0:
            discard(self.partial)
            raise TokenShardError(f"no clips were written to {self.root}")
        chunks = []
        for k in range(self._chunks):
            with np.load(self.partial / "chunks" / f"{k:06d}.npz", allow_pickle=False) as chunk:
                chunks.append({name: chunk[name] for name in chunk.files})
        for name in ARRAYS:
            if name in chunks[0]:
                np.save(self.partial / f"{name}.npy", np.concatenate([c[name] for c in chunks]))
        discard(self.partial / "chunks")
        discard(self.partial / PROGRESS_FILE)
        (self.partial / "meta.json").write_text(json.dumps(asdict(self.meta), indent=2))
        commit(self.partial, self.root)
        return self.root


def _read_progress(partial: Path) -> dict[str, Any] | None:
    """A partial shard's progress record; None when there is none (nothing complete to keep)."""
    path = partial / PROGRESS_FILE
    if not path.exists():
        return None
    return read_json(path, TokenShardError, "start over with --overwrite")


class TokenShards(torch.utils.data.Dataset):
    """Memory-mapped reader of a shard folder; `shards[i]` is one clip, `shards.batch(ids)` many."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.exists():
            raise TokenShardError(f"{self.root}: no meta.json; "
                                  "is this a token shard folder (`ivideogpt tokenize`)?")
        fields = read_json(meta_path, TokenShardError)
        try:
            self.meta = TokenShardMeta(**fields)
        except TypeError as e:
            raise TokenShardError(f"{meta_path}: unreadable shard metadata ({e})") from e
        m = self.meta
        self.context = self._memmap("context.bin", (m.num_clips, m.context_frames, m.context_tokens))
        self.future = self._memmap("future.bin", (m.num_clips, m.future_frames, m.future_tokens))
        self.arrays = {name: self._array(name) for name in ARRAYS if name != "moving"}
        self.moving = self._array("moving") if (self.root / "moving.npy").exists() else None

    def __len__(self) -> int:
        return self.meta.num_clips

    def __getitem__(self, i: int) -> TokenBatch:
        return self.batch(np.array([i]))

    def batch(self, ids: np.ndarray) -> TokenBatch:
        """Gather clips `ids` (int array (B,)) into a TokenBatch on the CPU."""
        ids = np.sort(np.asarray(ids))  # sorted reads are kinder to the page cache; order is irrelevant here
        flags = torch.from_numpy(self.arrays["flags"][ids])
        return TokenBatch(
            context_codes=torch.from_numpy(self.context[ids].astype(np.int64)),
            future_codes=torch.from_numpy(self.future[ids].astype(np.int64)),
            actions=torch.from_numpy(self.arrays["actions"][ids]),
            rewards=torch.from_numpy(self.arrays["rewards"][ids]),
            dones=torch.from_numpy(self.arrays["dones"][ids]),
            has_actions=flags[:, 0],
            has_rewards=flags[:, 1],
            moving=None if self.moving is None else torch.from_numpy(self.moving[ids]),
        )

    def _memmap(self, name: str, shape: tuple[int, ...]) -> np.memmap:
        path = self.root / name
        expected = int(np.prod(shape)) * np.dtype(CODES_DTYPE).itemsize
        if not path.exists() or path.stat().st_size != expected:
            size = path.stat().st_size if path.exists() else "missing"
            raise TokenShardError(f"{path}: expected {expected} bytes for {shape} uint16 codes, found {size}")
        return np.memmap(path, dtype=CODES_DTYPE, mode="r", shape=shape)

    def _array(self, name: str) -> np.ndarray:
        path = self.root / f"{name}.npy"
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise TokenShardError(f"{path}: missing or corrupt ({e})") from e
        if len(array) != self.meta.num_clips:
            raise TokenShardError(f"{path}: {len(array)} rows, meta.json says {self.meta.num_clips} clips")
        return array


def _codes(codes: torch.Tensor, vocab_size: int, name: str) -> np.ndarray:
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= vocab_size):
        raise TokenShardError(f"{name} outside [0, {vocab_size}): "
                              f"min {int(codes.min())}, max {int(codes.max())}")
    if vocab_size > np.iinfo(CODES_DTYPE).max + 1:
        raise TokenShardError(f"{name}: vocabulary of {vocab_size} does not fit uint16 shards")
    return codes.cpu().numpy().astype(CODES_DTYPE)
