"""Fréchet Video Distance: I3D features of real and generated clips, compared as two Gaussians.

FVD = |mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2)) over the I3D features of `ivideogpt.eval.i3d`.
As in StyleGAN-V and the iVideoGPT reference, the covariances are population covariances (divide by N)
accumulated batch by batch in float64, and in the iVideoGPT protocol every sampled future contributes a
generated clip (real clips are counted once). Clips are normally context + predicted frames, 16 in all.

The trace of the matrix square root is taken as tr((S_r^(1/2) S_g S_r^(1/2))^(1/2)) with two symmetric
eigendecompositions in float64. That matrix is similar to S_r S_g, so the trace equals scipy's
`sqrtm(S_r @ S_g)` trace, but it stays real and needs no inverse, so rank-deficient covariances (fewer clips
than feature dimensions) are handled exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ivideogpt.eval.i3d import I3DDetector
from ivideogpt.eval.metrics import check_frames


class FeatureStats:
    """Running mean and covariance of feature vectors, so clips can be streamed batch by batch."""

    def __init__(self) -> None:
        self.count = 0
        self.dim: int | None = None
        self._sum: np.ndarray | None = None  # (D,) float64
        self._outer: np.ndarray | None = None  # (D, D) float64, sum of x x^T

    def update(self, features: Tensor | np.ndarray) -> None:
        """Add a batch of features `(N, D)`."""
        x = features.detach().cpu().double().numpy() if isinstance(features, Tensor) else np.asarray(features)
        x = x.astype(np.float64, copy=False)
        if x.ndim != 2:
            raise ValueError(f"FeatureStats.update: expected features (N, D), got shape {x.shape}")
        if self.dim is None:
            self.dim = x.shape[1]
            self._sum, self._outer = np.zeros(self.dim), np.zeros((self.dim, self.dim))
        if x.shape[1] != self.dim:
            raise ValueError(f"FeatureStats.update: feature size {x.shape[1]} differs from the earlier "
                             f"{self.dim}")
        self.count += x.shape[0]
        self._sum += x.sum(axis=0)
        self._outer += x.T @ x

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean `(D,)` and population covariance `(D, D)` (divide by N, as StyleGAN-V does)."""
        if self.count < 2:
            raise ValueError(f"FeatureStats: need at least 2 feature vectors for a covariance, "
                             f"got {self.count}")
        mean = self._sum / self.count
        cov = self._outer / self.count - np.outer(mean, mean)
        return mean, (cov + cov.T) / 2  # symmetrise away accumulated round-off


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    Args:
        mu1, mu2: `(D,)` means.
        sigma1, sigma2: `(D, D)` symmetric positive semi-definite covariances.

    Returns:
        |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1^(1/2) sigma2 sigma1^(1/2))^(1/2)), >= 0 up to
        round-off.
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"frechet_distance: expected means (D,) and covariances (D, D), got {mu1.shape}, "
                         f"{sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    vectors, roots = _psd_eig(sigma1)
    sqrt1 = (vectors * np.sqrt(roots)) @ vectors.T  # sigma1^(1/2)
    _, eigenvalues = _psd_eig(sqrt1 @ sigma2 @ sqrt1)
    trace_sqrt = np.sqrt(eigenvalues).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def i3d_features(detector: I3DDetector, videos: Tensor | np.ndarray, batch_size: int = 8,
                 progress: bool = False) -> np.ndarray:
    """I3D features of clips, computed in batches.

    Args:
        detector: from `ivideogpt.eval.i3d.load_i3d`.
        videos: uint8 `(N, T, H, W, 3)`; T = 16 for standard FVD.
        batch_size: clips per forward pass.
        progress: show a tqdm bar.

    Returns:
        float64 `(N, D)`.
    """
    videos = check_frames(videos, "videos", min_ndim=5)
    if videos.ndim != 5:
        raise ValueError(f"videos: expected (N, T, H, W, 3), got {tuple(videos.shape)}")
    starts = range(0, videos.shape[0], batch_size)
    feats = [detector(videos[i : i + batch_size]).cpu().double()
             for i in tqdm(starts, desc="I3D features", disable=not progress)]
    return torch.cat(feats).numpy()


def fvd_from_features(real: np.ndarray | FeatureStats, generated: np.ndarray | FeatureStats) -> float:
    """FVD from real and generated features, given as `(N, D)` arrays or accumulated `FeatureStats`."""
    stats = []
    for feats in (real, generated):
        if not isinstance(feats, FeatureStats):
            acc = FeatureStats()
            acc.update(feats)
            feats = acc
        stats.append(feats.mean_cov())
    (mu_r, sigma_r), (mu_g, sigma_g) = stats
    return frechet_distance(mu_r, sigma_r, mu_g, sigma_g)


def compute_fvd(detector: I3DDetector | None, real: Tensor | np.ndarray, generated: Tensor | np.ndarray,
                batch_size: int = 8, progress: bool = False) -> float | None:
    """FVD between two sets of clips, or None when no I3D weights are available (never a stand-in number).

    Args:
        detector: I3D from `load_i3d`, or None.
        real: uint8 `(N, T, H, W, 3)` true clips.
        generated: uint8 `(M, T, H, W, 3)` generated clips (all samples; M may differ from N).
        batch_size: clips per I3D forward pass.
        progress: show tqdm bars.
    """
    if detector is None:
        return None
    real_feats = i3d_features(detector, real, batch_size, progress)
    gen_feats = i3d_features(detector, generated, batch_size, progress)
    return fvd_from_features(real_feats, gen_feats)


def _psd_eig(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvectors `(D, D)` and eigenvalues `(D,)` of a symmetric PSD matrix, round-off zeros set to 0.

    Eigenvalues below D * eps * max|eigenvalue| (numpy's `matrix_rank` tolerance) are noise around an exact
    zero; left in, their square roots (~1e-8 each) would add up to a visible error for rank-deficient
    covariances.
    """
    eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    tol = matrix.shape[0] * np.finfo(np.float64).eps * np.abs(eigenvalues).max()
    return vectors, np.where(eigenvalues > tol, eigenvalues, 0.0)
