"""Parameter groups: decay on matrices only, every parameter exactly once."""

from __future__ import annotations

from torch import nn

from ivideogpt.train.optim import param_groups


def test_param_groups_decay_only_matrices() -> None:
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 4), nn.LayerNorm(4))
    model[1].weight = model[0].weight  # tied: must be counted once
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) == 1  # the shared embedding/linear matrix
    assert len(no_decay["params"]) == 3  # linear bias, norm weight and bias
