"""Complete, atomic training checkpoints and model exports.

A run folder holds

    ckpt/step_000001000/model.safetensors   weights of every named module ("tokenizer.encoder.conv.weight")
    ckpt/step_000001000/config.json         the resolved run config (`ivideogpt.config.to_dict`)
    ckpt/step_000001000/train_state.pt      step, optimizer states, RNG states of every rank, data position
    ckpt/last.txt                           the name of the newest complete step folder

Each step folder is written under a temporary name and renamed when complete, and `last.txt` is replaced
atomically afterwards, so a crash or a failed save leaves the previous checkpoint readable and `last.txt`
pointing at it. An export (`save_model`) is the same minus `train_state.pt`: what inference needs.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ivideogpt.artifacts import read_weights
from ivideogpt.atomic import TMP_PREFIX, atomic_path, naming, save_safetensors, save_torch
from ivideogpt.config import read_json
from ivideogpt.filenames import CKPT_DIR, CONFIG_FILE, LAST_FILE, MODEL_FILE, STATE_FILE, STEP_PREFIX
from ivideogpt.train.distributed import unwrap


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or does not fit the model being loaded."""


@dataclass
class Checkpoint:
    """A loaded training checkpoint."""

    path: Path  # the step folder
    step: int  # optimizer steps taken when it was written
    weights: dict[str, dict[str, Tensor]]  # module name -> state dict
    config: dict[str, Any]  # the run config it was written with
    train_state: dict[str, Any]  # optimizers, rng, data position, ... (see `save_checkpoint`)


def step_dir_name(step: int) -> str:
    """Zero-padded folder name of a step: 1000 -> "step_000001000" (sorts by name)."""
    return f"{STEP_PREFIX}{step:09d}"


# ---------------------------------------------------------------------------------------------- writing


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    modules: Mapping[str, nn.Module],
    config: Mapping[str, Any],
    train_state: Mapping[str, Any],
    keep: int = 0,
) -> Path:
    """Write `<run_dir>/ckpt/step_<step>/` atomically, point `last.txt` at it, prune old ones.

    Args:
        run_dir: the run folder.
        step: optimizer steps taken.
        modules: name -> module (wrappers are removed; names must not contain ".").
        config: the resolved run config (JSON-safe dict).
        train_state: everything else needed to resume (optimizer states, RNG, data position); saved
            with `torch.save`, so tensors, numbers, strings, lists and dicts only.
        keep: keep this many newest step folders (0: keep all); the one just written is never deleted.

    Returns:
        The step folder written.
    """
    root = Path(run_dir) / CKPT_DIR
    final = root / step_dir_name(step)
    with atomic_path(final, folder=True) as tmp:
        write_model_files(tmp, modules, config)
        save_torch({"step": step, **train_state}, tmp / STATE_FILE)  # a full disk says so, naming the file
    with atomic_path(root / LAST_FILE) as tmp:
        tmp.write_text(final.name + "\n")
    _prune(root, keep, final)
    return final


def save_model(path: str | Path, modules: Mapping[str, nn.Module], config: Mapping[str, Any]) -> Path:
    """Export weights + config (no training state) atomically to the folder `path` (replaced if present)."""
    path = Path(path)
    with atomic_path(path, folder=True) as tmp:
        write_model_files(tmp, modules, config)
    return path


def write_model_files(folder: Path, modules: Mapping[str, nn.Module], config: Mapping[str, Any]) -> None:
    """Write `model.safetensors` (keys "<module>.<param>") and `config.json` into an existing folder."""
    tensors: dict[str, Tensor] = {}
    storages: set[int] = set()
    for name, module in modules.items():
        if not name or "." in name:
            raise ValueError(f"save: module name {name!r} must be non-empty and contain no '.'")
        for key, value in unwrap(module).state_dict().items():
            value = value.detach().cpu().contiguous()
            ptr = value.untyped_storage().data_ptr()
            # safetensors refuses tensors sharing memory (tied weights); store an independent copy
            tensors[f"{name}.{key}"] = value.clone() if ptr in storages else value
            storages.add(ptr)
    save_safetensors(tensors, folder / MODEL_FILE, metadata={"modules": ",".join(modules)})
    with naming(folder / CONFIG_FILE):
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=False) + "\n")


# ---------------------------------------------------------------------------------------------- reading


