from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from ivideogpt.config import from_dict, to_dict
from ivideogpt.data.frames import to_uint8
from ivideogpt.data.motion import moving_patches
from ivideogpt.tokenizer import (
    CompressiveTokenizer,
    PerFrameTokenizer,
    TokenizerConfig,
    TokenizerLoss,
    TokenizerLossConfig,
    build_tokenizer,
    check_state_dict,
    tokenizer_preset,
)
from ivideogpt.tokenizer.blocks import CrossAttnBlock
from ivideogpt.tokenizer.compressive import STILL_CODE
from tests.tokenizer.helpers import moving_square_clip, random_clip, tiny_config

pytestmark = pytest.mark.filterwarnings("ignore:no LPIPS weights")


@pytest.mark.parametrize("resolution", [64, 128, 256])
@pytest.mark.parametrize("num_context", [1, 2, 3])
def test_shapes_and_token_counts(resolution: int, num_context: int) -> None:
    tok = build_tokenizer(tiny_config(resolution))
    assert isinstance(tok, CompressiveTokenizer)
    assert (tok.context_grid, tok.future_grid) == ((16, 16), (4, 4))
    assert (tok.tokens_per_context_frame, tok.tokens_per_future_frame) == (256, 16)
    assert (tok.context_vocab_size, tok.future_vocab_size, tok.resolution) == (64, 64, resolution)
    clip = random_clip(1, num_context + 1, resolution)
    out = tok(clip, num_context)
    assert out.recon.shape == clip.shape
    assert out.context_codes.shape == (1, num_context, 16, 16)
    assert out.future_codes.shape == (1, 1, 4, 4)
    assert out.quant_loss.ndim == 0
    assert set(out.stats) == {"context_perplexity", "context_usage", "future_perplexity", "future_usage"}


def test_gradients_reach_both_encoders_and_decoders() -> None:
    tok = build_tokenizer(tiny_config())
    loss, metrics, _ = tok.compute_loss(random_clip(2, 3), 1, TokenizerLoss(TokenizerLossConfig()))
    loss.backward()
    assert metrics["loss"] == pytest.approx(loss.item())
    parts = ("context_vqgan.encoder", "future_vqgan.encoder", "context_vqgan.decoder", "future_vqgan.decoder",
             "future_vqgan.encoder.levels.2.cross", "future_vqgan.decoder.levels.0.cross")
    for part in parts:
        grads = [p.grad for n, p in tok.named_parameters() if n.startswith(part)]
        assert grads and all(g is not None for g in grads), part
        assert sum(float(g.abs().sum()) for g in grads) > 0, part


def test_cached_context_decoding_matches_detokenize() -> None:
    tok = build_tokenizer(tiny_config()).eval()
    clip = random_clip(2, 5)
    ctx_codes, fut_codes = tok.tokenize(clip, 2)
    assert ctx_codes.dtype == fut_codes.dtype == torch.int64
    frames = tok.detokenize(ctx_codes, fut_codes)
    assert frames.shape == clip.shape
    state = tok.encode_context(clip[:, :2])
    assert torch.equal(state.codes, ctx_codes)
    torch.testing.assert_close(tok.decode_context(state), frames[:, :2])
    for i in range(3):  # frame by frame, as a rollout decodes
        frame = tok.decode_future(fut_codes[:, i], state)
        assert frame.shape == (2, 3, 64, 64)
        torch.testing.assert_close(frame, frames[:, 2 + i], atol=1e-5, rtol=1e-5)
    doubled = state.repeat_interleave(2)
    torch.testing.assert_close(tok.decode_future(fut_codes[:, 0].repeat_interleave(2, 0), doubled)[::2],
                               frames[:, 2], atol=1e-5, rtol=1e-5)


