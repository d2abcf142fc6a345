"""Frame metrics for video prediction: PSNR, SSIM and LPIPS per (clip, sample, step), and their aggregation.

Inputs follow the project boundary convention: uint8 channels-last frames `(..., H, W, 3)` in [0, 255]
(float model outputs go through `ivideogpt.data.frames.to_uint8` first, exactly as a saved video would).

Definitions, chosen to match the reference iVideoGPT evaluation (which uses `piqa` on [0, 1] frames):
- PSNR = 10 log10(1 / (MSE + 1e-8)) with MSE over H, W and channels on frames scaled to [0, 1]. The 1e-8
  (piqa's `epsilon`) caps identical frames at 80 dB instead of +inf, so means stay finite.
- SSIM (Wang et al. 2004): Gaussian window 11, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 255, population
  (not sample) statistics, "valid" convolution (no padding: a 64x64 frame gives a 54x54 SSIM map), computed
  per channel and averaged over channels and pixels. Equal to piqa `SSIM(window_size=11, sigma=1.5)` and to
  skimage `structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255, channel_axis=-1)`.
- LPIPS from the tokenizer's VGG LPIPS network when weights are given; otherwise reported as None.
- PSNR on moving pixels (`psnr_moving`): the same PSNR over only the pixels where the true frame differs
  from the last context frame (any channel). At 64x64 a robot arm covers a few hundred pixels and the static
  table dominates whole-frame PSNR; this scores what the actions move (docs/method.md §6). A frame where
  nothing moved has no such pixels: its value is NaN and left out of every mean.

Scores are kept per (clip, sample, step) so callers can draw per-horizon curves and reduce the K samples
per clip either by their mean or by the best sample per clip (the paper's protocol: best of 100 futures by
each metric separately; higher is better for PSNR/SSIM, lower for LPIPS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ivideogpt.data.frames import to_model
from ivideogpt.eval.report import AGGREGATES, Aggregate

if TYPE_CHECKING:
    from ivideogpt.eval.i3d import I3DDetector

PSNR_EPS = 1e-8  # added to the [0, 1]-scale MSE: identical frames score 10 * log10(1e8) = 80 dB
SSIM_WINDOW = 11  # Gaussian window size
SSIM_SIGMA = 1.5  # Gaussian window standard deviation
SSIM_K1, SSIM_K2 = 0.01, 0.03  # stabilisers, as fractions of the data range
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "psnr_moving": True}


@dataclass
class MetricsConfig:
    lpips_weights: Path | None = None  # LPIPS (VGG) weights for `LPIPS.from_weights`; None: lpips unavailable
    i3d_weights: Path | None = None  # I3D TorchScript or pytorch-i3d state dict; None: FVD unavailable
    aggregate: Aggregate = "best"  # reduce K samples per clip: "mean", "best", "pixel_mean" (reduce_samples)
    chunk_frames: int = 256  # frames per SSIM/LPIPS call; bounds memory on long evaluations
    fvd_batch_size: int = 8  # clips per I3D forward pass

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"MetricsConfig.aggregate: expected one of {AGGREGATES}, got {self.aggregate!r}")
        for name in ("chunk_frames", "fvd_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"MetricsConfig.{name}: expected >= 1, got {getattr(self, name)}")


def check_frames(frames: Tensor | np.ndarray, name: str, min_ndim: int = 3) -> Tensor:
    """Validate uint8 channels-last frames `(..., H, W, 3)` and return them as a tensor."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if not isinstance(frames, Tensor):
        raise TypeError(f"{name}: expected a uint8 tensor or array, got {type(frames).__name__}")
    if frames.dtype != torch.uint8:
        raise TypeError(f"{name}: expected uint8 frames in [0, 255], got dtype {frames.dtype} "
                        "(convert model outputs with ivideogpt.data.frames.to_uint8)")
    if frames.ndim < min_ndim or frames.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (..., H, W, 3) with at least {min_ndim} dims, "
                         f"got {tuple(frames.shape)}")
    return frames


def psnr(truth: Tensor, pred: Tensor) -> Tensor:
    """Per-frame PSNR in dB, capped at 80 dB for identical frames (see `PSNR_EPS`).

    Args:
        truth: uint8 `(..., H, W, 3)`.
        pred: uint8, same shape as `truth`.

    Returns:
        float64 `(...)`: one value per frame.
    """
    truth, pred = _check_pair(truth, pred)
    diff = (truth.double() - pred.double()) / 255.0  # [0, 1] scale, float64 so tiny MSEs stay exact
    mse = diff.square().mean(dim=(-3, -2, -1))  # (...)
    return 10.0 * torch.log10(1.0 / (mse + PSNR_EPS))


