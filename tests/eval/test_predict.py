"""Video-prediction evaluation end to end on a tiny untrained world model (numbers test the plumbing only)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from torch import nn

from ivideogpt.data.episode import Episode
from ivideogpt.data.store import DatasetWriter
from ivideogpt.eval import predict
from ivideogpt.eval.baselines import copy_last_frame, tokenizer_reconstruction
from ivideogpt.eval.metrics import LPIPSMetric, MetricModels, MetricsConfig, psnr
from ivideogpt.eval.predict import EvalConfig, evaluate_predictions
from ivideogpt.eval.report import read_metrics_json
from ivideogpt.eval.scores import reward_metrics, spread_indices
from ivideogpt.tokenizer import tokenizer_preset
from ivideogpt.transformer.config import transformer_preset
from ivideogpt.world_model import WorldModel, WorldModelSpec, layout_fields

SIZE, ACTION_DIM, TC, TF = 32, 4, 1, 3


def make_world_model(path: Path, reward_head: bool = True, action_dim: int = ACTION_DIM) -> Path:
    """An untrained 32x32 world model (tiny tokenizer and transformer) saved at `path`."""
    torch.manual_seed(0)
    tok = dataclasses.replace(tokenizer_preset("tiny"), resolution=SIZE)
    tf = transformer_preset("tiny", **layout_fields(tok), action_dim=action_dim, reward_head=reward_head,
                            max_context_frames=TC, max_future_frames=TF)
    collect = {"tasks": ["reach-v3"], "max_steps": 12}  # what the demo reads to record matching episodes
    spec = WorldModelSpec(tok, tf, context_frames=TC, future_frames=TF, image_size=SIZE,
                          action_dim=action_dim, fps=10.0, provenance={"collect": collect})
    return WorldModel.from_spec(spec).save(path)


def make_dataset(root: Path, videos: list[np.ndarray], action_dim: int | None = ACTION_DIM,
                 size: int = SIZE) -> Path:
    """A dataset folder of the given uint8 (T, H, W, 3) videos with random actions and rewards."""
    rng = np.random.default_rng(0)
    with DatasetWriter(root, "test", size, action_dim, fps=10.0) as writer:
        for frames in videos:
            t = len(frames)
            actions = None if action_dim is None else rng.uniform(-1, 1, (t, action_dim)).astype(np.float32)
            rewards = rng.uniform(0, 1, t).astype(np.float32)
            rewards[0] = 0.0
            writer.add(Episode(frames, actions, rewards, np.zeros(t, bool), np.zeros(t, bool)))
    return root


def smooth_videos(n: int, length: int, size: int = SIZE) -> list[np.ndarray]:
    """Moving colour gradients: structured enough for SSIM to mean something."""
    yy, xx = np.mgrid[:size, :size] / size
    out = []
    for i in range(n):
        frames = [np.stack([(xx + 0.05 * t + 0.1 * i) % 1, yy, (xx + yy) / 2], -1) for t in range(length)]
        out.append((np.stack(frames) * 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world_model(tmp_path_factory.mktemp("wm") / "world_model")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "smooth", smooth_videos(4, 8))


def run_eval(model: Path, data: Path, out: Path, **overrides: object) -> dict:
    settings = {"split": "all", "clips": 4, "samples": 2, "batch_size": 8, "video_clips": 2} | overrides
    return evaluate_predictions(EvalConfig(model=model, data=[data], out=out, **settings))


def test_eval_writes_a_well_formed_report(model_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    metrics = run_eval(model_dir, data_dir, tmp_path / "eval")
    out = tmp_path / "eval"
    for name in ("metrics.json", "report.html", "psnr_per_step.png", "ssim_per_step.png", "predictions.gif",
                 "predictions.mp4", "scores.npz"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert read_metrics_json(out / "metrics.json") == json.loads(json.dumps(metrics))  # validates too
    protocol = metrics["protocol"]
    assert [protocol[k] for k in ("context", "horizon", "clips", "samples")] == [TC, TF, 4, 2]
    assert set(metrics["methods"]) == {"model", "copy_last", "tokenizer_recon"}
    for values in metrics["methods"].values():
        assert len(values["psnr_per_step"]) == len(values["ssim_per_step"]) == TF
        assert values["lpips"] is None and values["fvd"] is None  # no weights given: never a number
    assert {"lpips", "fvd"} <= set(metrics["unavailable"])
    model = metrics["methods"]["model"]
    assert np.isfinite(model["reward_mse"]) and model["reward_mse"] >= 0
    assert ("reward_pearson" in model) != ("reward_pearson" in metrics["unavailable"])
    scores = np.load(out / "scores.npz")
    assert scores["model_psnr"].shape == (4, 2, TF) and scores["copy_last_psnr"].shape == (4, 1, TF)
    assert np.isclose(scores["model_psnr"].mean(), model["psnr"])  # mean aggregate = plain mean
    grid = iio.imread(out / "predictions.gif", index=None)
    assert len(grid) == TC + TF  # context frames then predicted frames
    html = (out / "report.html").read_text()
    assert "data:image/gif;base64," in html and "tokenizer_recon" in html


def test_only_predicted_frames_are_scored(model_dir: Path, tmp_path: Path) -> None:
    # One clip per episode: context frame A, then B for every future frame. Scoring the context too would
    # mix in a perfect frame; scoring only the future gives exactly PSNR(A, B) at every step for copy_last.
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(2))
    video = np.stack([a] * TC + [b] * TF)
    data = make_dataset(tmp_path / "two_phase", [video, video.copy()])
    metrics = run_eval(model_dir, data, tmp_path / "eval", samples=1)
    expected = float(psnr(torch.from_numpy(a), torch.from_numpy(b)))
    copy_last = metrics["methods"]["copy_last"]
    assert copy_last["psnr_per_step"] == pytest.approx([expected] * TF)
    assert copy_last["psnr"] == pytest.approx(expected) and expected < 15


def test_copy_last_is_perfect_on_a_static_video(model_dir: Path, tmp_path: Path) -> None:
    frame = smooth_videos(1, 1)[0][0]
    data = make_dataset(tmp_path / "static", [np.stack([frame] * 6)])
    copy_last = run_eval(model_dir, data, tmp_path / "eval", samples=1)["methods"]["copy_last"]
    assert copy_last["psnr"] == pytest.approx(80.0)  # identical frames: the 1e-8 cap, not inf
    assert copy_last["ssim"] == pytest.approx(1.0)


def test_best_of_k_is_at_least_the_mean(model_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    mean = run_eval(model_dir, data_dir, tmp_path / "mean", samples=3, aggregate="mean")["methods"]
    best = run_eval(model_dir, data_dir, tmp_path / "best", samples=3, aggregate="best")["methods"]
    assert best["model"]["psnr"] > mean["model"]["psnr"]  # untrained samples differ: best is strictly better
    assert best["model"]["ssim"] >= mean["model"]["ssim"]
    assert best["copy_last"] == mean["copy_last"]  # deterministic baselines have one sample


def test_pixel_mean_scores_the_mean_of_the_samples_as_one_prediction(model_dir: Path, data_dir: Path,
                                                                     tmp_path: Path) -> None:
    wm = WorldModel.load(model_dir)
    cfg = EvalConfig(model=model_dir, data=[data_dir], split="all", samples=3)
    batch = predict.collate_clips([predict.open_clips(cfg, wm)[i] for i in range(2)])
    each = predict.predict_batch(wm, batch, cfg, seed=5)
    pooled = predict.predict_batch(wm, batch, dataclasses.replace(cfg, aggregate="pixel_mean"), seed=5)
    assert each.frames["model"].shape[1] == 3 and pooled.frames["model"].shape[1] == 1
    assert (each.frames["model"][:, 0] != each.frames["model"][:, 1]).any()  # the samples differ
    mean = each.frames["model"].astype(np.float32).mean(axis=1, keepdims=True).round()
    np.testing.assert_array_equal(pooled.frames["model"], mean.astype(np.uint8))
    np.testing.assert_allclose(pooled.rewards, each.rewards.mean(axis=1, keepdims=True), rtol=1e-6)
    metrics = run_eval(model_dir, data_dir, tmp_path / "eval", samples=3, aggregate="pixel_mean")
    assert metrics["protocol"]["aggregate"] == "pixel_mean"
    scores = np.load(tmp_path / "eval" / "scores.npz")
    assert scores["model_psnr"].shape == (4, 1, TF)
    assert "pixel mean scored as one prediction" in (tmp_path / "eval" / "report.html").read_text()


def test_precision_reaches_the_rollouts_and_the_protocol(model_dir: Path, data_dir: Path, tmp_path: Path
                                                         ) -> None:
    float32 = run_eval(model_dir, data_dir, tmp_path / "f32", samples=1, clips=2, temperature=0.0)
    bf16 = run_eval(model_dir, data_dir, tmp_path / "bf16", samples=1, clips=2, temperature=0.0,
                    precision="bfloat16")
    assert (float32["protocol"]["precision"], bf16["protocol"]["precision"]) == ("float32", "bfloat16")
    assert bf16["methods"]["model"]["psnr"] != float32["methods"]["model"]["psnr"]  # computed differently
    assert abs(bf16["methods"]["model"]["psnr"] - float32["methods"]["model"]["psnr"]) < 3
    assert bf16["methods"]["copy_last"] == float32["methods"]["copy_last"]


def test_horizon_longer_than_trained_slides(model_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    metrics = run_eval(model_dir, data_dir, tmp_path / "eval", horizon=TF + 3, samples=1, clips=2)
    assert metrics["protocol"]["horizon"] == TF + 3
    assert len(metrics["methods"]["model"]["psnr_per_step"]) == TF + 3


def test_bad_inputs_are_named(model_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_eval(tmp_path / "nowhere", data_dir, tmp_path / "e1")
    big = make_dataset(tmp_path / "big", smooth_videos(2, 8, size=16), size=16)
    with pytest.raises(ValueError, match="16x16 but the world model expects 32x32"):
        run_eval(model_dir, big, tmp_path / "e2")
    wide = make_dataset(tmp_path / "wide", smooth_videos(2, 8), action_dim=ACTION_DIM + 2)
    with pytest.raises(ValueError, match="actions have 6 dims but the world model takes 4"):
        run_eval(model_dir, wide, tmp_path / "e3")
    free = make_dataset(tmp_path / "free", smooth_videos(2, 8), action_dim=None)
    with pytest.raises(ValueError, match="action-free video, but the world model is action-conditioned"):
        run_eval(model_dir, free, tmp_path / "e4")
    with pytest.raises(ValueError, match="lower --horizon"):
        run_eval(model_dir, data_dir, tmp_path / "e5", horizon=20)
    with pytest.raises(ValueError, match="conditions on exactly 1 context frame"):
        run_eval(model_dir, data_dir, tmp_path / "e6", context_frames=2)
    with pytest.raises(ValueError, match="no dataset folders"):
        evaluate_predictions(EvalConfig(model=model_dir, data=[], out=tmp_path / "e7"))
    with pytest.raises(ValueError, match="EvalConfig.samples"):
        EvalConfig(model=model_dir, data=[data_dir], samples=0)


class MeanAbsDiff(nn.Module):
    """Stand-in for the LPIPS network (real weights cannot be downloaded here): mean |x - y| per image."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).abs().mean(dim=(1, 2, 3))


