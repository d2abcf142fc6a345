from __future__ import annotations

import pytest
import torch

from ivideogpt.transformer import TokenLayout, TransformerConfig

from .helpers import random_clip, tiny_config


def test_reference_sequence_length() -> None:
    layout = TokenLayout(TransformerConfig())  # 256 codes per context frame, 16 per future frame
    assert layout.sequence_length(1, 15) == 511  # docs/method.md §2: 256 + 15 x 17
    assert layout.sequence_length(2, 10) == 256 + 1 + 256 + 10 * 17


@pytest.mark.parametrize("tc,tf", [(1, 3), (2, 2), (3, 0)])
def test_build_split_round_trip(tc: int, tf: int) -> None:
    cfg = tiny_config()
    layout = TokenLayout(cfg)
    clip = random_clip(cfg, 2, tc, tf)
    tokens = layout.build(clip["context_codes"], clip["future_codes"])
    assert tokens.shape == (2, layout.sequence_length(tc, tf)) and tokens.dtype == torch.long
    context, future = layout.split(tokens, tc)
    assert torch.equal(context, clip["context_codes"]) and torch.equal(future, clip["future_codes"])
    n_ctx = cfg.tokens_per_context_frame
    assert (tokens == cfg.sep_id).sum(1).tolist() == [tc - 1] * 2
    assert [int(i) for i in torch.nonzero(tokens[0] == cfg.sep_id)] == [
        n_ctx * (i + 1) + i for i in range(tc - 1)
    ]
    assert torch.equal(tokens[:, layout.slot_positions(tc, tf)], torch.full((2, tf), cfg.slot_id))


def test_split_rejects_malformed_sequences() -> None:
    cfg = tiny_config()
    layout = TokenLayout(cfg)
    clip = random_clip(cfg, 1, 2, 2)
    tokens = layout.build(clip["context_codes"], clip["future_codes"])
    with pytest.raises(ValueError, match="whole future"):
        layout.split(tokens[:, :-1], 2)
    broken = tokens.clone()
    broken[0, layout.slot_positions(2, 2)[1]] = 0
    with pytest.raises(ValueError, match="SEP/SLOT"):
        layout.split(broken, 2)


def test_loss_targets_are_exactly_the_future_codes() -> None:
    cfg = tiny_config()
    layout = TokenLayout(cfg)
    clip = random_clip(cfg, 2, 2, 3)
    tokens = layout.build(clip["context_codes"], clip["future_codes"])
    positions = layout.target_positions(2, 3)
    expected = clip["future_codes"].flatten(1) + cfg.context_vocab_size  # every future code, in order
    assert torch.equal(tokens[:, positions + 1], expected)
    is_future = (tokens >= cfg.context_vocab_size) & (tokens < cfg.sep_id)  # (B, L)
    mask = layout.target_mask(2, 3)
    assert (
        torch.equal(mask[:-1], is_future[0, 1:]) and not mask[-1]
    )  # a target iff the NEXT token is a future code


def test_frame_ends_and_action_rows() -> None:
    cfg = tiny_config(action_dim=3)
    layout = TokenLayout(cfg)
    clip = random_clip(cfg, 2, 2, 3)
    tokens = layout.build(clip["context_codes"], clip["future_codes"])
    ends = layout.frame_end_positions(2, 3)
    assert torch.equal(tokens[:, ends], clip["future_codes"][:, :, -1] + cfg.context_vocab_size)
    assert torch.equal(tokens[:, ends[:-1] + 1], torch.full((2, 2), cfg.slot_id))  # next frame's slot follows
    rows = layout.action_rows(clip["actions"], 2)  # (B, L, A)
    slots = layout.slot_positions(2, 3)
    assert torch.equal(rows[:, slots], clip["actions"][:, 2:])  # future frame t gets episode row Tc + t
    others = torch.ones(rows.shape[1], dtype=torch.bool)
    others[slots] = False
    assert not rows[:, others].any()


def test_bad_codes_are_named() -> None:
    cfg = tiny_config()
    layout = TokenLayout(cfg)
    clip = random_clip(cfg, 1, 1, 2)
    with pytest.raises(ValueError, match=r"future_codes must lie in \[0, 24\)"):
        layout.build(clip["context_codes"], clip["future_codes"] + cfg.future_vocab_size)
    with pytest.raises(ValueError, match="context_codes must be \\(B, T, 6\\)"):
        layout.build(clip["context_codes"][:, :, :5], clip["future_codes"])
    with pytest.raises(ValueError, match="integer"):
        layout.build(clip["context_codes"].float(), clip["future_codes"])
