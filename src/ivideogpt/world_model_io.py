"""The world-model folder: its spec (`world_model.json`) and atomic reading/writing of the three files.

    world_model.json          format, version, the tokenizer and transformer configs, clip shape, image
                              size, action size, fps, default sampling, provenance
    tokenizer.safetensors     the tokenizer's state_dict
    transformer.safetensors   the transformer's state_dict

`ivideogpt.world_model.WorldModel.save/load` go through here; nothing here runs a model. `read_tensors`
is also how checkpoints and tokenizer exports are read (`ivideogpt.artifacts.read_weights`): every
safetensors file is checked to hold finite values when loaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from ivideogpt.atomic import atomic_path, naming, save_safetensors
from ivideogpt.config import ConfigError, from_dict, read_json, to_dict
from ivideogpt.filenames import (
    EXPORT_DIR,
    MODEL_FILE,
    SPEC_FILE,
    STATE_FILE,
    TOKENIZER_FILE,
    TRANSFORMER_FILE,
)
from ivideogpt.tokenizer import TokenizerConfig, check_state_dict
from ivideogpt.transformer import TransformerConfig
from ivideogpt.transformer.config import state_dict_mismatch

FORMAT = "ivideogpt-world-model"
VERSION = 1


@dataclass
class SamplingConfig:
    """Default sampling of a world model (each rollout may override it)."""

    temperature: float = 1.0  # softmax temperature; 0 samples greedily
    top_k: int | None = 100  # sample among the k likeliest codes; None: the whole codebook
    action_guidance: float = 0.0  # w: sample from l_a + w (l_a - l_0) (transformer/sampling.py); 0: off
    # greedy (temperature 0) picks the still code only where it holds >= half the probability, else the
    # likeliest code of what moved (transformer/fast_decode.py); needs a tokenizer with still codes
    still_split: bool = False

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"SamplingConfig.temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"SamplingConfig.top_k must be >= 1 or None, got {self.top_k}")
        if not self.action_guidance >= 0:
            raise ValueError(f"SamplingConfig.action_guidance must be >= 0, got {self.action_guidance}")

    def overridden(self, **settings: Any) -> SamplingConfig:
        """This sampling with the given settings replaced (validated); None keeps a setting as it is."""
        return replace(self, **{name: value for name, value in settings.items() if value is not None})


@dataclass
class WorldModelSpec:
    """The non-tensor half of `world_model.json`."""

    tokenizer: TokenizerConfig  # architecture of the tokenizer
    transformer: TransformerConfig  # architecture of the transformer (its layout fields match the tokenizer)
    context_frames: int  # Tc: context frames the model was trained with
    future_frames: int  # Tf: future frames of the trained clip (the rollout window)
    image_size: int  # H = W of every frame
    action_dim: int  # A: action size; 0 = action-free
    fps: float | None = None  # frame rate of the training data (None: unknown)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # default temperature / top-k
    provenance: dict[str, Any] = field(default_factory=dict)  # free-form: data, steps, command, ...

    def __post_init__(self) -> None:
        for name in ("context_frames", "future_frames", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"WorldModelSpec.{name} must be >= 1, got {getattr(self, name)}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"WorldModelSpec.fps must be > 0 or None, got {self.fps}")
        tok, tf = self.tokenizer, self.transformer
        per_frame = tok.kind == "per_frame"
        expected = {
            "image_size": (self.image_size, tok.resolution, "tokenizer.resolution"),
            "action_dim": (self.action_dim, tf.action_dim, "transformer.action_dim"),
            "transformer.context_vocab_size": (
                tf.context_vocab_size, tok.context_codebook.codebook_size, "tokenizer context codebook size"),
            "transformer.future_vocab_size": (
                tf.future_vocab_size,
                (tok.context_codebook if per_frame else tok.future_codebook).codebook_size,
                "tokenizer future codebook size"),
            "transformer.tokens_per_context_frame": (
                tf.tokens_per_context_frame, tok.latent_grid**2, "tokenizer context grid squared"),
            "transformer.tokens_per_future_frame": (
                tf.tokens_per_future_frame, tok.future_grid**2, "tokenizer future grid squared"),
        }
        for name, (got, want, source) in expected.items():
            if got != want:
                raise ValueError(f"WorldModelSpec.{name} is {got} but the {source} is {want}")
        check_still_split(self.sampling, self.tokenizer)


def check_still_split(sampling: SamplingConfig, tokenizer: TokenizerConfig) -> None:
    """`still_split` means something only where one future code stands for every still patch."""
    if sampling.still_split and not tokenizer.still_threshold:
        raise ValueError("sampling still_split needs a tokenizer with a still code (still_threshold > 0); "
                         "this world model's tokenizer has none")


def layout_fields(tokenizer: TokenizerConfig) -> dict[str, int]:
    """The `TransformerConfig` fields a tokenizer fixes: `transformer_preset(name, **layout_fields(tok))`."""
    future = tokenizer.context_codebook if tokenizer.kind == "per_frame" else tokenizer.future_codebook
    return {
        "context_vocab_size": tokenizer.context_codebook.codebook_size,
        "future_vocab_size": future.codebook_size,
        "tokens_per_context_frame": tokenizer.latent_grid**2,
        "tokens_per_future_frame": tokenizer.future_grid**2,
    }


def write_folder(path: str | Path, spec: WorldModelSpec, tokenizer: nn.Module, transformer: nn.Module,
                 dtype: torch.dtype | None = None) -> Path:
    """Write a world-model folder atomically (a temp folder, then a rename); returns `path`.

    An existing world-model folder at `path` is replaced; other files in it (a model card, notes) are
    carried over into the new one, never deleted. Any other existing path is refused. `dtype` (e.g.
    torch.float16, to ship a small file) stores floating tensors in that type; loading casts back.
    """
    path = Path(path)
    replaceable = path.is_dir() and ((path / SPEC_FILE).is_file() or not any(path.iterdir()))
    if path.exists() and not replaceable:
        raise FileExistsError(f"WorldModel.save: {path} exists and is not a world-model folder; refusing "
                              "to overwrite it")
    with atomic_path(path, folder=True) as tmp:
        with naming(path / SPEC_FILE):
            (tmp / SPEC_FILE).write_text(json.dumps({"format": FORMAT, "version": VERSION, **to_dict(spec)},
                                                    indent=2) + "\n")
        save_safetensors(plain_state(tokenizer, dtype), tmp / TOKENIZER_FILE)
        save_safetensors(plain_state(transformer, dtype), tmp / TRANSFORMER_FILE)
        for other in path.iterdir() if path.is_dir() else ():
            if not (tmp / other.name).exists():  # not one of the files just written
                copy = shutil.copytree if other.is_dir() else shutil.copy2
                copy(other, tmp / other.name)
    return path


def resolve_world_model_dir(path: str | Path) -> Path:
    """The folder holding `world_model.json`: `path` itself or `<path>/world_model/`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"world model {path} does not exist")
    for folder in (path, path / EXPORT_DIR):
        if (folder / SPEC_FILE).is_file():
            return folder
    other = ""
    if (path / STATE_FILE).exists():
        other = (f" (it is a training checkpoint: `ivideogpt export --model {path} --out DIR --dtype "
                 "float32` makes a world model of it)")
    elif (path / MODEL_FILE).exists():
        other = " (it looks like a tokenizer export; a world model needs the transformer too)"
    raise FileNotFoundError(f"no world model at {path}: expected {SPEC_FILE}, {TOKENIZER_FILE} and "
                            f"{TRANSFORMER_FILE} there or in {path / EXPORT_DIR}{other}")


