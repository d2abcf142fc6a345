"""The iVideoGPT transformer: token layout, LLaMA-style decoder, KV cache and frame sampling."""

from ivideogpt.transformer.config import PRESETS, TransformerConfig, transformer_preset
from ivideogpt.transformer.heads import FrameHeads, symexp, symlog
from ivideogpt.transformer.kv_cache import KVCache
from ivideogpt.transformer.layout import TokenLayout
from ivideogpt.transformer.model import Transformer, TransformerOutput
from ivideogpt.transformer.reference import generate_frames_uncached
from ivideogpt.transformer.sampling import RolloutState, generate_frames, sample_codes, start, step

__all__ = [
    "PRESETS",
    "FrameHeads",
    "KVCache",
    "RolloutState",
    "TokenLayout",
    "Transformer",
    "TransformerConfig",
    "TransformerOutput",
    "generate_frames",
    "generate_frames_uncached",
    "sample_codes",
    "start",
    "step",
    "symexp",
    "symlog",
    "transformer_preset",
]