def test_future_frames_are_coded_relative_to_context_only() -> None:
    tok = build_tokenizer(tiny_config()).eval()
    clip = random_clip(1, 4)
    _, codes_all = tok.tokenize(clip, 1)
    _, codes_last = tok.tokenize(clip[:, [0, 3]], 1)  # drop the future frames in between
    assert torch.equal(codes_all[:, 2], codes_last[:, 0])
    for block in tok.modules():  # cross-attention starts as the identity: give it something to say
        if isinstance(block, CrossAttnBlock):
            torch.nn.init.normal_(block.attn.out.weight, std=0.5)
    with torch.no_grad():
        z_same = tok(clip[:, [0, 3]], 1).recon[:, 1]
        z_other = tok(torch.cat([random_clip(1, 1, seed=1), clip[:, 3:]], 1), 1).recon[:, 1]
    assert not torch.allclose(z_same, z_other)  # ... and the context does matter


@pytest.mark.parametrize(("channels", "grid"), [((8, 16, 16), 16), ((8, 8, 16, 16, 16), 4)])
def test_per_frame_baseline(channels: tuple[int, ...], grid: int) -> None:
    cfg = dataclasses.replace(tiny_config(), kind="per_frame", channels=channels, cross_attn_resolutions=())
    tok = build_tokenizer(cfg)
    assert isinstance(tok, PerFrameTokenizer)
    assert tok.context_grid == tok.future_grid == (grid, grid)
    assert tok.tokens_per_future_frame == tok.tokens_per_context_frame == grid * grid
    clip = random_clip(2, 3)
    out = tok(clip, 1)
    assert out.recon.shape == clip.shape
    assert out.future_codes.shape == (2, 2, grid, grid)
    ctx_codes, fut_codes = tok.eval().tokenize(clip, 1)
    state = tok.context_from_codes(ctx_codes)
    assert state.features == {}
    frames = tok.detokenize(ctx_codes, fut_codes)
    torch.testing.assert_close(tok.decode_future(fut_codes, state), frames[:, 1:])
    assert len(tok.last_layer_weights) == 1


def test_bad_inputs_give_clear_errors() -> None:
    tok = build_tokenizer(tiny_config())
    clip = random_clip(1, 3)
    with pytest.raises(ValueError, match="32x32.*expects 64x64"):
        tok(random_clip(1, 3, 64)[..., :32, :32], 1)
    with pytest.raises(ValueError, match=r"expected shape \(B, T, 3, H, W\)"):
        tok(clip[:, :, :1], 1)
    with pytest.raises(ValueError, match="to_model"):  # channels-last uint8 frames passed by mistake
        tok(torch.zeros(1, 3, 64, 64, 3, dtype=torch.uint8), 1)
    with pytest.raises(ValueError, match="to_model"):  # channels-last float
        tok(clip.permute(0, 1, 3, 4, 2), 1)
    with pytest.raises(ValueError, match=r"expected \[-1, 1\]"):
        tok((clip + 1) * 127.5, 1)
    for bad in (0, 3, 1.5):
        with pytest.raises(ValueError, match="num_context must be an int in \\[1, 2\\]"):
            tok(clip, bad)  # type: ignore[arg-type]
    ctx_codes, fut_codes = tok.tokenize(clip, 1)
    with pytest.raises(ValueError, match="future_codes: codes out of range"):
        tok.detokenize(ctx_codes, fut_codes + 64)
    with pytest.raises(ValueError, match="context_codes: codes out of range"):
        tok.detokenize(ctx_codes - 65, fut_codes)
    with pytest.raises(ValueError, match=r"context_codes: expected shape \(B, T, 16, 16\)"):
        tok.detokenize(ctx_codes[..., :4, :4], fut_codes)
    with pytest.raises(ValueError, match="batch size"):
        tok.decode_future(fut_codes[:, 0], tok.context_from_codes(torch.cat([ctx_codes, ctx_codes])))


