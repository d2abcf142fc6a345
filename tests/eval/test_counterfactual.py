"""Counterfactual evaluation: moving-pixel PSNR, action discrimination and the eval/report plumbing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ivideogpt.data.episode import Episode
from ivideogpt.data.store import DatasetWriter
from ivideogpt.eval import counterfactual
from ivideogpt.eval.counterfactual import (
    BranchPredictions,
    CounterfactualSheet,
    likelihood_discrimination,
    load_scenes,
    tokenizer_discrimination,
)
from ivideogpt.eval.metrics import moving_psnr, score_frames
from ivideogpt.world_model import WorldModel

from .test_predict import ACTION_DIM, SIZE, TC, TF, make_world_model, run_eval, smooth_videos

BRANCH_STEPS = 3


def test_moving_psnr_scores_only_what_changed_since_the_reference() -> None:
    reference = np.zeros((1, 16, 16, 3), np.uint8)
    truth = reference.copy()
    truth[0, 2:4, 2:4] = 255  # 4 moving pixels
    assert moving_psnr(torch.from_numpy(truth), torch.from_numpy(truth), torch.from_numpy(reference)) == 80.0
    # copying the reference is wrong by the full range on every moving pixel: 0 dB there
    assert abs(float(moving_psnr(torch.from_numpy(truth), torch.from_numpy(reference),
                                 torch.from_numpy(reference))[0])) < 1e-6
    assert torch.isnan(moving_psnr(torch.from_numpy(reference), torch.from_numpy(truth),
                                   torch.from_numpy(reference)))[0]  # nothing moved: no value
    clip_truth = np.stack([truth, reference])[None, :, 0]  # (1, 2, H, W, 3): moved, then back (no motion)
    scores = score_frames(clip_truth, clip_truth, reference=reference)
    assert scores.psnr_moving.shape == (1, 1, 2) and np.isnan(scores.psnr_moving[0, 0, 1])
    assert scores.summary("mean")["psnr_moving"] == 80.0  # the NaN step is left out of the mean


def branches(s: int = 2, k: int = 3, h: int = 2) -> np.ndarray:
    """(S, K, H, 16, 16, 3) futures where branch k's square sits in column 4k: truly different futures."""
    truth = np.zeros((s, k, h, 16, 16, 3), np.uint8)
    for b in range(k):
        truth[:, b, :, 4:8, 4 * b : 4 * b + 4] = 200
    return truth


def test_discrimination_is_one_when_predictions_follow_the_actions_and_half_when_they_do_not() -> None:
    truth = branches()
    context = np.zeros((2, 1, 16, 16, 3), np.uint8)
    follows = CounterfactualSheet()
    follows.add(BranchPredictions(truth, context, truth.copy(), truth.copy(), None), None)
    blind = CounterfactualSheet()  # the same future whatever the action: branch 0's for all
    same = np.repeat(truth[:, :1], 3, axis=1)
    blind.add(BranchPredictions(truth, context, same, same.copy(), None), None)  # a tokenizer as blind too
    m_follows, m_blind = follows.metrics()["mean"], blind.metrics()["mean"]
    assert m_follows["action_discrimination"] == 1.0
    assert m_blind["action_discrimination"] == 0.5
    assert m_follows["tokenizer_recon_discrimination"] == 1.0
    assert m_blind["tokenizer_recon_discrimination"] == 0.5
    assert m_blind["model_branch_psnr"] == 80.0 and m_follows["model_branch_psnr"] < 30
    assert m_follows["model_psnr_moving"] == 80.0
    assert m_follows["model_psnr"] > m_follows["model_psnr_other_actions"]


def write_branched(root: Path, scenes: int = 2, k: int = 3, branch_at: int = 2) -> Path:
    """A tiny counterfactual dataset: per scene, k episodes sharing their first branch_at + 1 frames."""
    rng = np.random.default_rng(0)
    video = smooth_videos(1, branch_at + 1 + BRANCH_STEPS)[0]
    extra = {"branches": k, "branch_steps": BRANCH_STEPS}
    with DatasetWriter(root, "test", SIZE, ACTION_DIM, fps=10.0, extra=extra) as writer:
        for scene in range(scenes):
            for b in range(k):
                frames = video.copy()
                frames[branch_at + 1 :] = np.roll(frames[branch_at + 1 :], 3 * b, axis=2)
                t = len(frames)
                actions = rng.uniform(-1, 1, (t, ACTION_DIM)).astype(np.float32)
                rewards = rng.uniform(0, 1, t).astype(np.float32)
                writer.add(Episode(frames, actions, rewards, np.zeros(t, bool), np.zeros(t, bool)),
                           task="reach-v3", policy="random", scene=scene, branch=b)
    return root


