"""The train (transformer) job: token shards -> a trained transformer -> `<out>/world_model/`.

Recipe (docs/method.md §2): next-token cross-entropy on future-frame codes, reward MSE (and termination
BCE where episodes end) at each frame's last token, AdamW with decay on linear weights only
(`optim.param_groups`), cosine learning-rate decay after warm-up, gradient clipping, bf16 autocast and
`torch.compile` on GPUs, DDP under torchrun. Batches are read straight from the memory-mapped shards
(nanoGPT style: no DataLoader).

`cfg.model` is the architecture; the token layout (vocabularies, tokens per frame, clip shape), the
action size and the reward/done heads are facts of the data and are taken from the shards. `init_from`
starts from an earlier world model's transformer (docs/method.md §3: an action-free pretrained model gains
its action layer and heads, zero-initialised, and is fine-tuned whole). Training on pre-computed codes
cannot update the tokenizer, so the paper's tokenizer adaptation comes first, as its own step
(`train-tokenizer --init-from`): a parent is accepted when its tokenizer made the shards or is an ancestor
of the one that did (`tokenizer_lineage`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ivideogpt.config import from_dict, to_dict
from ivideogpt.data.frames import to_uint8
from ivideogpt.data.tokens import TokenBatch
from ivideogpt.filenames import CONFIG_FILE
from ivideogpt.media import add_label, hstack_videos, save_video, tile_videos
from ivideogpt.modes import eval_mode
from ivideogpt.tokenizer import VideoTokenizer
from ivideogpt.train.checkpoint import CheckpointError, load_checkpoint, load_weights
from ivideogpt.train.distributed import Runtime, init_runtime, shutdown
from ivideogpt.train.job import TrainJob, TrainLoopConfig, optimizer_step
from ivideogpt.train.loop import StepBatchSampler, train_and_export
from ivideogpt.train.optim import build_adamw
from ivideogpt.train.transformer_setup import (
    data_heads,
    load_parent,
    open_token_shards,
    resolve_model_config,
    shard_tokenizer,
)
from ivideogpt.transformer import Transformer, TransformerConfig, generate_frames, transformer_preset
from ivideogpt.transformer.config import TRAINING_ONLY_FIELDS
from ivideogpt.world_model import EXPORT_DIR, WorldModel, WorldModelSpec


def _default_loop() -> TrainLoopConfig:
    # docs/method.md §2: AdamW lr 1e-4, cosine decay after warm-up, decay 0.01, batch 16, grad clip 1.0
    return TrainLoopConfig(lr=1e-4, warmup_steps=500, schedule="cosine", min_lr=1e-5, weight_decay=0.01,
                           batch_size=16, grad_clip=1.0)


@dataclass
class TransformerTrainConfig:
    """Everything `ivideogpt train` needs (a YAML preset fills it, flags override it)."""

    tokens: Path = Path("tokens")  # output of `ivideogpt tokenize`: <tokens>/train/, optional <tokens>/val/
    out: Path = Path("runs/transformer")  # run folder: log.jsonl, ckpt/, samples/, world_model/ (the export)
    model: TransformerConfig = field(default_factory=lambda: transformer_preset("small"))  # architecture
    init_from: Path | None = None  # a world model (or run folder) whose transformer to start from
    init_new_codes: bool = False  # init_from's tokenizer is unrelated to the shards': take only its body
    init_new_actions: bool = False  # init_from's actions are another robot's: its action layers start at zero
    train: TrainLoopConfig = field(default_factory=_default_loop)  # optimisation and bookkeeping
    sample_clips: int = 4  # validation clips rolled out in each sample GIF
    resume: bool = False  # continue the run in `out` from its last checkpoint
    config: str | None = None  # the preset this config came from (recorded, not used)

    def __post_init__(self) -> None:
        if self.sample_clips < 1:
            raise ValueError(f"TransformerTrainConfig.sample_clips must be >= 1, got {self.sample_clips}")


class TransformerJob(TrainJob):
    """Transformer training on token shards as a `TrainJob` for `run_training`."""

    name = "transformer"
    export_dir = EXPORT_DIR

    def __init__(self, cfg: TransformerTrainConfig, runtime: Runtime) -> None:
        self.cfg, self.runtime = cfg, runtime
        self.train_data, self.val_data = open_token_shards(cfg.tokens)
        self.meta = self.train_data.meta
        # the tokenizer that made the codes: checked here, used for samples and the world-model export
        self.tokenizer = shard_tokenizer(self.meta, cfg.tokens)
        parent = WorldModel.load(cfg.init_from) if cfg.init_from is not None else None
        self.model_cfg = resolve_model_config(cfg.model, self.meta, data_heads(self.train_data))
        if self.model_cfg.moving_weight and self.train_data.moving is None:
            raise ValueError("model.moving_weight needs token shards that mark the moving codes (moving.npy, "
                             "written by `ivideogpt tokenize` since it exists): re-tokenize the data")
        self.model = Transformer(self.model_cfg)
        if parent is not None:
            load_parent(self.model, parent, self.meta, cfg.init_from, cfg.init_new_codes,
                        cfg.init_new_actions)
        self.model.to(runtime.device)
        if runtime.is_main:
            self.tokenizer.to(runtime.device)
        self.train_loss = runtime.wrap(self.model, compile=cfg.train.compile, method="compute_loss")
        t = cfg.train
        self.opt = build_adamw(self.model, t.lr, t.weight_decay, (t.beta1, t.beta2), runtime.device)
        self.last_val: dict[str, float] = {}
        if runtime.is_main:
            print(
                f"transformer: {self.model.num_params() / 1e6:.2f}M parameters, "
                f"{len(self.train_data)} train / "
                f"{len(self.val_data) if self.val_data else 0} val clips, sequence of "
                f"{self.seq_len} tokens, action_dim {self.model_cfg.action_dim}, reward head "
                f"{self.model_cfg.reward_head}, done head {self.model_cfg.done_head}"
            )

    @property
    def seq_len(self) -> int:
        """Tokens per training clip."""
        return self.model.layout.sequence_length(self.meta.context_frames, self.meta.future_frames)

    # ---- what the loop saves ------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {"transformer": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"transformer": self.opt}

    def config(self) -> dict[str, Any]:
        resolved = dataclasses.replace(self.cfg, model=self.model_cfg)  # what was trained, not what was asked
        return {k: v for k, v in to_dict(resolved).items() if k != "resume"}

    def strict_config_keys(self) -> tuple[str, ...]:
        return ("model",)

    def resumable_config_keys(self) -> tuple[str, ...]:
        return tuple(f"model.{name}" for name in TRAINING_ONLY_FIELDS)

    # ---- training -----------------------------------------------------------------------------------
    def indices_for_step(self, step: int) -> list[int]:
        """The global batch of `step`: clips drawn without replacement, a pure function of (seed, step)."""
        n, size = len(self.train_data), self.cfg.train.batch_size * self.runtime.world_size
        rng = np.random.default_rng([self.cfg.train.seed, step])
        return rng.choice(n, size=size, replace=size > n).tolist()

    def batches(self, start_step: int) -> Iterator[TokenBatch]:
        sampler = StepBatchSampler(
            self.indices_for_step,
            start_step,
            self.cfg.train.steps,
            self.runtime.rank,
            self.runtime.world_size,
        )
        return (self.train_data.batch(np.array(ids)) for ids in sampler)

    def train_step(self, batch: TokenBatch, step: int) -> dict[str, float]:
        micro = batch.to(self.runtime.device).split(self.cfg.train.grad_accum)

        def loss_fn(b: TokenBatch) -> tuple[Tensor, dict[str, float]]:
            loss, metrics, _ = self.train_loss(b)
            return loss, metrics

        clip_norm = self.cfg.train.grad_clip
        metrics = optimizer_step(self.train_loss, self.opt, loss_fn, micro, self.runtime, clip_norm)
        return metrics | action_path_norms(self.model)

    def units_per_step(self) -> dict[str, int]:
        return {"clips": self.cfg.train.batch_size, "tokens": self.cfg.train.batch_size * self.seq_len}

    # ---- validation ---------------------------------------------------------------------------------
    def val_ids(self) -> list[np.ndarray]:
        """The same clips at every evaluation (spread evenly over the val shards), in batches."""
        t = self.cfg.train
        count = min(t.eval_batches * t.batch_size, len(self.val_data))
        ids = np.linspace(0, len(self.val_data) - 1, count).round().astype(np.int64)
        return np.array_split(ids, -(-count // t.batch_size))

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        """Mean loss/ce/accuracy (and reward_mse, done_bce) on val clips; reward_corr with true rewards.

        With actions, also `ce_other_actions`: the cross-entropy when each clip gets another clip's actions
        (rolled by one along the batch). `action_gain` = that minus `ce` is how much the actions inform the
        prediction: 0 for a model that ignores them (docs/method.md §6).

        `first_accuracy` / `greedy_accuracy`: the share of the first future frame's true codes that the
        argmax hits after the true codes before it (teacher-forced, as trained) / after its own (a greedy
        rollout). The gap is what the model loses to its own mistakes within a frame (`self_feed`).
        """
        if self.val_data is None:
            return {}
        totals: dict[str, float] = {}
        preds, truths = [], []
        ends = self.model.layout.frame_end_positions(self.meta.context_frames, self.meta.future_frames)
        batches = self.val_ids()
        with eval_mode(self.model):
            for ids in batches:
                b = self.val_data.batch(ids).to(self.runtime.device)
                with self.runtime.autocast():
                    _, metrics, out = self.model.compute_loss(b)
                    metrics.update(self._first_frame_accuracy(b, out.logits))
                if self.model.action_proj is not None and len(ids) > 1:
                    other = dataclasses.replace(b, actions=b.actions.roll(1, dims=0))
                    with self.runtime.autocast():
                        metrics["ce_other_actions"] = self.model.compute_loss(other)[1]["ce"]
                for key, value in metrics.items():
                    totals[key] = totals.get(key, 0.0) + value * len(ids)
                if out.reward_pred is not None:
                    reward, _ = self.model.heads.decode(out.reward_pred[:, ends].float(), None)  # (B, Tf)
                    preds.append(reward[b.has_rewards].flatten().cpu())
                    truths.append(b.rewards[:, self.meta.context_frames :][b.has_rewards].flatten().cpu())
        n = sum(len(ids) for ids in batches)
        self.last_val = {key: total / n for key, total in totals.items()}
        if "ce_other_actions" in self.last_val:
            self.last_val["action_gain"] = self.last_val["ce_other_actions"] - self.last_val["ce"]
        if preds:
            pred, truth = torch.cat(preds), torch.cat(truths)
            if pred.numel() > 1 and pred.std() > 0 and truth.std() > 0:  # undefined for constant series
                self.last_val["reward_corr"] = float(torch.corrcoef(torch.stack([pred, truth]))[0, 1])
        return self.last_val

    def _first_frame_accuracy(self, b: TokenBatch, logits: Tensor) -> dict[str, float]:
        """`evaluate`'s first/greedy_accuracy of a batch whose teacher-forced logits are known."""
        n, vc = self.model.layout.future_tokens, self.model.layout.context_vocab_size
        truth = b.future_codes[:, 0].flatten(1)  # (B, n)
        forced = logits[:, :n, vc : vc + self.model.layout.future_vocab_size].argmax(-1)
        tc = self.meta.context_frames
        actions = b.actions[:, tc : tc + 1] if self.model_cfg.action_dim else None
        greedy = generate_frames(self.model, b.context_codes, actions, 1, temperature=0.0, top_k=None)[0]
        return {"first_accuracy": float((forced == truth).float().mean()),
                "greedy_accuracy": float((greedy[:, 0] == truth).float().mean())}

    @torch.no_grad()
    def write_samples(self, step: int, out_dir: Path) -> None:
        """A GIF per sample step: tokenizer reconstruction of the truth | the model's sampled future."""
        if self.val_data is None:
            return
        ids = np.arange(min(self.cfg.sample_clips, len(self.val_data)))
        b = self.val_data.batch(ids).to(self.runtime.device)
        tc = self.meta.context_frames
        # not the global RNG (see TrainJob.evaluate)
        g = torch.Generator(self.runtime.device).manual_seed(step)
        actions = b.actions[:, tc:] if self.model_cfg.action_dim else None
        with eval_mode(self.model):
            future, _, _ = generate_frames(self.model, b.context_codes, actions, self.meta.future_frames,
                                           generator=g)
        truth = _decode(self.tokenizer, b.context_codes, b.future_codes)  # (B, T, H, W, 3)
        sampled = _decode(self.tokenizer, b.context_codes, future)
        pairs = [add_label(hstack_videos([t, s]), "truth | model")
                 for t, s in zip(truth, sampled, strict=True)]
        fps = self.meta.extra.get("fps") or 4.0
        save_video(out_dir / f"step_{step:09d}.gif", tile_videos(pairs, cols=2), min(fps, 8.0), scale=2)

    # ---- export -------------------------------------------------------------------------------------
    def export(self, path: Path) -> Path:
        """Write the world model (tokenizer + transformer + spec) to `path` (docs/world-model-format.md)."""
        return self.world_model().save(path)

    def world_model(self) -> WorldModel:
        """The world model being trained: the shards' tokenizer, this transformer and its spec."""
        meta = self.meta
        spec = WorldModelSpec(
            tokenizer=self.tokenizer.cfg,
            transformer=self.model_cfg,
            context_frames=meta.context_frames,
            future_frames=meta.future_frames,
            image_size=self.tokenizer.resolution,
            action_dim=self.model_cfg.action_dim,
            fps=meta.extra.get("fps"),
            provenance={
                "tokens": str(Path(self.cfg.tokens).resolve()),
                "steps": self.cfg.train.steps,
                "init_from": None if self.cfg.init_from is None else str(Path(self.cfg.init_from).resolve()),
                "init_new_codes": self.cfg.init_new_codes,
                "init_new_actions": self.cfg.init_new_actions,
                "train_clips": len(self.train_data),
                "val": self.last_val,
                # what eval needs to find the held-out episodes and the demo to record matching ones
                **{k: meta.extra.get(k) for k in ("sources", "tokenizer_path", "tokenizer_fingerprint",
                                                  "tokenizer_lineage", "val_fraction", "split_seed",
                                                  "collect")},
            },
        )
        return WorldModel(self.tokenizer, self.model, spec)


