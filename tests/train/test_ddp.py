"""DDP on two CPU processes (gloo): replicas stay identical and the checkpoint holds both ranks' RNG."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from ivideogpt.config import load_yaml, merge
from ivideogpt.train.checkpoint import load_checkpoint
from ivideogpt.train.distributed import init_runtime, shutdown
from ivideogpt.train.loop import run_training, seed_everything
from ivideogpt.train.tokenizer import TokenizerJob, TokenizerTrainConfig

from .helpers import ToyConfig, ToyJob, write_moving_squares


def _worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    runtime = init_runtime("cpu")
    cfg = ToyConfig()
    seed_everything(cfg.train.seed + 100 * rank)  # different inits: DDP must broadcast rank 0's
    job = ToyJob(cfg, runtime)
    initial = [p.detach().clone() for p in job.model.parameters()]
    run_training(job, runtime, cfg.train, Path(out) / "run", resume=False)
    torch.save({"initial": initial, "final": [p.detach() for p in job.model.parameters()],
                "losses": job.losses}, Path(out) / f"rank{rank}.pt")
    shutdown(runtime)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_stay_identical(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for a, b in zip(r0["final"], r1["final"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(r0["initial"], r0["final"], strict=True))  # it did train
    assert r0["losses"] != r1["losses"]  # each rank saw its own half of the batch
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.step == ToyConfig().train.steps and len(ckpt.train_state["rng"]) == 2



def _tokenizer_worker(rank: int, world_size: int, port: int, out: str, data: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    overrides = {"data": [data], "out": str(Path(out) / "run"), "tokenizer": {"resolution": 16},
                 "clips": {"future_frames": 4, "val_fraction": 0.34},
                 "loss": {"disc_enabled": True, "disc_start": 1, "disc_channels": 8, "disc_layers": 2},
                 "train": {"device": "cpu", "steps": 3, "batch_size": 2, "warmup_steps": 1}}
    cfg = merge(merge(TokenizerTrainConfig(), load_yaml("tokenizer_tiny")), overrides)
    runtime = init_runtime("cpu")
    seed_everything(cfg.train.seed)
    job = TokenizerJob(cfg, runtime)
    run_training(job, runtime, cfg.train, cfg.out, resume=False)
    torch.save({name: m.state_dict() for name, m in job.modules().items()}, Path(out) / f"rank{rank}.pt")
    shutdown(runtime)


def test_tokenizer_and_discriminator_replicas_stay_identical(tmp_path: Path) -> None:
    data = write_moving_squares(tmp_path / "data")
    mp.spawn(_tokenizer_worker, args=(2, _free_port(), str(tmp_path), str(data)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert sorted(r0) == ["discriminator", "tokenizer"]
    for name in r0:
        for key in r0[name]:
            torch.testing.assert_close(r0[name][key], r1[name][key], rtol=0, atol=0, msg=f"{name}.{key}")