def test_eval_reports_the_counterfactual_figures(tmp_path: Path) -> None:
    model = make_world_model(tmp_path / "wm")
    data = write_branched(tmp_path / "cf")
    metrics = run_eval(model, data, tmp_path / "eval", counterfactual=data, samples=1)
    cf = metrics["counterfactual"]
    assert cf["protocol"]["scenes"] == 2 and cf["protocol"]["branches"] == 3
    for key in ("action_discrimination", "model_psnr_moving", "copy_last_psnr_moving",
                "tokenizer_recon_psnr_moving", "branch_psnr", "model_psnr_other_actions"):
        assert len(cf["per_step"][key]) == BRANCH_STEPS and cf["mean"][key] is not None, key
    assert 0.0 <= cf["mean"]["action_discrimination"] <= 1.0
    for key in ("likelihood_discrimination", "action_nll_gain"):  # teacher-forced: the trained frames only
        assert len(cf["per_step"][key]) == min(BRANCH_STEPS, TF) and cf["mean"][key] is not None, key
    assert "reward_pearson_own" in cf and "reward_pearson_other" in cf
    assert "psnr_moving" in metrics["methods"]["model"]
    for name in ("counterfactual.gif", "counterfactual.mp4", "counterfactual_per_step.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0
    assert "Counterfactual: do the actions count?" in (tmp_path / "eval" / "report.html").read_text()


def test_a_dataset_without_branches_is_refused_by_name(tmp_path: Path) -> None:
    from .test_predict import make_dataset

    data = make_dataset(tmp_path / "plain", smooth_videos(2, 6))
    with pytest.raises(ValueError, match="not a counterfactual dataset"):
        load_scenes(data, TC, None, ACTION_DIM)
    with pytest.raises(ValueError, match="horizon must be 1..3"):
        load_scenes(write_branched(tmp_path / "cf"), TC, 5, ACTION_DIM)


def test_tokenizer_discrimination_is_one_for_faithful_codes_and_half_for_codes_blind_to_the_branch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_branched(tmp_path / "cf", scenes=3, k=3)
    # reconstructions of (S*K, Tc + H) clips: the truth itself, or branch 0's future for every branch of a
    # scene (what a tokenizer would give if its codes could not tell branches apart)
    def faithful(tok, clips, tc):
        return clips[:, tc:].numpy()
    monkeypatch.setattr(counterfactual, "tokenizer_reconstruction", faithful)
    per_step = tokenizer_discrimination(None, root, TC, scenes=3, batch_scenes=2)
    assert len(per_step) == BRANCH_STEPS and all(v == 1.0 for v in per_step)

    def blind(tok, clips, tc):
        futures = clips[:, tc:].numpy()
        by_scene = futures.reshape(-1, 3, *futures.shape[1:])[:, :1]
        return np.repeat(by_scene, 3, axis=1).reshape(futures.shape)
    monkeypatch.setattr(counterfactual, "tokenizer_reconstruction", blind)
    assert all(v == 0.5 for v in tokenizer_discrimination(None, root, TC, scenes=3, batch_scenes=2))


def test_likelihood_discrimination_pairs_each_branch_with_its_own_actions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wm = WorldModel.load(make_world_model(tmp_path / "wm"))
    scenes = load_scenes(write_branched(tmp_path / "cf", scenes=2, k=3), TC, None, ACTION_DIM)
    rows = np.concatenate([sc.actions[:, :TF] for sc in scenes])  # (S*K, T, A) in the order rows are scored
    truth = torch.from_numpy(rows)

    def follows(context, future, actions):  # NLL: how far the actions are from the row's own
        return (actions - truth).square().sum(-1)
    monkeypatch.setattr(wm.transformer, "frame_nll", follows)
    closer, gain = likelihood_discrimination(wm, scenes)
    assert closer.shape == gain.shape == (2, 6, min(BRANCH_STEPS, TF))
    assert bool((closer == 1).all()) and bool((gain > 0).all())

    monkeypatch.setattr(wm.transformer, "frame_nll", lambda c, f, a: torch.ones(a.shape[:2]))
    closer, gain = likelihood_discrimination(wm, scenes)
    assert bool((closer == 0.5).all()) and bool((gain == 0).all())  # actions ignored: exactly chance


def test_several_samples_per_branch_are_scored_as_their_pixel_mean(tmp_path: Path) -> None:
    wm = WorldModel.load(make_world_model(tmp_path / "wm"))
    scenes = load_scenes(write_branched(tmp_path / "cf", scenes=2, k=3), TC, None, ACTION_DIM)
    sampling = {"temperature": 1.0}
    one = [counterfactual.predict_scenes(wm, scenes, 5 + 7919 * i, sampling) for i in range(3)]
    mean = counterfactual.predict_scenes(wm, scenes, 5, sampling, samples=3)
    expected = np.mean([p.model.astype(np.float32) for p in one], axis=0).round().astype(np.uint8)
    assert np.array_equal(mean.model, expected)
    assert not np.array_equal(one[0].model, one[1].model)  # really different samples, averaged
    np.testing.assert_allclose(mean.rewards, np.mean([p.rewards for p in one], axis=0), rtol=1e-6)
    assert np.array_equal(mean.truth, one[0].truth) and np.array_equal(mean.recon, one[0].recon)
