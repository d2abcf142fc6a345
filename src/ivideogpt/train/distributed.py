"""Process setup for training: device, mixed precision and torchrun DDP.

Launch several processes with `torchrun --nproc_per_node N ...`; each reads RANK / WORLD_SIZE / LOCAL_RANK
from the environment (set by torchrun) and joins one process group: NCCL on GPUs, gloo on CPU. A plain
`python ...` run is a world of one and never touches `torch.distributed`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ivideogpt.device import resolve_device

Amp = Literal["auto", "bf16", "off"]


@dataclass
class Runtime:
    """Where this process runs and how it talks to the others."""

    device: torch.device  # this process's device (cuda:LOCAL_RANK under torchrun on GPUs)
    rank: int = 0  # global rank of this process
    local_rank: int = 0  # rank within this machine
    world_size: int = 1  # number of processes
    amp_dtype: torch.dtype | None = None  # autocast dtype (bf16) or None for full float32

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, evaluates and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context for forward passes (a no-op when `amp_dtype` is None)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def barrier(self) -> None:
        """Wait for every process (no-op in a world of one)."""
        if self.distributed:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is True on at least one (e.g. one rank caught Ctrl-C)."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def wrap(self, module: nn.Module, compile: bool = False, method: str = "forward") -> nn.Module:
        """What to run a training step through: compiled when asked and DDP-wrapped when distributed.

        Args:
            module: the plain module; parameters are shared with it, so optimizers, checkpoints and
                evaluation keep using `module` (see `unwrap`).
            compile: `torch.compile` it (on CPUs inductor needs a C++ compiler; bench/train_step.py).
            method: the method of `module` the wrapper's forward runs, e.g. "compute_loss": DDP hooks its
                gradient all-reduce into a forward of the wrapper, so a loss method that runs the model's
                forward inside must itself be the wrapped forward (and compile then covers the loss too).
        """
        wrapped = module if method == "forward" else MethodAsForward(module, method)
        if compile:
            wrapped = torch.compile(wrapped)
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = DistributedDataParallel(wrapped, device_ids=ids)
        return wrapped


class MethodAsForward(nn.Module):
    """A module whose forward is one method of another (which it holds, so parameters are shared)."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        if not callable(getattr(module, method, None)):
            raise TypeError(f"Runtime.wrap: {type(module).__name__} has no method {method!r}")
        self.module, self.method = module, method

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.module, self.method)(*args, **kwargs)


def init_runtime(device: str = "auto", amp: Amp = "auto") -> Runtime:
    """Set up this process: pick the device, join the process group under torchrun, choose autocast.

    Args:
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N". Under torchrun on
            GPUs the device index is LOCAL_RANK.
        amp: "auto" (bf16 on CUDA, off on CPU), "bf16" or "off".

    Returns:
        The `Runtime` of this process.
    """
    if amp not in ("auto", "bf16", "off"):
        raise ValueError(f"init_runtime: amp must be 'auto', 'bf16' or 'off', got {amp!r}")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if dev.index is None or world_size > 1:
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    use_bf16 = amp == "bf16" or (amp == "auto" and dev.type == "cuda")
    return Runtime(dev, rank, local_rank, world_size, torch.bfloat16 if use_bf16 else None)


def shutdown(runtime: Runtime) -> None:
    """Leave the process group (call once at the end of a distributed run)."""
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module under DDP and `torch.compile` wrappers (what checkpoints save)."""
    while True:
        if isinstance(module, (DistributedDataParallel, MethodAsForward)):
            module = module.module
        elif hasattr(module, "_orig_mod"):  # torch.compile's OptimizedModule
            module = module._orig_mod
        else:
            return module


@contextlib.contextmanager
def no_sync(module: nn.Module, skip: bool) -> Iterator[None]:
    """Skip DDP's gradient all-reduce inside the block when `skip` (all but the last accumulation step)."""
    if skip and isinstance(module, DistributedDataParallel):
        with module.no_sync():
            yield
    else:
        yield
