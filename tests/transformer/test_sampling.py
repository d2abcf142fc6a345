from __future__ import annotations

import pytest
import torch

from ivideogpt.transformer import (
    KVCache,
    Transformer,
    generate_frames,
    generate_frames_uncached,
    sample_codes,
    start,
    step,
)
from ivideogpt.transformer.fast_decode import DecodeOptions, decode_engine, sample_from_logits

from .helpers import random_clip, randomize_zero_init, tiny_config


def _model(**overrides: object) -> Transformer:
    model = Transformer(tiny_config(action_dim=3, reward_head=True, done_head=True, **overrides))
    randomize_zero_init(model)
    return model


def _rollout_inputs(model: Transformer, frames: int, b: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    clip = random_clip(model.cfg, b, 2, 0, seed=1)
    return clip["context_codes"], torch.randn(
        b, frames, model.cfg.action_dim, generator=torch.Generator().manual_seed(2)
    )


@pytest.mark.parametrize("frames,window,slide,action_to,guidance", [
    (3, None, None, "slot", 0.0), (8, None, None, "slot", 0.0), (7, 3, 1, "slot", 0.0),
    (5, 2, 2, "slot", 0.0), (3, None, None, "frame", 0.0), (7, 3, 1, "frame", 0.0),
    (7, 3, 1, "slot", 1.5), (5, 2, 2, "frame", 2.0)])
def test_cached_and_uncached_sampling_agree(frames: int, window: int | None, slide: int | None,
                                            action_to: str, guidance: float) -> None:
    model = _model(action_to=action_to)
    context, actions = _rollout_inputs(model, frames)
    kwargs = {"temperature": 0.8, "top_k": 6, "window_frames": window, "slide_frames": slide,
              "guidance": guidance}
    cached = generate_frames(
        model, context, actions, frames, generator=torch.Generator().manual_seed(3), **kwargs
    )
    uncached = generate_frames_uncached(
        model, context, actions, frames, generator=torch.Generator().manual_seed(3), **kwargs
    )
    n = model.cfg.tokens_per_future_frame
    assert cached[0].shape == (2, frames, n) and cached[1].shape == cached[2].shape == (2, frames)
    assert torch.equal(cached[0], uncached[0])  # identical tokens, also across window slides
    torch.testing.assert_close(cached[1], uncached[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cached[2], uncached[2], rtol=1e-4, atol=1e-5)
    assert len(set(cached[0].flatten().tolist())) > 3  # really sampled, not a constant
    assert int(cached[0].min()) >= 0 and int(cached[0].max()) < model.cfg.future_vocab_size


@pytest.mark.parametrize("action_to", ["slot", "frame"])
def test_teacher_forced_rewards_read_sampled_codes_as_the_rollout_did(action_to: str) -> None:
    model = _model(action_to=action_to, reward_symlog=True)
    context, actions = _rollout_inputs(model, 3)
    generator = torch.Generator().manual_seed(4)
    codes, rewards, _ = generate_frames(model, context, actions, 3, generator=generator)
    with torch.no_grad():
        read = model.frame_rewards(context, codes, actions)
        other = model.frame_rewards(context, codes, actions.flip(0))
    torch.testing.assert_close(read, rewards, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(read, other)  # the actions reach the reading
    with pytest.raises(ValueError, match="no reward head"):
        Transformer(tiny_config(action_dim=3)).frame_rewards(context, codes, actions)


def test_still_split_greedy_decides_still_or_moved_first() -> None:
    """Plain argmax keeps the still code (0) wherever the moved codes split the rest; still_split takes
    it only where it holds at least half the probability, else the likeliest moved code."""
    probs = torch.tensor([[0.40, 0.35, 0.25, 0.0], [0.60, 0.20, 0.10, 0.10], [0.20, 0.10, 0.30, 0.40]])
    logits = probs.clamp_min(1e-9).log()
    assert sample_from_logits(logits, None, 0.0, None).tolist() == [0, 0, 3]
    assert sample_from_logits(logits, None, 0.0, None, still_split=True).tolist() == [1, 0, 3]
    noise = -torch.log(-torch.log(torch.rand(3, 4, generator=torch.Generator().manual_seed(0))))
    assert torch.equal(sample_from_logits(logits, noise, 1.0, None, still_split=True),
                       sample_from_logits(logits, noise, 1.0, None))  # sampling is already exact


@pytest.mark.parametrize("still_split", [False, True])
def test_greedy_rollouts_with_still_split_agree_cached_and_uncached(still_split: bool) -> None:
    model = _model()
    with torch.no_grad():  # the still code the argmax of many tokens, with well under half the probability
        model.lm_head.weight[model.layout.context_vocab_size] *= 2
    context, actions = _rollout_inputs(model, 3)
    kwargs = {"temperature": 0.0, "top_k": None, "still_split": still_split}
    cached = generate_frames(model, context, actions, 3, **kwargs)[0]
    assert torch.equal(cached, generate_frames_uncached(model, context, actions, 3, **kwargs)[0])
    plain = generate_frames(model, context, actions, 3, temperature=0.0, top_k=None)[0]
    assert (plain == 0).any()
    assert torch.equal(cached, plain) != still_split
    assert (cached == 0).any() != still_split  # nowhere did the still code hold half the probability


@pytest.mark.parametrize("compiled", [False, True])
def test_learned_positions_decode_like_the_uncached_path_and_across_fan_out(compiled: bool) -> None:
    torch._dynamo.reset()
    model = _model(action_to="frame", learned_positions=True, max_future_frames=3)
    context, actions = _rollout_inputs(model, 7)
    options = DecodeOptions(compile=True, compile_mode=None, compile_backend="eager") if compiled else None
    kwargs = {"temperature": 0.8, "top_k": 6, "window_frames": 3, "slide_frames": 1}
    cached = generate_frames(model, context, actions, 7, generator=torch.Generator().manual_seed(3),
                             options=options, **kwargs)  # 7 frames in a window of 3: slides
    uncached = generate_frames_uncached(model, context, actions, 7,
                                        generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(cached[0], uncached[0])
    torch.testing.assert_close(cached[1], uncached[1], rtol=1e-4, atol=1e-5)
    without = _model(action_to="frame", max_future_frames=3)
    without.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("pos_emb.")})
    other = generate_frames(without, context, actions, 7, generator=torch.Generator().manual_seed(3),
                            **kwargs)
    assert not torch.equal(cached[0], other[0])  # the positions are really added
    with pytest.raises(ValueError, match="learned positions cover the trained window"):
        start(model, context, window_frames=4)  # beyond the trained window: a clear error, not an index


@pytest.mark.parametrize("guidance", [0.0, 1.5])
def test_action_sum_decodes_like_the_uncached_path_and_counts_dropped_frames(guidance: float) -> None:
    model = _model(action_to="frame", action_sum=True)
    context, actions = _rollout_inputs(model, 7)
    kwargs = {"temperature": 0.8, "top_k": 6, "window_frames": 3, "slide_frames": 1, "guidance": guidance}
    seed = lambda: torch.Generator().manual_seed(3)  # a fresh generator per call
    cached = generate_frames(model, context, actions, 7, generator=seed(), **kwargs)
    uncached = generate_frames_uncached(model, context, actions, 7, generator=seed(), **kwargs)  # slides
    assert torch.equal(cached[0], uncached[0])
    torch.testing.assert_close(cached[1], uncached[1], rtol=1e-4, atol=1e-5)
    without = _model(action_to="frame", action_sum=True)
    without.load_state_dict(model.state_dict())
    torch.nn.init.zeros_(without.action_sum_proj.weight)
    other = generate_frames(without, context, actions, 7, generator=seed(), **kwargs)
    assert not torch.equal(cached[0], other[0])  # the sum is really added
    state = start(model, context, window_frames=3, slide_frames=1)
    for t in range(7):
        step(model, state, actions[:, t])
    torch.testing.assert_close(state.action_total, actions.sum(1))  # frames the window dropped still count
    torch.testing.assert_close(state.actions[..., 3:], actions.cumsum(1)[:, -3:])  # the window's inputs
    state.select(torch.tensor([1, 1, 0]))  # fan-out keeps each row's sum
    torch.testing.assert_close(state.action_total, actions.sum(1)[[1, 1, 0]])


def test_rewards_are_read_at_each_frames_last_token() -> None:
    model = _model()
    context, actions = _rollout_inputs(model, 3)
    codes, rewards, dones = generate_frames(
        model, context, actions, 3, generator=torch.Generator().manual_seed(0)
    )
    layout = model.layout
    tokens = layout.build(context, codes)
    clip_actions = torch.cat([torch.zeros(2, 2, 3), actions], dim=1)  # episode rows: Tc context rows first
    out = model.eval()(tokens, layout.action_rows(clip_actions, 2))
    ends = layout.frame_end_positions(2, 3)
    torch.testing.assert_close(rewards, out.reward_pred[:, ends], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dones, torch.sigmoid(out.done_logit[:, ends]), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(rewards[:, 1:], out.reward_pred[:, ends - 1][:, 1:])  # the neighbour differs


def test_each_frame_costs_one_plus_n_token_steps() -> None:
    model = _model()
    context, actions = _rollout_inputs(model, 2)
    fed: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: fed.append(args[0].shape[1]))
    state = start(model, context)
    assert fed == [model.layout.context_length(2)]
    engine = decode_engine(model)
    steps: list[int] = []
    run_step = engine.run_step
    engine.run_step = lambda x, *args: steps.append(x.shape[0]) or run_step(x, *args)
    step(model, state, actions[:, 0])
    step(model, state, actions[:, 1])
    handle.remove()
    n = model.cfg.tokens_per_future_frame
    assert fed[1:] == []  # frames never run the general forward, only the engine's single-token step
    assert steps == [2] * 2 * (1 + n) and state.cache.length == fed[0] + 2 * (1 + n)


def test_step_api_matches_generate_and_fans_out() -> None:
    model = _model()
    context, actions = _rollout_inputs(model, 4)
    expected = generate_frames(
        model, context, actions, 4, top_k=5, generator=torch.Generator().manual_seed(7)
    )
    state, g = start(model, context), torch.Generator().manual_seed(7)
    steps = [step(model, state, actions[:, t], top_k=5, generator=g) for t in range(4)]
    assert torch.equal(torch.stack([s[0] for s in steps], 1), expected[0])
    assert state.num_generated == 4 and state.frames.shape[1] == 3  # window 3 slid once
    # one encoded context fanned out to 3 samples == 3 copies of the context encoded separately
    fan, copies = start(model, context[:1]), start(model, context[:1].expand(3, -1, -1))
    fan.select(torch.zeros(3, dtype=torch.long))
    a = actions[:1, 0].expand(3, -1)
    first = step(model, fan, a, generator=torch.Generator().manual_seed(1))
    second = step(model, copies, a, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first[0], second[0]) and not torch.equal(first[0][0], first[0][1])


def test_action_free_model_rolls_out_without_actions() -> None:
    model = Transformer(tiny_config())
    context, _ = _rollout_inputs(model, 1)
    codes, rewards, dones = generate_frames(
        model, context, None, 5, generator=torch.Generator().manual_seed(0)
    )
    assert codes.shape == (2, 5, model.cfg.tokens_per_future_frame) and rewards is None and dones is None
    with pytest.raises(ValueError, match="action-free"):
        generate_frames(model, context, torch.zeros(2, 5, 3), 5)


def test_greedy_and_codebook_restriction() -> None:
    layout = _model().layout
    logits = torch.randn(4, layout.vocab_size)
    logits[:, : layout.context_vocab_size] += 100.0  # context codes and specials may never be sampled
    logits[:, layout.sep_id :] += 100.0
    codes = sample_codes(
        logits, layout, temperature=1.0, top_k=None, generator=torch.Generator().manual_seed(0)
    )
    assert int(codes.min()) >= 0 and int(codes.max()) < layout.future_vocab_size
    greedy = logits[:, layout.context_vocab_size : layout.sep_id].argmax(-1)
    assert torch.equal(sample_codes(logits, layout, temperature=0.0), greedy)
    assert torch.equal(
        sample_codes(logits, layout, top_k=1, generator=torch.Generator().manual_seed(1)), greedy
    )
    with pytest.raises(ValueError, match="temperature"):
        sample_codes(logits, layout, temperature=-1.0)


def test_rollout_input_errors() -> None:
    model = _model()
    context, actions = _rollout_inputs(model, 3)
    with pytest.raises(ValueError, match=r"actions must be \(B, num_frames, A\)"):
        generate_frames(model, context, actions[:, :2], 3)
    with pytest.raises(ValueError, match=r"action must be \(B, A\) = \(2, 3\), got \(2, 2\)"):
        generate_frames(model, context, actions[..., :2], 3)
    with pytest.raises(ValueError, match="slide_frames"):
        start(model, context, window_frames=2, slide_frames=3)
    with pytest.raises(ValueError, match="context_codes must lie in"):
        start(model, context + model.cfg.context_vocab_size)


def test_kv_cache_bookkeeping() -> None:
    cache = KVCache(num_layers=1, capacity=4)
    k = torch.randn(2, 1, 3, 8)
    keys, _ = cache.update(0, k, k)
    cache.advance(3)
    assert torch.equal(keys, k) and cache.length == 3
    cache.truncate(1)
    keys, _ = cache.update(0, k[:, :, :2], k[:, :, :2])
    assert torch.equal(keys, torch.cat([k[:, :, :1], k[:, :, :2]], 2))
    with pytest.raises(ValueError, match="truncate"):
        cache.truncate(2)  # length is still 1: update alone does not commit
    with pytest.raises(ValueError, match="batch"):
        cache.update(0, k[:1, :, :1], k[:1, :, :1])


def test_static_step_matches_the_step_and_never_reads_garbage() -> None:
    # The static step attends over the whole buffer, masked beyond the position: unfilled slots must hold
    # finite numbers, since a masked weight of 0 times a NaN left in fresh memory is still NaN (this once
    # made the compiled step decode zeros, depending on what the allocator handed back).
    model = _model()
    model.eval()
    engine = decode_engine(model)
    b, d = 2, model.cfg.n_embd
    caches = KVCache(len(engine.layers), 8), KVCache(len(engine.layers), 8)
    bufs = [caches[1].buffers(i, b, engine.n_head, engine.head_dim, torch.zeros(b, d))
            for i in range(len(engine.layers))]
    assert all(bool(t.eq(0).all()) for kv in bufs for t in kv)  # allocated as zeros, not as garbage
    x, rotations = torch.randn(b, d, generator=torch.Generator().manual_seed(0)), engine.rotations(0, 3)
    for p in range(3):
        eager = engine.step(x, caches[0], rotations[p])
        static = engine.step_static(x, [k for k, _ in bufs], [v for _, v in bufs], torch.tensor([p]),
                                    rotations[p])
        caches[1].advance(1)
        torch.testing.assert_close(static, eager, rtol=1e-5, atol=1e-5)
        x = eager


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_compiled_static_step_samples_like_the_uncached_path(temperature: float) -> None:
    torch._dynamo.reset()  # what is checked is this model's capture, not a graph left by an earlier test
    model = _model()
    context, actions = _rollout_inputs(model, 4)
    kwargs = {"temperature": temperature, "top_k": 6, "window_frames": 3, "slide_frames": 1}
    options = DecodeOptions(compile=True, compile_mode=None, compile_backend="eager")  # dynamo capture only
    compiled = generate_frames(model, context, actions, 4, generator=torch.Generator().manual_seed(3),
                               options=options, **kwargs)
    uncached = generate_frames_uncached(model, context, actions, 4,
                                        generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(compiled[0], uncached[0])
    torch.testing.assert_close(compiled[1], uncached[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("action_to,guidance,compiled", [
    ("slot", 0.0, False), ("frame", 0.0, False), ("frame", 1.5, False), ("slot", 0.0, True),
    ("frame", 0.0, True)])
def test_action_modulation_decodes_like_the_uncached_path(action_to: str, guidance: float, compiled: bool
                                                          ) -> None:
    torch._dynamo.reset()
    model = _model(action_to=action_to, action_modulation=True)
    context, actions = _rollout_inputs(model, 5)
    options = DecodeOptions(compile=True, compile_mode=None, compile_backend="eager") if compiled else None
    kwargs = {"temperature": 0.8, "top_k": 6, "window_frames": 3, "slide_frames": 1, "guidance": guidance}
    seed = lambda: torch.Generator().manual_seed(3)
    cached = generate_frames(model, context, actions, 5, generator=seed(), options=options, **kwargs)
    uncached = generate_frames_uncached(model, context, actions, 5, generator=seed(), **kwargs)  # slides
    assert torch.equal(cached[0], uncached[0])
    torch.testing.assert_close(cached[1], uncached[1], rtol=1e-4, atol=1e-5)
    without = _model(action_to=action_to, action_modulation=True)
    without.load_state_dict(model.state_dict())
    for block in without.blocks:
        torch.nn.init.zeros_(block.action_mod.weight)
    other = generate_frames(without, context, actions, 5, generator=seed(), **kwargs)
    assert not torch.allclose(cached[1], other[1], atol=1e-3)  # the modulation is really applied


def test_decode_engine_follows_weight_updates() -> None:
    model = _model()
    context, actions = _rollout_inputs(model, 2)
    before = decode_engine(model)
    assert decode_engine(model) is before  # cached while the weights stay
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(model.layout.encode_context(context)).logits.square().mean().backward()
    opt.step()
    assert decode_engine(model) is not before  # an optimizer step moved the weights: repacked
    gen = lambda: torch.Generator().manual_seed(5)
    cached = generate_frames(model, context, actions, 2, 0.8, 6, gen())
    assert torch.equal(cached[0], generate_frames_uncached(model, context, actions, 2, 0.8, 6, gen())[0])


def test_action_guidance_samples_from_the_logits_pushed_away_from_zero_actions() -> None:
    model = _model(action_to="frame")
    context, actions = _rollout_inputs(model, 1)
    state = start(model, context, guidance=2.0)
    codes, reward, _, _ = step(model, state, actions[:, 0], temperature=0.0, top_k=None)
    assert state.guided_rows  # the zero-action rows run beside the two rollouts
    # greedy: code j is the argmax of l_a + 2 (l_a - l_0), both teacher-forced on the codes before it
    layout = model.layout
    tokens = layout.build(context, codes[:, None])
    rows = layout.action_rows(torch.cat([torch.zeros(2, 2, 3), actions[:, :1]], 1), 2)
    at = layout.target_positions(2, 1)
    vc, vf = layout.context_vocab_size, layout.future_vocab_size
    with torch.no_grad():
        out = model(tokens, rows)
        with_a = out.logits[:, at, vc : vc + vf]
        without = model(tokens, torch.zeros_like(rows), logit_positions=at).logits[..., vc : vc + vf]
    assert torch.equal(codes, (3 * with_a - 2 * without).argmax(-1))
    assert not torch.equal(codes, with_a.argmax(-1))  # guidance changed the samples (w = 2 is large here)
    plain = step(model, start(model, context), actions[:, 0], temperature=0.0, top_k=None)
    assert torch.equal(plain[0], with_a.argmax(-1))
    ends = layout.frame_end_positions(2, 1)
    torch.testing.assert_close(reward, out.reward_pred[:, ends[0]], rtol=1e-4, atol=1e-5)  # the action rows'
    with pytest.raises(ValueError, match="guidance must be >= 0"):
        start(model, context, guidance=-1.0)


@pytest.mark.parametrize("compiled,guidance", [(False, 0.0), (True, 0.0), (False, 1.5)])
def test_one_context_fanned_out_shares_its_cache_and_samples_like_repeated_contexts(compiled: bool,
                                                                                   guidance: float) -> None:
    # select() with one row repeated keeps the context's keys once (a shared prefix read once per step)
    # instead of once per sample; the samples must be what encoding the context n times gives
    torch._dynamo.reset()
    model = _model()
    context, _ = _rollout_inputs(model, 1, b=1)
    n, frames = 5, 7
    actions = torch.randn(n, frames, model.cfg.action_dim, generator=torch.Generator().manual_seed(2))
    options = DecodeOptions(compile=True, compile_mode=None, compile_backend="eager") if compiled else None

    def rollout(shared: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
        state = start(model, context if shared else context.expand(n, -1, -1), window_frames=3,
                      slide_frames=1, options=options, guidance=guidance)
        if shared:
            state.select(torch.zeros(n, dtype=torch.long))
            assert state.cache.prefix_length == state.context_length
        generator, out = torch.Generator().manual_seed(3), []
        for t in range(frames):  # 7 frames in a window of 3: the rollout slides
            codes, reward, _, state = step(model, state, actions[:, t], 0.8, 6, generator)
            out.append((codes, reward))
            if t == 3:  # samples are dropped and reordered, as a planner's elites are
                state.select(torch.tensor([4, 0, 1, 1, 3]))
        return out

    for (codes, reward), (codes_ref, reward_ref) in zip(rollout(True), rollout(False), strict=True):
        assert torch.equal(codes, codes_ref)
        torch.testing.assert_close(reward, reward_ref, rtol=1e-4, atol=1e-5)


def test_a_shared_prefix_is_never_pruned() -> None:
    cache = KVCache(num_layers=1, capacity=8)
    k = torch.randn(1, 2, 3, 4)
    cache.update(0, k, k)
    cache.advance(3)
    cache.select(torch.zeros(4, dtype=torch.long))
    assert cache.prefix_length == 3 and cache.prefix(0)[0].shape == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="shared prefix"):
        cache.truncate(2)
    keys, _ = cache.update(0, torch.ones(4, 2, 1, 4), torch.ones(4, 2, 1, 4))  # a forward sees it all
    assert keys.shape == (4, 2, 4, 4) and torch.equal(keys[2, :, :3], k[0])
    assert bool(keys[:, :, 3].eq(1).all())
    cache.reset()  # drops the prefix: a fresh sequence of the full capacity fits again
    assert cache.prefix_length == 0 and cache.prefix(0) is None
    full = torch.randn(4, 2, 8, 4)
    keys, _ = cache.update(0, full, full)
    assert torch.equal(keys, full)


@pytest.mark.parametrize("fan_out", [False, True])
def test_bf16_kv_cache_stores_half_the_bytes_and_decodes_like_float32(fan_out: bool) -> None:
    # float32 weights, bf16 keys/values: every step reads half the cache bytes; the logits stay within
    # bf16 rounding of the float32 decode's, so greedy codes agree almost everywhere
    model = _model()
    context, actions = _rollout_inputs(model, 4, b=1 if fan_out else 3)
    kv16 = DecodeOptions(kv_dtype=torch.bfloat16)
    states = [start(model, context, options=o) for o in (None, kv16)]
    if fan_out:
        for s in states:
            s.select(torch.zeros(3, dtype=torch.long))
    assert states[1].cache._keys[0].dtype == torch.bfloat16
    assert states[0].cache._keys[0].dtype == torch.float32
    engine = decode_engine(model)
    x = engine.slot_input(actions[:3, 0] if not fan_out else actions[0, :1].expand(3, -1), 3)
    rotation = engine.rotations(states[0].cache.length, 1)[0]
    logits = [engine.logits(engine.step(x, s.cache, rotation)) for s in states]
    torch.testing.assert_close(logits[1], logits[0], rtol=0.05, atol=0.05)
    assert not torch.equal(logits[1], logits[0])  # really read through bf16
    greedy = [generate_frames(model, context, actions, 4, temperature=0.0, options=o)[0]
              for o in (None, kv16)]
    assert (greedy[0] == greedy[1]).float().mean() > 0.8
