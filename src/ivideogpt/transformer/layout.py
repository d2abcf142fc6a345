"""The token layout: how a clip's codes, actions and rewards map onto one token sequence.

Training (`Transformer.compute_loss`) and sampling (`sampling.py`) both go through this module, so the
two can never disagree about where a slot, a target or a reward lives.

Vocabulary (Vc context codes, Vf future codes):

    [0, Vc)           context codes
    [Vc, Vc + Vf)     future codes (future codebook index + Vc)
    Vc + Vf           SEP   between consecutive context frames
    Vc + Vf + 1       SLOT  opens each future frame; its embedding carries that frame's action

Sequence for Tc context frames of N codes and Tf future frames of n codes:

    [ctx 1: N] [SEP] [ctx 2: N] ... [SEP] [ctx Tc: N] [SLOT] [fut 1: n] [SLOT] [fut 2: n] ...

SEP goes *between* context frames, not before the first one: this is the reference code's layout and the
paper's example (`[ctx1] [sep] [ctx2] [slot] ...`; 16 frames with one context frame = 256 + 15 x 17 = 511
tokens). The wording "a separator before each context frame" would add a leading SEP that the
example does not have. Length: L = Tc * N + (Tc - 1) + Tf * (n + 1).

Alignment with episode rows (project convention: row t of actions/rewards/dones belongs to the step that
PRODUCED frame t): future frame t (0-based) is clip frame Tc + t, so its SLOT gets `actions[:, Tc + t]`
and its last code's hidden state predicts `rewards[:, Tc + t]` and `dones[:, Tc + t]`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ivideogpt.transformer.config import TransformerConfig


class TokenLayout:
    """Builds, splits and indexes token sequences for one model config (see the module docstring)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        self.context_vocab_size = cfg.context_vocab_size  # Vc
        self.future_vocab_size = cfg.future_vocab_size  # Vf
        self.context_tokens = cfg.tokens_per_context_frame  # N
        self.future_tokens = cfg.tokens_per_future_frame  # n
        self.sep_id = cfg.sep_id
        self.slot_id = cfg.slot_id
        self.vocab_size = cfg.vocab_size
        self.action_every_token = cfg.action_to == "frame"  # else the SLOT only

    # ------------------------------------------------------------------------------------ lengths

    @property
    def frame_length(self) -> int:
        """Tokens per future frame in the sequence: its SLOT and its n codes."""
        return self.future_tokens + 1

    def context_length(self, num_context: int) -> int:
        """Tokens of the context part: Tc frames of N codes and the Tc - 1 separators between them."""
        _check_count("num_context", num_context, minimum=1)
        return num_context * (self.context_tokens + 1) - 1

    def sequence_length(self, num_context: int, num_future: int) -> int:
        """Tokens of a whole clip sequence (L)."""
        _check_count("num_future", num_future, minimum=0)
        return self.context_length(num_context) + num_future * self.frame_length

    # ---------------------------------------------------------------------------- build and split

    def encode_context(self, context_codes: Tensor) -> Tensor:
        """Context codes (B, Tc, N) in [0, Vc) -> tokens (B, Tc * N + Tc - 1) with SEP between frames."""
        b, t, _ = self._check_codes(
            context_codes, "context_codes", self.context_tokens, self.context_vocab_size
        )
        sep = torch.full((b, t, 1), self.sep_id, device=context_codes.device)  # int64: ids outgrow uint16
        tokens = torch.cat([sep, context_codes.long()], dim=2).flatten(1)  # (B, Tc * (N + 1)): [SEP ctx1 ...]
        return tokens[:, 1:]  # no SEP before the first frame

    def encode_future(self, future_codes: Tensor) -> Tensor:
        """Future codes (B, Tf, n) in [0, Vf) -> tokens (B, Tf * (n + 1)): [SLOT, codes + Vc] per frame."""
        b, t, _ = self._check_codes(future_codes, "future_codes", self.future_tokens, self.future_vocab_size)
        slot = torch.full((b, t, 1), self.slot_id, device=future_codes.device)
        return torch.cat([slot, future_codes.long() + self.context_vocab_size], dim=2).flatten(1)

    def build(self, context_codes: Tensor, future_codes: Tensor) -> Tensor:
        """The clip sequence (B, L) of context codes (B, Tc, N) and future codes (B, Tf, n)."""
        if context_codes.shape[0] != future_codes.shape[0]:
            raise ValueError(
                f"TokenLayout.build: batch sizes differ: context_codes {tuple(context_codes.shape)}, "
                f"future_codes {tuple(future_codes.shape)}"
            )
        return torch.cat([self.encode_context(context_codes), self.encode_future(future_codes)], dim=1)

    def split(self, tokens: Tensor, num_context: int) -> tuple[Tensor, Tensor]:
        """Exact inverse of `build`: tokens (B, L) -> context codes (B, Tc, N), future codes (B, Tf, n)."""
        if tokens.ndim != 2:
            raise ValueError(f"TokenLayout.split: tokens must be (B, L), got shape {tuple(tokens.shape)}")
        b, length = tokens.shape
        lc = self.context_length(num_context)
        if length < lc or (length - lc) % self.frame_length:
            raise ValueError(
                f"TokenLayout.split: {length} tokens is not {lc} context tokens plus whole future "
                f"frames of {self.frame_length} tokens"
            )
        context = torch.cat([tokens[:, :lc], tokens.new_full((b, 1), self.sep_id)], dim=1)
        context = context.view(b, num_context, self.context_tokens + 1)  # each frame followed by a SEP
        future = tokens[:, lc:].view(b, -1, self.frame_length)  # (B, Tf, 1 + n)
        if not bool((context[:, :, -1] == self.sep_id).all() & (future[:, :, 0] == self.slot_id).all()):
            raise ValueError("TokenLayout.split: SEP/SLOT tokens are not where the layout puts them")
        return context[:, :, :-1], future[:, :, 1:] - self.context_vocab_size

    # ----------------------------------------------------------------------------- index tensors

    def slot_positions(self, num_context: int, num_future: int, device: torch.device | None = None) -> Tensor:
        """Positions (Tf,) of each future frame's SLOT token (where its action is added)."""
        start = self.context_length(num_context)
        return start + torch.arange(num_future, device=device) * self.frame_length

    def frame_end_positions(
        self, num_context: int, num_future: int, device: torch.device | None = None
    ) -> Tensor:
        """Positions (Tf,) of each future frame's last code (the reward and done heads read there)."""
        return self.slot_positions(num_context, num_future, device) + self.future_tokens

    def target_positions(
        self, num_context: int, num_future: int, device: torch.device | None = None
    ) -> Tensor:
        """Positions (Tf * n,) whose NEXT token is a future code: each SLOT and all but a frame's last code.

        Cross-entropy is taken on these positions only: context codes, SEP and SLOT are never targets.
        """
        offsets = torch.arange(self.future_tokens, device=device)  # SLOT, code 0, ..., code n-2
        return (self.slot_positions(num_context, num_future, device)[:, None] + offsets).flatten()

    def target_mask(self, num_context: int, num_future: int, device: torch.device | None = None) -> Tensor:
        """Bool (L,): True at `target_positions` (the loss mask)."""
        mask = torch.zeros(self.sequence_length(num_context, num_future), dtype=torch.bool, device=device)
        mask[self.target_positions(num_context, num_future, device)] = True
        return mask

    def action_rows(self, actions: Tensor, num_context: int) -> Tensor:
        """Clip actions (B, Tc + Tf, A) -> per-position rows (B, L, A): row Tc + t at future frame t's SLOT
        (and at its codes too with `action_to="frame"`); every other position gets zeros."""
        if actions.ndim != 3 or actions.shape[1] < num_context:
            raise ValueError(
                f"TokenLayout.action_rows: actions must be (B, Tc + Tf, A) with Tc = {num_context}, "
                f"got shape {tuple(actions.shape)}"
            )
        b, _, a = actions.shape
        context = actions.new_zeros(b, self.context_length(num_context), a)
        return torch.cat([context, self.future_action_rows(actions[:, num_context:])], dim=1)

    def future_action_rows(self, actions: Tensor) -> Tensor:
        """Actions (B, Tf, A) of future frames -> rows (B, Tf * (n + 1), A) aligned with `encode_future`."""
        b, t, a = actions.shape
        if self.action_every_token:  # every token of the frame: its SLOT and its codes
            return actions[:, :, None].expand(b, t, self.frame_length, a).flatten(1, 2)
        rows = actions.new_zeros(b, t, self.frame_length, a)
        rows[:, :, 0] = actions  # the SLOT is each frame's first token
        return rows.flatten(1, 2)

    # ------------------------------------------------------------------------------------ checks

    def _check_codes(self, codes: Tensor, name: str, per_frame: int, vocab: int) -> tuple[int, int, int]:
        if codes.ndim != 3 or codes.shape[2] != per_frame:
            raise ValueError(f"{name} must be (B, T, {per_frame}), got shape {tuple(codes.shape)}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer tensor, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= vocab):
            raise ValueError(
                f"{name} must lie in [0, {vocab}), got min {int(codes.min())}, max {int(codes.max())}"
            )
        return codes.shape[0], codes.shape[1], codes.shape[2]


def _check_count(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"TokenLayout: {name} must be >= {minimum}, got {value}")
