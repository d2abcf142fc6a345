"""`ivideogpt export`: a world-model folder made ready to share (smaller floats, its default sampling set).

Training exports float32 weights with the library's default sampling (temperature 1, top-k 100). Before
shipping a model, e.g. inside a package, one usually wants half the bytes and the sampling it was
evaluated with, so that `WorldModel.load(folder).rollout(...)` reproduces its model card:

    ivideogpt export --model runs/mw64 --out shipped/mw64 --dtype float16 --temperature 0.5

`--model` may also be a step folder of a transformer run (`runs/mw64/ckpt/step_000001500`): the world
model that run would have exported at that step, e.g. to evaluate a checkpoint while the run goes on.

Weights are cast on save and back to float32 on load (`world_model_io.write_folder`); the spec and the
provenance are carried over, with what the export changed added under `provenance["export"]`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ivideogpt.filenames import SPEC_FILE, STATE_FILE
from ivideogpt.train.transformer import checkpoint_world_model
from ivideogpt.world_model import SamplingConfig, WorldModel

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
UNSET = -1  # top_k value that keeps the model's own (None already means "the whole codebook")


@dataclass
class ExportConfig:
    """Everything `ivideogpt export` needs."""

    model: Path  # world-model folder, a run folder holding world_model/, or a run's ckpt/step_N folder
    out: Path  # folder to write; an existing world model there is replaced only with `overwrite`
    dtype: Literal["float32", "float16", "bfloat16"] = "float16"  # storage type of floating weights
    temperature: float | None = None  # new default sampling temperature (0: greedy); None: keep the model's
    top_k: int | None = UNSET  # new default top-k; None: the whole codebook; -1: keep the model's
    action_guidance: float | None = None  # new default action guidance (transformer/sampling.py); None: keep
    still_split: bool | None = None  # new default for greedy's still code (transformer/fast_decode.py)
    overwrite: bool = False  # replace a world model at `out` (once the new folder is complete)

    def __post_init__(self) -> None:
        self.model, self.out = Path(self.model), Path(self.out)
        if self.dtype not in DTYPES:
            raise ValueError(f"ExportConfig.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.model.resolve() == self.out.resolve():
            raise ValueError(f"ExportConfig.out: {self.out} is the model folder itself; "
                             "choose another folder")
        self.sampling(SamplingConfig())  # validates temperature and top_k

    def sampling(self, current: SamplingConfig) -> SamplingConfig:
        """`current` with this export's overrides."""
        if self.top_k != UNSET:  # here None is a setting (the whole codebook), so UNSET keeps the model's
            current = dataclasses.replace(current, top_k=self.top_k)
        return current.overridden(temperature=self.temperature, action_guidance=self.action_guidance,
                                  still_split=self.still_split)


def is_step_folder(path: Path) -> bool:
    """Whether `path` is one checkpoint of a training run (`<run>/ckpt/step_N`)."""
    return (path / STATE_FILE).is_file()


def export_world_model(cfg: ExportConfig) -> Path:
    """Write `cfg.model` to `cfg.out` in `cfg.dtype` with the new default sampling; returns `cfg.out`.

    Raises:
        FileNotFoundError: no world model at `cfg.model`.
        CheckpointError: a step folder that is not a transformer run's, or whose shards are gone.
        FileExistsError: `cfg.out` holds a world model and `cfg.overwrite` is off, or is something else.
    """
    if (cfg.out / SPEC_FILE).is_file() and not cfg.overwrite:  # checked before the model loads
        raise FileExistsError(f"export: {cfg.out} already holds a world model; pass --overwrite to replace "
                              "it, or choose another --out")
    wm = checkpoint_world_model(cfg.model) if is_step_folder(cfg.model) else WorldModel.load(cfg.model)
    sampling = cfg.sampling(wm.spec.sampling)
    record = {"from": str(cfg.model.resolve()), "dtype": cfg.dtype,
              "sampling_before": dataclasses.asdict(wm.spec.sampling)}
    # WorldModelSpec checks the sampling against the tokenizer (still_split), so nothing is written if unfit
    wm.spec = dataclasses.replace(wm.spec, sampling=sampling,
                                  provenance={**wm.spec.provenance, "export": record})
    out = wm.save(cfg.out, DTYPES[cfg.dtype])
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"export: {cfg.model} -> {out} ({cfg.dtype}, {size:.1f} MiB; sampling temperature "
          f"{sampling.temperature}, top-k {sampling.top_k}, action guidance {sampling.action_guidance}, "
          f"still split {sampling.still_split})")
    return out
