"""The tokenize job: dataset folders -> token shards (`ivideogpt.data.tokens`), one folder per split.

Transformer training reads codes from memory-mapped shards and never runs the tokenizer
(docs/method.md §2: it trains on codes only). Every clip of every episode of the chosen split is
tokenized, its start frames `start_stride` apart; the train/val split is the one `ClipDataset` makes (by
episode), by default with the tokenizer's own split settings so that validation episodes are unseen by
the tokenizer as well.

Each shard's `meta.json` records the tokenizer's config, its absolute path and a fingerprint of its
weights: the transformer trainer loads that tokenizer for the world-model export and refuses shards
whose tokenizer changed since (a retrained tokenizer in the same folder would decode them wrongly).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ivideogpt.artifacts import load_any_tokenizer, recorded_clips, tokenizer_fingerprint, tokenizer_lineage
from ivideogpt.atomic import partial_path
from ivideogpt.config import to_dict
from ivideogpt.data.clips import ClipBatch, ClipConfig, ClipDataset, collate_clips
from ivideogpt.data.frames import to_model
from ivideogpt.data.motion import moving_codes
from ivideogpt.data.tokens import (
    TokenBatch,
    TokenShardMeta,
    TokenShards,
    TokenShardWriter,
    require_settings,
    settings,
)
from ivideogpt.device import resolve_device
from ivideogpt.tokenizer import VideoTokenizer

SPLITS = ("train", "val")


@dataclass
class TokenizeConfig:
    """Everything `ivideogpt tokenize` needs."""

    tokenizer: Path = Path("runs/tokenizer")  # tokenizer export/run/checkpoint folder, or a world model's
    data: list[Path] = field(default_factory=list)  # dataset folders (each with meta.json) to tokenize
    out: Path = Path("tokens")  # output folder: <out>/train/ and <out>/val/ token shards
    context_frames: int | None = None  # Tc per clip; None: what the tokenizer was trained with
    future_frames: int | None = None  # Tf per clip; None: what the tokenizer was trained with
    start_stride: int = 1  # episode frames between the first frames of consecutive clips (2: every other)
    frame_stride: int = 1  # episode frames between the frames of one clip (>1 only for action-free video)
    val_fraction: float | None = None  # share of episodes held out; None: the tokenizer's split (else 0.1)
    split_seed: int | None = None  # seed of the episode split; None: the tokenizer's (else 0)
    splits: tuple[str, ...] = SPLITS  # which splits to write, each to <out>/<split>
    batch_size: int = 32  # clips per tokenizer forward
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda", "cuda:N"
    # bf16: the tokenizer under bfloat16 autocast, for GPUs and CPUs with AMX (2x here; README); about 7% of
    # the context codes then differ from float32's, so the shards record it and resume checks it
    amp: Literal["off", "bf16"] = "off"
    overwrite: bool = False  # replace existing shard folders in `out` (and start an interrupted one over)
    resume: bool = False  # keep finished splits made with these settings, continue an interrupted one

    def __post_init__(self) -> None:
        for name in ("start_stride", "frame_stride", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TokenizeConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name, minimum in (("context_frames", 1), ("future_frames", 1)):
            value = getattr(self, name)
            if value is not None and value < minimum:
                raise ValueError(f"TokenizeConfig.{name} must be >= {minimum} or None, got {value}")
        if self.val_fraction is not None and not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"TokenizeConfig.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.resume and self.overwrite:
            raise ValueError("TokenizeConfig: resume keeps what was written, overwrite replaces it; pick one")
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not self.splits or len(set(self.splits)) != len(self.splits):
            raise ValueError(f"TokenizeConfig.splits must be distinct entries of {SPLITS}, got {self.splits}")


# ------------------------------------------------------------------------------------- the job


def tokenize_dataset(cfg: TokenizeConfig) -> Path:
    """Tokenize every clip of the configured splits and write `<out>/<split>/` token shards.

    Returns:
        The output folder `cfg.out` (holding one shard folder per split).

    Raises:
        FileNotFoundError: no tokenizer or dataset at the given paths.
        FileExistsError: a shard folder exists, or an interrupted one, and neither `overwrite` nor `resume`
            is on (checked before any work).
        TokenShardError: `resume` on shards written with other settings (tokenizer, data, clip shape).
        ValueError: no data, frames of another size than the tokenizer's, action sizes that differ
            between dataset folders, or no context/future frame counts known.
    """
    if not cfg.data:
        raise ValueError("TokenizeConfig.data: no dataset folders given (--data DIR [DIR ...])")
    out = Path(cfg.out)
    existing = [str(out / s) for s in cfg.splits if (out / s).exists() and any((out / s).iterdir())]
    if existing and not (cfg.overwrite or cfg.resume):
        raise FileExistsError(f"token shards exist at {existing}; pass --overwrite to replace them")
    partial = [str(partial_path(out / s)) for s in cfg.splits if partial_path(out / s).exists()]
    if partial and not (cfg.overwrite or cfg.resume):
        raise FileExistsError(f"an interrupted tokenize left {partial}; continue it with --resume, or start "
                              "over with --overwrite")
    device = resolve_device(cfg.device)
    tokenizer = load_any_tokenizer(cfg.tokenizer, device)
    clip_cfg = _clip_config(cfg, recorded_clips(cfg.tokenizer))
    provenance = {
        "tokenizer_path": str(Path(cfg.tokenizer).resolve()),
        # found again when the shards and their tokenizer move together (a clone elsewhere)
        "tokenizer_relpath": os.path.relpath(Path(cfg.tokenizer).resolve(), out.resolve()),
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "tokenizer_lineage": tokenizer_lineage(cfg.tokenizer),
        "sources": [str(Path(d).resolve()) for d in cfg.data],
        "start_stride": cfg.start_stride,
        "frame_stride": cfg.frame_stride,
        "val_fraction": clip_cfg.val_fraction,
        "split_seed": clip_cfg.split_seed,
        **({"amp": cfg.amp} if cfg.amp != "off" else {}),  # float32 shards keep the settings they had
    }
    if "val" in cfg.splits and clip_cfg.val_fraction == 0:
        raise ValueError(
            "TokenizeConfig: val_fraction is 0, so there is no 'val' split; "
            "set --val-fraction > 0 or --splits train"
        )
    # every split is opened and checked before any is written, so an empty one leaves nothing half done
    # (no cache: an episode loads in ~3 ms)
    splits = {split: ClipDataset(cfg.data, clip_cfg, split, cache=False) for split in cfg.splits}
    for data in splits.values():
        _check_data(data, tokenizer)
    for split, data in splits.items():
        meta = _shard_meta(data, tokenizer, clip_cfg, {**provenance, "split": split})
        if cfg.resume and _finished(out / split, meta):
            print(f"tokenize: {out / split} is complete, kept")
            continue
        _write_split(data, tokenizer, meta, out / split, cfg)
    return out


def _clip_config(cfg: TokenizeConfig, recorded: dict[str, Any]) -> ClipConfig:
    """The clip shape and split: explicit settings first, then the tokenizer's, then ClipConfig's defaults."""
    values = {}
    for name in ("context_frames", "future_frames", "val_fraction", "split_seed"):
        value = getattr(cfg, name)
        value = recorded.get(name) if value is None else value
        if value is None and name in ("context_frames", "future_frames"):
            raise ValueError(
                f"TokenizeConfig.{name}: not given and not recorded with the tokenizer at "
                f"{cfg.tokenizer}; pass --{name.replace('_', '-')} N"
            )
        if value is not None:
            values[name] = value
    return ClipConfig(stride=cfg.frame_stride, **values)


def _check_data(data: ClipDataset, tokenizer: VideoTokenizer) -> None:
    size = data.stores[0].meta.image_size
    if size != tokenizer.resolution:
        raise ValueError(
            f"the frames of {data.stores[0].root} are {size}x{size} but the tokenizer expects "
            f"{tokenizer.resolution}x{tokenizer.resolution}; resize the data or use another tokenizer"
        )
    dims = {str(s.root): s.meta.action_dim for s in data.stores if s.meta.action_dim is not None}
    if len(set(dims.values())) > 1:
        # zero-padding one robot's actions into another's vector makes the action layer mix meanings
        raise ValueError(
            f"dataset folders have different action sizes {dims}; tokenize them separately "
            "(action-free folders may be mixed with any one action size)"
        )


def _shard_meta(
    data: ClipDataset, tokenizer: VideoTokenizer, clip_cfg: ClipConfig, extra: dict[str, Any]
) -> TokenShardMeta:
    fps = {s.meta.fps for s in data.stores}
    extra = {
        **extra,
        "image_size": tokenizer.resolution,
        "fps": fps.pop() / clip_cfg.stride if len(fps) == 1 else None,
        "collect": _collection(data),
    }
    return TokenShardMeta(
        context_frames=clip_cfg.context_frames,
        future_frames=clip_cfg.future_frames,
        context_tokens=tokenizer.tokens_per_context_frame,
        future_tokens=tokenizer.tokens_per_future_frame,
        context_vocab_size=tokenizer.context_vocab_size,
        future_vocab_size=tokenizer.future_vocab_size,
        action_dim=data.action_dim,
        tokenizer=to_dict(tokenizer.cfg),
        extra=extra,
    )


def _collection(data: ClipDataset) -> dict[str, Any]:
    """How simulator sources were recorded (tasks, camera, ...): matching test episodes can be made later."""
    found: dict[str, Any] = {}
    for store in data.stores:
        extra = store.meta.extra
        seen = found.get("tasks", [])
        tasks = seen + [t for t in extra.get("tasks", []) if t not in seen]
        found |= {k: extra[k] for k in ("camera", "action_repeat", "max_steps", "seed") if k in extra}
        found |= {"tasks": tasks} if tasks else {}
    return found


def _finished(root: Path, meta: TokenShardMeta) -> bool:
    """Whether `root` holds a finished shard made with `meta`'s settings (resume keeps it)."""
    if not (root / "meta.json").exists():
        return False
    require_settings(settings(TokenShards(root).meta), meta, root, "replace it with --overwrite")
    return True