def moving_psnr(truth: Tensor, pred: Tensor, reference: Tensor) -> Tensor:
    """Per-frame PSNR over the pixels where `truth` differs from `reference` (NaN where none does).

    Args:
        truth: uint8 `(..., H, W, 3)`.
        pred: uint8, same shape as `truth`.
        reference: uint8, same shape as `truth` (e.g. the last context frame, broadcast over steps).

    Returns:
        float64 `(...)`: one value per frame, capped at 80 dB like `psnr`.
    """
    truth, pred = _check_pair(truth, pred)
    _, reference = _check_pair(truth, reference)
    moving = (truth != reference).any(dim=-1, keepdim=True).double()  # (..., H, W, 1)
    diff = (truth.double() - pred.double()) / 255.0
    count = 3.0 * moving.sum(dim=(-3, -2, -1))  # moving pixels x channels, per frame
    mse = (diff.square() * moving).sum(dim=(-3, -2, -1)) / count.clamp(min=1.0)
    return torch.where(count > 0, 10.0 * torch.log10(1.0 / (mse + PSNR_EPS)), torch.nan)


def ssim(truth: Tensor, pred: Tensor) -> Tensor:
    """Per-frame SSIM (Gaussian 11/1.5, valid convolution, mean over channels and pixels).

    Args:
        truth: uint8 `(..., H, W, 3)` with H, W >= 11.
        pred: uint8, same shape as `truth`.

    Returns:
        float32 `(...)`: one value per frame, 1.0 for identical frames.
    """
    truth, pred = _check_pair(truth, pred)
    lead, (h, w) = truth.shape[:-3], truth.shape[-3:-1]
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"ssim: frames must be at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    # Scaling to [0, 1] (data range 1) gives the same SSIM as data range 255 with better float32 conditioning.
    x = truth.reshape(-1, h, w, 3).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)
    y = pred.reshape(-1, h, w, 3).permute(0, 3, 1, 2).float() / 255.0
    window = _gaussian_window(x.device)
    mu_x, mu_y = _blur(x, window), _blur(y, window)  # (N, 3, H-10, W-10)
    var_x = _blur(x * x, window) - mu_x.square()
    var_y = _blur(y * y, window) - mu_y.square()
    cov = _blur(x * y, window) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2)
    return (num / den).mean(dim=(1, 2, 3)).reshape(lead)


class LPIPSMetric:
    """Per-frame LPIPS distance from the tokenizer's LPIPS network (lower is better).

    Assumes `net(x, y)` takes float `(N, 3, H, W)` images in [-1, 1] and returns one distance per image
    (shape `(N,)` or `(N, 1, 1, 1)`), as the standard VGG LPIPS does.
    """

    def __init__(self, net: nn.Module) -> None:
        self.net = net.eval().requires_grad_(False)

    @classmethod
    def from_weights(cls, path: str | Path) -> LPIPSMetric:
        # Imported lazily: PSNR/SSIM/FVD work without the tokenizer package.
        try:
            from ivideogpt.tokenizer.lpips import LPIPS
        except ImportError as e:
            raise ImportError(f"LPIPS weights {path} given, but the LPIPS network "
                              f"(ivideogpt.tokenizer.lpips.LPIPS) cannot be imported: {e}") from e
        return cls(LPIPS.from_weights(path))

    @torch.no_grad()
    def __call__(self, truth: Tensor, pred: Tensor) -> Tensor:
        """uint8 `(..., H, W, 3)` pairs -> float32 `(...)` distances, on the network's device."""
        truth, pred = _check_pair(truth, pred)
        lead, n = truth.shape[:-3], math.prod(truth.shape[:-3])
        device = next(self.net.parameters(), torch.empty(0)).device
        x = to_model(truth.reshape(n, *truth.shape[-3:]).to(device))  # (N, 3, H, W) in [-1, 1]
        y = to_model(pred.reshape(n, *pred.shape[-3:]).to(device))
        dist = self.net(x, y)
        if dist.numel() != n:
            raise ValueError(f"LPIPS network returned shape {tuple(dist.shape)} for {n} image pairs; "
                             "expected one distance per pair")
        return dist.float().reshape(lead)


