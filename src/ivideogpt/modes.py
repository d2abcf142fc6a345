"""Running modules in eval mode for a while, from anywhere: sampling, evaluation, a trainer's checks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Run `modules` in eval mode (dropout off), then restore each one's mode, also when the body raises (a
    trainer may still be training them)."""
    was_training = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, was_training, strict=True):
            m.train(mode)
