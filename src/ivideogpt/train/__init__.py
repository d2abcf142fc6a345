"""Training: one loop (`loop.run_training`) shared by the tokenizer and transformer jobs.

    runtime = init_runtime(cfg.train.device, cfg.train.amp)   # device, bf16, torchrun DDP
    seed_everything(cfg.train.seed)
    job = MyJob(cfg, runtime)                                  # a TrainJob: modules, optimizers, data, step
    run_training(job, runtime, cfg.train, cfg.out, cfg.resume) # logs, evals, samples, checkpoints, resume

The jobs themselves live in `train.tokenizer` (and the transformer's trainer); they are not imported here
so that each pays only for what it uses.
"""

from ivideogpt.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_model,
    load_weights,
    save_checkpoint,
    save_model,
)
from ivideogpt.train.distributed import Runtime, init_runtime, shutdown, unwrap
from ivideogpt.train.job import TrainJob, TrainLoopConfig, optimizer_step
from ivideogpt.train.loop import StepBatchSampler, run_training, seed_everything, step_loader
from ivideogpt.train.optim import build_adamw, param_groups
from ivideogpt.train.schedule import lr_at

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "Runtime",
    "StepBatchSampler",
    "TrainJob",
    "TrainLoopConfig",
    "build_adamw",
    "init_runtime",
    "load_checkpoint",
    "load_model",
    "load_weights",
    "lr_at",
    "optimizer_step",
    "param_groups",
    "run_training",
    "save_checkpoint",
    "save_model",
    "seed_everything",
    "shutdown",
    "step_loader",
    "unwrap",
]