def weights_digest(folder: str | Path) -> str:
    """sha256 of the folder's two weight files, as stored: tells apart two models saved at one path."""
    h = hashlib.sha256()
    for name in (TOKENIZER_FILE, TRANSFORMER_FILE):
        with open(Path(folder) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):  # hashlib.file_digest needs Python 3.11
                h.update(block)
    return h.hexdigest()


def read_spec(folder: str | Path) -> WorldModelSpec:
    """Read and validate `folder/world_model.json`."""
    file = Path(folder) / SPEC_FILE
    raw = read_json(file)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(f"{file}: not an {FORMAT!r} file (format: {found!r})")
    version = raw.get("version")
    if not isinstance(version, int) or not 1 <= version <= VERSION:
        raise ValueError(f"{file}: version {version!r} is not one this library reads (<= {VERSION})")
    body = {k: v for k, v in raw.items() if k not in ("format", "version")}
    try:
        return from_dict(WorldModelSpec, body)
    except (ConfigError, ValueError, TypeError) as e:
        raise ValueError(f"{file}: does not fit WorldModelSpec: {e}") from e


def load_state(module: nn.Module, file: Path, transformer: TransformerConfig | None = None) -> None:
    """Load the safetensors `file` into `module`, checked to fit it (errors name the file).

    With `transformer` (the config `module` was built from), weights of another model are named by the
    config fields they contradict, rather than by the first tensor that does not fit.
    """
    state = read_tensors(file)
    if transformer is not None and (fields := state_dict_mismatch(transformer, state)):
        raise ValueError(f"{file} does not fit the transformer config in {SPEC_FILE} (the weights of another "
                         f"model?): {'; '.join(fields)}")
    check_state_dict(module, state, str(file))
    module.load_state_dict(state)


def read_tensors(file: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors `file`, checked to be finite: this package's one safetensors reader.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: it cannot be read as safetensors, or a tensor holds NaN or infinite values.
    """
    if not file.is_file():
        raise FileNotFoundError(f"{file.parent}: {file.name} is missing")
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{file}: cannot be read as safetensors ({e})") from e
    check_finite(tensors, file)
    return tensors


def plain_state(module: nn.Module, dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """CPU state_dict, tensors that share storage (tied weights) cloned: safetensors refuses shared ones."""
    seen: set[int] = set()
    state = {}
    for name, tensor in module.state_dict().items():
        t = tensor.detach()
        shared = t.data_ptr() in seen
        seen.add(t.data_ptr())
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        t = t.cpu().contiguous()
        state[name] = t.clone() if shared else t
    return state


def check_finite(tensors: Mapping[str, Tensor], where: str | Path) -> None:
    """Raise `ValueError` naming `where` and the first tensor holding NaN or infinite values."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"{where}: tensor {name!r} holds {bad} NaN/infinite value(s) of "
                             f"{tensor.numel()}; the weights are damaged (re-export or use an earlier "
                             "checkpoint)")