def test_loss_falls_when_overfitting_a_fixed_batch() -> None:
    cfg = dataclasses.replace(tiny_config(), resolution=32)  # 8x8 context grid, 2x2 future grid
    tok = build_tokenizer(cfg)
    loss_fn = TokenizerLoss(TokenizerLossConfig())
    clip = moving_square_clip(2, 3, 32)
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        loss, _, _ = tok.compute_loss(clip, 1, loss_fn, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses


def test_config_round_trip_rebuilds_the_same_architecture() -> None:
    for name in ("tiny", "per_frame4"):
        cfg = tokenizer_preset(name)
        rebuilt = from_dict(TokenizerConfig, to_dict(cfg))
        assert rebuilt == cfg
        a, b = build_tokenizer(cfg), build_tokenizer(rebuilt)
        shapes_a = {k: v.shape for k, v in a.state_dict().items()}
        assert shapes_a == {k: v.shape for k, v in b.state_dict().items()}
        check_state_dict(b, a.state_dict())
        b.load_state_dict(a.state_dict())
    loss_cfg = TokenizerLossConfig(lpips_weights=Path("weights/vgg_lpips.pth"), disc_enabled=True)
    assert from_dict(TokenizerLossConfig, to_dict(loss_cfg)) == loss_cfg


def test_checkpoint_of_another_config_is_named_clearly() -> None:
    small = build_tokenizer(tiny_config())
    wider = build_tokenizer(dataclasses.replace(tiny_config(), latent_channels=12))
    with pytest.raises(ValueError, match=r"other shapes.*latent|conv_out.weight: \(12"):
        check_state_dict(small, wider.state_dict(), source="ckpt.safetensors")
    per_frame = build_tokenizer(tokenizer_preset("per_frame16"))
    with pytest.raises(ValueError, match="missing.*unexpected"):
        check_state_dict(small, per_frame.state_dict())


def test_conditional_pair_starts_as_a_copy_of_the_plain_pair() -> None:
    tok = build_tokenizer(tiny_config())
    assert isinstance(tok, CompressiveTokenizer)
    plain = tok.context_vqgan.encoder.state_dict()
    shared = {k: v for k, v in tok.future_vqgan.encoder.state_dict().items() if k in plain}
    assert len(shared) == len(plain)
    assert all(torch.equal(v, plain[k]) for k, v in shared.items())
    frames = random_clip(1, 2)
    with torch.no_grad():  # cross-attention starts as the identity, so E_p computes what E_c computes
        z_plain, _ = tok.context_vqgan.encoder(frames[:, 1])
        _, context_features = tok.context_vqgan.encoder(frames[:, 0])
        context = {s: f.unsqueeze(1) for s, f in context_features.items()}  # (B=1, Tc=1, C, s, s)
        z_cond, _ = tok.future_vqgan.encoder(frames[:, 1], context)
    torch.testing.assert_close(z_plain, z_cond)


def test_invalid_configs_name_the_field() -> None:
    with pytest.raises(ValueError, match="resolution=62 must be divisible"):
        TokenizerConfig(resolution=62)
    with pytest.raises(ValueError, match="patch_size=3"):
        TokenizerConfig(patch_size=3)
    with pytest.raises(ValueError, match="cross_attn_resolutions"):
        TokenizerConfig(cross_attn_resolutions=(8,))
    with pytest.raises(ValueError, match=r"norm_groups=8 must divide every channel count, but not \[12\]"):
        TokenizerConfig(channels=(12, 24, 48))
    with pytest.raises(ValueError, match=r"local_cross_attn_resolutions=\(8,\)"):
        TokenizerConfig(local_cross_attn_resolutions=(8,))
    with pytest.raises(ValueError, match=r"sizes \[16\] are in both"):
        TokenizerConfig(local_cross_attn_resolutions=(16,))
    with pytest.raises(ValueError, match="cross_attn_window must be odd"):
        TokenizerConfig(cross_attn_window=4)
    with pytest.raises(KeyError, match="unknown tokenizer preset"):
        tokenizer_preset("huge")


def test_local_cross_attention_at_a_finer_scale_conditions_both_future_nets_and_trains() -> None:
    cfg = dataclasses.replace(tiny_config(), local_cross_attn_resolutions=(32,), cross_attn_window=3)
    tok = build_tokenizer(cfg)
    windowed = [m for m in tok.modules() if isinstance(m, CrossAttnBlock) and m.window == 3]
    assert len(windowed) == cfg.encoder_cross_blocks + cfg.decoder_cross_blocks  # in E_p and D_p, at 32x32
    assert all(m.size == 32 for m in windowed)
    for block in windowed:  # open the zero-initialised outputs so the context can flow through them
        torch.nn.init.normal_(block.attn.out.weight, std=0.1)
    loss, _, out = tok.compute_loss(random_clip(2, 4), 2, TokenizerLoss(TokenizerLossConfig()))
    loss.backward()
    assert out.recon.shape == (2, 4, 3, 64, 64)
    assert all(m.attn.q.weight.grad.abs().sum() > 0 for m in windowed)
    state = tok.context_from_codes(tok.tokenize(random_clip(1, 3), 2)[0])
    assert 32 in state.features  # decoding a rollout's frames needs the 32x32 context maps too


def test_future_blend_mixes_the_real_last_context_frame_into_future_frames() -> None:
    tok = build_tokenizer(tiny_config(future_blend=True)).eval()
    clip = moving_square_clip(2, 4, 64)
    mask_out = tok.future_vqgan.decoder.conv_out
    with torch.no_grad():  # a saturated mask: future frames are exactly the last context frame
        mask_out.bias[3] = 100.0
    out = tok(clip, 2)
    assert torch.equal(out.recon[:, 2:], clip[:, 1:2].expand(-1, 2, -1, -1, -1))
    _, future_codes = tok.tokenize(clip, 2)
    from_frames = tok.encode_context(clip[:, :2])
    assert torch.equal(from_frames.last_frame, clip[:, 1])  # real pixels, not the decoded ones
    from_codes = tok.context_from_codes(from_frames.codes)
    assert torch.equal(from_codes.last_frame, from_codes.frames[:, -1])
    picked = from_frames.select(torch.tensor([1, 0, 1]))  # each row keeps its own frame
    assert torch.equal(picked.last_frame, clip[[1, 0, 1], 1])
    assert torch.equal(tok.decode_future(future_codes, from_frames), clip[:, 1:2].expand(-1, 2, -1, -1, -1))
    with torch.no_grad():  # mask closed: D_p's own frame, which differs from the last context frame
        mask_out.bias[3] = -100.0
    assert not torch.allclose(tok.decode_future(future_codes, from_frames), clip[:, 1:2], atol=1e-2)
    from_frames.last_frame = None
    with pytest.raises(ValueError, match="blends future frames with the last context frame"):
        tok.decode_future(future_codes, from_frames)
    with pytest.raises(ValueError, match="future_blend needs kind='compressive'"):
        tiny_config(kind="per_frame", cross_attn_resolutions=(), future_blend=True)


def test_future_blend_starts_from_the_plain_decoder_and_trains_it() -> None:
    tok = build_tokenizer(tiny_config(future_blend=True))
    plain, cond = tok.context_vqgan.decoder.conv_out, tok.future_vqgan.decoder.conv_out
    assert torch.equal(cond.weight[:3], plain.weight)
    assert torch.equal(cond.weight[3], torch.zeros_like(cond.weight[3]))
    clip = moving_square_clip(2, 4, 64)
    out = tok(clip, 2)
    (out.recon[:, 2:] - clip[:, 2:]).abs().mean().backward()
    grad = tok.future_vqgan.decoder.conv_in.weight.grad
    assert grad is not None and grad.abs().max() > 1e-6  # gradients reach D_p through its own frame


def test_future_blend_mask_learns_where_the_last_context_frame_is_right() -> None:
    # the square moves, the background does not: the mask keeps the background and lets D_p draw the square
    tok = build_tokenizer(dataclasses.replace(tiny_config(future_blend=True), resolution=32))
    loss_fn = TokenizerLoss(TokenizerLossConfig())
    clip = moving_square_clip(2, 3, 32)
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    first = None
    for step in range(40):
        loss, metrics, _ = tok.compute_loss(clip, 1, loss_fn, step)
        assert {"blend_raw", "blend_mask"} <= set(metrics)
        first = first or metrics
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert metrics["blend_mask"] < 0.6 * first["blend_mask"] and metrics["blend_raw"] < first["blend_raw"]
    with torch.no_grad():
        out = tok(clip, 1)
    mask = torch.sigmoid(out.future_mask_logits)[:, :, 0]  # (B, Tf, H, W)
    recon, truth = to_uint8(out.recon)[:, 1:].float(), to_uint8(clip).float()  # (B, T, H, W, 3)
    last, future = truth[:, :1], truth[:, 1:]
    static = (future == last).all(-1)  # (B, Tf, H, W)
    assert mask[static].mean() > 0.95 and mask[~static].mean() < mask[static].mean() - 0.2
    moved_error = (recon - future).abs().amax(-1)[~static].mean()
    assert moved_error < (last - future).abs().amax(-1)[~static].mean()  # it draws what moved, not a copy
    plain = build_tokenizer(dataclasses.replace(tiny_config(), resolution=32))(clip, 1)
    assert plain.future_raw is None and plain.future_mask_logits is None
    assert "blend_mask" not in loss_fn.generator_loss(clip, plain, plain.recon, 0)[1]


def test_still_patches_get_the_still_code_whose_vector_the_decoder_trains() -> None:
    tok = build_tokenizer(tiny_config(future_blend=True, still_threshold=1.0))
    clip = moving_square_clip(2, 4, 64)  # the square slides 2 pixels a frame; the background stays
    clip[:, 3] = clip[:, 1]  # the last future frame: exactly the last context frame
    _, codes = tok.tokenize(clip, 2)  # (B, 2, hf, wf)
    assert bool((codes[:, 1] == STILL_CODE).all())  # nothing moved: every code is the still one
    change = (clip[:, 2] - clip[:, 1]).abs().mean(1) * 127.5  # (B, H, W) grey levels
    moved = moving_patches(change[:, None], tok.future_grid, 1.0).view(codes[:, 0].shape)
    assert bool(moved.any()) and bool((~moved).any())
    assert bool((codes[:, 0][~moved] == STILL_CODE).all())
    plain = build_tokenizer(tiny_config(future_blend=True))
    plain.load_state_dict(tok.state_dict())  # the same weights; the still code is the only difference
    assert torch.equal(plain.tokenize(clip, 2)[1][:, 0][moved], codes[:, 0][moved])
    # training: the forward decodes the still vector there, and the reconstruction loss shapes it
    out = tok(clip, 2)
    assert torch.equal(out.future_codes, codes)
    (out.recon[:, 2:] - clip[:, 2:]).square().mean().backward()
    assert tok.future_vqgan.quantizer.codebook.weight.grad[STILL_CODE].abs().sum() > 0
    # its uses count, so dead-code restarts leave it alone however seldom the lookup picks it
    quantizer = tok.future_vqgan.quantizer
    before = quantizer.usage_ema[STILL_CODE].clone()
    tok(clip, 2)
    decay = quantizer.cfg.dead_code_decay
    still_uses = (~moved).sum() + codes[:, 1].numel()  # frame 1: its still patches; frame 2: all
    assert float(quantizer.usage_ema[STILL_CODE]) >= float(decay * before + (1 - decay) * still_uses) - 1e-4
    with torch.no_grad():  # decoding the codes gives the forward's frames
        state = tok.encode_context(clip[:, :2])
        torch.testing.assert_close(tok.decode_future(codes, state), out.recon[:, 2:], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="still_threshold needs future_blend"):
        tiny_config(still_threshold=20.0)
    with pytest.raises(ValueError, match="still_threshold must be >= 0"):
        tiny_config(future_blend=True, still_threshold=-1.0)