def checkpoint_world_model(step_dir: Path) -> WorldModel:
    """The world model of a transformer training checkpoint (a step folder under `<run>/ckpt/`), as the
    run would have exported it had it stopped there; its token shards and their tokenizer must still exist."""
    ckpt = load_checkpoint(step_dir)
    if "tokens" not in ckpt.config or "model" not in ckpt.config:
        raise CheckpointError(f"{ckpt.path}: not a checkpoint of `ivideogpt train` "
                              "(its config has no tokens or model)")
    cfg = from_dict(TransformerTrainConfig, ckpt.config, str(ckpt.path / CONFIG_FILE))
    cfg = dataclasses.replace(cfg, init_from=None, train=dataclasses.replace(cfg.train, steps=ckpt.step))
    runtime = init_runtime("cpu", "off")
    try:
        job = TransformerJob(cfg, runtime)
        load_weights(job.modules(), ckpt.weights, str(ckpt.path))
    finally:
        shutdown(runtime)
    return job.world_model()


def action_path_norms(model: Transformer) -> dict[str, float]:
    """Weight norm of the action projection and its gradient norm this step (after clipping): a model
    whose action path stays near its zero init does not use its actions (docs/method.md §6)."""
    norms = {}
    paths = {"action": [model.action_proj], "action_sum": [model.action_sum_proj],
             "action_mod": [block.action_mod for block in model.blocks]}  # all blocks' as one vector
    norm = lambda tensors: float(torch.stack([t.detach().norm() for t in tensors]).norm())
    for name, projs in paths.items():
        weights = [proj.weight for proj in projs if proj is not None and proj.weight.grad is not None]
        if weights:
            norms |= {f"{name}_weight_norm": norm(weights),
                      f"{name}_grad_norm": norm([w.grad for w in weights])}
    return norms


def train_transformer(cfg: TransformerTrainConfig) -> Path:
    """Train a transformer on token shards as configured and export the world model.

    Launch with the CLI for one process, or under `torchrun --nproc_per_node N` for DDP.

    Returns:
        The export folder `<cfg.out>/world_model/`, readable with `WorldModel.load`.
    """
    return train_and_export(lambda runtime: TransformerJob(cfg, runtime), cfg.train, cfg.out, cfg.resume)


def _decode(tokenizer: VideoTokenizer, context: Tensor, future: Tensor) -> np.ndarray:
    """Flat codes (B, Tc, Nc), (B, Tf, Nf) -> uint8 frames (B, Tc + Tf, H, W, 3)."""
    grids = (context.unflatten(2, tokenizer.context_grid), future.unflatten(2, tokenizer.future_grid))
    return to_uint8(tokenizer.detokenize(*grids)).cpu().numpy()
