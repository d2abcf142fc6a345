"""The train-tokenizer job: clips from dataset folders -> a trained (compressive or per-frame) tokenizer.

Recipe (docs/method.md §1): clips of Tc context + Tf future frames, L1 (+ LPIPS when weights are given)
reconstruction on every frame, codebook and commitment terms, AdamW with a constant learning rate after
warm-up, gradient clipping at 1.0, bf16 autocast on GPUs, and an optional hinge patch GAN with its own
optimizer that only costs time once it is active. Validation scores context and future frames apart on
held-out episodes. The result is exported to `<out>/tokenizer/` (`ivideogpt.artifacts.load_tokenizer`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ivideogpt.artifacts import load_any_tokenizer, tokenizer_fingerprint, tokenizer_lineage
from ivideogpt.config import to_dict
from ivideogpt.data.clips import ClipBatch, ClipConfig, ClipDataset, collate_clips, mixture_sampler
from ivideogpt.data.frames import to_model
from ivideogpt.filenames import TOKENIZER_EXPORT
from ivideogpt.tokenizer import (
    TokenizerConfig,
    TokenizerLoss,
    TokenizerLossConfig,
    TokenizerOutput,
    VideoTokenizer,
    build_tokenizer,
)
from ivideogpt.train.checkpoint import save_model
from ivideogpt.train.distributed import Runtime
from ivideogpt.train.job import TrainJob, TrainLoopConfig, optimizer_step
from ivideogpt.train.loop import sampler_step_loader, train_and_export
from ivideogpt.train.optim import build_adamw
from ivideogpt.train.tokenizer_eval import (
    evaluate_tokenizer,
    fixed_indices,
    val_batches,
    write_reconstructions,
)


def _default_loop() -> TrainLoopConfig:
    # docs/method.md §1: lr 5e-4 constant after 500 warm-up steps, batch 16, grad clip 1.0
    return TrainLoopConfig(lr=5e-4, warmup_steps=500, schedule="constant", batch_size=16, grad_clip=1.0)


@dataclass
class TokenizerTrainConfig:
    """Everything `ivideogpt train-tokenizer` needs (a YAML preset fills it, flags override it)."""

    data: list[Path] = field(default_factory=list)  # dataset folders (each with meta.json) to train on
    weights: list[float] | None = None  # sampling weight per dataset folder; None: uniform over clips
    out: Path = Path("runs/tokenizer")  # run folder: log.jsonl, ckpt/, samples/, tokenizer/ (the export)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)  # architecture
    loss: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)  # objective (LPIPS weights, GAN)
    clips: ClipConfig = field(default_factory=ClipConfig)  # context/future frames per clip, val split
    train: TrainLoopConfig = field(default_factory=_default_loop)  # optimisation and bookkeeping
    sample_clips: int = 4  # validation clips shown in each sample image/GIF
    # fine-tune this tokenizer (export/run/checkpoint folder, or a world model's) instead of starting from
    # scratch: its weights and architecture; the optimizer and step start afresh (docs/method.md §3)
    init_from: Path | None = None
    # with init_from: take the architecture fields set here over the parent's and load its weights wherever a
    # name and shape match (e.g. `--tokenizer.patch-size 2`, a finer future grid: only the patch
    # projections start fresh); without it such a clash is refused
    reshape: bool = False
    resume: bool = False  # continue the run in `out` from its last checkpoint
    config: str | None = None  # the preset this config came from (recorded, not used)

    def __post_init__(self) -> None:
        if self.sample_clips < 1:
            raise ValueError(f"TokenizerTrainConfig.sample_clips must be >= 1, got {self.sample_clips}")
        if self.weights is not None and self.data and len(self.weights) != len(self.data):
            raise ValueError(f"TokenizerTrainConfig.weights: {len(self.weights)} weight(s) for "
                             f"{len(self.data)} dataset folder(s)")
        if self.clips.future_frames < 1:
            raise ValueError(f"TokenizerTrainConfig.clips.future_frames must be >= 1 (the tokenizer codes "
                             f"future frames), got {self.clips.future_frames}")


class TokenizerJob(TrainJob):
    """Tokenizer (+ discriminator) training as a `TrainJob` for `run_training`."""

    name = "tokenizer"
    export_dir = TOKENIZER_EXPORT

    def __init__(self, cfg: TokenizerTrainConfig, runtime: Runtime) -> None:
        self.cfg, self.runtime, self.num_context = cfg, runtime, cfg.clips.context_frames
        self.train_data = ClipDataset(cfg.data, cfg.clips, "train")
        self.sampler = mixture_sampler(self.train_data, cfg.weights,
                                       cfg.train.batch_size * runtime.world_size, cfg.train.seed)
        self.val = self._val_batches() if runtime.is_main else []
        self.lineage: list[str] = []  # fingerprints of the tokenizers this one descends from, nearest first
        if cfg.init_from is not None:
            self.tokenizer, self.lineage = _load_parent(cfg.init_from, cfg.tokenizer, cfg.reshape)
            self.cfg = cfg = dataclasses.replace(cfg, tokenizer=self.tokenizer.cfg)  # recorded as trained
        else:
            self.tokenizer = build_tokenizer(cfg.tokenizer)
        _check_resolution(self.train_data, cfg.tokenizer)
        self.tokenizer.to(runtime.device)
        self.loss = TokenizerLoss(cfg.loss).to(runtime.device)
        self.disc = self.loss.discriminator  # plain module (checkpointed); the loss calls the wrapped one
        self.train_loss = runtime.wrap(self.tokenizer, compile=cfg.train.compile, method="compute_loss")
        t = cfg.train
        betas = (t.beta1, t.beta2)
        self.opt = build_adamw(self.tokenizer, t.lr, t.weight_decay, betas, runtime.device)
        self.disc_opt = None
        if self.disc is not None:
            self.loss.discriminator = runtime.wrap(self.disc)
            self.disc_opt = build_adamw(self.disc, t.lr, t.weight_decay, betas, runtime.device)
        if runtime.is_main:
            for name, module in self.modules().items():
                print(f"{name}: {sum(p.numel() for p in module.parameters()) / 1e6:.2f}M parameters")

    def _val_batches(self) -> list[ClipBatch]:
        if self.cfg.clips.val_fraction == 0:
            return []
        val_data = ClipDataset(self.cfg.data, self.cfg.clips, "val")
        count = self.cfg.train.eval_batches * self.cfg.train.batch_size
        return val_batches(val_data, fixed_indices(val_data, count), self.cfg.train.batch_size)

    # ---- what the loop saves ------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {"tokenizer": self.tokenizer} | ({"discriminator": self.disc} if self.disc is not None else {})

    def export(self, path: Path) -> Path:
        return save_model(path, {"tokenizer": self.tokenizer}, self.config())  # the discriminator only trains

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self.disc_opt is None:
            return {"tokenizer": self.opt}
        return {"tokenizer": self.opt, "discriminator": self.disc_opt}

    def config(self) -> dict[str, Any]:
        config = {k: v for k, v in to_dict(self.cfg).items() if k != "resume"}  # resume is how, not what
        return config | ({"lineage": self.lineage} if self.lineage else {})

    def strict_config_keys(self) -> tuple[str, ...]:
        return ("tokenizer",)

    # ---- training -----------------------------------------------------------------------------------
    def batches(self, start_step: int) -> Iterator[ClipBatch]:
        loader = sampler_step_loader(self.train_data, self.sampler, start_step, self.cfg.train, self.runtime,
                                     collate_clips)
        return iter(loader)

    def train_step(self, batch: ClipBatch, step: int) -> dict[str, float]:
        clip = to_model(batch.frames.to(self.runtime.device, non_blocking=True))  # (B, T, 3, H, W)
        micro = list(clip.chunk(self.cfg.train.grad_accum))
        outs: list[TokenizerOutput] = []  # kept for the discriminator step: its fakes are these recons

        def generator_loss(x: Tensor) -> tuple[Tensor, dict[str, float]]:
            loss, metrics, out = self.train_loss(x, self.num_context, self.loss, step)
            outs.append(out)
            return loss, metrics

        clip_norm = self.cfg.train.grad_clip
        metrics = optimizer_step(self.train_loss, self.opt, generator_loss, micro, self.runtime, clip_norm)
        if self.disc_opt is not None and self.loss.gan_active(step):

            def disc_loss(pair: tuple[Tensor, TokenizerOutput]) -> tuple[Tensor, dict[str, float]]:
                return self.loss.discriminator_loss(pair[0], pair[1], step)

            pairs = list(zip(micro, outs, strict=True))
            disc = optimizer_step(self.loss.discriminator, self.disc_opt, disc_loss, pairs, self.runtime,
                                  clip_norm)
            metrics |= {("disc_grad_norm" if k == "grad_norm" else k): v for k, v in disc.items()}
        return metrics

    def units_per_step(self) -> dict[str, int]:
        batch = self.cfg.train.batch_size
        return {"clips": batch, "frames": batch * self.cfg.clips.clip_length}

    # ---- validation ---------------------------------------------------------------------------------
    def evaluate(self, step: int) -> dict[str, float]:
        if not self.val:
            return {}
        sizes = {"context": self.tokenizer.context_vocab_size, "future": self.tokenizer.future_vocab_size}
        return evaluate_tokenizer(self.tokenizer, self.val, self.num_context, sizes, self.runtime.device)

    def write_samples(self, step: int, out_dir: Path) -> None:
        if self.val:
            frames = self.val[0].frames[: self.cfg.sample_clips]  # uint8 (n, T, H, W, 3)
            write_reconstructions(self.tokenizer, frames, self.num_context, out_dir / f"step_{step:09d}",
                                  self.runtime.device)


def train_tokenizer(cfg: TokenizerTrainConfig) -> Path:
    """Train a tokenizer as configured and export it.

    Launch with `python -m ...`/the CLI for one process, or under `torchrun --nproc_per_node N` for DDP.

    Returns:
        The export folder `<cfg.out>/tokenizer/` (model.safetensors + config.json), readable with
        `ivideogpt.artifacts.load_tokenizer`.
    """
    if not cfg.data:
        raise ValueError("TokenizerTrainConfig.data: no dataset folders given (--data DIR [DIR ...])")
    return train_and_export(lambda runtime: TokenizerJob(cfg, runtime), cfg.train, cfg.out, cfg.resume)


def _load_parent(path: Path, asked: TokenizerConfig, reshape: bool = False
                 ) -> tuple[VideoTokenizer, list[str]]:
    """The tokenizer to fine-tune (in train mode) and its lineage: its fingerprint, then its ancestors'.

    Raises:
        ValueError: `asked` sets an architecture (away from the defaults) other than the parent's, and
            `reshape` is off.
    """
    parent = load_any_tokenizer(path)
    default = TokenizerConfig()
    changed = {f.name: getattr(asked, f.name) for f in dataclasses.fields(TokenizerConfig)
               if getattr(asked, f.name) not in (getattr(default, f.name), getattr(parent.cfg, f.name))}
    clash = [f"tokenizer.{k}={v!r} (init_from: {getattr(parent.cfg, k)!r})" for k, v in changed.items()]
    lineage = [tokenizer_fingerprint(parent), *tokenizer_lineage(path)]
    if not clash:
        print(f"tokenizer: fine-tuning {path}")
        return parent.train(), lineage
    if not reshape:
        raise ValueError(f"init_from {path}: the architecture comes from the tokenizer being fine-tuned, but "
                         f"{', '.join(clash)}; leave those fields unset, use the parent's preset, or pass "
                         "--reshape to change them and keep the parent's weights where they fit")
    child = build_tokenizer(dataclasses.replace(parent.cfg, **changed))
    own = child.state_dict()
    fitting = {k: v for k, v in parent.state_dict().items() if k in own and own[k].shape == v.shape}
    child.load_state_dict(fitting, strict=False)
    fresh = sorted(k for k in own if k not in fitting)
    print(f"tokenizer: fine-tuning {path} reshaped ({', '.join(clash)}); {len(fitting)} tensors kept, "
          f"{len(fresh)} start fresh: {', '.join(fresh[:6])}{' ...' if len(fresh) > 6 else ''}")
    return child.train(), lineage


def _check_resolution(data: ClipDataset, cfg: TokenizerConfig) -> None:
    size = data.stores[0].meta.image_size
    if size != cfg.resolution:
        raise ValueError(f"tokenizer.resolution is {cfg.resolution} but the frames of {data.stores[0].root} "
                         f"are {size}x{size}; set --tokenizer.resolution {size} or resize the data")

