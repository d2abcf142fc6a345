"""The world model behind one rollout API: tokenizer + transformer, loaded from one folder.

    wm = WorldModel.load("runs/metaworld64")                  # <run>/world_model/ or the folder itself
    state = wm.reset(context_frames, seed=0)                  # uint8 (B, Tc, H, W, 3)
    frames, rewards, dones, state = wm.step(state, actions)   # (B, A) -> uint8 (B, H, W, 3), (B,), (B,)
    out = wm.rollout(context_frames, actions, seed=0)         # (B, T, A) -> out.frames uint8 (B, T, H, W, 3)
    out = wm.imagine(wm.reset(frame[None]).select([0] * N), actions)  # one context, N action sequences

A rollout encodes the context once (tokens for the transformer, decoder features for the tokenizer), then
each imagined frame costs 1 + n KV-cached single-token steps (`transformer.sampling`) and one decoder pass
that attends to the cached context features. Rollouts longer than the trained clip slide the window
(`window_frames` / `slide_frames`). Folder layout and JSON fields: the module constants below and
`WorldModelSpec` (the contract shared with the trainer and the evaluators).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ivideogpt.filenames import EXPORT_DIR, SPEC_FILE, TOKENIZER_FILE, TRANSFORMER_FILE  # re-exported too
from ivideogpt.precision import Precision
from ivideogpt.tokenizer import ContextState, VideoTokenizer, build_tokenizer
from ivideogpt.transformer import RolloutState, Transformer, generate_frames_uncached, sampling
from ivideogpt.transformer.fast_decode import PRECISIONS, DecodeOptions
from ivideogpt.world_model_frames import decode_frame, decode_frames, encode_context
from ivideogpt.world_model_inputs import check_actions, check_context_frames, horizon_of
from ivideogpt.world_model_io import (  # re-exported: the folder format is part of this API
    FORMAT,
    VERSION,
    SamplingConfig,
    WorldModelSpec,
    check_still_split,
    layout_fields,
    load_state,
    read_spec,
    resolve_world_model_dir,
    write_folder,
)

__all__ = ["EXPORT_DIR", "FORMAT", "SPEC_FILE", "TOKENIZER_FILE", "TRANSFORMER_FILE", "VERSION", "Rollout",
           "SamplingConfig", "WorldModel", "WorldModelSpec", "WorldModelState", "layout_fields", "read_spec",
           "resolve_world_model_dir"]


@dataclass
class Rollout:
    """An imagined future of every batch row."""

    frames: np.ndarray | None  # uint8 (B, T, H, W, 3); None only from `imagine(..., decode=False)`
    rewards: np.ndarray | None  # float32 (B, T); None when the model has no reward head
    dones: np.ndarray | None  # float32 (B, T) termination probabilities; None without a done head


@dataclass
class WorldModelState:
    """A batch of ongoing rollouts; `WorldModel.step` advances it in place and returns it."""

    context: ContextState  # context codes and the decoder features every imagined frame attends to
    rollout: RolloutState  # transformer KV cache and the future codes in the window
    generator: torch.Generator  # seeded source of all sampling noise of these rollouts
    sampling: SamplingConfig  # every step's temperature, top-k (guidance, still split: in `rollout`)

    @property
    def batch_size(self) -> int:
        return self.rollout.batch_size

    @property
    def num_steps(self) -> int:
        """Frames imagined since `reset`."""
        return self.rollout.num_generated

    def select(self, index: Tensor | np.ndarray | list[int]) -> WorldModelState:
        """Keep batch rows `index` (int (B',)), repeats allowed (fan one context out into many futures).

        The generator is shared with the original state, so the selected rows draw fresh noise from it.
        """
        index = torch.as_tensor(index, dtype=torch.long, device=self.context.codes.device)
        self.rollout.select(index)
        self.context = self.context.select(index)
        return self

    def share_noise(self, period: int = 1) -> WorldModelState:
        """Common random numbers: from now on row i draws the sampling noise of row i mod `period`.

        Rows with the same context then differ only where their actions change which code the shared draw
        picks (transformer/sampling.py); `period` must divide the batch (1: every row shares one draw; K:
        each of K particles per action sequence, rows of a sequence adjacent, has its own). 0 undoes it.
        """
        if period < 0 or (period and self.batch_size % period):
            raise ValueError(f"share_noise: period must be 0 or divide the batch of {self.batch_size} rows, "
                             f"got {period}")
        self.rollout.noise_period = period
        return self


class WorldModel:
    """A trained tokenizer and transformer, rolled out together (see the module docstring).

    Attributes:
        window_frames: future frames the transformer attends to at once (default: the trained Tf). Longer
            rollouts drop the oldest `slide_frames` future frames when the window is full; the context
            frames are always kept.
        slide_frames: frames dropped per slide (default half the window).
        precision: how rollouts compute (ivideogpt/precision.py): "float32" (default), "bfloat16-cache"
            (bf16 KV cache: faster at batch >= 32) or "bfloat16" (for GPUs and CPUs with AMX).
    """

    def __init__(self, tokenizer: VideoTokenizer, transformer: Transformer, spec: WorldModelSpec) -> None:
        for name, module, cfg in (
            ("tokenizer", tokenizer, spec.tokenizer),
            ("transformer", transformer, spec.transformer),
        ):
            if module.cfg != cfg:
                fields = dataclasses.fields(cfg)
                diff = [f.name for f in fields if getattr(cfg, f.name) != getattr(module.cfg, f.name)]
                raise ValueError(f"WorldModel: spec.{name} differs from the {name}'s config in fields {diff}")
        # channels-last convolutions skip oneDNN's layout reorders: decoding runs 1.6x faster on this CPU
        # (bench/rollout.py's decoder share); the values agree to float rounding
        self.tokenizer = tokenizer.to(memory_format=torch.channels_last)
        self.transformer, self.spec = transformer, spec
        self.window_frames: int = spec.future_frames
        self.slide_frames: int = max(1, spec.future_frames // 2)
        self.precision: Precision = "float32"

    @classmethod
    def from_spec(cls, spec: WorldModelSpec) -> WorldModel:
        """Freshly initialised (untrained) models of the spec's architecture: for tests and benchmarks."""
        return cls(build_tokenizer(spec.tokenizer), Transformer(spec.transformer), spec)

    # ------------------------------------------------------------------------------- properties

    @property
    def num_context_frames(self) -> int:
        return self.spec.context_frames

    @property
    def action_dim(self) -> int:
        return self.spec.action_dim

    @property
    def image_size(self) -> int:
        return self.spec.image_size

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    def to(self, device: str | torch.device) -> WorldModel:
        """Move both models to `device` (in place); returns self."""
        self.tokenizer.to(device)
        self.transformer.to(device)
        return self

    @property
    def decode_options(self) -> DecodeOptions:
        """The transformer's decode settings of `precision`."""
        if self.precision not in PRECISIONS:
            raise ValueError(f"WorldModel.precision must be one of {sorted(PRECISIONS)}, "
                             f"got {self.precision!r}")
        return PRECISIONS[self.precision]

    # ---------------------------------------------------------------------------------- rollouts

    def reset(
        self,
        context_frames: np.ndarray | Tensor,
        seed: int | None = None,
        *,
        temperature: float | None = None,
        top_k: int | None = None,
        action_guidance: float | None = None,
        still_split: bool | None = None,
    ) -> WorldModelState:
        """Start B rollouts from real context frames.

        Args:
            context_frames: uint8 (B, T, H, W, 3) with T >= `num_context_frames`; the last Tc are used.
            seed: seeds all sampling of these rollouts (None: a random seed).
            temperature, top_k, action_guidance, still_split: override the spec's sampling defaults
                (`SamplingConfig`).

        Returns:
            The state to pass to `step`.
        """
        context = self._encode_context(context_frames)
        how = self.sampling_config(temperature, top_k, action_guidance, still_split)
        rollout = sampling.start(self.transformer, self._context_tokens(context), self.window_frames,
                                 self.slide_frames, self.decode_options, how.action_guidance, how.still_split)
        return WorldModelState(context, rollout, self._generator(seed), how)

    def step(
        self, state: WorldModelState, actions: np.ndarray | Tensor | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, WorldModelState]:
        """Imagine the next frame of every rollout.

        Args:
            state: from `reset`; advanced in place.
            actions: float (B, A), the actions producing the next frames; None for an action-free model
                (an action model then gets zero actions, which add nothing).

        Returns:
            frames uint8 (B, H, W, 3), rewards float32 (B,), dones bool (B,) (termination probability
            > 0.5), each zeros/False where the model lacks the head; the state.
        """
        b = state.batch_size
        action = self._check_actions(actions, (b, self.action_dim), "actions")
        how = state.sampling
        codes, reward, done, _ = sampling.step(self.transformer, state.rollout, action, how.temperature,
                                               how.top_k, state.generator)
        frames = decode_frame(self.tokenizer, codes, state.context, self.decode_options.dtype)
        rewards = np.zeros(b, np.float32) if reward is None else reward.cpu().numpy().astype(np.float32)
        dones = np.zeros(b, bool) if done is None else (done > 0.5).cpu().numpy()
        return frames, rewards, dones, state

    def rollout(
        self,
        context_frames: np.ndarray | Tensor,
        actions: np.ndarray | Tensor | None = None,
        horizon: int | None = None,
        seed: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        *,
        action_guidance: float | None = None,
        still_split: bool | None = None,
        cached: bool = True,
    ) -> Rollout:
        """Imagine T frames after the context in one call.

        Args:
            context_frames: uint8 (B, Tc', H, W, 3), Tc' >= `num_context_frames` (the last Tc are used).
            actions: float (B, T, A); row t produces imagined frame t. None: action-free (give `horizon`).
            horizon: T; must match `actions` when both are given.
            seed: seeds the sampling (None: random); the same seed gives the same frames.
            temperature, top_k, action_guidance, still_split: override the spec's sampling defaults
                (`SamplingConfig`).
            cached: False runs the reference path that re-runs the whole window for every token (same
                samples, far slower; for tests and benchmarks; float32 whatever `precision` says).

        Returns:
            `Rollout` with frames (B, T, H, W, 3) and, where the model has the heads, rewards and
            termination probabilities (B, T).
        """
        context = self._encode_context(context_frames)
        b = context.batch_size
        if actions is None:
            if horizon is None or horizon < 1:
                raise ValueError(f"rollout: without actions, give horizon >= 1 (frames), got {horizon}")
            action_seq = None
        else:
            t = horizon if horizon is not None else horizon_of(actions, self.action_dim)
            action_seq = self._check_actions(actions, (b, t, self.action_dim), "actions")
            horizon = t
        how = self.sampling_config(temperature, top_k, action_guidance, still_split)
        args = (self.transformer, self._context_tokens(context), action_seq, horizon, how.temperature,
                how.top_k, self._generator(seed), self.window_frames, self.slide_frames)
        if cached:
            codes, rewards, dones = sampling.generate_frames(*args, self.decode_options, how.action_guidance,
                                                             how.still_split)
        else:
            codes, rewards, dones = generate_frames_uncached(*args, guidance=how.action_guidance,
                                                             still_split=how.still_split)
        frames = decode_frames(self.tokenizer, codes, context, self.decode_options.dtype)  # (B, T, H, W, 3)
        return Rollout(frames, _numpy_or_none(rewards), _numpy_or_none(dones))

    def imagine(
        self, state: WorldModelState, actions: np.ndarray | Tensor, *, decode: bool = True
    ) -> Rollout:
        """Continue `state` for T frames under `actions`, decoding the frames together at the end.

        What a planner needs: `reset` one context, `select` it into N rows (the context is encoded once,
        its KV cache shared by the N rows), then imagine N action sequences in one batch. Decoding all T
        frames in batched passes is cheaper than `step`'s one pass per frame, and `decode=False` skips the
        decoder (a third or more of the time) for consumers that score only the predicted rewards.

        Args:
            state: from `reset` (or earlier steps); advanced in place.
            actions: float (B, T, A); row t produces imagined frame t.
            decode: False returns `frames=None`.

        Returns:
            `Rollout` with frames (B, T, H, W, 3) (or None), rewards and termination probabilities (B, T)
            where the model has the heads.
        """
        t = horizon_of(actions, self.action_dim)
        action_seq = self._check_actions(actions, (state.batch_size, t, self.action_dim), "actions")
        steps = [sampling.step(self.transformer, state.rollout, action_seq[:, i], state.sampling.temperature,
                               state.sampling.top_k, state.generator)[:3] for i in range(t)]
        codes, rewards, dones = zip(*steps, strict=True)
        codes = torch.stack(codes, dim=1)  # (B, T, n)
        rewards, dones = _stack_or_none(rewards), _stack_or_none(dones)  # (B, T) each, or None
        frames = None
        if decode:
            frames = decode_frames(self.tokenizer, codes, state.context, self.decode_options.dtype)
        return Rollout(frames, _numpy_or_none(rewards), _numpy_or_none(dones))

    # ------------------------------------------------------------------------------ save / load

    def save(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write the world-model folder atomically (see `world_model_io.write_folder`); returns `path`."""
        return write_folder(path, self.spec, self.tokenizer, self.transformer, dtype)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> WorldModel:
        """Load a world-model folder (or a run folder holding `world_model/`), in eval mode, offline.

        Raises:
            FileNotFoundError: nothing at `path`, or one of the three files is missing.
            ValueError: a file is corrupt, of another format or a newer version, or does not fit its config.
        """
        folder = resolve_world_model_dir(path)
        spec = read_spec(folder)
        tokenizer = build_tokenizer(spec.tokenizer)
        transformer = Transformer(spec.transformer)
        # the transformer's config is passed so that weights of another model name the fields they contradict
        for module, name, config in ((tokenizer, TOKENIZER_FILE, None),
                                     (transformer, TRANSFORMER_FILE, spec.transformer)):
            load_state(module, folder / name, config)
            module.to(device).eval()
        return cls(tokenizer, transformer, spec)

    # ----------------------------------------------------------------------------------- helpers

    def _encode_context(self, frames: np.ndarray | Tensor) -> ContextState:
        """uint8 (B, T, H, W, 3), T >= Tc -> the tokenizer's context state of the last Tc frames."""
        x = check_context_frames(frames, self.image_size, self.num_context_frames)
        tc = self.num_context_frames
        return encode_context(self.tokenizer, x[:, -tc:].to(self.device), self.decode_options.dtype)

    def _context_tokens(self, context: ContextState) -> Tensor:
        """Context codes (B, Tc, hc, wc) -> (B, Tc, N) as the transformer reads them."""
        return context.codes.flatten(2)

    def _check_actions(
        self, actions: np.ndarray | Tensor | None, shape: tuple[int, ...], name: str
    ) -> Tensor | None:
        """Validate and convert actions to float32 `shape` on the model's device (None stays None)."""
        return check_actions(actions, shape, self.action_dim, self.device, name)

    def sampling_config(self, temperature: float | None = None, top_k: int | None = None,
                        action_guidance: float | None = None,
                        still_split: bool | None = None) -> SamplingConfig:
        """The sampling a rollout uses: these overrides (None keeps each) on the spec's defaults."""
        how = self.spec.sampling.overridden(temperature=temperature, top_k=top_k,
                                            action_guidance=action_guidance, still_split=still_split)
        check_still_split(how, self.tokenizer.cfg)
        return how

    def _generator(self, seed: int | None) -> torch.Generator:
        generator = torch.Generator(self.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        return generator


def _stack_or_none(xs: tuple[Tensor | None, ...]) -> Tensor | None:
    return None if xs[0] is None else torch.stack(xs, dim=1)


def _numpy_or_none(x: Tensor | None) -> np.ndarray | None:
    return None if x is None else x.float().cpu().numpy()

