"""AdamW and the one rule for its parameter groups, used by every training job.

Weight decay pulls a tensor towards zero. That is a prior worth having on the weight matrices of linear
and convolution layers, and a harm everywhere else: embeddings and codebooks are lookups whose rows
should sit where the data puts them (decay shrinks the rarely used ones), norm gains and biases set
scales and offsets. nanoGPT and LLaMA draw the same line.
"""

from __future__ import annotations

import torch
from torch import nn

# modules whose `weight` is a matrix (or kernel) that multiplies its input: the only decayed tensors
DECAYED_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Split the trainable parameters of `module` into a decayed and a non-decayed group.

    Decayed: the `weight` of linear and convolution layers. Not decayed: embeddings, codebooks,
    positional tables, norm gains, biases and any other parameter. A tensor shared by an embedding and a
    linear layer (tied input/output embeddings) counts as an embedding. Every trainable parameter lands
    in exactly one group, once.

    Args:
        module: the model.
        weight_decay: decay of the first group.

    Returns:
        `[{"params": decayed, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]`.
    """
    trainable = {id(p): p for p in module.parameters() if p.requires_grad}
    matrices, others = set(), set()
    for sub in module.modules():
        for name, p in sub.named_parameters(recurse=False):
            is_matrix = isinstance(sub, DECAYED_MODULES) and name == "weight"
            (matrices if is_matrix else others).add(id(p))
    decay = [p for key, p in trainable.items() if key in matrices and key not in others]
    no_decay = [p for key, p in trainable.items() if key not in matrices or key in others]
    assigned = [id(p) for p in decay + no_decay]
    if len(assigned) != len(set(assigned)) or set(assigned) != set(trainable):
        raise RuntimeError("param_groups: a parameter was assigned to zero or two groups")
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_adamw(
    module: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], device: torch.device
) -> torch.optim.AdamW:
    """AdamW over `param_groups(module, weight_decay)`, through the fused kernel on GPUs and CPUs.

    Fused, one kernel walks every tensor once; on CPUs PyTorch's default instead loops over the tensors with
    a dozen elementwise passes each, several times slower. The loop overwrites each group's `lr` every step
    from the schedule, so `lr` only sets the start value.
    """
    groups = param_groups(module, weight_decay)
    if not any(g["params"] for g in groups):
        raise ValueError(f"build_adamw: {type(module).__name__} has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device.type in ("cuda", "cpu"))
