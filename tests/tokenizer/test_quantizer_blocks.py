from __future__ import annotations

import dataclasses

import pytest
import torch

from ivideogpt.tokenizer import QuantizerConfig, VectorQuantizer
from ivideogpt.tokenizer.blocks import CrossAttnBlock


@pytest.mark.parametrize("l2", [True, False])
def test_codes_round_trip_exactly(l2: bool) -> None:
    cfg = QuantizerConfig(codebook_size=50, code_dim=6, l2_normalized=l2, restart_dead_codes=False)
    vq = VectorQuantizer(cfg)
    if not l2:  # spread the default tiny init so nearest-code ties cannot happen
        torch.nn.init.normal_(vq.codebook.weight)
    codes = torch.randint(0, 50, (3, 4, 5))
    out = vq(vq.codes_to_embedding(codes))
    assert out.codes.dtype == torch.int64
    assert torch.equal(out.codes, codes)
    assert out.quantized.shape == (3, 6, 4, 5)


def test_nearest_code_search_stays_float32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(QuantizerConfig(codebook_size=1024, code_dim=32, restart_dead_codes=False))
    z = torch.randn(4, 32, 16, 16)
    want = vq(z).codes
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = vq(z).codes
    assert torch.equal(got, want)


def test_straight_through_gradient_and_losses() -> None:
    vq = VectorQuantizer(QuantizerConfig(codebook_size=16, code_dim=4, beta=0.25, restart_dead_codes=False))
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq(z)
    out.quantized.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # straight-through reaches the latent
    out = vq(z)
    out.loss.backward()
    assert vq.codebook.weight.grad is not None and vq.codebook.weight.grad.abs().sum() > 0
    assert 1.0 <= float(out.perplexity) <= 16.0
    assert 0.0 < float(out.usage) <= 18 / 16


def test_codes_out_of_range_are_rejected() -> None:
    vq = VectorQuantizer(QuantizerConfig(codebook_size=8, code_dim=4))
    with pytest.raises(ValueError, match="out of range.*8 codes"):
        vq.codes_to_embedding(torch.tensor([[[8]]]))
    with pytest.raises(ValueError, match="out of range"):
        vq.codes_to_embedding(torch.tensor([[[-1]]]))
    with pytest.raises(TypeError, match="integer codes"):
        vq.codes_to_embedding(torch.zeros(1, 1, 1))


def test_dead_codes_are_restarted_from_latents() -> None:
    cfg = QuantizerConfig(codebook_size=32, code_dim=4, restart_every=5)
    vq = VectorQuantizer(cfg).train()
    # Latents near only two directions: most codes go unused and must be restarted from them.
    base = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    z = (base[torch.arange(64) % 2] + 0.3 * torch.randn(64, 4)).view(4, 4, 4, 4).permute(0, 3, 1, 2)
    before = vq.codebook.weight.detach().clone()
    usage_before = float(vq(z).usage)
    for _ in range(5):
        vq(z)
    changed = (vq.codebook.weight.detach() != before).any(dim=1)
    assert int(changed.sum()) > 16
    assert float(vq(z).usage) > usage_before
    # No-grad calls (tokenizing with a model left in train mode) leave the codebook and its counters alone.
    state = {k: v.clone() for k, v in vq.state_dict().items()}
    with torch.no_grad():
        for _ in range(10):
            vq(z)
    assert all(torch.equal(v, state[k]) for k, v in vq.state_dict().items())
    # The usage buffers exist only when restarts are on (they are part of checkpoints then).
    assert "usage_ema" in vq.state_dict()
    assert "usage_ema" not in VectorQuantizer(dataclasses.replace(cfg, restart_dead_codes=False)).state_dict()


def test_cross_attention_matches_per_frame_attention_and_starts_as_identity() -> None:
    block = CrossAttnBlock(channels=8, size=4, groups=2, heads=4)
    x = torch.randn(2 * 3, 8, 4, 4)  # B=2 clips, F=3 frames each
    context = torch.randn(2, 2, 8, 4, 4)  # Tc=2 context frames
    assert torch.equal(block(x, context), x)  # zero-initialised output projection
    torch.nn.init.normal_(block.attn.out.weight)
    y = block(x, context)
    # Folding the frames of a clip into one query sequence must equal attending frame by frame.
    for i in range(6):
        alone = block(x[i : i + 1], context[i // 3 : i // 3 + 1])
        torch.testing.assert_close(y[i : i + 1], alone, atol=1e-5, rtol=1e-5)
    # Any number of context frames works with the same weights.
    assert block(x, torch.randn(2, 5, 8, 4, 4)).shape == x.shape
    with pytest.raises(ValueError, match="do not fit"):
        block(torch.randn(5, 8, 4, 4), context)


def test_windowed_cross_attention_sees_only_its_window_and_equals_full_attention_when_it_covers_all() -> None:
    torch.manual_seed(0)
    x, context = torch.randn(2 * 3, 8, 6, 6), torch.randn(2, 2, 8, 6, 6)
    local = CrossAttnBlock(channels=8, size=6, groups=2, heads=4, window=3)
    assert torch.equal(local(x, context), x)  # starts as the identity, like the full block
    torch.nn.init.normal_(local.attn.out.weight)
    local.norm_kv = torch.nn.Identity()  # GroupNorm mixes the whole map; without it locality is exact
    moved = context.clone()
    moved[..., 3:, 3:] += 10.0  # context changes two or more positions away from the corner
    change = local(x, moved) - local(x, context)
    assert change[..., :2, :2].abs().max() == 0 and change[..., 3, 3].abs().max() > 1
    # a window spanning the map from any position, with no position embeddings, is full attention
    wide, full = CrossAttnBlock(8, 6, 2, 4, window=11), CrossAttnBlock(8, 6, 2, 4)
    torch.nn.init.normal_(wide.attn.out.weight)
    shared = {k: v for k, v in wide.state_dict().items() if not k.startswith("pos_")}
    full.load_state_dict(shared, strict=False)
    for block in (wide, full):
        torch.nn.init.zeros_(block.pos_q)
        torch.nn.init.zeros_(block.pos_kv)
    torch.testing.assert_close(wide(x, context), full(x, context), atol=1e-5, rtol=1e-5)
