"""The uncached reference rollout: the ground truth the KV-cached path (sampling.py) must reproduce.

It re-runs the whole window for every token (the reference code re-runs it for every frame), with no state
beyond the codes themselves. It shares sampling.py's checks, windowing and noise so that the two paths can
only differ in how they compute the logits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ivideogpt.modes import eval_mode
from ivideogpt.transformer.fast_decode import gumbel_noise
from ivideogpt.transformer.layout import TokenLayout
from ivideogpt.transformer.model import Transformer, TransformerOutput
from ivideogpt.transformer.sampling import (
    _action_inputs,
    _check_guidance,
    _check_positions,
    _check_rollout,
    _frame_action,
    _guide,
    _stack_results,
    _window,
    sample_codes,
)


@torch.no_grad()
def generate_frames_uncached(
    model: Transformer,
    context_codes: Tensor,
    actions: Tensor | None,
    num_frames: int,
    temperature: float = 1.0,
    top_k: int | None = 100,
    generator: torch.Generator | None = None,
    window_frames: int | None = None,
    slide_frames: int | None = None,
    guidance: float = 0.0,
    still_split: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Reference path: same arguments, results and windowing as `generate_frames`, no cache.

    Re-runs the whole window for every token (the reference code re-runs it for every frame): no state
    beyond the codes themselves, so it is the ground truth the cached path must reproduce. For tests and
    the rollout benchmark only.
    """
    _check_rollout(model, context_codes, actions, num_frames)
    _check_guidance(guidance)
    layout = model.layout
    window, slide = _window(model, window_frames, slide_frames)
    context = layout.encode_context(context_codes)  # (B, Lc)
    b, lc = context.shape
    _check_positions(model, lc, window)
    frames = context.new_zeros(b, 0, layout.future_tokens)  # (B, k, n) the window
    action_dim = model.cfg.action_dim
    frame_actions = (
        context.new_zeros(b, 0, model.cfg.action_input_dim, dtype=torch.float32) if action_dim else None
    )  # (B, k, A_in)
    total = None if model.action_sum_proj is None else context.new_zeros(b, action_dim)  # actions summed
    results = []
    with eval_mode(model):
        for t in range(num_frames):
            if frames.shape[1] == window:
                frames = frames[:, slide:]
                frame_actions = None if frame_actions is None else frame_actions[:, slide:]
            act = _frame_action(model, None if actions is None else actions[:, t], b, context.device)
            if act is not None:
                act, total = _action_inputs(model, act, total)  # (B, A_in)
                frame_actions = torch.cat([frame_actions, act[:, None]], dim=1)
            codes = frames.new_zeros(b, 1, layout.future_tokens)  # filled code by code
            noise = None if temperature == 0 else gumbel_noise(
                (layout.future_tokens, b, layout.future_vocab_size), generator, context.device
            )  # drawn per frame, as `step` draws it
            for j in range(layout.future_tokens + 1):
                length = lc + frames.shape[1] * layout.frame_length + 1 + j  # up to SLOT + j codes
                tokens, rows = _window_inputs(layout, context, torch.cat([frames, codes], 1), frame_actions)
                out = model(tokens[:, :length], None if rows is None else rows[:, :length])
                if j < layout.future_tokens:
                    logits = out.logits[:, -1]
                    if guidance and rows is not None:  # the same window with every action zero
                        unguided = model(tokens[:, :length], torch.zeros_like(rows[:, :length])).logits[:, -1]
                        logits = _guide(torch.cat([logits, unguided]), guidance, b)
                    noise_j = None if noise is None else noise[j]
                    codes[:, 0, j] = sample_codes(logits, layout, temperature, top_k, noise=noise_j,
                                                   still_split=still_split)
            frames = torch.cat([frames, codes], dim=1)
            results.append((codes[:, 0], *_read_heads(model, out)))
    return _stack_results(results)


def _window_inputs(
    layout: TokenLayout, context: Tensor, frames: Tensor, actions: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """Tokens (B, L) and action rows (B, L, A_in) of context tokens (B, Lc) and future frames (B, k, n)."""
    tokens = torch.cat([context, layout.encode_future(frames)], dim=1)
    if actions is None:
        return tokens, None
    context_rows = actions.new_zeros(context.shape[0], context.shape[1], actions.shape[2])
    return tokens, torch.cat([context_rows, layout.future_action_rows(actions)], dim=1)


def _read_heads(model: Transformer, out: TransformerOutput) -> tuple[Tensor | None, Tensor | None]:
    """Reward and done probability, float32 (B,), at the last fed position (a frame's last code)."""
    reward = None if out.reward_pred is None else out.reward_pred[:, -1].float()
    done = None if out.done_logit is None else out.done_logit[:, -1].float()
    return model.heads.decode(reward, done)
