"""Video tokenizers: iVideoGPT's compressive conditional VQGAN and a per-frame baseline.

    tok = build_tokenizer(tokenizer_preset("tiny"))
    out = tok(clip, num_context=2)                       # clip float (B, T, 3, H, W) in [-1, 1]
    ctx_codes, fut_codes = tok.tokenize(clip, 2)         # (B, Tc, 16, 16), (B, Tf, 4, 4)
    state = tok.context_from_codes(ctx_codes)            # cached D_c features for rollouts
    frame = tok.decode_future(fut_codes[:, 0], state)    # (B, 3, H, W)
"""

from ivideogpt.tokenizer.compressive import (
    CompressiveTokenizer,
    ContextState,
    PerFrameTokenizer,
    TokenizerOutput,
    VideoTokenizer,
    build_tokenizer,
    check_state_dict,
)
from ivideogpt.tokenizer.config import (
    TOKENIZER_PRESETS,
    QuantizerConfig,
    TokenizerConfig,
    TokenizerLossConfig,
    tokenizer_preset,
)
from ivideogpt.tokenizer.losses import PatchDiscriminator, TokenizerLoss
from ivideogpt.tokenizer.lpips import LPIPS, LPIPSWeightsError
from ivideogpt.tokenizer.quantizer import QuantizerOutput, VectorQuantizer
from ivideogpt.tokenizer.vqgan import VQGAN

__all__ = [
    "LPIPS",
    "TOKENIZER_PRESETS",
    "VQGAN",
    "CompressiveTokenizer",
    "ContextState",
    "LPIPSWeightsError",
    "PatchDiscriminator",
    "PerFrameTokenizer",
    "QuantizerConfig",
    "QuantizerOutput",
    "TokenizerConfig",
    "TokenizerLoss",
    "TokenizerLossConfig",
    "TokenizerOutput",
    "VectorQuantizer",
    "VideoTokenizer",
    "build_tokenizer",
    "check_state_dict",
    "tokenizer_preset",
]
