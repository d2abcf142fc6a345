"""The one training loop, shared by the tokenizer and the transformer trainers.

A trainer describes its work as a `TrainJob` (`train.job`: modules, optimizers, a batch source indexed by
step, a step function, evaluation and samples); `run_training` does the rest: learning-rate schedule,
logging to `log.jsonl` and a progress bar, periodic evaluation, samples and checkpoints, exact
resumption and a checkpoint on Ctrl-C.

Exact resumption rests on three things: the batch of step s is a pure function of (seed, s) (see
`StepBatchSampler`), the learning rate is a pure function of s (`schedule.lr_at`), and the RNG states of
every rank are saved in the checkpoint. A run interrupted at any step and resumed takes the same updates
as one that never stopped.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from ivideogpt.atomic import check_writable
from ivideogpt.filenames import CKPT_DIR, LAST_FILE
from ivideogpt.train.checkpoint import (
    CheckpointError,
    config_diff,
    load_checkpoint,
    load_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ivideogpt.train.distributed import Runtime, init_runtime, shutdown
from ivideogpt.train.job import TrainJob, TrainLoopConfig
from ivideogpt.train.monitor import JsonlLog, StopRequest, stop_on_signal

LOG_FILE = "log.jsonl"
SAMPLES_DIR = "samples"


# ------------------------------------------------------------------------------------- data order


class StepBatchSampler(Sampler[list[int]]):
    """Index lists for steps `start..stop-1`: step s gets this rank's share of `indices_for_step(s)`.

    `indices_for_step(s)` returns the GLOBAL batch of step s (`batch_size * world_size` indices) and must
    depend only on (seed, s); rank r takes every world_size-th index from r. A resumed run therefore
    reads exactly the batches the uninterrupted run would have read.
    """

    def __init__(self, indices_for_step: Callable[[int], Sequence[int]], start: int, stop: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.indices_for_step, self.start, self.stop = indices_for_step, start, stop
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield list(self.indices_for_step(step))[self.rank :: self.world_size]


def step_loader(dataset: Dataset, indices_for_step: Callable[[int], Sequence[int]], start: int, stop: int,
                runtime: Runtime, num_workers: int, collate_fn: Callable[[list[Any]], Any]) -> DataLoader:
    """A DataLoader yielding this rank's batch for each step in `[start, stop)` (see `StepBatchSampler`).

    It gets its own torch.Generator: a DataLoader iterator otherwise draws its worker seed from the global
    RNG, which would shift the training RNG stream differently in a fresh and a resumed run.
    """
    sampler = StepBatchSampler(indices_for_step, start, stop, runtime.rank, runtime.world_size)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_fn,
                      pin_memory=runtime.device.type == "cuda",
                      generator=torch.Generator().manual_seed(start), persistent_workers=False)


def sampler_step_loader(dataset: Dataset, sampler: Any, start: int, cfg: TrainLoopConfig, runtime: Runtime,
                        collate_fn: Callable[[list[Any]], Any]) -> DataLoader:
    """`step_loader` for steps `[start, cfg.steps)` whose global batch of step s is `sampler`'s draw after
    `set_epoch(s)` (a `data.clips.mixture_sampler`: a pure function of its seed and s)."""

    def indices_for_step(step: int) -> list[int]:
        sampler.set_epoch(step)
        return list(sampler)

    return step_loader(dataset, indices_for_step, start, cfg.steps, runtime, cfg.num_workers, collate_fn)


def train_and_export(make_job: Callable[[Runtime], TrainJob], cfg: TrainLoopConfig, out_dir: str | Path,
                     resume: bool) -> Path:
    """Seed, build the job, train it (`run_training`) and export it (`job.export`) to
    `<out_dir>/<job.export_dir>/`; one process, or every rank under torchrun (the main one writes)."""
    runtime = init_runtime(cfg.device, cfg.amp)
    try:
        seed_everything(cfg.seed)  # same initial weights on every rank
        job = make_job(runtime)
        run_training(job, runtime, cfg, out_dir, resume)
        export = Path(out_dir) / str(job.export_dir)
        if runtime.is_main:
            job.export(export)
            print(f"{job.name}: exported to {export}")
        runtime.barrier()
    finally:
        shutdown(runtime)
    return export


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------- the loop


def run_training(job: TrainJob, runtime: Runtime, cfg: TrainLoopConfig, out_dir: str | Path,
                 resume: bool) -> int:
    """Train `job` to `cfg.steps`, logging, evaluating, sampling and checkpointing along the way.

    Args:
        job: the trainer's modules, data and step function (built after `seed_everything(cfg.seed)`).
        runtime: this process (see `distributed.init_runtime`).
        cfg: loop settings.
        out_dir: run folder: `log.jsonl`, `ckpt/`, `samples/`.
        resume: continue from `out_dir/ckpt/last.txt` (an error if there is none); without it an existing
            checkpoint in `out_dir` is an error too, so no run is overwritten by accident.

    Returns:
        The step reached (`cfg.steps`).

    Raises:
        KeyboardInterrupt: after writing a checkpoint, when interrupted (Ctrl-C / SIGTERM).
    """
    out_dir = Path(out_dir)
    start = _start_step(job, runtime, cfg, out_dir, resume)
    log = JsonlLog(out_dir / LOG_FILE, keep_until=start) if runtime.is_main else None
    bar = tqdm(total=cfg.steps, initial=start, disable=not runtime.is_main, dynamic_ncols=True,
               desc=job.name)
    try:
        with stop_on_signal() as stop:
            step = _loop(job, runtime, cfg, out_dir, start, log, bar, stop)
    finally:
        bar.close()
    if step < cfg.steps:  # interrupted: the checkpoint of `step` is on disk (unless no step was taken)
        if runtime.is_main:
            saved = f"resume with --resume (checkpoint in {out_dir / CKPT_DIR})" if step else "nothing saved"
            print(f"{job.name}: interrupted at step {step}; {saved}")
        raise KeyboardInterrupt
    return step


def _loop(job: TrainJob, runtime: Runtime, cfg: TrainLoopConfig, out_dir: Path, start: int,
          log: JsonlLog | None, bar: tqdm, stop: StopRequest) -> int:
    window: dict[str, float] = {}  # metric sums since the last log line
    window_steps, window_time = 0, 0.0
    step = saved_step = start
    batches = job.batches(start)
    while step < cfg.steps:
        if runtime.any(stop.requested):
            if saved_step != step:
                _save(job, runtime, cfg, out_dir, step)
            return step
        t0 = time.perf_counter()
        lr = cfg.lr_at(step)
        for optimizer in job.optimizers().values():
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
        metrics = job.train_step(next(batches), step)
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()  # honest step times
        window_time += time.perf_counter() - t0
        step, window_steps = step + 1, window_steps + 1
        for key, value in {**metrics, "lr": lr}.items():
            window[key] = window.get(key, 0.0) + float(value)
        bar.update(1)
        if "loss" in metrics:
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", refresh=False)
        if step % cfg.log_every == 0 or step == cfg.steps:
            rates = {f"{unit}_per_s": n * runtime.world_size * window_steps / max(window_time, 1e-9)
                     for unit, n in job.units_per_step().items()}
            means = {key: total / window_steps for key, total in window.items()}
            if log is not None:
                log.write(step, {f"{job.name}/train/{k}": v for k, v in {**means, **rates}.items()})
            window, window_steps, window_time = {}, 0, 0.0
        if _periodic(job, runtime, cfg, out_dir, step, log, bar):
            saved_step = step
    return step


def _periodic(job: TrainJob, runtime: Runtime, cfg: TrainLoopConfig, out_dir: Path, step: int,
              log: JsonlLog | None, bar: tqdm) -> bool:
    """Evaluation, samples and checkpoint due at `step` (every period, and always at the last step).

    Returns:
        Whether a checkpoint was written.
    """
    last = step == cfg.steps
    if runtime.is_main and (last or (cfg.eval_every and step % cfg.eval_every == 0)):
        metrics = job.evaluate(step)
        if metrics and log is not None:
            log.write(step, {f"{job.name}/val/{k}": v for k, v in metrics.items()})
            bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    if runtime.is_main and (last or (cfg.sample_every and step % cfg.sample_every == 0)):
        job.write_samples(step, out_dir / SAMPLES_DIR)
    save = last or bool(cfg.ckpt_every and step % cfg.ckpt_every == 0)
    if save:
        _save(job, runtime, cfg, out_dir, step)
    runtime.barrier()
    return save


# ------------------------------------------------------------------------------------- checkpoints


def _save(job: TrainJob, runtime: Runtime, cfg: TrainLoopConfig, out_dir: Path, step: int) -> None:
    """Checkpoint on the main process, with the RNG states of every rank."""
    rng = [rng_state()]
    if runtime.distributed:
        rng = [None] * runtime.world_size
        dist.all_gather_object(rng, rng_state())
    if runtime.is_main:
        state = {
            "optimizers": {name: opt.state_dict() for name, opt in job.optimizers().items()},
            "rng": rng,
            "world_size": runtime.world_size,
            "data": {"seed": cfg.seed, "batch_size": cfg.batch_size, "next_step": step},
        }
        save_checkpoint(out_dir, step, job.modules(), job.config(), state, keep=cfg.keep_checkpoints)
    runtime.barrier()


def _start_step(job: TrainJob, runtime: Runtime, cfg: TrainLoopConfig, out_dir: Path, resume: bool) -> int:
    """0 for a fresh run; for a resumed one, load weights, optimizers and RNG and return the saved step."""
    has_ckpt = (out_dir / CKPT_DIR / LAST_FILE).exists()
    if not resume:
        # everything a run writes counts: a finished run whose checkpoints were deleted is still a run
        owned = [name for name in (CKPT_DIR, LOG_FILE, SAMPLES_DIR, job.export_dir)
                 if name and (out_dir / name).exists()]
        if owned:
            how = ("pass resume=True (--resume) to continue it" if has_ckpt
                   else "it has no checkpoint to resume")
            raise FileExistsError(f"{out_dir} already holds a run ({', '.join(owned)}); {how}, or choose "
                                  "another output folder")
        if runtime.is_main:
            check_writable(out_dir)  # before any step: a read-only folder fails now, naming itself
        seed_everything(cfg.seed + runtime.rank)  # ranks share the init but not dropout/augmentation noise
        return 0
    if not has_ckpt:
        raise CheckpointError(f"cannot resume: no checkpoint in {out_dir / CKPT_DIR} ({LAST_FILE} missing)")
    ckpt = load_checkpoint(out_dir)  # on the CPU: RNG states must be CPU tensors; optimizers move their own
    _check_resume_config(job, ckpt.config, ckpt.path, runtime)
    load_weights(job.modules(), ckpt.weights, str(ckpt.path))
    optimizers = job.optimizers()
    missing = sorted(set(optimizers) - set(ckpt.train_state["optimizers"]))
    if missing:
        raise CheckpointError(f"{ckpt.path}: no state for optimizer(s) {missing}")
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(ckpt.train_state["optimizers"][name])
    rng = ckpt.train_state["rng"]
    if len(rng) == runtime.world_size:
        set_rng_state(rng[runtime.rank])
    else:  # another world size: the data order is kept (it depends on the step), the RNG cannot be
        if runtime.is_main:
            print(f"resume: checkpoint written by {len(rng)} process(es), now {runtime.world_size}: "
                  "RNG reseeded")
        seed_everything(cfg.seed + runtime.rank + ckpt.step)
    if runtime.is_main:
        print(f"{job.name}: resumed from {ckpt.path} at step {ckpt.step}")
    return ckpt.step


def _check_resume_config(job: TrainJob, saved: dict[str, Any], where: Path, runtime: Runtime) -> None:
    """Architecture sections must match the checkpoint's; other differences are reported."""
    diffs = config_diff(saved, job.config(), defaults=job.config_defaults())
    fatal = [f"{key}: {what}" for key, what in diffs.items()
             if key.split(".")[0] in job.strict_config_keys() and key not in job.resumable_config_keys()]
    if fatal:
        raise CheckpointError(f"{where}: the checkpoint was written with another model config: "
                              + "; ".join(fatal))
    if diffs and runtime.is_main:
        print("resume: config differs from the checkpoint's in: "
              + "; ".join(f"{k}: {v}" for k, v in diffs.items()))
