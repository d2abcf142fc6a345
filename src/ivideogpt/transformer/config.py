"""Configuration of the iVideoGPT transformer: architecture, token layout sizes, heads and loss weights.

The layout fields (vocabulary sizes, tokens per frame) are facts of the tokenizer the transformer runs on:
the trainer copies them from the tokenizer's config. The presets below set the architecture only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# GPU matmuls are faster when the vocabulary dimension is a multiple of 64 (nanoGPT pads GPT-2's 50257 to
# 50304); the extra rows are never targets and are masked out when sampling.
VOCAB_MULTIPLE = 64


@dataclass
class TransformerConfig:
    """LLaMA-style decoder over context codes, future codes, separator and slot tokens."""

    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads (n_embd must divide evenly; head size must be even for RoPE)
    n_embd: int = 768  # residual stream width
    mlp_hidden: int | None = None  # SwiGLU hidden width; None: 8/3 * n_embd rounded up to a multiple of 32
    dropout: float = 0.0  # dropout on embeddings and residual branches
    attn_dropout: float = 0.1  # dropout on attention probabilities (docs/method.md §2: 0.1)
    rope_theta: float = 10000.0  # RoPE base; positions are computed, so sequences may outgrow training
    tie_embeddings: bool = False  # share the token embedding with the LM head (the reference does not)
    # learned absolute position embeddings over the trained window, added beside RoPE (IRIS, nanoGPT): each
    # position is a fixed frame and grid cell, so a code knows where in the image it sits (docs/method.md §6)
    learned_positions: bool = False
    context_vocab_size: int = 8192  # codes of the context-frame codebook: token ids [0, Vc)
    future_vocab_size: int = 8192  # codes of the future-frame codebook: token ids [Vc, Vc + Vf)
    tokens_per_context_frame: int = 256  # N: codes per context frame (16x16 grid at 64x64)
    tokens_per_future_frame: int = 16  # n: codes per future frame (4x4 grid at 64x64)
    max_context_frames: int = 2  # context frames of the trained window (longer context still runs)
    max_future_frames: int = 15  # future frames of the trained window; longer rollouts slide (sampling.py)
    action_dim: int = 0  # A: width of the (zero-padded) action vector; 0 = action-free model
    # where a frame's action is added: "slot" (the paper: the SLOT token's embedding only) or "frame" (every
    # token of the frame it produces: SLOT and codes; an option, docs/method.md §6)
    action_to: str = "slot"
    # also add, through a second zero-initialised projection, the running sum of the future frames' actions
    # since the context: a compressive future code is relative to the context, so it shows the arm's
    # displacement since then, which the actions sum to (an option, docs/method.md §6; no-op without actions)
    action_sum: bool = False
    # also let the action scale and shift every block's two norms (adaLN, as DiT and DIAMOND condition on
    # theirs), through zero-initialised bias-free projections: the input-only path leaves a few blocks
    # little room to act on the action, a multiplicative one gates features by it (an option,
    # docs/method.md §6; no-op without actions; applied where `action_to` adds the action)
    action_modulation: bool = False
    reward_head: bool = False  # predict each future frame's reward from its last token
    done_head: bool = False  # predict each future frame's termination (logit) from its last token
    reward_symlog: bool = False  # regress rewards in symlog space (MBRL setting); sampling returns symexp
    reward_loss_weight: float = 1.0  # weight of the reward MSE beside the token cross-entropy
    done_loss_weight: float = 1.0  # weight of the termination BCE beside the token cross-entropy
    # weight of the action-contrast loss: each clip's future codes must be likelier under its actions than
    # under the same actions in reverse order (Transformer.compute_loss; docs/method.md §6); 0: off
    action_contrast_weight: float = 0.0
    # cross-entropy weight of a future code whose image patch moved since the last context frame is 1 + this
    # (the shards' moving.npy; docs/method.md §6): most codes cover still patches, the actions' effect is
    # in the others; 0: every code weighs the same
    moving_weight: float = 0.0
    # share of training clips whose actions are dropped (zeroed, as an action-free clip's), so the model
    # also learns the action-free prediction that action guidance contrasts with (classifier-free guidance,
    # transformer/sampling.py; docs/method.md §6); evaluation never drops; 0: off
    action_dropout: float = 0.0
    # training only: each future code the model reads (never one it predicts) is replaced by a random code
    # of its codebook with probability u * code_noise, u ~ U(0, 1) per clip, so that the imagined history of
    # a rollout, never exact, is no surprise and the motion must come from the actions rather than from
    # the frames before (docs/method.md §6); 0: off
    code_noise: float = 0.0
    # training only: each future code the model reads is replaced by the model's own greedy choice there
    # (from a first, gradient-free teacher-forced pass) with probability u * self_feed, u ~ U(0, 1) per clip:
    # parallel scheduled sampling, so that a rollout's own mistakes, which random codes do not resemble,
    # are no surprise (docs/method.md §6); 0: off
    self_feed: float = 0.0

    def __post_init__(self) -> None:
        positive = (
            "n_layer",
            "n_head",
            "n_embd",
            "context_vocab_size",
            "future_vocab_size",
            "tokens_per_context_frame",
            "tokens_per_future_frame",
            "max_context_frames",
            "max_future_frames",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"TransformerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.mlp_hidden is not None and self.mlp_hidden < 1:
            raise ValueError(f"TransformerConfig.mlp_hidden must be >= 1 or None, got {self.mlp_hidden}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"TransformerConfig.n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})"
            )
        if self.head_dim % 2:
            raise ValueError(
                f"TransformerConfig: head size n_embd / n_head = {self.head_dim} must be even for RoPE"
            )
        for name in ("dropout", "attn_dropout", "action_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"TransformerConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.rope_theta > 0:
            raise ValueError(f"TransformerConfig.rope_theta must be > 0, got {self.rope_theta}")
        if self.action_dim < 0:
            raise ValueError(f"TransformerConfig.action_dim must be >= 0, got {self.action_dim}")
        if self.action_to not in ("slot", "frame"):
            raise ValueError(f"TransformerConfig.action_to must be 'slot' or 'frame', got {self.action_to!r}")
        for name in ("code_noise", "self_feed"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"TransformerConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("reward_loss_weight", "done_loss_weight", "action_contrast_weight", "moving_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"TransformerConfig.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.n_embd // self.n_head

    @property
    def hidden_size(self) -> int:
        """SwiGLU hidden width (`mlp_hidden`, or 8/3 n_embd keeping the MLP's parameters at 4x-MLP level)."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        return _round_up(8 * self.n_embd // 3, 32)

    @property
    def action_input_dim(self) -> int:
        """Width of the per-position action rows: the action, and with `action_sum` its running sum."""
        return self.action_dim * (2 if self.action_sum else 1)

    @property
    def sep_id(self) -> int:
        """Separator token between context frames."""
        return self.context_vocab_size + self.future_vocab_size

    @property
    def slot_id(self) -> int:
        """Slot token that opens each future frame (and carries its action)."""
        return self.sep_id + 1

    @property
    def vocab_size(self) -> int:
        """Real token ids: both codebooks plus SEP and SLOT."""
        return self.slot_id + 1

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding and the LM head (vocab_size rounded up to VOCAB_MULTIPLE)."""
        return _round_up(self.vocab_size, VOCAB_MULTIPLE)

    @property
    def max_sequence_length(self) -> int:
        """Tokens of the trained window: max_context_frames context and max_future_frames future frames."""
        context = self.max_context_frames * (self.tokens_per_context_frame + 1) - 1
        return context + self.max_future_frames * (self.tokens_per_future_frame + 1)


# Fields that shape only the training loss or the inputs it sees, not the weights nor what the model computes
# in evaluation: a run may resume with other values (e.g. to branch an A/B from one checkpoint).
TRAINING_ONLY_FIELDS = ("dropout", "attn_dropout", "action_dropout", "code_noise", "self_feed",
                        "reward_loss_weight", "done_loss_weight", "action_contrast_weight", "moving_weight")


def state_dict_mismatch(cfg: TransformerConfig, state: Mapping[str, Any]) -> list[str]:
    """The config fields a transformer state_dict contradicts, as "field: X in the weights, Y in the config".

    Read from the tensor shapes (the layout's tokens per frame leave no trace in the weights).
    """
    found: dict[str, tuple[Any, Any]] = {}  # field -> (weights, config)
    emb = state.get("tok_emb.weight")
    if emb is not None:
        found["n_embd"] = (emb.shape[1], cfg.n_embd)
        found["vocabulary rows (context_vocab_size + future_vocab_size + 2, padded to a multiple of "
              f"{VOCAB_MULTIPLE})"] = (emb.shape[0], cfg.padded_vocab_size)
    found["n_layer"] = (len({k.split(".")[1] for k in state if k.startswith("blocks.")}), cfg.n_layer)
    gate = state.get("blocks.0.mlp.gate.weight")
    if gate is not None:
        found["mlp_hidden"] = (gate.shape[0], cfg.hidden_size)
    proj = state.get("action_proj.weight")
    found["action_dim"] = (0 if proj is None else proj.shape[1], cfg.action_dim)
    found["action_sum"] = ("action_sum_proj.weight" in state, bool(cfg.action_sum and cfg.action_dim))
    found["action_modulation"] = ("blocks.0.action_mod.weight" in state,
                                  bool(cfg.action_modulation and cfg.action_dim))
    found["reward_head"] = ("heads.reward.weight" in state, cfg.reward_head)
    found["done_head"] = ("heads.done.weight" in state, cfg.done_head)
    return [f"{field}: {saved} in the weights, {config} in the config"
            for field, (saved, config) in found.items() if saved != config]


# Architecture presets (plain values: they can be written to and read from YAML). Parameter counts with the
# reference tokenizer's layout (two 8192-code books): tiny 1.1M, small 13.2M, 138m 138.5M, 436m 436.4M.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"n_layer": 2, "n_head": 2, "n_embd": 32, "mlp_hidden": 64, "attn_dropout": 0.0},
    "small": {"n_layer": 6, "n_head": 8, "n_embd": 256, "mlp_hidden": 704},
    # the paper's two sizes: LLaMA blocks with a 3-matrix SwiGLU of width 4 * n_embd
    "138m": {"n_layer": 12, "n_head": 12, "n_embd": 768, "mlp_hidden": 3072},
    "436m": {"n_layer": 24, "n_head": 16, "n_embd": 1024, "mlp_hidden": 4096},
}


def transformer_preset(name: str, **overrides: Any) -> TransformerConfig:
    """A preset architecture with `overrides` (e.g. the tokenizer's layout fields) applied on top.

    Args:
        name: one of `PRESETS`.
        **overrides: TransformerConfig fields.

    Returns:
        The validated config.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown transformer preset {name!r}; available: {sorted(PRESETS)}")
    known = {f.name for f in dataclasses.fields(TransformerConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"transformer_preset: unknown TransformerConfig field(s) {sorted(unknown)}")
    return TransformerConfig(**{**PRESETS[name], **overrides})


def _round_up(x: int, multiple: int) -> int:
    return (x + multiple - 1) // multiple * multiple
