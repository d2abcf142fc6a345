"""Video-prediction evaluation (`ivideogpt eval`): roll a world model out on held-out clips and score it.

Protocol. Clips of `Tc` context + `horizon` future frames are taken from the chosen split of the dataset
folders (split by episode, as in training), spread evenly over it. The model gets the `Tc` real context
frames and the real actions of the future steps, imagines `samples` futures per clip, and only the
imagined frames are scored against the truth (the reference code also averaged over the given context
frames, which inflates every number). K samples per clip are reduced by the mean of their scores
(default), by the best sample per clip and metric (`aggregate="best"`, the literature's best-of-100
protocol), or scored as one prediction, their pixel mean (`aggregate="pixel_mean"`: the squared-error-optimal
guess of a stochastic model, as the counterfactual eval's `counterfactual_samples`).

Two baselines run on the same clips:
- `copy_last`: the last context frame repeated; a model that does not beat it has learned no motion.
- `tokenizer_recon`: the world model's own tokenizer encoding and decoding the true future given the true
  context, i.e. the best any transformer on top of this tokenizer could score (the ceiling).

Outputs in `out/`: metrics.json (schema of `ivideogpt.eval.report`), `<metric>_per_step.png`, a labelled
video grid (truth | model | copy-last) as GIF and MP4, scores.npz (every score per clip, sample and step,
to re-aggregate without re-running) and report.html.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ivideogpt.atomic import atomic_path, check_writable
from ivideogpt.data.clips import ClipBatch, ClipConfig, ClipDataset, EmptySplitError, Split, collate_clips
from ivideogpt.data.store import read_meta
from ivideogpt.device import resolve_device
from ivideogpt.eval.baselines import copy_last_frame, tokenizer_reconstruction
from ivideogpt.eval.counterfactual import evaluate_counterfactual
from ivideogpt.eval.metrics import Aggregate, MetricsConfig, load_metric_models
from ivideogpt.eval.report import AGGREGATES, format_metric, write_report
from ivideogpt.eval.scores import Predictions, ScoreSheet, pixel_mean, spread_indices
from ivideogpt.media import add_label, hstack_videos, save_video, tile_videos
from ivideogpt.precision import Precision
from ivideogpt.world_model import WorldModel

# what an evaluation writes in its output folder: an earlier one's are replaced only with --overwrite
OUTPUT_FILES = ("metrics.json", "scores.npz", "report.html", "predictions.gif", "predictions.mp4",
                "psnr_per_step.png", "ssim_per_step.png", "lpips_per_step.png", "psnr_moving_per_step.png",
                "counterfactual.gif", "counterfactual.mp4", "counterfactual_per_step.png")
GRID_COLUMNS = (("truth", "truth"), ("model", "model"), ("copy_last", "copy last"))  # (method, label)
METRIC_NAMES = ("psnr", "ssim", "psnr_moving", "lpips", "fvd")  # the headline metrics of every method
VIDEO_SCALE = {".gif": 2, ".mp4": 4}  # nearest-neighbour upscale per format (64x64 frames are tiny)


@dataclass
class EvalConfig:
    """Everything `ivideogpt eval` needs."""

    model: Path  # world-model folder (or a run folder holding world_model/)
    data: list[Path] = field(default_factory=list)  # dataset folders to draw the test clips from
    counterfactual: Path | None = None  # scenes of `collect metaworld --branches K`: do the actions count?
    counterfactual_scenes: int = 64  # scenes scored from `counterfactual`, spread evenly over it
    # sampled futures per branch; > 1 scores their pixel mean (the squared-error-optimal prediction)
    counterfactual_samples: int = 1
    out: Path = Path("eval")  # output folder: metrics.json, plots, video grid, report.html
    split: Split = "val"  # episodes to test on: "val" (held out), "train" or "all"
    val_fraction: float | None = None  # held-out share of episodes; None: the model's recorded one, else 0.1
    split_seed: int | None = None  # seed of the episode split; None: the model's recorded one, else 0
    context_frames: int | None = None  # Tc real frames given; None: the model's (it must be the model's)
    horizon: int | None = None  # frames to predict; None: the trained future frames (longer ones slide)
    clips: int = 64  # test clips, spread evenly over the split (fewer if the split has fewer)
    samples: int = 1  # K sampled futures per clip
    aggregate: Aggregate = "mean"  # reduce the K samples: "mean", "best" per clip and metric, or "pixel_mean"
    batch_size: int = 16  # rollouts per forward pass (a batch holds batch_size // samples clips, >= 1)
    seed: int = 0  # seeds the sampling; the same seed and batch size give the same report
    temperature: float | None = None  # sampling temperature; None: the model's default
    top_k: int | None = None  # top-k sampling; None: the model's default
    action_guidance: float | None = None  # action guidance w (transformer/sampling.py); None: the model's
    still_split: bool | None = None  # greedy decides still-or-moved first (transformer/fast_decode.py)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)  # LPIPS/I3D weights (aggregate unused)
    video_clips: int = 8  # clips shown in the video grid
    video_fps: float = 8.0  # playback rate of the video grid
    note: str = ""  # free text shown with the protocol in the report (e.g. where the test data came from)
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda", "cuda:N"
    precision: Precision = "float32"  # rollout arithmetic (WorldModel.precision); bfloat16 for GPUs/AMX CPUs
    overwrite: bool = False  # replace an earlier evaluation's files in `out`

    def __post_init__(self) -> None:
        self.model, self.out = Path(self.model), Path(self.out)
        self.data = [Path(d) for d in self.data]
        if self.split not in ("train", "val", "all"):
            raise ValueError(f"EvalConfig.split must be 'train', 'val' or 'all', got {self.split!r}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"EvalConfig.aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")
        self.counterfactual = None if self.counterfactual is None else Path(self.counterfactual)
        for name in ("clips", "samples", "batch_size", "video_clips", "counterfactual_scenes",
                     "counterfactual_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"EvalConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("context_frames", "horizon"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"EvalConfig.{name} must be >= 1 or None, got {value}")
        if self.val_fraction is not None and not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"EvalConfig.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.temperature is not None and not self.temperature >= 0:
            raise ValueError(f"EvalConfig.temperature must be >= 0 or None, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"EvalConfig.top_k must be >= 1 or None, got {self.top_k}")
        if self.action_guidance is not None and not self.action_guidance >= 0:
            raise ValueError(f"EvalConfig.action_guidance must be >= 0 or None, got {self.action_guidance}")
        if not self.video_fps > 0:
            raise ValueError(f"EvalConfig.video_fps must be > 0, got {self.video_fps}")

    def sampling_overrides(self) -> dict[str, Any]:
        """The sampling settings given here, as `WorldModel.rollout` keywords (None keeps the model's)."""
        return {"temperature": self.temperature, "top_k": self.top_k, "action_guidance": self.action_guidance,
                "still_split": self.still_split}


def evaluate_predictions(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate a world model's video prediction and write the report folder `cfg.out`.

    Returns:
        The metrics dict written to metrics.json (see `ivideogpt.eval.report` for the schema). The model
        entry also holds `reward_mse` and `reward_pearson` when the data has rewards and the model a reward
        head.

    Raises:
        FileNotFoundError: no world model or dataset at the given paths.
        FileExistsError: `cfg.out` holds an earlier evaluation and `cfg.overwrite` is off.
        OSError: `cfg.out` cannot be written (checked before any rollout), naming the path.
        ValueError: no data, frames of another size than the model's, actions of another size, episodes
            too short for a clip, or a context length the model was not trained with.
    """
    if not cfg.data:
        raise ValueError("EvalConfig.data: no dataset folders given (--data DIR [DIR ...])")
    _claim_output(cfg.out, cfg.overwrite)
    device = resolve_device(cfg.device)
    wm = WorldModel.load(cfg.model, device)
    wm.precision = cfg.precision
    data = open_clips(cfg, wm)
    picks = spread_indices(len(data), cfg.clips)
    if len(picks) < cfg.clips:
        print(f"eval: the {cfg.split} split has only {len(picks)} clips; evaluating all of them")
    shown = spread_indices(len(picks), cfg.video_clips)  # positions (among the picks) of the grid's clips
    scores = ScoreSheet(load_metric_models(cfg.metrics, device), shown)
    clips_per_batch = max(1, cfg.batch_size // cfg.samples)
    starts = range(0, len(picks), clips_per_batch)
    for n, start in enumerate(tqdm(starts, desc="eval rollouts", unit="batch")):
        batch = collate_clips([data[int(i)] for i in picks[start : start + clips_per_batch]])
        predictions = predict_batch(wm, batch, cfg, seed=cfg.seed + n)
        scores.add(batch, predictions, wm.num_context_frames)
    metrics = {"protocol": _protocol(cfg, wm, data, len(picks)), **scores.metrics(cfg.aggregate)}
    media = {"truth | model | copy last": _write_videos(cfg.out, scores.videos, wm.num_context_frames,
                                                        cfg.video_fps)[0]}
    if cfg.counterfactual is not None:
        metrics["counterfactual"], videos = evaluate_counterfactual(
            wm, cfg.counterfactual, scenes=cfg.counterfactual_scenes, horizon=cfg.horizon, seed=cfg.seed,
            batch_scenes=max(1, cfg.batch_size // 4), sampling=cfg.sampling_overrides(),
            samples=cfg.counterfactual_samples)
        grid = tile_videos(videos, cols=2)
        saved = [save_video(cfg.out / f"counterfactual{suffix}", grid, cfg.video_fps, scale)
                 for suffix, scale in VIDEO_SCALE.items()]
        media["counterfactual: one context; each branch's real future | "
              "the model under its actions"] = saved[0]
    with atomic_path(cfg.out / "scores.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **scores.arrays())
    report = write_report(cfg.out, metrics, media)
    _print_summary(metrics, report)
    return metrics


# ------------------------------------------------------------------------------------- data


def open_clips(cfg: EvalConfig, wm: WorldModel) -> ClipDataset:
    """The test clips (context + horizon frames) of `cfg.split`, checked against the model."""
    tc = wm.num_context_frames
    if cfg.context_frames is not None and cfg.context_frames != tc:
        raise ValueError(f"EvalConfig.context_frames={cfg.context_frames}, but the world model at "
                         f"{cfg.model} conditions on exactly {tc} context frame(s) (world_model.json "
                         "context_frames)")
    for root in cfg.data:
        _check_source(root, wm)
    recorded = _recorded_split(wm.spec.provenance)
    clip_cfg = ClipConfig(
        context_frames=tc,
        future_frames=cfg.horizon or wm.spec.future_frames,
        val_fraction=_first(cfg.val_fraction, recorded.get("val_fraction"), ClipConfig.val_fraction),
        split_seed=_first(cfg.split_seed, recorded.get("split_seed"), ClipConfig.split_seed),
    )
    if cfg.split == "val" and clip_cfg.val_fraction == 0:
        raise ValueError("EvalConfig: val_fraction is 0, so the 'val' split is empty; use --split all or set "
                         "--val-fraction")
    try:
        with warnings.catch_warnings():  # skipped short episodes are reported below, once
            warnings.simplefilter("ignore")
            data = ClipDataset(cfg.data, clip_cfg, cfg.split, action_dim=wm.action_dim or None)
    except EmptySplitError as e:
        raise EmptySplitError(f"{e}; or score every episode with --split all") from e
    except ValueError as e:
        raise ValueError(f"{e}. A clip is {tc} context + {clip_cfg.future_frames} predicted frames; lower "
                         "--horizon for shorter episodes") from e
    if data.skipped_episodes:
        print(f"eval: skipped {data.skipped_episodes} episode(s) shorter than a clip "
              f"({clip_cfg.span} frames)")
    return data


def _check_source(root: Path, wm: WorldModel) -> None:
    meta = read_meta(root)  # raises, naming the folder, when it is not a dataset
    h, a = wm.image_size, wm.action_dim
    if meta.image_size != h:
        raise ValueError(f"{root}: frames are {meta.image_size}x{meta.image_size} but the world model "
                         f"expects {h}x{h}; evaluate on data of the model's size")
    if a > 0 and meta.action_dim is None:
        raise ValueError(f"{root}: action-free video, but the world model is action-conditioned "
                         f"(action_dim={a}); it needs the real actions")
    if a > 0 and meta.action_dim > a:
        raise ValueError(f"{root}: actions have {meta.action_dim} dims but the world model takes {a}")
    if a > 0 and meta.action_dim < a:
        print(f"eval: {root}: {meta.action_dim}-dim actions are zero-padded to the model's {a} "
              "(as in mixed-dataset training)")


def _recorded_split(provenance: dict[str, Any]) -> dict[str, Any]:
    """val_fraction/split_seed the model was trained with, where its provenance records them."""
    clips = provenance.get("clips")
    source = clips if isinstance(clips, dict) else provenance
    return {k: source[k] for k in ("val_fraction", "split_seed") if isinstance(source.get(k), (int, float))}


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


# ------------------------------------------------------------------------------------- predictions


def predict_batch(wm: WorldModel, batch: ClipBatch, cfg: EvalConfig, seed: int) -> Predictions:
    """The model's K futures and both baselines for a batch of clips (context frames are not scored).

    Args:
        wm: the world model.
        batch: clips of Tc context + T future frames; actions row t produced frame t.
        cfg: samples and the sampling overrides.
        seed: seeds this batch's sampling.
    """
    tc, k = wm.num_context_frames, cfg.samples
    context = batch.frames[:, :tc].numpy()  # (B, Tc, H, W, 3)
    b, t = context.shape[0], batch.frames.shape[1] - tc
    actions = batch.actions[:, tc:].numpy().repeat(k, axis=0) if wm.action_dim else None  # (B*K, T, A)
    out = wm.rollout(context.repeat(k, axis=0), actions, horizon=t, seed=seed, **cfg.sampling_overrides())
    model = out.frames.reshape(b, k, t, *out.frames.shape[2:])
    rewards = None if out.rewards is None else out.rewards.reshape(b, k, t)
    if cfg.aggregate == "pixel_mean":  # the squared-error-optimal guess from K samples, scored as one
        model = pixel_mean(model, axis=1)[:, None]
        rewards = None if rewards is None else rewards.mean(axis=1, keepdims=True)
    frames = {
        "model": model,
        "copy_last": copy_last_frame(context, t)[:, None],
        "tokenizer_recon": tokenizer_reconstruction(wm.tokenizer, batch.frames, tc)[:, None],
    }
    return Predictions(frames, rewards)


# ------------------------------------------------------------------------------------- outputs


def _claim_output(out: Path, overwrite: bool) -> None:
    """Refuse to replace an earlier evaluation's files unless `overwrite`; check `out` can be written.

    Other files in `out` are left alone (the demo writes its episodes beside its evaluation).
    """
    earlier = [name for name in OUTPUT_FILES if (out / name).exists()]
    if earlier and not overwrite:
        raise FileExistsError(f"{out}: holds an earlier evaluation ({', '.join(earlier)}); pass --overwrite "
                              "to replace it, or choose another --out")
    check_writable(out)


def _protocol(cfg: EvalConfig, wm: WorldModel, data: ClipDataset, clips: int) -> dict[str, Any]:
    sampling = wm.sampling_config(**cfg.sampling_overrides())
    return {
        "context": wm.num_context_frames,
        "horizon": data.cfg.future_frames,
        "clips": clips,
        "samples": cfg.samples,
        "aggregate": cfg.aggregate,
        "model": str(cfg.model),
        "data": ", ".join(str(d) for d in cfg.data),
        "split": f"{cfg.split} (val_fraction {data.cfg.val_fraction}, split_seed {data.cfg.split_seed})",
        "trained_future_frames": wm.spec.future_frames,
        "sampling": f"temperature {sampling.temperature}, top_k {sampling.top_k}, action guidance "
                    f"{sampling.action_guidance}, still split {sampling.still_split}, seed {cfg.seed}",
        "precision": wm.precision,
        "scoring": "only predicted frames are scored; copy_last repeats the last context frame; "
                   "tokenizer_recon encodes and decodes the true future given the true context (the ceiling)",
    } | ({"note": cfg.note} if cfg.note else {})


def _write_videos(out: Path, videos: list[dict[str, np.ndarray]], num_context: int, fps: float) -> list[Path]:
    """The labelled grid (one row per clip: truth | model | copy last) as GIF and MP4."""
    rows = [hstack_videos([_label(clip[method], num_context, label) for method, label in GRID_COLUMNS])
            for clip in videos]
    grid = tile_videos(rows, cols=1 if len(rows) <= 4 else 2)
    return [save_video(out / f"predictions{suffix}", grid, fps, scale)
            for suffix, scale in VIDEO_SCALE.items()]


def _label(frames: np.ndarray, num_context: int, label: str) -> np.ndarray:
    """Label each frame: "context" on the given frames, `label` on the rest (what the column shows)."""
    given, predicted = frames[:num_context], frames[num_context:]
    return np.concatenate([add_label(given, "context"), add_label(predicted, label)])


def _print_summary(metrics: dict[str, Any], report: Path) -> None:
    p = metrics["protocol"]
    print(f"eval: {p['clips']} clips, {p['context']} context -> {p['horizon']} predicted frames, "
          f"{p['samples']} sample(s) per clip ({p['aggregate']})")
    for method, values in metrics["methods"].items():
        figures = "  ".join(f"{name} {format_metric(name, values.get(name))}" for name in METRIC_NAMES)
        print(f"  {method:<16} {figures}")
    if "counterfactual" in metrics:
        cf = metrics["counterfactual"]["mean"]
        print(f"eval: counterfactual ({metrics['counterfactual']['protocol']['scenes']} scenes): action "
              f"discrimination {cf['action_discrimination']:.3f} (0.5 = actions ignored); "
              f"PSNR on moving pixels model {format_metric('psnr', cf['model_psnr_moving'])}, copy-last "
              f"{format_metric('psnr', cf['copy_last_psnr_moving'])}, tokenizer "
              f"{format_metric('psnr', cf['tokenizer_recon_psnr_moving'])}")
    print(f"eval: report written to {report}")
