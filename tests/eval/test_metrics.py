from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from ivideogpt.eval.metrics import (
    FrameScores,
    LPIPSMetric,
    MetricsConfig,
    load_metric_models,
    psnr,
    reduce_samples,
    score_frames,
    ssim,
)


def _frames(*shape: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (*shape, 3), generator=g, dtype=torch.uint8)


def _noisy(frames: Tensor, std: float, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(frames.shape, generator=g) * std
    return (frames.float() + noise).round().clamp(0, 255).to(torch.uint8)


def _ssim_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. SSIM written out window by window: 11x11 Gaussian (sigma 1.5), data range 255."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a, b = a.astype(np.float64), b.astype(np.float64)
    values = []
    for c in range(3):
        for i in range(a.shape[0] - 10):
            for j in range(a.shape[1] - 10):
                pa, pb = a[i : i + 11, j : j + 11, c], b[i : i + 11, j : j + 11, c]
                mu_a, mu_b = (w * pa).sum(), (w * pb).sum()
                var_a, var_b = (w * pa * pa).sum() - mu_a**2, (w * pb * pb).sum() - mu_b**2
                cov = (w * pa * pb).sum() - mu_a * mu_b
                values.append((2 * mu_a * mu_b + c1) * (2 * cov + c2)
                              / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    return float(np.mean(values))


def test_psnr_matches_hand_computation() -> None:
    truth = torch.zeros(1, 8, 8, 3, dtype=torch.uint8)
    pred = torch.full((1, 8, 8, 3), 10, dtype=torch.uint8)
    mse = (10 / 255) ** 2
    assert psnr(truth, pred).item() == pytest.approx(10 * math.log10(1 / (mse + 1e-8)), abs=1e-9)
    assert psnr(truth, pred).item() == pytest.approx(20 * math.log10(255 / 10), abs=1e-3)


def test_psnr_random_frames_match_numpy() -> None:
    truth, pred = _frames(2, 3, 12, 12), _frames(2, 3, 12, 12, seed=5)
    diff = (truth.numpy().astype(np.float64) - pred.numpy()) / 255
    expected = 10 * np.log10(1 / ((diff**2).mean(axis=(-3, -2, -1)) + 1e-8))
    np.testing.assert_allclose(psnr(truth, pred).numpy(), expected, rtol=1e-12)
    assert psnr(truth, pred).shape == (2, 3)


def test_psnr_identical_frames_is_capped_at_80_db() -> None:
    frames = _frames(2, 16, 16)
    np.testing.assert_allclose(psnr(frames, frames.clone()).numpy(), 80.0)


def test_ssim_of_frame_with_itself_is_one() -> None:
    frames = _frames(3, 32, 32)
    np.testing.assert_allclose(ssim(frames, frames.clone()).numpy(), 1.0, atol=1e-6)


def test_ssim_decreases_with_noise() -> None:
    # a smooth image, so that structure exists for noise to destroy
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    base = torch.stack([xx * 8, yy * 8, (xx + yy) * 4], dim=-1).clamp(0, 255).to(torch.uint8)[None]
    scores = [ssim(base, _noisy(base, std)).item() for std in (2, 10, 40)]
    assert 1.0 > scores[0] > scores[1] > scores[2]


def test_ssim_matches_direct_numpy_formula() -> None:
    truth = _frames(16, 17)
    pred = _noisy(truth, 30.0)
    assert ssim(truth[None], pred[None]).item() == pytest.approx(_ssim_numpy(truth.numpy(), pred.numpy()),
                                                                abs=1e-5)


def test_ssim_rejects_frames_smaller_than_window() -> None:
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(_frames(1, 8, 8), _frames(1, 8, 8))


def test_frame_metrics_validate_inputs() -> None:
    frames = _frames(1, 16, 16)
    with pytest.raises(TypeError, match="uint8"):
        psnr(frames.float(), frames.float())
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W, 3\)"):
        psnr(frames.permute(0, 3, 1, 2), frames.permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(frames, _frames(1, 16, 17))


def test_reduce_samples_best_picks_best_sample_per_clip() -> None:
    values = np.array([[[1.0, 5.0], [3.0, 2.0], [0.0, 0.0]],  # clip 0: sample means 3.0, 2.5, 0.0
                       [[4.0, 4.0], [9.0, 1.0], [7.0, 7.0]]])  # clip 1: sample means 4.0, 5.0, 7.0
    np.testing.assert_array_equal(reduce_samples(values, "best", True), [[1.0, 5.0], [7.0, 7.0]])
    np.testing.assert_array_equal(reduce_samples(values, "best", False), [[0.0, 0.0], [4.0, 4.0]])
    np.testing.assert_allclose(reduce_samples(values, "mean", True), values.mean(axis=1))


def test_score_frames_compares_each_sample_with_its_own_clip_and_step() -> None:
    truth = _frames(2, 3, 16, 16)
    samples = torch.stack([_noisy(truth, std, seed=int(std)) for std in (5.0, 20.0, 50.0, 80.0)], dim=1)
    scores = score_frames(truth, samples, chunk_frames=5)  # chunks that cut across clips and samples
    assert scores.psnr.shape == scores.ssim.shape == (2, 4, 3)
    for b in range(2):
        for k in range(4):
            np.testing.assert_allclose(scores.psnr[b, k], psnr(truth[b], samples[b, k]).numpy())
            np.testing.assert_allclose(scores.ssim[b, k], ssim(truth[b], samples[b, k]).numpy(), rtol=1e-6)
    assert scores.lpips is None


def test_best_of_k_summary_uses_the_best_sample() -> None:
    truth = _frames(2, 3, 16, 16)
    samples = torch.stack([_noisy(truth, 40.0), truth.clone(), _noisy(truth, 10.0)], dim=1)  # sample 1 exact
    summary = score_frames(truth, samples).summary("best")
    assert summary["psnr"] == pytest.approx(80.0)
    assert summary["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert summary["psnr_per_step"] == pytest.approx([80.0] * 3)
    assert summary["lpips"] is None and summary["lpips_per_step"] is None
    mean = score_frames(truth, samples).summary("mean")
    assert mean["psnr"] < 80.0 and len(mean["ssim_per_step"]) == 3


def test_frame_scores_cat_and_shape_check() -> None:
    a = FrameScores(np.zeros((2, 1, 3)), np.ones((2, 1, 3)))
    b = FrameScores(np.ones((1, 1, 3)), np.ones((1, 1, 3)))
    joined = FrameScores.cat([a, b])
    assert joined.psnr.shape == (3, 1, 3) and joined.psnr[2, 0, 0] == 1.0
    with pytest.raises(ValueError, match="FrameScores.ssim"):
        FrameScores(np.zeros((2, 1, 3)), np.zeros((2, 3)))


class _MeanAbsLPIPS(nn.Module):
    """Stand-in with the LPIPS call signature: [-1, 1] images in, one distance per pair."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        assert x.shape[1] == 3 and x.min() >= -1 and x.max() <= 1
        return (self.scale * (x - y).abs()).mean(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)


def test_lpips_wrapper_feeds_minus_one_to_one_and_is_lower_better() -> None:
    lpips = LPIPSMetric(_MeanAbsLPIPS())
    truth = torch.zeros(1, 2, 16, 16, 3, dtype=torch.uint8)
    pred = torch.full((1, 2, 16, 16, 3), 255, dtype=torch.uint8)
    np.testing.assert_allclose(lpips(truth, pred).numpy(), [[2.0, 2.0]])  # |-1 - 1| in model range
    samples = torch.stack([pred, truth], dim=1)  # sample 1 is exact
    scores = score_frames(truth, samples, lpips=lpips)
    np.testing.assert_allclose(scores.lpips[0], [[2.0, 2.0], [0.0, 0.0]])
    assert scores.summary("best")["lpips"] == 0.0


def test_without_weights_learned_metrics_are_unavailable() -> None:
    models = load_metric_models(MetricsConfig())
    assert models.lpips is None and models.i3d is None
    assert set(models.unavailable) == {"lpips", "fvd"}


def test_metrics_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="aggregate"):
        MetricsConfig(aggregate="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_frames"):
        MetricsConfig(chunk_frames=0)
