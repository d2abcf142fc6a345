"""AdamW with nanoGPT's parameter groups: weight decay on matrices, conv kernels and embeddings only."""

from __future__ import annotations

import torch
from torch import nn


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Split the trainable parameters of `module` into a decayed and a non-decayed group.

    Tensors of rank >= 2 (linear and conv weights, embeddings, codebooks) are decayed; biases, norm gains
    and other vectors/scalars are not (decaying them only pulls activations towards zero). Every trainable
    parameter lands in exactly one group; a parameter shared by two submodules is counted once.

    Args:
        module: the model.
        weight_decay: decay of the first group.

    Returns:
        `[{"params": decayed, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]`.
    """
    params = {id(p): (name, p) for name, p in module.named_parameters() if p.requires_grad}
    decay = [p for _, p in params.values() if p.ndim >= 2]
    no_decay = [p for _, p in params.values() if p.ndim < 2]
    assigned = [id(p) for p in decay + no_decay]
    if len(assigned) != len(set(assigned)) or set(assigned) != set(params):
        raise RuntimeError("param_groups: a parameter was assigned to zero or two groups")
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_adamw(
    module: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], device: torch.device
) -> torch.optim.AdamW:
    """AdamW over `param_groups(module, weight_decay)`; the fused CUDA kernel on GPUs.

    The loop overwrites each group's `lr` every step from the schedule, so `lr` only sets the start value.
    """
    groups = param_groups(module, weight_decay)
    if not any(g["params"] for g in groups):
        raise ValueError(f"build_adamw: {type(module).__name__} has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device.type == "cuda")
