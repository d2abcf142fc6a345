"""What a trainer hands to the loop: its settings (`TrainLoopConfig`), its work (`TrainJob`) and the one
update routine every job calls (`optimizer_step`: gradient accumulation, autocast, clipping), after
delta-iris' `train_component`.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ivideogpt.config import to_dict
from ivideogpt.train.checkpoint import save_model
from ivideogpt.train.distributed import Amp, Runtime, no_sync
from ivideogpt.train.schedule import Schedule, lr_at


@dataclass
class TrainLoopConfig:
    """Optimisation and bookkeeping shared by every trainer."""

    steps: int = 1000  # optimizer steps in the whole run (a resumed run stops at the same step)
    batch_size: int = 16  # samples per optimizer step PER PROCESS (global batch = batch_size * world size)
    grad_accum: int = 1  # micro-batches the batch is split into (batch_size must divide evenly)
    lr: float = 5e-4  # peak learning rate
    warmup_steps: int = 500  # linear warm-up length
    schedule: Schedule = "constant"  # after warm-up: "constant" or "cosine" decay to min_lr at `steps`
    min_lr: float = 0.0  # end of the cosine
    weight_decay: float = 0.01  # AdamW decay on linear/conv weights only (see optim.param_groups)
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.99  # AdamW beta2
    grad_clip: float = 1.0  # max global gradient norm (0: no clipping)
    log_every: int = 10  # steps between log lines
    eval_every: int = 500  # steps between validations (0: only at the end)
    eval_batches: int = 8  # validation batches per evaluation
    sample_every: int = 1000  # steps between sample videos (0: only at the end)
    ckpt_every: int = 1000  # steps between checkpoints (0: only at the end and on Ctrl-C)
    keep_checkpoints: int = 3  # newest checkpoints kept (0: all)
    num_workers: int = 2  # DataLoader worker processes (0: load in the main process)
    seed: int = 0  # seeds initialisation, data order and RNG
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda", "cuda:N"
    amp: Amp = "auto"  # autocast: "auto" (bf16 on CUDA, off on CPU), "bf16" or "off"
    # torch.compile the training step: minutes to compile, then faster steps (bench/train_step.py), so for
    # long runs; on CPUs it needs a C++ compiler
    compile: bool = False

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "grad_accum", "log_every", "eval_batches")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"TrainLoopConfig.{name} must be >= 1, got {getattr(self, name)}")
        non_negative = ("warmup_steps", "min_lr", "weight_decay", "grad_clip", "eval_every", "sample_every",
                        "ckpt_every", "keep_checkpoints", "num_workers", "seed")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"TrainLoopConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"TrainLoopConfig.batch_size ({self.batch_size}) must be a multiple of "
                             f"grad_accum ({self.grad_accum})")
        if not self.lr > 0:
            raise ValueError(f"TrainLoopConfig.lr must be > 0, got {self.lr}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"TrainLoopConfig.schedule must be 'constant' or 'cosine', "
                             f"got {self.schedule!r}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"TrainLoopConfig.amp must be 'auto', 'bf16' or 'off', got {self.amp!r}")

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step `step` (see `schedule.lr_at`)."""
        return lr_at(step, self.lr, self.warmup_steps, self.steps, self.schedule, self.min_lr)


class TrainJob(ABC):
    """What a trainer hands to `run_training`.

    The job owns its modules (plain, unwrapped: they are what checkpoints hold) and the wrapped copies it
    runs forward through (`Runtime.wrap`). Every optimizer param group gets `lr = schedule(step) *
    group.get("lr_scale", 1.0)` before each step.
    """

    name: str = "model"  # first part of every log key: "<name>/<split>/<metric>"
    export_dir: str | None = None  # folder inside the run folder the trainer exports the model to

    @abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """Modules to checkpoint, by name (no '.' in names)."""

    def export(self, path: Path) -> Path:
        """Write the trained model to `path` (`train_and_export`): by default every checkpointed module with
        the job's config."""
        return save_model(path, self.modules(), self.config())

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers to checkpoint, by name."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The resolved run config (JSON-safe) stored with every checkpoint."""

    def strict_config_keys(self) -> tuple[str, ...]:
        """Top-level config sections that must equal the checkpoint's to resume (the architecture)."""
        return ()

    def resumable_config_keys(self) -> tuple[str, ...]:
        """Dotted keys inside the strict sections that may still change on resume (training-only options)."""
        return ()

    def config_defaults(self) -> dict[str, Any]:
        """Each strict section's dataclass defaults (`config_diff`): an option added to the library after a
        checkpoint was written does not block resuming it while the run leaves the option at its default."""
        sections = {key: getattr(getattr(self, "cfg", None), key, None) for key in self.strict_config_keys()}
        return {key: to_dict(type(value)()) for key, value in sections.items()
                if dataclasses.is_dataclass(value)}

    @abstractmethod
    def batches(self, start_step: int) -> Iterator[Any]:
        """This process's batches for steps start_step, start_step + 1, ...: a function of (seed, step)."""

    @abstractmethod
    def train_step(self, batch: Any, step: int) -> dict[str, float]:
        """One optimizer step (usually through `optimizer_step`); returns scalar metrics."""

    def evaluate(self, step: int) -> dict[str, float]:
        """Validation metrics (main process only).

        Must not draw from the global RNG: a resumed run evaluated at its interruption step, an
        uninterrupted one did not, and their training would otherwise diverge.
        """
        return {}

    def write_samples(self, step: int, out_dir: Path) -> None:  # noqa: B027 (optional: a job may write none)
        """Write sample videos/images under `out_dir` (main process only)."""

    def units_per_step(self) -> dict[str, int]:
        """Work done per optimizer step by this process, e.g. {"clips": 16, "frames": 128}.

        Logged as <unit>_per_s.
        """
        return {}


# ------------------------------------------------------------------------------------- the update routine


def optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any], tuple[Tensor, dict[str, float | Tensor]]],
    micro_batches: Sequence[Any],
    runtime: Runtime,
    grad_clip: float,
) -> dict[str, float]:
    """One update: accumulate gradients over micro-batches under autocast, clip, step.

    Args:
        model: the (possibly DDP-wrapped) module `loss_fn` runs; its gradient all-reduce is skipped for
            all but the last micro-batch.
        optimizer: steps the parameters it holds; those are the ones clipped.
        loss_fn: micro-batch -> (scalar loss, metrics); the loss is averaged over micro-batches.
        micro_batches: the pieces of this step's batch.
        runtime: autocast settings.
        grad_clip: max global gradient norm (0: none; the norm is still measured).

    Returns:
        Metrics averaged over micro-batches, plus "grad_norm" (before clipping).
    """
    optimizer.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    n = len(micro_batches)
    for i, micro_batch in enumerate(micro_batches):
        with no_sync(model, skip=i < n - 1):
            with runtime.autocast():
                loss, metrics = loss_fn(micro_batch)
            (loss / n).backward()
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + float(value) / n
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf))
    if not math.isfinite(grad_norm):
        raise FloatingPointError(f"non-finite gradient norm {grad_norm}; metrics of this step: {totals}")
    optimizer.step()
    return {**totals, "grad_norm": grad_norm}
