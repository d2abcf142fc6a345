"""Load a trained tokenizer from an export or a training checkpoint, with errors that say what is wrong.

An export (`<run>/tokenizer/`, written by `ivideogpt.train.checkpoint.save_model`) and every training
checkpoint step folder hold the same two files:

    model.safetensors   tensors named "tokenizer.<parameter>" (plus other modules', e.g. "discriminator.")
    config.json         the run config; its "tokenizer" section is the `TokenizerConfig`

This module reads that layout itself (it must not import `ivideogpt.train`: the model core stays usable
alone).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ivideogpt.config import ConfigError, from_dict
from ivideogpt.tokenizer.compressive import VideoTokenizer, build_tokenizer, check_state_dict
from ivideogpt.tokenizer.config import TokenizerConfig

TOKENIZER_EXPORT = "tokenizer"  # export folder inside a run folder
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_PREFIX = "tokenizer."


def resolve_tokenizer_dir(path: str | Path) -> Path:
    """The folder holding the tokenizer files: `path` itself, `<run>/tokenizer/`, or the run's last checkpoint."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tokenizer {path} does not exist")
    if (path / MODEL_FILE).exists() or (path / CONFIG_FILE).exists():
        return path
    if (path / TOKENIZER_EXPORT / MODEL_FILE).exists():
        return path / TOKENIZER_EXPORT
    last = path / "ckpt" / "last.txt"
    if last.exists():
        return path / "ckpt" / last.read_text().strip()
    raise FileNotFoundError(f"no tokenizer at {path}: expected {MODEL_FILE} + {CONFIG_FILE} there, in "
                            f"{path / TOKENIZER_EXPORT}, or a checkpoint named by {last}")


def load_tokenizer_config(path: str | Path) -> TokenizerConfig:
    """The `TokenizerConfig` stored with a tokenizer (export folder, run folder or checkpoint folder)."""
    folder = resolve_tokenizer_dir(path)
    config_file = folder / CONFIG_FILE
    if not config_file.exists():
        raise FileNotFoundError(f"{folder}: {CONFIG_FILE} is missing")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_file}: invalid JSON ({e})") from e
    if not isinstance(config, dict) or "tokenizer" not in config:
        keys = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{config_file}: not a tokenizer checkpoint (no 'tokenizer' section; found {keys})")
    try:
        return from_dict(TokenizerConfig, config["tokenizer"], "tokenizer.")
    except (ConfigError, ValueError, TypeError) as e:
        raise ValueError(f"{config_file}: the 'tokenizer' section does not fit this version's "
                         f"TokenizerConfig: {e}") from e


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
    if not model_file.exists():
        raise FileNotFoundError(f"{folder}: {MODEL_FILE} is missing")
    try:
        tensors = load_file(model_file)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{model_file}: cannot be read ({e})") from e
    state = {k[len(_PREFIX):]: v for k, v in tensors.items() if k.startswith(_PREFIX)}
    if not state:
        modules = sorted({k.split(".")[0] for k in tensors})
        raise ValueError(f"{model_file}: no 'tokenizer.*' weights (modules stored: {modules})")
    tokenizer = build_tokenizer(cfg)
    check_state_dict(tokenizer, state, str(model_file))
    tokenizer.load_state_dict(state)
    return tokenizer.to(device).eval()
