"""LPIPS perceptual distance (Zhang et al. 2018), VGG16 variant, in plain torch.

The network is torchvision's VGG16 `features` up to relu5_3 plus LPIPS' five 1x1 "lin" layers. Weights
are never random: `LPIPS.from_weights` loads
  (a) VGG16 features, as a torchvision state dict (`features.N.weight`/`bias`) or as the `net.sliceK.N.*`
      keys of a full LPIPS state dict, and
  (b) the lin layers as distributed in the lpips package's `weights/v0.1/vgg.pth`
      (`linK.model.1.weight`, or `linK.model.0.weight` from a model built without dropout),
from one combined file or from two files. Files are torch pickles (`.pth`/`.pt`, loaded with
weights_only) or safetensors.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

# LPIPS' ScalingLayer: inputs in [-1, 1] are mapped to ImageNet-normalised VGG inputs.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# torchvision vgg16.features layout up to relu5_3: conv widths, "M" for max-pool.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# Indices in `features` of the ReLUs LPIPS compares: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
TAPS = (3, 8, 15, 22, 29)
TAP_CHANNELS = (64, 128, 256, 512, 512)


class LPIPSWeightsError(KeyError):
    """LPIPS weight files that lack needed tensors or hold tensors of the wrong shape."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            in_ch = int(item)
    return nn.Sequential(*layers)  # indices match torchvision: features.0 ... features.29


class LPIPS(nn.Module):
    """Frozen perceptual distance between image batches in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.features = _vgg16_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in TAP_CHANNELS)
        self.requires_grad_(False).eval()

    @classmethod
    def from_weights(cls, path: str | Path, lin_path: str | Path | None = None) -> LPIPS:
        """Build LPIPS from VGG16 + lin weights: one combined file, or the VGG16 file and the lin file."""
        state: dict[str, Tensor] = {}
        for p in (path, lin_path):
            if p is not None:
                state.update(_load_file(Path(p)))
        net = cls()
        net.load_state_dict(map_lpips_state_dict(state, net.state_dict(), source=f"{path}, {lin_path}"))
        return net

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Distances of image pairs: `(N, 3, H, W)` x2 in [-1, 1] -> `(N,)` (0 for identical images)."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS: expected two (N, 3, H, W) batches, got {tuple(x.shape)} and "
                             f"{tuple(y.shape)}")
        n = x.shape[0]
        h = (torch.cat([x, y]) - self.shift) / self.scale  # one pass for both batches
        total = x.new_zeros(n)
        tap = 0
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i == TAPS[tap]:
                fx, fy = _unit_channels(h[:n]), _unit_channels(h[n:])
                total = total + self.lins[tap]((fx - fy).square()).mean(dim=(1, 2, 3))
                tap += 1
                if tap == len(TAPS):
                    break
        return total


def _unit_channels(f: Tensor, eps: float = 1e-10) -> Tensor:
    """LPIPS' normalize_tensor: unit length along channels at each position."""
    return f / (f.square().sum(dim=1, keepdim=True).sqrt() + eps)


def _load_file(path: Path) -> dict[str, Tensor]:
    if not path.exists():
        raise FileNotFoundError(f"LPIPS weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise LPIPSWeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


_PATTERNS = (
    (re.compile(r"^(?:.*\.)?features\.(\d+)\.(weight|bias)$"), "features.{0}.{1}"),  # torchvision vgg16
    (re.compile(r"^(?:.*\.)?net\.slice\d\.(\d+)\.(weight|bias)$"), "features.{0}.{1}"),  # full LPIPS model
    (re.compile(r"^(?:.*\.)?lin(\d)\.model\.[01]\.weight$"), "lins.{0}.weight"),  # lpips lin layers
)


def map_lpips_state_dict(
    state: dict[str, Tensor], expected: dict[str, Tensor], source: str = ""
) -> dict[str, Tensor]:
    """Rename torchvision / lpips keys to ours and check that every needed tensor is there with its shape.

    Keys that match no pattern (classifier layers, scaling constants) are ignored.
    """
    mapped: dict[str, Tensor] = {}
    for key, value in state.items():
        for pattern, template in _PATTERNS:
            m = pattern.match(key)
            if m and template.format(*m.groups()) in expected:
                mapped[template.format(*m.groups())] = value
                break
    missing = [k for k in expected if k not in mapped]
    if missing:
        has_lin = any(k.startswith("lins.") for k in mapped)
        hint = "" if has_lin else " (no LPIPS lin layers found: pass the lpips vgg.pth as the second file)"
        raise LPIPSWeightsError(f"LPIPS weights {source}: {len(missing)} tensors missing, e.g. {missing[:5]}"
                                f"{hint}; found {len(state)} keys such as {list(state)[:5]}")
    wrong = [f"{k}: {tuple(mapped[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if mapped[k].shape != v.shape]
    if wrong:
        raise LPIPSWeightsError(f"LPIPS weights {source}: wrong shapes: {wrong[:5]}")
    return mapped
