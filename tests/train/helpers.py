"""Test helpers: a toy regression job for the loop's mechanics (resume, signals, DDP) and a tiny dataset."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from ivideogpt.config import to_dict
from ivideogpt.data.episode import Episode
from ivideogpt.data.store import DatasetWriter
from ivideogpt.train.distributed import Runtime
from ivideogpt.train.job import TrainJob, TrainLoopConfig, optimizer_step
from ivideogpt.train.loop import step_loader
from ivideogpt.train.optim import build_adamw


@dataclass
class ToyConfig:
    hidden: int = 16  # MLP width (the "architecture": must match on resume)
    train: TrainLoopConfig = field(default_factory=lambda: TrainLoopConfig(
        steps=12, batch_size=8, grad_accum=2, lr=3e-2, warmup_steps=2, log_every=2, eval_every=4,
        sample_every=6, ckpt_every=4, keep_checkpoints=2, num_workers=0, device="cpu"))


class ToyJob(TrainJob):
    """y = x @ w_true with an MLP that has dropout, so the RNG matters for exact resumption."""

    name = "toy"

    def __init__(self, cfg: ToyConfig, runtime: Runtime, interrupt_at: int | None = None) -> None:
        self.cfg, self.runtime, self.interrupt_at = cfg, runtime, interrupt_at
        g = torch.Generator().manual_seed(123)
        x = torch.randn(256, 4, generator=g)
        self.data = TensorDataset(x, x @ torch.randn(4, 1, generator=g))
        self.model = nn.Sequential(nn.Linear(4, cfg.hidden), nn.ReLU(), nn.Dropout(0.1),
                                   nn.Linear(cfg.hidden, 1))
        self.train_model = runtime.wrap(self.model)
        t = cfg.train
        self.opt = build_adamw(self.model, t.lr, t.weight_decay, (t.beta1, t.beta2), runtime.device)
        self.samples_written: list[int] = []
        self.losses: list[float] = []

    def modules(self) -> dict[str, nn.Module]:
        return {"toy": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adamw": self.opt}

    def config(self) -> dict[str, Any]:
        return to_dict(self.cfg)

    def strict_config_keys(self) -> tuple[str, ...]:
        return ("hidden",)

    def indices(self, step: int) -> list[int]:
        global_batch = self.cfg.train.batch_size * self.runtime.world_size
        rng = np.random.default_rng([self.cfg.train.seed, step])
        return rng.integers(0, len(self.data), global_batch).tolist()

    def batches(self, start_step: int) -> Iterator[Any]:
        loader = step_loader(self.data, self.indices, start_step, self.cfg.train.steps, self.runtime,
                             self.cfg.train.num_workers, collate_fn=_stack)
        return iter(loader)

    def train_step(self, batch: tuple[Tensor, Tensor], step: int) -> dict[str, float]:
        x, y = batch
        k = self.cfg.train.grad_accum
        micro = list(zip(x.chunk(k), y.chunk(k), strict=True))
        metrics = optimizer_step(self.train_model, self.opt, self._loss, micro, self.runtime,
                                 self.cfg.train.grad_clip)
        self.losses.append(metrics["loss"])
        if step == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C during this step
        return metrics

    def _loss(self, micro: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        x, y = micro
        loss = (self.train_model(x) - y).square().mean()
        return loss, {"loss": loss.detach()}

    def evaluate(self, step: int) -> dict[str, float]:
        x, y = self.data.tensors
        with torch.no_grad():
            self.model.eval()
            loss = (self.model(x) - y).square().mean()
            self.model.train()
        return {"loss": float(loss)}

    def write_samples(self, step: int, out_dir: Path) -> None:
        self.samples_written.append(step)

    def units_per_step(self) -> dict[str, int]:
        return {"samples": self.cfg.train.batch_size}


def _stack(items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    xs, ys = zip(*items, strict=True)
    return torch.stack(xs), torch.stack(ys)


def write_moving_squares(root: Path, episodes: int = 6, length: int = 10, size: int = 16) -> Path:
    """A dataset of white squares sliding over black frames (learnable in a few steps, unlike noise)."""
    rng = np.random.default_rng(0)
    with DatasetWriter(root, "test", size, 2, fps=10.0) as writer:
        for e in range(episodes):
            frames = np.zeros((length, size, size, 3), np.uint8)
            row = int(rng.integers(0, size - 4))
            for t in range(length):
                col = (e + 2 * t) % (size - 4)
                frames[t, row : row + 4, col : col + 4] = 255
            actions = rng.normal(size=(length, 2)).astype(np.float32)
            writer.add(Episode(frames=frames, actions=actions, rewards=np.zeros(length, np.float32)))
    return root