def find_checkpoint(path: str | Path) -> Path:
    """Resolve a step folder, a `ckpt/` folder or a run folder to the step folder to load.

    Raises:
        CheckpointError: when nothing at `path` is a checkpoint, or `last.txt` names a missing folder.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / STATE_FILE).exists() or (path / MODEL_FILE).exists():
        return path
    for root in (path, path / CKPT_DIR):
        last = root / LAST_FILE
        if last.exists():
            target = root / last.read_text().strip()
            if not target.is_dir():
                raise CheckpointError(f"{last} points at {target.name}, which does not exist")
            return target
    raise CheckpointError(
        f"no checkpoint at {path}: expected a step folder (with {STATE_FILE}) or a run folder with "
        f"{CKPT_DIR}/{LAST_FILE}"
    )


def load_model(path: str | Path) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
    """Read `model.safetensors` and `config.json` of an export or a step folder (onto the CPU).

    Returns:
        (module name -> state dict, config dict).
    """
    path = Path(path)
    model_file, config_file = path / MODEL_FILE, path / CONFIG_FILE
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a folder (expected {MODEL_FILE} and {CONFIG_FILE} inside)")
    for f in (model_file, config_file):
        if not f.exists():
            found = sorted(p.name for p in path.iterdir())
            raise CheckpointError(f"{path}: {f.name} is missing (found {found})")
    try:
        weights = read_weights(model_file)
    except ValueError as e:
        raise CheckpointError(str(e)) from e
    config = read_json(config_file, CheckpointError)
    return weights, config


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a training checkpoint (step folder, `ckpt/` folder or run folder).

    Raises:
        CheckpointError: missing folder or file, unreadable file.
    """
    folder = find_checkpoint(path)
    state_file = folder / STATE_FILE
    if not state_file.exists():
        raise CheckpointError(f"{folder}: {STATE_FILE} is missing: a model export, not a training checkpoint")
    weights, config = load_model(folder)
    try:
        state = torch.load(state_file, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated/corrupt files
        raise CheckpointError(f"{state_file}: cannot be read ({type(e).__name__}: {e})") from e
    return Checkpoint(folder, int(state.pop("step")), weights, config, state)


def load_weights(
    modules: Mapping[str, nn.Module], weights: Mapping[str, Mapping[str, Tensor]], where: str
) -> None:
    """Copy saved state dicts into `modules` (strict), naming missing/unexpected keys and shape mismatches."""
    missing_modules = sorted(set(modules) - set(weights))
    if missing_modules:
        raise CheckpointError(f"{where}: no weights for module(s) {missing_modules} (has {sorted(weights)})")
    for name, module in modules.items():
        module = unwrap(module)
        own, saved = module.state_dict(), weights[name]
        problems = []
        missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
        if missing:
            problems.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            problems.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        shapes = [f"{k}: saved {tuple(saved[k].shape)}, model {tuple(v.shape)}"
                  for k, v in own.items() if k in saved and saved[k].shape != v.shape]
        if shapes:
            problems.append(f"shape mismatches {shapes[:8]}")
        if problems:
            raise CheckpointError(f"{where}: weights of {name!r} do not fit the model: "
                                  + "; ".join(problems))
        module.load_state_dict(saved)


def config_diff(saved: Any, current: Any, prefix: str = "", defaults: Any = None) -> dict[str, str]:
    """Dotted keys whose values differ between two config dicts -> "saved X, now Y".

    A key the checkpoint lacks is no difference where `defaults` (a dict shaped like `current`) gives it the
    current value: an option added to the library after the checkpoint was written, left at its default,
    changes nothing the checkpoint was trained with.
    """
    if isinstance(saved, dict) and isinstance(current, dict):
        defaults = defaults if isinstance(defaults, dict) else {}
        diffs: dict[str, str] = {}
        for key in sorted(set(saved) | set(current), key=str):
            where = f"{prefix}{key}"
            if key not in saved and key in defaults and _json(defaults[key]) == _json(current[key]):
                continue
            if key not in saved or key not in current:
                diffs[where] = "only in the checkpoint" if key in saved else "not in the checkpoint"
            else:
                diffs.update(config_diff(saved[key], current[key], f"{where}.", defaults.get(key)))
        return diffs
    if _json(saved) != _json(current):
        return {prefix.rstrip("."): f"saved {saved!r}, now {current!r}"}
    return {}


# ---------------------------------------------------------------------------------------------- RNG


def rng_state() -> dict[str, Any]:
    """RNG states of python, numpy, torch CPU and CUDA (if present), as plain values `torch.load` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore states captured by `rng_state`."""
    random.setstate(_tuples(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ---------------------------------------------------------------------------------------------- helpers


def _prune(root: Path, keep: int, newest: Path) -> None:
    """Delete all but the `keep` highest step folders (0: keep all) but never `newest`, the one just written.

    Temp folders left by a killed save go too: a run has one writer, so none is in flight now.
    """
    for stale in root.glob(f"{TMP_PREFIX}*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    if keep == 0:
        return
    steps = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX))
    for old in steps[:-keep]:
        if old != newest:
            shutil.rmtree(old)


def _json(value: Any) -> Any:
    """Value as JSON would store it (tuples become lists), for comparing saved and live configs."""
    return json.loads(json.dumps(value))


def _tuples(value: Any) -> Any:
    """Lists back to tuples (python's RNG state is nested tuples; torch.save may round-trip them as lists)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
