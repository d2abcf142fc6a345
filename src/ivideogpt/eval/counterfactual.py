"""Counterfactual evaluation: does the imagined future follow the actions it is given?

A model that ignores its actions can still beat copy-last on ordinary clips by extrapolating the motion
it sees in the context. The test that it cannot pass is a counterfactual one (docs/method.md §6): a scene
recorded in a simulator branches at one state into K continuations, each under its
own action sequence (`ivideogpt collect metaworld --branches K`). From the shared context frames the model
imagines every branch under that branch's actions, and is scored per predicted step on:

- `model_psnr` / `model_ssim` / `model_psnr_moving`: its prediction under a branch's own actions against
  that branch's real frames (moving: only the pixels where the truth differs from the last context frame);
  `copy_last_*` and `tokenizer_recon_*` on the same frames (the tokenizer's reconstruction of the true
  branch is the ceiling of any transformer on top of it).
- `action_discrimination`: over ordered pairs of branches (k, j), the share where the prediction under
  k's actions is closer (MSE) to k's truth than the prediction under j's actions is; ties count half, so
  a model that ignores its actions scores exactly 0.5.
- `model_psnr_other_actions`: PSNR of the prediction under another branch's actions against a branch's
  truth; `model_psnr` minus it is Genie's Delta-PSNR controllability.
- `tokenizer_recon_discrimination`: the discrimination test on the tokenizer's reconstructions of the
  branches, the ceiling a transformer on its codes can reach.
- `likelihood_discrimination` / `action_nll_gain`: the test without sampling, over the trained future
  frames: is each branch's real future (as codes) likelier under its own actions than under another
  branch's (`likelihood_discrimination`), and by how many nats per step. Noise-free, it shows whether
  training is teaching the actions long before the samples do.
- `branch_psnr`: the real branches against each other (how different the futures really are), and
  `model_branch_psnr`: the model's predictions against each other (how different it imagines them).
- Rewards: Pearson correlation of the predicted rewards with a branch's real ones under its own actions
  (`reward_pearson_own`) and under the other branches' actions (`reward_pearson_other`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ivideogpt.data.frames import to_model
from ivideogpt.data.store import EpisodeStore, read_meta
from ivideogpt.eval.baselines import tokenizer_reconstruction
from ivideogpt.eval.metrics import finite_mean, moving_psnr, psnr, ssim
from ivideogpt.eval.scores import pixel_mean, reward_metrics, spread_indices
from ivideogpt.media import add_label, hstack_videos, tile_videos
from ivideogpt.modes import eval_mode
from ivideogpt.tokenizer import VideoTokenizer
from ivideogpt.world_model import WorldModel

SHOWN_BRANCHES = 3  # branches per scene in the video grid


@dataclass
class Scene:
    """One counterfactual scene: K branches from a shared context."""

    frames: np.ndarray  # uint8 (K, Tc + H, H_img, W_img, 3): shared context, then each branch's future
    actions: np.ndarray  # float32 (K, H, A): row t produced future frame t
    rewards: np.ndarray | None  # float32 (K, H) real rewards, None where the data has none
    task: str | None
    policies: list[str]  # each branch's policy


def load_scenes(root: str | Path, num_context: int, horizon: int | None, action_dim: int | None = None
                ) -> list[Scene]:
    """The scenes of a counterfactual dataset, cut to `num_context` context frames + `horizon` steps, actions
    zero-padded to `action_dim` (None: the data's own size).

    Raises:
        ValueError: the folder is not a counterfactual dataset (no `branch_steps`, no scenes), the horizon
            is longer than its branches, the branch point leaves too few context frames, or the actions
            do not fit the model.
    """
    meta = read_meta(root)
    steps = meta.extra.get("branch_steps")
    if not isinstance(steps, int):
        raise ValueError(  # noqa: TRY004 (a dataset of another kind, not an argument of the wrong type)
            f"{root}: not a counterfactual dataset (meta.json extra has no 'branch_steps'); "
            "record one with `ivideogpt collect metaworld --branches K`")
    horizon = steps if horizon is None else horizon
    if not 1 <= horizon <= steps:
        raise ValueError(f"{root}: branches are {steps} steps long; the horizon must be 1..{steps}, "
                         f"got {horizon}")
    action_dim = meta.action_dim if action_dim is None else action_dim
    if meta.action_dim is None or meta.action_dim > action_dim:
        raise ValueError(f"{root}: actions have {meta.action_dim} dims but the world model takes "
                         f"{action_dim}")
    by_scene: dict[int, list[int]] = defaultdict(list)
    for i, entry in enumerate(meta.episodes):
        if entry.scene is not None:
            by_scene[entry.scene].append(i)
    if not by_scene:
        raise ValueError(f"{root}: no episode has a scene id; not a counterfactual dataset")
    store = EpisodeStore(root)
    scenes = []
    for scene_id in sorted(by_scene):
        entries = sorted(by_scene[scene_id], key=lambda i: meta.episodes[i].branch or 0)
        if len(entries) < 2:
            continue  # one branch has nothing to be told apart from
        episodes = [store[i] for i in entries]
        branch_at = len(episodes[0]) - steps - 1  # frame index of the state the branches share
        if branch_at + 1 < num_context:
            raise ValueError(f"{root}: scene {scene_id} branches after {branch_at} steps, fewer than the "
                             f"{num_context} context frames the model needs")
        span = slice(branch_at + 1 - num_context, branch_at + 1 + horizon)
        future = slice(branch_at + 1, branch_at + 1 + horizon)
        actions = np.stack([ep.actions[future] for ep in episodes])
        actions = np.pad(actions, ((0, 0), (0, 0), (0, action_dim - actions.shape[-1])))  # as in training
        has_rewards = all(ep.rewards is not None for ep in episodes)
        scenes.append(Scene(
            frames=np.stack([ep.frames[span] for ep in episodes]),
            actions=actions.astype(np.float32),
            rewards=np.stack([ep.rewards[future] for ep in episodes]) if has_rewards else None,
            task=meta.episodes[entries[0]].task,
            policies=[meta.episodes[i].policy or "?" for i in entries],
        ))
    return scenes


@dataclass
class BranchPredictions:
    """Predictions for one batch of S scenes of K branches."""

    truth: np.ndarray  # uint8 (S, K, H, h, w, 3)
    context: np.ndarray  # uint8 (S, Tc, h, w, 3)
    model: np.ndarray  # uint8 (S, K, H, h, w, 3): under branch k's actions
    recon: np.ndarray  # uint8 (S, K, H, h, w, 3): the tokenizer's reconstruction of branch k's truth
    rewards: np.ndarray | None  # float (S, K, H) predicted under branch k's actions


def predict_scenes(wm: WorldModel, scenes: list[Scene], seed: int, sampling: dict[str, Any] | None = None,
                   samples: int = 1) -> BranchPredictions:
    """Imagine every branch of `scenes` (same K) in one batched rollout from their shared contexts;
    `sampling` overrides the model's defaults (`WorldModel.rollout`'s temperature, top_k, action_guidance).
    With `samples` > 1 the prediction is the pixel mean of that many sampled futures (and rewards): the
    squared-error-optimal guess of a stochastic model, whose single samples scatter around it."""
    tc = wm.num_context_frames
    s, k = len(scenes), scenes[0].frames.shape[0]
    frames = np.stack([sc.frames for sc in scenes])  # (S, K, Tc + H, h, w, 3)
    context = frames[:, 0, :tc]
    actions = np.stack([sc.actions for sc in scenes]).reshape(s * k, *scenes[0].actions.shape[1:])
    outs = [wm.rollout(context.repeat(k, axis=0), actions, seed=seed + 7919 * i, **(sampling or {}))
            for i in range(samples)]  # 7919: a prime keeps the sample seeds apart from the batch seeds
    imagined = pixel_mean(np.stack([o.frames for o in outs]), axis=0)
    horizon = actions.shape[1]
    clips = torch.from_numpy(frames.reshape(s * k, *frames.shape[2:]))  # (S*K, Tc + H, h, w, 3)
    recon = tokenizer_reconstruction(wm.tokenizer, clips, tc)
    rewards = None if outs[0].rewards is None else np.mean([o.rewards for o in outs], axis=0)
    return BranchPredictions(frames[:, :, tc:], context, imagined.reshape(s, k, *imagined.shape[1:]),
                             recon.reshape(s, k, *recon.shape[1:]),
                             None if rewards is None else rewards.reshape(s, k, horizon))


class CounterfactualSheet:
    """Accumulates the per-step counterfactual scores over batches of scenes."""

    def __init__(self) -> None:
        self.values: dict[str, list[np.ndarray]] = defaultdict(list)  # name -> [(N, H) per batch]
        self.rewards: list[tuple[np.ndarray, np.ndarray]] = []  # (predicted (S, K, H), true (S, K, H))

    def add(self, pred: BranchPredictions, true_rewards: np.ndarray | None,
            likelihood: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """One batch: its predictions, real rewards (S, K, H) and `likelihood_discrimination`'s result."""
        if likelihood is not None:
            self._put("likelihood_discrimination", likelihood[0])
            self._put("action_nll_gain", likelihood[1])
        truth, model = torch.from_numpy(pred.truth), torch.from_numpy(pred.model)
        k = truth.shape[1]
        last = torch.from_numpy(pred.context[:, -1])[:, None, None].expand_as(truth)  # (S, K, H, ...)
        methods = {"model": model, "copy_last": last, "tokenizer_recon": torch.from_numpy(pred.recon)}
        for method, frames in methods.items():
            self._put(f"{method}_psnr", psnr(truth, frames))
            self._put(f"{method}_ssim", ssim(truth, frames))
            self._put(f"{method}_psnr_moving", moving_psnr(truth, frames, last))
        closer, mse_other = _discrimination(truth, model)
        self._put("action_discrimination", closer)
        self._put("model_psnr_other_actions", 10.0 * torch.log10(1.0 / (mse_other + 1e-8)))
        # the same test on the tokenizer's reconstructions of the branches: the most a transformer on
        # these codes could reach (a perfect one would imagine exactly these frames)
        self._put("tokenizer_recon_discrimination", _discrimination(truth, methods["tokenizer_recon"])[0])
        pairs = torch.triu(torch.ones(k, k, dtype=torch.bool), diagonal=1)  # unordered pairs k < j
        ii, jj = pairs.nonzero(as_tuple=True)
        self._put("branch_psnr", psnr(truth[:, ii], truth[:, jj]))
        self._put("model_branch_psnr", psnr(model[:, ii], model[:, jj]))
        if pred.rewards is not None and true_rewards is not None:
            self.rewards.append((pred.rewards, true_rewards))

    def _put(self, name: str, values: torch.Tensor) -> None:
        self.values[name].append(values.double().reshape(-1, values.shape[-1]).numpy())  # (N, H)

    def metrics(self) -> dict[str, Any]:
        """`{"per_step": {name: [H]}, "mean": {name: float}, reward figures}`.

        NaNs (no moving pixel) are skipped.
        """
        per_step, mean = {}, {}
        for name, parts in self.values.items():
            values = np.concatenate(parts)  # (N, H)
            per_step[name] = [finite_mean(v) for v in values.T]
            mean[name] = finite_mean(values)
        out: dict[str, Any] = {"per_step": per_step, "mean": mean}
        if self.rewards:
            pred = np.concatenate([p for p, _ in self.rewards])  # (S, K, H)
            true = np.concatenate([t for _, t in self.rewards])
            k = pred.shape[1]
            own, _ = reward_metrics(pred, true)
            other_pairs = [(j, i) for i in range(k) for j in range(k) if i != j]
            other, _ = reward_metrics(np.stack([pred[:, j] for j, _ in other_pairs]),
                                      np.stack([true[:, i] for _, i in other_pairs]))
            out |= {"reward_pearson_own": own.get("reward_pearson"), "reward_mse_own": own["reward_mse"],
                    "reward_pearson_other": other.get("reward_pearson"),
                    "reward_mse_other": other["reward_mse"]}
        return out


