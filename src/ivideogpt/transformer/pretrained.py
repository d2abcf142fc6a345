"""Loading a parent model's weights into a transformer that may have grown parts the parent lacks.

Fine-tuning adds parts to a pretrained transformer: the action projections (action-free pretraining, then
actions), the reward/done heads, learned positions. They are zero-initialised, so a model loaded from its
parent predicts exactly what the parent did until fine-tuning moves them (docs/method.md §3).
"""

from __future__ import annotations

from torch import Tensor, nn

# The layers that read actions: tied to one robot's action space (`train --init-new-actions` drops them).
ACTION_PREFIXES = ("action_proj.", "action_sum_proj.")
ACTION_PARTS = (".action_mod.",)  # the same, inside each block
# Keys a pretrained (action-free, head-less) checkpoint may lack: they belong to parts fine-tuning adds.
OPTIONAL_PREFIXES = (*ACTION_PREFIXES, "heads.", "pos_emb.")
OPTIONAL_PARTS = ACTION_PARTS


def is_action_parameter(key: str) -> bool:
    """Whether state-dict `key` belongs to a layer that reads actions."""
    return key.startswith(ACTION_PREFIXES) or any(part in key for part in ACTION_PARTS)


def load_pretrained(model: nn.Module, state_dict: dict[str, Tensor]) -> list[str]:
    """Load the weights of a parent that may lack the action projections, the reward/done heads and
    learned positions into `model`; those parts keep their zero init.

    Args:
        model: the transformer to load into.
        state_dict: the parent's `state_dict()`.

    Returns:
        The keys `model` has that the parent did not (the newly added parameters).

    Raises:
        ValueError: on keys the model does not have, on other missing keys, or on a shape mismatch.
    """
    own = model.state_dict()
    unexpected = sorted(set(state_dict) - set(own))
    missing = sorted(set(own) - set(state_dict))
    required = [k for k in missing
                if not k.startswith(OPTIONAL_PREFIXES) and not any(p in k for p in OPTIONAL_PARTS)]
    if unexpected or required:
        raise ValueError(
            f"load_pretrained: keys not in this model {unexpected}; missing required keys {required}"
        )
    wrong = [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if v.shape != own[k].shape
    ]
    if wrong:
        raise ValueError(f"load_pretrained: shape mismatch (checkpoint vs model): {wrong}")
    model.load_state_dict(state_dict, strict=False)
    return missing