def test_learned_metrics_are_reported_when_networks_are_given(
    model_dir: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stand-in networks test the plumbing (every method gets lpips, its curve and an FVD); the metric math
    # is tested in test_metrics.py and test_fvd.py.
    def fake_models(config: MetricsConfig, device: str) -> MetricModels:
        return MetricModels(LPIPSMetric(MeanAbsDiff()), lambda v: v.float().mean(dim=(1, 2, 3)), {})

    monkeypatch.setattr(predict, "load_metric_models", fake_models)
    metrics = run_eval(model_dir, data_dir, tmp_path / "eval")
    for values in metrics["methods"].values():
        assert values["lpips"] > 0 and len(values["lpips_per_step"]) == TF and values["fvd"] >= 0
    assert not {"lpips", "fvd"} & set(metrics["unavailable"])
    assert (tmp_path / "eval" / "lpips_per_step.png").is_file()


def test_reward_metrics_known_values() -> None:
    true = np.array([[0.0, 1.0, 2.0, 3.0]])
    values, reasons = reward_metrics(2 * true + 1, true)
    assert values["reward_pearson"] == pytest.approx(1.0) and reasons == {}
    assert values["reward_mse"] == pytest.approx(np.mean((true + 1) ** 2))
    values, reasons = reward_metrics(np.zeros_like(true), true)
    assert "reward_pearson" not in values and "predicted rewards are constant" in reasons["reward_pearson"]


def test_baseline_helpers(model_dir: Path) -> None:
    context = np.arange(2 * 2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 2, 4, 4, 3)
    copied = copy_last_frame(context, 3)
    assert copied.shape == (2, 3, 4, 4, 3) and (copied == context[:, -1:]).all()
    assert spread_indices(10, 3).tolist() == [0, 4, 9] and spread_indices(2, 5).tolist() == [0, 1]
    tokenizer = WorldModel.load(model_dir).tokenizer
    clip = torch.from_numpy(np.stack(smooth_videos(2, TC + 2)))
    recon = tokenizer_reconstruction(tokenizer, clip, TC)
    assert recon.shape == (2, 2, SIZE, SIZE, 3) and recon.dtype == np.uint8