@dataclass
class FrameScores:
    """Frame metrics of K sampled futures per clip. Arrays are float64 `(B, K, T)`: clip, sample, step."""

    psnr: np.ndarray
    ssim: np.ndarray
    lpips: np.ndarray | None = None
    psnr_moving: np.ndarray | None = None  # NaN where the true frame equals the reference frame

    def __post_init__(self) -> None:
        for name, values in self.arrays().items():
            if values.ndim != 3 or values.shape != self.psnr.shape:
                raise ValueError(f"FrameScores.{name}: expected shape (B, K, T) = {self.psnr.shape}, "
                                 f"got {values.shape}")

    def arrays(self) -> dict[str, np.ndarray]:
        """The available metrics by name (lpips left out when it was not computed)."""
        out = {"psnr": self.psnr, "ssim": self.ssim}
        for name in ("lpips", "psnr_moving"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @staticmethod
    def cat(parts: list[FrameScores]) -> FrameScores:
        """Join batches of clips along the clip axis."""
        if not parts:
            raise ValueError("FrameScores.cat: no scores to join")
        names = {tuple(p.arrays()) for p in parts}
        if len(names) != 1:
            raise ValueError(f"FrameScores.cat: batches have different metrics: {sorted(names)}")
        return FrameScores(**{name: np.concatenate([getattr(p, name) for p in parts])
                              for name in names.pop()})

    def summary(self, aggregate: Aggregate) -> dict[str, float | list[float] | None]:
        """Scalar and per-step values for metrics.json.

        Returns:
            `{"psnr": float, "psnr_per_step": [T floats], "ssim": ..., "ssim_per_step": ...,
            "lpips": float | None, "lpips_per_step": list | None, and psnr_moving likewise where scored}`;
            the scalar is the mean over clips and steps of the per-clip reduction of the K samples
            (`reduce_samples`). NaN entries (psnr_moving of frames where nothing moved) are left out.
        """
        out: dict[str, float | list[float] | None] = {"lpips": None, "lpips_per_step": None}
        for name, values in self.arrays().items():
            per_clip_step = reduce_samples(values, aggregate, HIGHER_IS_BETTER[name])  # (B, T)
            out[name] = finite_mean(per_clip_step)
            out[f"{name}_per_step"] = [finite_mean(v) for v in per_clip_step.T]
        return out


def reduce_samples(values: np.ndarray, aggregate: Aggregate, higher_is_better: bool) -> np.ndarray:
    """Reduce K samples per clip: their mean, or the single best sample per clip.

    Args:
        values: `(B, K, T)` per clip, sample and step.
        aggregate: "mean" averages the samples' scores; "best" keeps, for each clip, the sample whose mean
            over steps is best (max if `higher_is_better` else min), as in the paper's best-of-100 protocol;
            "pixel_mean" scored the samples' pixel mean as one prediction (K = 1 here), so it is "mean".
        higher_is_better: direction of the metric.

    Returns:
        `(B, T)` per clip and step.
    """
    if values.ndim != 3:
        raise ValueError(f"reduce_samples: expected (B, K, T), got shape {values.shape}")
    if aggregate in ("mean", "pixel_mean"):
        return values.mean(axis=1)  # a NaN (nothing moved) is NaN for every sample, so it stays NaN here
    if aggregate != "best":
        raise ValueError(f"reduce_samples: aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    finite = np.isfinite(values)
    per_sample = np.where(finite, values, 0.0).sum(axis=2) / np.maximum(finite.sum(axis=2), 1)  # (B, K)
    pick = per_sample.argmax(axis=1) if higher_is_better else per_sample.argmin(axis=1)  # (B,)
    return values[np.arange(values.shape[0]), pick]  # (B, T)


def finite_mean(values: np.ndarray) -> float | None:
    """Mean of the finite entries; None when there are none (e.g. no frame had moving pixels)."""
    finite = np.asarray(values)[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def score_frames(truth: Tensor | np.ndarray, samples: Tensor | np.ndarray, lpips: LPIPSMetric | None = None,
                 chunk_frames: int = 256, reference: Tensor | np.ndarray | None = None) -> FrameScores:
    """PSNR, SSIM (and LPIPS, psnr_moving when given what they need) of every sampled future vs the truth.

    Args:
        truth: uint8 `(B, T, H, W, 3)`: the true future frames.
        samples: uint8 `(B, K, T, H, W, 3)`: K predictions per clip, or `(B, T, H, W, 3)` for K = 1.
        lpips: LPIPS metric, or None to leave lpips out.
        chunk_frames: frames per SSIM/LPIPS call.
        reference: uint8 `(B, H, W, 3)`, each clip's last context frame: scores `psnr_moving` on the
            pixels where the truth differs from it; None leaves psnr_moving out.

    Returns:
        `FrameScores` with `(B, K, T)` arrays.
    """
    truth = check_frames(truth, "truth", min_ndim=5)
    samples = check_frames(samples, "samples", min_ndim=5)
    if truth.ndim != 5:
        raise ValueError(f"truth: expected (B, T, H, W, 3), got {tuple(truth.shape)}")
    if samples.ndim == 5:
        samples = samples.unsqueeze(1)  # (B, 1, T, H, W, 3)
    if samples.ndim != 6 or samples.shape[:1] + samples.shape[2:] != truth.shape:
        raise ValueError(f"samples: expected (B, K, T, H, W, 3) matching truth {tuple(truth.shape)}, "
                         f"got {tuple(samples.shape)}")
    b, k, t = samples.shape[:3]
    flat_pred = samples.reshape(b * k * t, *truth.shape[2:])  # (B*K*T, H, W, 3)
    flat_truth = truth.reshape(b * t, *truth.shape[2:])  # (B*T, H, W, 3)
    # Row (b, k, t) of flat_pred is compared with row (b, t) of flat_truth; indexing per chunk avoids
    # materialising K copies of the truth.
    rows = torch.arange(b * k * t, device=truth.device)
    truth_rows = rows // (k * t) * t + rows % t  # (B*K*T,)
    metrics = {"psnr": psnr, "ssim": ssim} | ({"lpips": lpips} if lpips is not None else {})
    if reference is not None:
        reference = check_frames(reference, "reference", min_ndim=4)
        if reference.shape != truth.shape[:1] + truth.shape[2:]:
            raise ValueError(f"reference: expected (B, H, W, 3) = {(b, *truth.shape[2:])}, "
                             f"got {tuple(reference.shape)}")
    chunks: dict[str, list[Tensor]] = {name: [] for name in metrics} | (
        {"psnr_moving": []} if reference is not None else {})
    for i in range(0, flat_pred.shape[0], chunk_frames):
        rows = torch.arange(i, min(i + chunk_frames, flat_pred.shape[0]), device=truth.device)
        x, y = flat_truth[truth_rows[rows]], flat_pred[rows]
        for name, fn in metrics.items():
            chunks[name].append(fn(x, y).cpu())
        if reference is not None:  # row (b, k, t) is compared against clip b's last context frame
            chunks["psnr_moving"].append(moving_psnr(x, y, reference[rows // (k * t)]).cpu())
    results = {name: torch.cat(parts).double().numpy().reshape(b, k, t) for name, parts in chunks.items()}
    return FrameScores(**results)


@dataclass
class MetricModels:
    """Networks behind the learned metrics; None where no weights were given, with the reason."""

    lpips: LPIPSMetric | None
    i3d: I3DDetector | None
    unavailable: dict[str, str]  # metric name -> why it is not reported


def load_metric_models(config: MetricsConfig, device: str | torch.device = "cpu") -> MetricModels:
    """Load LPIPS and I3D from the configured weight files; an unset file makes that metric unavailable."""
    from ivideogpt.eval.i3d import load_i3d

    unavailable = {}
    lpips = None
    if config.lpips_weights is None:
        unavailable["lpips"] = "no LPIPS weights given (set lpips_weights)"
    else:
        lpips = LPIPSMetric.from_weights(config.lpips_weights)
        lpips.net.to(device)
    i3d = None
    if config.i3d_weights is None:
        unavailable["fvd"] = "no I3D weights given (set i3d_weights to i3d_torchscript.pt or rgb_imagenet.pt)"
    else:
        i3d = load_i3d(config.i3d_weights, device=device)
    return MetricModels(lpips=lpips, i3d=i3d, unavailable=unavailable)


def _check_pair(truth: Tensor, pred: Tensor) -> tuple[Tensor, Tensor]:
    truth, pred = check_frames(truth, "truth"), check_frames(pred, "pred")
    if truth.shape != pred.shape:
        raise ValueError(f"truth and pred shapes differ: {tuple(truth.shape)} vs {tuple(pred.shape)}")
    return truth, pred.to(truth.device)


def _gaussian_window(device: torch.device) -> Tensor:
    """Normalised 1-D Gaussian `(SSIM_WINDOW,)`; SSIM's 2-D window is its outer product (separable)."""
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float32, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-coords.square() / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _blur(x: Tensor, window: Tensor) -> Tensor:
    """Valid (unpadded) separable Gaussian filter per channel: `(N, C, H, W) -> (N, C, H-10, W-10)`."""
    c = x.shape[1]
    x = F.conv2d(x, window.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)  # along W
    return F.conv2d(x, window.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)  # along H
