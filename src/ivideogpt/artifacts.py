"""Artifacts on disk: the file names of runs, checkpoints and exports, and finding a tokenizer in them.

A run folder (`train-tokenizer`, `train`) holds

    ckpt/step_000001000/model.safetensors  every named module's weights ("tokenizer.encoder.conv.weight")
    ckpt/step_000001000/config.json        the resolved run config ("tokenizer" section: TokenizerConfig)
    ckpt/step_000001000/train_state.pt     step, optimizer states, RNG states of every rank, data position
    ckpt/last.txt                          the name of the newest complete step folder
    tokenizer/                              the tokenizer export: model.safetensors + config.json
    world_model/                            the world-model export (docs/world-model-format.md)

A tokenizer is found in a tokenizer export, a run folder, a checkpoint step folder or a world-model
folder (`load_any_tokenizer`); its identity is the fingerprint of its weights and its lineage the
fingerprints of the tokenizers it was fine-tuned from. The names themselves live in
`ivideogpt.filenames`; writing checkpoints is `ivideogpt.train.checkpoint`'s job.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ivideogpt.config import ConfigError, from_dict, read_json
from ivideogpt.filenames import CKPT_DIR, CONFIG_FILE, LAST_FILE, MODEL_FILE, TOKENIZER_EXPORT, TOKENIZER_FILE
from ivideogpt.tokenizer.compressive import VideoTokenizer, build_tokenizer, check_state_dict
from ivideogpt.tokenizer.config import TokenizerConfig
from ivideogpt.world_model_io import (
    load_state,
    read_spec,
    read_tensors,
    resolve_world_model_dir,
)


def resolve_tokenizer_dir(path: str | Path) -> Path:
    """The folder holding the tokenizer files: `path`, `<run>/tokenizer/` or the run's last checkpoint."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tokenizer {path} does not exist")
    if (path / MODEL_FILE).exists() or (path / CONFIG_FILE).exists():
        return path
    if (path / TOKENIZER_EXPORT / MODEL_FILE).exists():
        return path / TOKENIZER_EXPORT
    last = path / CKPT_DIR / LAST_FILE
    if last.exists():
        return path / CKPT_DIR / last.read_text().strip()
    raise FileNotFoundError(f"no tokenizer at {path}: expected {MODEL_FILE} + {CONFIG_FILE} there, in "
                            f"{path / TOKENIZER_EXPORT}, or a checkpoint named by {last}")


def load_tokenizer_config(path: str | Path) -> TokenizerConfig:
    """The `TokenizerConfig` stored with a tokenizer (export folder, run folder or checkpoint folder)."""
    folder = resolve_tokenizer_dir(path)
    config_file = folder / CONFIG_FILE
    if not config_file.exists():
        raise FileNotFoundError(f"{folder}: {CONFIG_FILE} is missing")
    config = read_json(config_file)
    if not isinstance(config, dict) or "tokenizer" not in config:
        keys = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{config_file}: not a tokenizer checkpoint (no 'tokenizer' section; found {keys})")
    try:
        return from_dict(TokenizerConfig, config["tokenizer"], "tokenizer.")
    except (ConfigError, ValueError, TypeError) as e:
        raise ValueError(f"{config_file}: the 'tokenizer' section does not fit this version's "
                         f"TokenizerConfig: {e}") from e


def read_weights(model_file: Path) -> dict[str, dict[str, Tensor]]:
    """A `model.safetensors` split by module: {"tokenizer": its state dict, "discriminator": ...}.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: it cannot be read as safetensors, or holds NaN or infinite values.
    """
    flat = read_tensors(model_file)
    weights: dict[str, dict[str, Tensor]] = {}
    for key, value in flat.items():
        module, _, param = key.partition(".")
        weights.setdefault(module, {})[param] = value
    return weights


def load_tokenizer(path: str | Path, device: str | torch.device = "cpu") -> VideoTokenizer:
    """Build the tokenizer stored at `path` and load its weights (in eval mode).

    Args:
        path: an export folder (`<run>/tokenizer/`), a run folder, or a checkpoint step folder.
        device: where to put it.

    Raises:
        FileNotFoundError: nothing at `path`, or a file is missing.
        ValueError: the config is not a tokenizer config, or the weights do not fit it.
    """
    cfg = load_tokenizer_config(path)
    folder = resolve_tokenizer_dir(path)
    model_file = folder / MODEL_FILE
    weights = read_weights(model_file)
    state = weights.get("tokenizer")
    if not state:
        raise ValueError(f"{model_file}: no 'tokenizer.*' weights (modules stored: {sorted(weights)})")
    tokenizer = build_tokenizer(cfg)
    check_state_dict(tokenizer, state, str(model_file))
    tokenizer.load_state_dict(state)
    return tokenizer.to(device).eval()


# ------------------------------------------------------------------------------------- any folder


def world_model_dir(path: str | Path) -> Path | None:
    """The world-model folder at `path` (itself or `path/world_model/`), or None when it is not one."""
    try:
        return resolve_world_model_dir(path)
    except FileNotFoundError:
        return None


def load_any_tokenizer(path: str | Path, device: str | torch.device = "cpu") -> VideoTokenizer:
    """The tokenizer of a tokenizer export/run/checkpoint folder or of a world-model folder (eval mode)."""
    folder = world_model_dir(path)
    if folder is None:
        return load_tokenizer(path, device)
    tokenizer = build_tokenizer(read_spec(folder).tokenizer)
    load_state(tokenizer, folder / TOKENIZER_FILE)
    return tokenizer.to(device).eval()


def tokenizer_lineage(path: str | Path) -> list[str]:
    """Fingerprints of the tokenizers the one at `path` was fine-tuned from (`train-tokenizer --init-from`),
    nearest first; empty for a tokenizer trained from scratch.

    A transformer trained on one tokenizer's codes may be fine-tuned on the codes of its descendant: the
    descendant starts from the same weights, so its codes keep their meaning (docs/method.md, section 3).
    """
    folder = world_model_dir(path)
    if folder is not None:
        return list(read_spec(folder).provenance.get("tokenizer_lineage") or [])
    config = read_json(resolve_tokenizer_dir(path) / CONFIG_FILE)
    return list(config.get("lineage") or []) if isinstance(config, dict) else []


def recorded_clips(path: str | Path) -> dict[str, Any]:
    """Clip settings the tokenizer was trained with (context/future frames, split), where recorded.

    Returns:
        A dict with some of context_frames, future_frames, val_fraction, split_seed (empty if none known).
    """
    folder = world_model_dir(path)
    if folder is not None:
        spec = read_spec(folder)
        return {"context_frames": spec.context_frames, "future_frames": spec.future_frames}
    config = read_json(resolve_tokenizer_dir(path) / CONFIG_FILE)
    clips = config.get("clips", {}) if isinstance(config, dict) else {}
    keys = ("context_frames", "future_frames", "val_fraction", "split_seed")
    return {k: clips[k] for k in keys if k in clips}


def tokenizer_fingerprint(tokenizer: torch.nn.Module) -> str:
    """sha256 of the tokenizer's weights (names, shapes, values): equal iff the codes it makes are equal."""
    h = hashlib.sha256()
    for name, value in sorted(tokenizer.state_dict().items()):
        value = value.detach().cpu().contiguous()
        h.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        h.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