def evaluate_counterfactual(wm: WorldModel, root: str | Path, *, scenes: int = 64, horizon: int | None = None,
                            batch_scenes: int = 8, seed: int = 0, sampling: dict[str, Any] | None = None,
                            video_scenes: int = 4, samples: int = 1
                            ) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Score `wm` on up to `scenes` scenes of the counterfactual dataset `root` (`sampling`: overrides of
    the model's default sampling, and `samples`, as `predict_scenes` takes them).

    Returns:
        The metrics (see `CounterfactualSheet.metrics`, plus a "protocol" entry), and per shown scene a
        video `(Tc + H, h, w', 3)`: one row per branch, truth | model under that branch's actions.
    """
    tc = wm.num_context_frames
    picked = _pick_scenes(root, tc, horizon, wm.action_dim, scenes)
    k = picked[0].frames.shape[0]
    sheet, videos = CounterfactualSheet(), []
    for n, start in enumerate(tqdm(range(0, len(picked), batch_scenes), desc="counterfactual", unit="batch")):
        batch = picked[start : start + batch_scenes]
        pred = predict_scenes(wm, batch, seed + n, sampling, samples)
        has_rewards = all(sc.rewards is not None for sc in batch)
        true_rewards = np.stack([sc.rewards for sc in batch]) if has_rewards else None
        sheet.add(pred, true_rewards, likelihood_discrimination(wm, batch) if wm.action_dim else None)
        for i, sc in enumerate(batch):
            if len(videos) < video_scenes:
                rows = []
                for b in range(min(k, SHOWN_BRANCHES)):
                    policy = sc.policies[b].split("_")[0]  # expert / smooth / random: fits a 64-pixel label
                    truth = np.concatenate([add_label(pred.context[i], "context"),
                                            add_label(pred.truth[i, b], f"real {policy}")])
                    model = np.concatenate([add_label(pred.context[i], "context"),
                                            add_label(pred.model[i, b], f"model {policy}")])
                    rows.append(hstack_videos([truth, model]))
                videos.append(tile_videos(rows, cols=1))
    metrics = sheet.metrics()
    metrics["protocol"] = {"data": str(root), "scenes": len(picked), "branches": k, "context": tc,
                           "horizon": picked[0].actions.shape[1], "seed": seed, "samples": samples,
                           "tasks": sorted({sc.task for sc in picked if sc.task})}
    return metrics, videos


def tokenizer_discrimination(tokenizer: VideoTokenizer, root: str | Path, num_context: int = 2,
                             horizon: int | None = None, scenes: int = 64, batch_scenes: int = 8
                             ) -> list[float]:
    """Per step, the `tokenizer_recon_discrimination` of a tokenizer alone on a counterfactual dataset: how
    often its reconstruction of a branch is closer to that branch's truth than its reconstruction of another
    branch is (0.5: the codes lose what the actions did; 1: they keep it)."""
    picked = _pick_scenes(root, num_context, horizon, None, scenes)
    closer = []
    for start in range(0, len(picked), batch_scenes):
        frames = np.stack([sc.frames for sc in picked[start : start + batch_scenes]])  # (S, K, T, ...)
        recon = tokenizer_reconstruction(tokenizer, torch.from_numpy(frames.reshape(-1, *frames.shape[2:])),
                                         num_context)
        truth = torch.from_numpy(frames[:, :, num_context:])
        closer.append(_discrimination(truth, torch.from_numpy(recon.reshape(truth.shape)))[0].flatten(0, 1))
    return [finite_mean(v) for v in torch.cat(closer).T.numpy()]


def likelihood_discrimination(wm: WorldModel, scenes: list[Scene]) -> tuple[torch.Tensor, torch.Tensor]:
    """Action discrimination without sampling: does the transformer find each branch's true codes likelier
    under that branch's actions than under another's?

    Each branch's real frames are tokenized and scored teacher-forced (`Transformer.frame_nll`) under the
    actions of every branch of its scene, over the first min(H, trained future frames) steps. Free of
    sampling noise, this shows an action dependence too weak (or too diffuse over the codes) to change a
    sample, and so tells whether training is getting anywhere before the rollouts do.

    Returns:
        Over ordered branch pairs (k, j), k != j, per step t, two (S, K*(K-1), T) tensors: whether branch
        k's codes up to step t are likelier (summed NLL) under k's actions than under j's (1, ties 0.5),
        and by how many nats (the NLL under j's actions minus under k's, of step t alone).
    """
    tc, k = wm.num_context_frames, scenes[0].frames.shape[0]
    steps = min(scenes[0].actions.shape[1], wm.spec.future_frames)
    model, device = wm.transformer, wm.device
    clips = torch.from_numpy(np.stack([sc.frames[:, : tc + steps] for sc in scenes]))  # (S, K, T', h, w, 3)
    with eval_mode(wm.tokenizer, model):
        context, future = wm.tokenizer.tokenize(to_model(clips.flatten(0, 1).to(device)), tc)
        context, future = context.flatten(2), future.flatten(2)  # (S*K, Tc, N), (S*K, T, n)
        actions = torch.from_numpy(np.stack([sc.actions[:, :steps] for sc in scenes])).to(device)
        nll = torch.stack([  # nll[s, k, j, t]: branch k's codes under branch j's actions
            model.frame_nll(context, future, actions[:, j : j + 1].expand(-1, k, -1, -1).flatten(0, 1))
            .view(len(scenes), k, steps) for j in range(k)], dim=2).double().cpu()
    own = torch.diagonal(nll, dim1=1, dim2=2).permute(0, 2, 1)[:, :, None]  # (S, K, 1, T)
    own_cum, cum = own.cumsum(-1), nll.cumsum(-1)
    closer = (own_cum < cum).double() + 0.5 * (own_cum == cum).double()
    off = ~torch.eye(k, dtype=torch.bool)
    return closer[:, off], (nll - own)[:, off]


def _discrimination(truth: torch.Tensor, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Over ordered branch pairs (k, j), k != j: whether the prediction for k is closer (MSE) to k's truth
    than the prediction for j is (1, ties 0.5), and that MSE of j's prediction against k's truth.

    Args:
        truth, pred: uint8 `(S, K, H, h, w, 3)`.

    Returns:
        Two `(S, K*(K-1), H)` tensors.
    """
    k = truth.shape[1]
    # mse[s, k, j, t]: branch k's truth against the prediction for branch j
    diff = (truth[:, :, None].double() - pred[:, None].double()).div(255.0)  # (S, K, K, H, h, w, 3)
    mse = diff.square().mean(dim=(-3, -2, -1))
    own = torch.diagonal(mse, dim1=1, dim2=2).permute(0, 2, 1)  # (S, K, H)
    off = ~torch.eye(k, dtype=torch.bool)
    closer = (own[:, :, None] < mse).double() + 0.5 * (own[:, :, None] == mse).double()  # (S, K, K, H)
    return closer[:, off], mse[:, off]


def _pick_scenes(root: str | Path, num_context: int, horizon: int | None, action_dim: int | None,
                 scenes: int) -> list[Scene]:
    """Up to `scenes` scenes spread evenly over the dataset, each cut to the branch count they all have."""
    all_scenes = load_scenes(root, num_context, horizon, action_dim)
    picked = [all_scenes[i] for i in spread_indices(len(all_scenes), scenes)]
    k = min(sc.frames.shape[0] for sc in picked)
    return [_first_branches(sc, k) for sc in picked]


def _first_branches(scene: Scene, k: int) -> Scene:
    rewards = None if scene.rewards is None else scene.rewards[:k]
    return Scene(scene.frames[:k], scene.actions[:k], rewards, scene.task, scene.policies[:k])

