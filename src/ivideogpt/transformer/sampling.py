"""Frame-by-frame sampling with a KV cache kept across frames, a stepwise rollout API, and the uncached
reference path.

Cost per generated frame after the context prefix: exactly 1 + n single-token forwards (feed SLOT + action
-> sample code 0; feed code j -> sample code j + 1; feed the last code -> read reward and done). The
reference code instead re-runs the whole prefix for every frame (docs/method.md §5), which
`generate_frames_uncached` (reference.py) reproduces (per token, even) as the ground truth for tests and
benchmarks.

Reward and termination of frame t come from the hidden state AT frame t's last code, i.e. the forward in
which that code is the input: the last of the 1 + n steps. (The reference read them at the wrong place
and marked reward prediction during generation as broken.)

Sampling draws Gumbel noise over the future codebook for every token, so the random numbers consumed do
not depend on the logits: with one seeded `torch.Generator`, the cached and uncached paths produce
identical tokens in float32 (their logits agree to rounding; under bf16 autocast the rounding is coarse
enough to flip a rare near-tie).

Long rollouts: the model sees at most `window` future frames (default: the trained `max_future_frames`).
When the window is full, the oldest `slide` future frames are dropped; the context frames are always
kept. RoPE keys carry absolute positions, so the cache is truncated back to the context (exact: the
context's keys never depend on what follows) and the kept future frames are re-encoded once, at their new
positions. With `slide` = window / 2 that costs one window-sized forward every window / 2 frames.

Action guidance (`guidance` w > 0, classifier-free-style): every row also runs with zero actions (what the
model sees when no action is given) and codes are drawn from l_a + w (l_a - l_0), the logits under the
actions pushed away from those without them. A model whose actions shift each code's odds only a little
(docs/method.md §6) then shows that shift in its samples. The zero-action rows share the sampled codes and
live in the same KV cache (2B rows from the first step on), so a guided frame costs one doubled batch.
A model trained with `action_dropout` has learned what zero actions mean (the action-free prediction, as
in classifier-free guidance); one trained without it has seen them only as "stand still".

Common random numbers (`noise_period` p > 0): row i draws the Gumbel noise of row i mod p, so rows that
differ only in their actions differ in their codes only where those actions move the odds enough to change
the winner of the same draw. A planner comparing action sequences then compares their effects, not the luck
of independent samples (with p = 1 every row shares one draw; with K particles per sequence, p = K).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor

from ivideogpt.modes import eval_mode
from ivideogpt.transformer.fast_decode import DecodeOptions, decode_engine, gumbel_noise, sample_from_logits
from ivideogpt.transformer.kv_cache import KVCache
from ivideogpt.transformer.layout import TokenLayout
from ivideogpt.transformer.model import Transformer


@dataclass
class RolloutState:
    """Everything a rollout carries between steps. `step` advances it in place."""

    cache: KVCache  # keys/values of the context and of the future frames in the window
    context_length: int  # tokens of the context prefix (kept when the window slides)
    frames: Tensor  # int64 (B, k, n) future codes in the window, k <= window
    actions: Tensor | None  # float (B, k, A_in) their action inputs; None for an action-free model
    window: int  # most future frames attended to at once
    slide: int  # oldest future frames dropped when the window is full
    num_generated: int = 0  # frames generated since `start`
    options: DecodeOptions | None = None  # how the decode step runs (None: float32 eager, `DecodeOptions()`)
    guidance: float = 0.0  # action guidance w (module docstring); 0: plain sampling
    still_split: bool = False  # greedy steps decide still-or-moved first (`fast_decode.sample_from_logits`)
    guided_rows: bool = False  # the cache holds the B zero-action rows after the B rows (set by `step`)
    action_total: Tensor | None = None  # float (B, A) sum of every generated frame's action (`action_sum`)
    noise_period: int = 0  # common random numbers: row i draws row (i mod p)'s noise; 0: each row its own

    @property
    def batch_size(self) -> int:
        return self.frames.shape[0]

    def select(self, index: Tensor) -> None:
        """Keep batch rows `index` (int (B',)), repeats allowed: encode one context, then fan out samples."""
        index = index.to(self.frames.device)
        self.cache.select(torch.cat([index, index + self.batch_size]) if self.guided_rows else index)
        self.frames = self.frames.index_select(0, index.to(self.frames.device))
        if self.actions is not None:
            self.actions = self.actions.index_select(0, index.to(self.actions.device))
        if self.action_total is not None:
            self.action_total = self.action_total.index_select(0, index.to(self.action_total.device))


@torch.no_grad()
def start(
    model: Transformer,
    context_codes: Tensor,
    window_frames: int | None = None,
    slide_frames: int | None = None,
    options: DecodeOptions | None = None,
    guidance: float = 0.0,
    still_split: bool = False,
) -> RolloutState:
    """Encode the context frames into a fresh KV cache.

    Args:
        model: the transformer.
        context_codes: int (B, Tc, N) context-codebook codes (any Tc >= 1; RoPE has no length limit).
        window_frames: future frames attended to at once (default `cfg.max_future_frames`).
        slide_frames: frames dropped per slide (default half the window, at least 1).
        options: how `step` decodes (dtype, compile); the context runs in the same dtype.
        guidance: action guidance w >= 0 of every `step` (module docstring); ignored by action-free models.
        still_split: how every greedy `step` treats the still code (`fast_decode.sample_from_logits`).

    Returns:
        The state to pass to `step`.
    """
    _check_guidance(guidance)
    layout = model.layout
    window, slide = _window(model, window_frames, slide_frames)
    tokens = layout.encode_context(context_codes)  # (B, Lc)
    b, lc = tokens.shape
    _check_positions(model, lc, window)
    cache = KVCache(model.cfg.n_layer, lc + window * layout.frame_length, options and options.kv_dtype)
    with eval_mode(model), _autocast(model, options):
        model(tokens, kv_cache=cache, logit_positions=_NO_POSITIONS.to(tokens.device))
    frames = tokens.new_zeros(b, 0, layout.future_tokens)
    a = model.cfg.action_dim
    actions = tokens.new_zeros(b, 0, model.cfg.action_input_dim, dtype=torch.float32) if a else None
    total = None if model.action_sum_proj is None else tokens.new_zeros(b, a, dtype=torch.float32)
    return RolloutState(cache, lc, frames, actions, window, slide, options=options,
                        guidance=guidance if a else 0.0, still_split=still_split, action_total=total)


@torch.no_grad()
def step(
    model: Transformer,
    state: RolloutState,
    action: Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = 100,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor | None, Tensor | None, RolloutState]:
    """Generate one future frame: 1 + n cached single-token steps of the model's `DecodeEngine`.

    Args:
        model: the transformer that `start` ran.
        state: the rollout so far; advanced in place (the KV cache is a preallocated buffer).
        action: float (B, A), the action producing this frame; None for none (or an action-free model).
        temperature: softmax temperature; 0 samples greedily.
        top_k: sample among the k likeliest codes (None: all).
        generator: seeds the sampling; must live on the model's device.

    Returns:
        codes int64 (B, n) in [0, Vf), reward (B,) and done probability (B,) (None without the head), state.
    """
    layout = model.layout
    _check_sampling(temperature, top_k)
    engine = decode_engine(model, state.options)
    b, n, cache = state.batch_size, layout.future_tokens, state.cache
    with eval_mode(model):
        if state.frames.shape[1] == state.window:
            _slide(model, state)
        act = _frame_action(model, action, b, state.frames.device)  # (B, A); None if action-free
        if act is not None:
            act, state.action_total = _action_inputs(model, act, state.action_total)  # (B, A_in)
        if state.guidance and not state.guided_rows:  # the zero-action rows start from the same cache
            cache.select(torch.arange(b, device=state.frames.device).repeat(2))
            state.guided_rows = True
        rows_act = torch.cat([act, torch.zeros_like(act)]) if state.guided_rows else act  # (B or 2B, A)
        rotations = engine.rotations(cache.length, n + 1)  # (1 + n, hd, hd)
        noise = None if temperature == 0 else _frame_noise(state, n, layout.future_vocab_size, generator)
        x = engine.slot_input(rows_act, len(rows_act) if rows_act is not None else b)  # (B or 2B, d)
        modulation = engine.modulation(rows_act)  # the SLOT step's; None without action_modulation
        codes = []
        for j in range(n):
            x = engine.run_step(x, cache, rotations[j], modulation)
            logits = _guide(engine.logits(x), state.guidance, b)
            codes.append(sample_from_logits(logits, None if noise is None else noise[j], temperature, top_k,
                                            state.still_split))
            x = engine.code_input(codes[-1].repeat(len(x) // b), rows_act)
            modulation = engine.token_modulation(modulation)
        x = engine.run_step(x, cache, rotations[n], modulation)  # feed the last code only to read the heads
    codes = torch.stack(codes, dim=1)  # (B, n)
    state.frames = torch.cat([state.frames, codes[:, None]], dim=1)
    if act is not None:
        state.actions = torch.cat([state.actions, act[:, None]], dim=1)
    state.num_generated += 1
    reward, done = engine.read_heads(x[:b])
    return codes, reward, done, state


@torch.no_grad()
def generate_frames(
    model: Transformer,
    context_codes: Tensor,
    actions: Tensor | None,
    num_frames: int,
    temperature: float = 1.0,
    top_k: int | None = 100,
    generator: torch.Generator | None = None,
    window_frames: int | None = None,
    slide_frames: int | None = None,
    options: DecodeOptions | None = None,
    guidance: float = 0.0,
    still_split: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Sample `num_frames` future frames after the context, KV-cached across frames.

    Args:
        model: the transformer.
        context_codes: int (B, Tc, N).
        actions: float (B, num_frames, A); row t produces generated frame t (episode row Tc + t). None:
            action-free.
        num_frames: frames to generate (may exceed the window: the rollout slides).
        temperature, top_k, generator: as in `step`.
        window_frames, slide_frames, options, guidance, still_split: as in `start`.

    Returns:
        Future codes int64 (B, num_frames, n), rewards (B, num_frames) and done probabilities
        (B, num_frames), each None when the model lacks that head.
    """
    _check_rollout(model, context_codes, actions, num_frames)
    state = start(model, context_codes, window_frames, slide_frames, options, guidance, still_split)
    results = [
        step(model, state, None if actions is None else actions[:, t], temperature, top_k, generator)[:3]
        for t in range(num_frames)
    ]
    return _stack_results(results)


def sample_codes(
    logits: Tensor,
    layout: TokenLayout,
    temperature: float = 1.0,
    top_k: int | None = 100,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
    still_split: bool = False,
) -> Tensor:
    """Sample future codes from next-token logits, restricted to the future codebook.

    Args:
        logits: (B, V) next-token logits over the (padded) vocabulary.
        layout: where the future codes live in the vocabulary.
        temperature: softmax temperature; 0 takes the argmax.
        top_k: keep the k largest logits (None: all).
        generator: source of the Gumbel noise when `noise` is not given.
        noise: Gumbel noise (B, Vf) to use (`fast_decode.gumbel_noise`); rollouts draw a frame's at once.
        still_split: at temperature 0, decide still-or-moved first (`fast_decode.sample_from_logits`).

    Returns:
        int64 (B,) future-codebook indices in [0, Vf).
    """
    _check_sampling(temperature, top_k)
    vc = layout.context_vocab_size
    logits = logits[:, vc : vc + layout.future_vocab_size].float()  # (B, Vf): only future codes may come next
    if temperature != 0 and noise is None:
        noise = gumbel_noise(tuple(logits.shape), generator, logits.device)
    # Gumbel-max: argmax(logits / T + G) is a sample of softmax(logits / T); the noise does not depend on
    # the logits, so two paths whose logits agree to rounding draw the same codes.
    return sample_from_logits(logits, noise, temperature, top_k, still_split)


# --------------------------------------------------------------------------------------- helpers

_NO_POSITIONS = torch.zeros(0, dtype=torch.long)  # logit_positions for forwards whose logits are unused


def _frame_noise(state: RolloutState, n: int, vocab: int, generator: torch.Generator | None) -> Tensor:
    """Gumbel noise (n, B, Vf) for one frame's n codes of every row, shared by rows `noise_period` apart."""
    b, period = state.batch_size, state.noise_period or state.batch_size
    if b % period:
        raise ValueError(f"rollout: noise_period {period} does not divide the batch of {b} rows")
    noise = gumbel_noise((n, period, vocab), generator, state.frames.device)
    return noise if period == b else noise.repeat(1, b // period, 1)


def _slide(model: Transformer, state: RolloutState) -> None:
    """Drop the oldest `slide` future frames: truncate the cache to the context, re-encode the rest."""
    layout = model.layout
    state.frames = state.frames[:, state.slide :]
    state.actions = None if state.actions is None else state.actions[:, state.slide :]
    state.cache.truncate(state.context_length)
    if state.frames.shape[1]:
        frames, actions = state.frames, state.actions
        if state.guided_rows:  # the zero-action rows hold the same codes
            frames, actions = frames.repeat(2, 1, 1), torch.cat([actions, torch.zeros_like(actions)])
        tokens = layout.encode_future(frames)  # (B or 2B, k * (n + 1))
        rows = None if actions is None else layout.future_action_rows(actions)
        with _autocast(model, state.options):
            model(tokens, rows, state.cache, _NO_POSITIONS.to(tokens.device))


def _window(model: Transformer, window_frames: int | None, slide_frames: int | None) -> tuple[int, int]:
    window = model.cfg.max_future_frames if window_frames is None else window_frames
    slide = max(1, window // 2) if slide_frames is None else slide_frames
    if window < 1 or not 1 <= slide <= window:
        raise ValueError(
            f"rollout: need window_frames >= 1 and 1 <= slide_frames <= window, got {window}, {slide}"
        )
    return window, slide


def _guide(logits: Tensor, guidance: float, b: int) -> Tensor:
    """Logits (B, V) to sample from: rows [0, B) as they are, or, with 2B rows (the zero-action rows after
    them), l_a + w (l_a - l_0) (module docstring). Softmax ignores per-row shifts, so raw logits will do."""
    if len(logits) == b:
        return logits
    with_actions, without = logits[:b].float(), logits[b:].float()
    return with_actions + guidance * (with_actions - without)


def _check_positions(model: Transformer, context_length: int, window: int) -> None:
    """Learned positions exist for the trained window only: refuse a longer context or window up front."""
    cfg, length = model.cfg, context_length + window * model.layout.frame_length
    if cfg.learned_positions and length > cfg.max_sequence_length:
        raise ValueError(
            f"rollout: the model's learned positions cover the trained window of {cfg.max_sequence_length} "
            f"tokens, but this context and a window of {window} future frames need {length}; give at most "
            f"{cfg.max_context_frames} context frames and window_frames <= {cfg.max_future_frames}")


def _check_guidance(guidance: float) -> None:
    if not guidance >= 0:
        raise ValueError(f"rollout: action guidance must be >= 0, got {guidance}")


def _check_sampling(temperature: float, top_k: int | None) -> None:
    if temperature < 0 or (top_k is not None and top_k < 1):
        raise ValueError(
            f"sample_codes: need temperature >= 0 and top_k >= 1 or None, got {temperature}, {top_k}"
        )


def _autocast(model: Transformer, options: DecodeOptions | None) -> contextlib.AbstractContextManager:
    """Autocast to the decode dtype where it differs from the model's (bf16 decoding of a float32 model)."""
    dtype = None if options is None else options.dtype
    if dtype is None or dtype == model.tok_emb.weight.dtype:
        return contextlib.nullcontext()
    return torch.autocast(model.inv_freq.device.type, dtype=dtype)


def _frame_action(model: Transformer, action: Tensor | None, b: int, device: torch.device) -> Tensor | None:
    """One frame's action as float32 (B, A); None for an action-free model.

    A missing action becomes zeros, which the bias-free action projection maps to nothing at all.
    """
    a = model.cfg.action_dim
    if a == 0:
        if action is not None:
            raise ValueError("rollout: this model is action-free (action_dim=0) but actions were given")
        return None
    if action is None:
        return torch.zeros(b, a, device=device)
    if tuple(action.shape) != (b, a):
        raise ValueError(f"rollout: a frame's action must be (B, A) = ({b}, {a}), got {tuple(action.shape)}")
    return action.to(device, torch.float32)


def _action_inputs(model: Transformer, action: Tensor, total: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """A frame's action (B, A) -> its action inputs (B, A_in), and the running sum of the actions with
    this one (B, A) when the model feeds it (`action_sum`; `total` is the sum before it), else None."""
    inputs = model.frame_action_inputs(action[:, None], total)[:, 0]
    return inputs, None if total is None else inputs[:, model.cfg.action_dim :]


def _check_rollout(
    model: Transformer, context_codes: Tensor, actions: Tensor | None, num_frames: int
) -> None:
    if num_frames < 1:
        raise ValueError(f"rollout: num_frames must be >= 1, got {num_frames}")
    if actions is not None and (
        actions.ndim != 3 or actions.shape[:2] != (context_codes.shape[0], num_frames)
    ):
        raise ValueError(
            f"rollout: actions must be (B, num_frames, A) = ({context_codes.shape[0]}, {num_frames}, "
            f"{model.cfg.action_dim}), got {tuple(actions.shape)}"
        )


def _stack_results(
    results: list[tuple[Tensor, Tensor | None, Tensor | None]],
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    codes, rewards, dones = zip(*results, strict=True)
    return torch.stack(codes, dim=1), _stack_or_none(rewards), _stack_or_none(dones)


def _stack_or_none(xs: tuple[Tensor | None, ...]) -> Tensor | None:
    return None if xs[0] is None else torch.stack(xs, dim=1)

