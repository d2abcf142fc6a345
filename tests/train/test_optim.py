"""Parameter groups: one rule for every model, every parameter exactly once."""

from __future__ import annotations

import torch
from torch import nn

from ivideogpt.tokenizer import TokenizerConfig, build_tokenizer
from ivideogpt.train.optim import build_adamw, param_groups
from ivideogpt.transformer import Transformer
from tests.transformer.helpers import tiny_config


def _ids(params: list[nn.Parameter]) -> set[int]:
    return {id(p) for p in params}


def test_decay_only_linear_and_conv_weights() -> None:
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 4), nn.LayerNorm(4), nn.Conv1d(4, 4, 3))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert _ids(decay["params"]) == {id(model[1].weight), id(model[3].weight)}
    assert len(no_decay["params"]) == 5  # embedding, linear bias, norm weight and bias, conv bias


def test_tied_embedding_is_not_decayed_and_counted_once() -> None:
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 5, bias=False))
    model[1].weight = model[0].weight
    decay, no_decay = param_groups(model, 0.1)
    assert decay["params"] == [] and _ids(no_decay["params"]) == {id(model[0].weight)}


def test_transformer_groups() -> None:
    for tie in (False, True):
        model = Transformer(tiny_config(action_dim=3, reward_head=True, done_head=True, tie_embeddings=tie))
        decay, no_decay = (g["params"] for g in param_groups(model, 0.1))
        assert len(decay) + len(no_decay) == len(list(model.parameters()))
        assert id(model.tok_emb.weight) in _ids(no_decay)
        linear = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
        assert _ids(decay) == linear - {id(model.tok_emb.weight)}
        assert all(p.ndim == 1 for p in no_decay if p is not model.tok_emb.weight)  # norms and biases


def test_tokenizer_codebooks_and_positions_are_not_decayed() -> None:
    tokenizer = build_tokenizer(TokenizerConfig())
    decay, no_decay = (_ids(g["params"]) for g in param_groups(tokenizer, 0.1))
    embeddings = {id(m.weight) for m in tokenizer.modules() if isinstance(m, nn.Embedding)}
    positions = {id(p) for name, p in tokenizer.named_parameters() if name.endswith(("pos_q", "pos_kv"))}
    assert embeddings and embeddings <= no_decay and positions <= no_decay
    kernels = {id(m.weight) for m in tokenizer.modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    assert decay == kernels
    assert decay | no_decay == _ids(list(tokenizer.parameters()))


def test_build_adamw() -> None:
    opt = build_adamw(nn.Linear(2, 2), 1e-3, 0.1, (0.9, 0.95), torch.device("cpu"))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.defaults["fused"]  # the fused kernel on CPUs too (bench/train_step.py)
    model = nn.Linear(3, 2)
    reference = nn.Linear(3, 2)
    reference.load_state_dict(model.state_dict())
    fused = build_adamw(model, 1e-2, 0.1, (0.9, 0.95), torch.device("cpu"))
    plain = torch.optim.AdamW(param_groups(reference, 0.1), lr=1e-2, betas=(0.9, 0.95), foreach=False)
    for _ in range(3):
        for module, optimizer in ((model, fused), (reference, plain)):
            optimizer.zero_grad()
            module(torch.ones(4, 3)).square().sum().backward()
            optimizer.step()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # the same update as the loop implementation
