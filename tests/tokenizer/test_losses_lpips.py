from __future__ import annotations

import types
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ivideogpt.tokenizer import LPIPS, LPIPSWeightsError, TokenizerLoss, TokenizerLossConfig, build_tokenizer
from ivideogpt.tokenizer import losses as losses_module
from ivideogpt.tokenizer.lpips import TAP_CHANNELS
from tests.tokenizer.helpers import random_clip, tiny_config

VGG_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # torchvision vgg16.features conv indices
# The lpips package's VGG slices: torchvision index ranges [start, stop) per slice.
SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))


def _torchvision_vgg16() -> dict[str, torch.Tensor]:
    """Random tensors under torchvision's vgg16 names and shapes (features + a classifier to ignore)."""
    state, in_ch = {}, 3
    widths = iter((64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512))
    for idx in VGG_CONVS:
        out = next(widths)
        state[f"features.{idx}.weight"] = torch.randn(out, in_ch, 3, 3)
        state[f"features.{idx}.bias"] = torch.randn(out)
        in_ch = out
    state["classifier.0.weight"] = torch.randn(8, 8)
    return state


def _lpips_lins(index: int = 1) -> dict[str, torch.Tensor]:
    return {f"lin{i}.model.{index}.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(TAP_CHANNELS)}


def _assert_loaded(net: LPIPS, vgg: dict[str, torch.Tensor], lins: dict[str, torch.Tensor]) -> None:
    for idx in VGG_CONVS:
        assert torch.equal(net.features[idx].weight, vgg[f"features.{idx}.weight"])
        assert torch.equal(net.features[idx].bias, vgg[f"features.{idx}.bias"])
    for i, lin in enumerate(lins.values()):
        assert torch.equal(net.lins[i].weight, lin)


def test_lpips_loads_two_torchvision_and_lpips_files(tmp_path: Path) -> None:
    vgg, lins = _torchvision_vgg16(), _lpips_lins()
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(lins, tmp_path / "vgg.pth")
    net = LPIPS.from_weights(tmp_path / "vgg16.pth", tmp_path / "vgg.pth")
    _assert_loaded(net, vgg, lins)
    x = random_clip(1, 2, 32)[0]
    dist = net(x, x.flip(0))
    assert dist.shape == (2,)
    torch.testing.assert_close(net(x, x), torch.zeros(2))


def test_lpips_loads_a_combined_file_and_the_full_lpips_layout(tmp_path: Path) -> None:
    vgg, lins = _torchvision_vgg16(), _lpips_lins(index=0)  # a lin layer saved without dropout
    save_file({**vgg, **lins}, str(tmp_path / "lpips.safetensors"))
    _assert_loaded(LPIPS.from_weights(tmp_path / "lpips.safetensors"), vgg, lins)
    # lpips.LPIPS(net="vgg").state_dict(): VGG convs under net.sliceK.<torchvision index>
    full = {f"net.slice{k + 1}.{i}.{p}": vgg[f"features.{i}.{p}"]
            for k, (a, b) in enumerate(SLICES) for i in range(a, b) if i in VGG_CONVS
            for p in ("weight", "bias")}
    lins = _lpips_lins()
    full.update(lins)
    full["scaling_layer.shift"] = torch.zeros(1, 3, 1, 1)
    torch.save(full, tmp_path / "full.pth")
    _assert_loaded(LPIPS.from_weights(tmp_path / "full.pth"), vgg, lins)


def test_lpips_errors_name_missing_and_misshapen_tensors(tmp_path: Path) -> None:
    torch.save(_torchvision_vgg16(), tmp_path / "vgg16.pth")
    with pytest.raises(LPIPSWeightsError, match="5 tensors missing.*lins.0.weight.*lin layers found"):
        LPIPS.from_weights(tmp_path / "vgg16.pth")
    lins = _lpips_lins()
    lins["lin2.model.1.weight"] = torch.rand(1, 7, 1, 1)
    torch.save(lins, tmp_path / "vgg.pth")
    with pytest.raises(LPIPSWeightsError, match=r"wrong shapes.*lins.2.weight: \(1, 7, 1, 1\)"):
        LPIPS.from_weights(tmp_path / "vgg16.pth", tmp_path / "vgg.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        LPIPS.from_weights(tmp_path / "nope.pth")


def test_perceptual_loss_disabled_without_weights_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(losses_module, "_warned_no_lpips", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = TokenizerLoss(TokenizerLossConfig()), TokenizerLoss(TokenizerLossConfig())
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "perceptual loss is disabled" in messages[0]
    assert not first.perceptual_enabled and not second.perceptual_enabled


def test_perceptual_term_with_weights_is_added_and_not_checkpointed(tmp_path: Path) -> None:
    torch.save({**_torchvision_vgg16(), **_lpips_lins()}, tmp_path / "lpips.pth")
    loss_fn = TokenizerLoss(TokenizerLossConfig(lpips_weights=tmp_path / "lpips.pth"))
    assert loss_fn.perceptual_enabled and loss_fn.state_dict() == {}
    tok = build_tokenizer(tiny_config())
    loss, metrics, _ = tok.compute_loss(random_clip(1, 2), 1, loss_fn)
    assert metrics["perceptual"] > 0
    assert loss.item() == pytest.approx(metrics["recon"] + metrics["perceptual"] + metrics["quant"], rel=1e-5)


@pytest.mark.filterwarnings("ignore:no LPIPS weights")
def test_gan_terms_follow_disc_start_and_train_the_discriminator() -> None:
    cfg = TokenizerLossConfig(disc_enabled=True, disc_start=5, disc_channels=8, disc_layers=2)
    loss_fn = TokenizerLoss(cfg)
    tok = build_tokenizer(tiny_config())
    clip = random_clip(1, 3)
    out = tok(clip, 1)
    _, before = loss_fn.generator_loss(clip, out, tok.last_layer_weights, step=4)
    assert "gan_g" not in before and not loss_fn.gan_active(4)
    with pytest.raises(RuntimeError, match="GAN is off"):
        loss_fn.discriminator_loss(clip, out, step=4)
    loss, after = loss_fn.generator_loss(clip, out, tok.last_layer_weights, step=5)
    assert after["gan_weight"] > 0 and "gan_g" in after
    loss.backward()
    d_loss, d_metrics = loss_fn.discriminator_loss(clip, out, step=5)
    d_loss.backward()
    assert set(d_metrics) == {"disc_loss", "logits_real", "logits_fake"}
    assert all(p.grad is not None for p in loss_fn.discriminator.parameters())
    assert any(k.startswith("discriminator.") for k in loss_fn.state_dict())
    with torch.no_grad():  # validation: no graph, so no adaptive weight and no GAN term
        _, val = loss_fn.generator_loss(clip, tok(clip, 1), tok.last_layer_weights, step=5)
    assert "gan_g" not in val


def test_motion_weight_counts_future_pixels_that_changed_more() -> None:
    clip = torch.zeros(1, 3, 3, 8, 8)  # context: frames 0, 1; future: frame 2 with one changed pixel
    clip[0, 2, :, 0, 0] = 1.0
    recon = clip.clone()
    recon[0, 2, :, 0, 0] = 0.0  # missed the change: error 1 on one pixel
    recon[0, 2, :, 7, 7] = 1.0  # invented a change: error 1 on a static pixel
    out = types.SimpleNamespace(recon=recon, context_codes=torch.zeros(1, 2, 1, 1),
                                quant_loss=torch.tensor(0.0), stats={}, future_raw=None,
                                future_mask_logits=None)
    plain = TokenizerLoss(TokenizerLossConfig(perceptual_weight=0.0))
    weighted = TokenizerLoss(TokenizerLossConfig(perceptual_weight=0.0, motion_weight=4.0))
    _, m0 = plain.generator_loss(clip, out, [], 0)
    _, m1 = weighted.generator_loss(clip, out, [], 0)
    # the changed pixel's error now weighs 1 + 4 * 1 = 5, the static one's still 1: 6 / 2 times the plain sum
    assert m1["recon_future"] == pytest.approx(3 * m0["recon_future"])
    assert m1["recon_context"] == m0["recon_context"] == 0
    assert m1["psnr_future"] == m0["psnr_future"]  # the reported PSNR is never weighted
