from __future__ import annotations

import numpy as np
import pytest

from ivideogpt.eval.fvd import FeatureStats, compute_fvd, frechet_distance, fvd_from_features


def _random_cov(d: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_identical_feature_sets_have_zero_distance() -> None:
    feats = np.random.default_rng(0).normal(size=(300, 16))
    assert fvd_from_features(feats, feats.copy()) == pytest.approx(0.0, abs=1e-8)


def test_shifted_means_same_covariance_is_squared_mean_distance() -> None:
    rng = np.random.default_rng(1)
    sigma = _random_cov(12, rng)
    mu1, mu2 = rng.normal(size=12), rng.normal(size=12)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(np.sum((mu1 - mu2) ** 2), abs=1e-8)


def test_diagonal_covariances_match_closed_form() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 4.0, size=10), rng.uniform(0.1, 4.0, size=10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_matches_trace_of_sqrtm_of_product_for_full_covariances() -> None:
    # scipy's sqrtm(S1 @ S2) has trace sum(sqrt(eig(S1 @ S2))); ours must agree on well-conditioned inputs.
    rng = np.random.default_rng(3)
    s1, s2 = _random_cov(20, rng), _random_cov(20, rng)
    eig = np.linalg.eigvals(s1 @ s2).astype(np.complex128)
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig).real.sum()
    assert frechet_distance(np.zeros(20), s1, np.zeros(20), s2) == pytest.approx(expected, rel=1e-9)


def test_rank_deficient_covariances_stay_finite_and_nonnegative() -> None:
    # fewer clips than feature dimensions, as with small evaluations on 400-d I3D features
    rng = np.random.default_rng(4)
    real, gen = rng.normal(size=(6, 40)), rng.normal(size=(6, 40)) + 0.5
    same = fvd_from_features(real, real.copy())
    different = fvd_from_features(real, gen)
    assert abs(same) < 1e-8
    assert np.isfinite(different) and different > 0


def test_feature_stats_streaming_matches_one_shot() -> None:
    feats = np.random.default_rng(5).normal(size=(50, 7))
    stats = FeatureStats()
    for chunk in np.array_split(feats, 4):
        stats.update(chunk)
    mean, cov = stats.mean_cov()
    np.testing.assert_allclose(mean, feats.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(cov, np.cov(feats, rowvar=False, bias=True), atol=1e-12)
    with pytest.raises(ValueError, match="feature size"):
        stats.update(np.zeros((2, 8)))


def test_covariance_needs_two_clips() -> None:
    stats = FeatureStats()
    stats.update(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        stats.mean_cov()


def test_fvd_without_detector_is_none() -> None:
    videos = np.zeros((2, 16, 8, 8, 3), dtype=np.uint8)
    assert compute_fvd(None, videos, videos) is None