@torch.no_grad()
def _write_split(
    data: ClipDataset, tokenizer: VideoTokenizer, meta: TokenShardMeta, root: Path, cfg: TokenizeConfig
) -> Path:
    """Tokenize the clips of `data` whose start is a multiple of `start_stride` into the shard `root`."""
    ids = [i for i in range(len(data)) if data.locate(i)[2] % cfg.start_stride == 0]
    writer = TokenShardWriter(root, replace(meta), overwrite=cfg.overwrite, resume=cfg.resume)
    done = writer.meta.num_clips  # clips an interrupted run already wrote (resume)
    if done:
        print(f"tokenize: resuming {root.name} after {done} of {len(ids)} clips")
    loader = DataLoader(Subset(data, ids[done:]), batch_size=cfg.batch_size, collate_fn=collate_clips)
    device = next(tokenizer.parameters()).device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16")
    try:
        for batch in tqdm(loader, desc=f"tokenize {root.name}", unit="batch", dynamic_ncols=True):
            with autocast:
                writer.add(_codes_of(batch, tokenizer, meta.context_frames, device),
                           torch.stack([batch.source, batch.episode, batch.start], 1).numpy())
    except KeyboardInterrupt:
        print(f"tokenize: interrupted after {writer.meta.num_clips} of {len(ids)} {root.name} clips; "
              "the same command with --resume continues")
        raise
    written = writer.close()
    m = writer.meta
    print(
        f"tokenize: {m.num_clips} {root.name} clips of {m.context_frames}+{m.future_frames} frames "
        f"({m.context_tokens} + {m.future_tokens} tokens per frame) -> {written}"
    )
    return written


def _codes_of(batch: ClipBatch, tokenizer: VideoTokenizer, tc: int, device: torch.device) -> TokenBatch:
    """A batch of clips as the shard stores it: the tokenizer's codes beside the clips' other arrays."""
    context, future = tokenizer.tokenize(to_model(batch.frames.to(device)), tc)  # (B,Tc,h,w), (B,Tf,h,w)
    return TokenBatch(
        context_codes=context.flatten(2),  # (B, Tc, Nc)
        future_codes=future.flatten(2),  # (B, Tf, Nf)
        actions=batch.actions,
        rewards=batch.rewards,
        dones=batch.dones,
        has_actions=batch.has_actions,
        has_rewards=batch.has_rewards,
        moving=moving_codes(batch.frames, tc, tuple(future.shape[-2:])),  # (B, Tf, Nf)
    )
