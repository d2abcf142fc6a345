"""LLaMA-style decoder-only transformer over frame tokens (docs/method.md §2).

Read top-down: the model (forward, loss, likelihood); its parts (block, attention, SwiGLU MLP, RMSNorm,
rotary positions) are in blocks.py, and loading a parent's weights into it in pretrained.py.

Actions enter without tokens of their own: a zero-initialised, bias-free Linear(A, d) is added to the
embedding of each future frame's SLOT token. Zero init means an action model starts out computing exactly
what its action-free parent computed; no bias means a zero action (an action-free clip in a mixed batch)
adds nothing at all, trained or not. With `action_sum`, a second such projection adds the running sum of
the future frames' actions since the context (`frame_action_inputs`). With `action_modulation`, every
block's norms are also scaled and shifted by the same rows (`Block`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ivideogpt.data.tokens import TokenBatch
from ivideogpt.transformer.blocks import Block, RMSNorm, offset_causal_mask, rope_cos_sin, rope_frequencies
from ivideogpt.transformer.config import TransformerConfig
from ivideogpt.transformer.heads import FrameHeads
from ivideogpt.transformer.kv_cache import KVCache
from ivideogpt.transformer.layout import TokenLayout

logger = logging.getLogger(__name__)

@dataclass
class TransformerOutput:
    """What one forward returns."""

    logits: Tensor  # (B, T, V_padded), or (B, P, V_padded) at `logit_positions`
    reward_pred: Tensor | None  # (B, T) reward head at every position (symlog space if configured)
    done_logit: Tensor | None  # (B, T) termination logit at every position
    hidden: Tensor  # (B, T, d) final (normed) hidden states


class Transformer(nn.Module):
    """The iVideoGPT world-model transformer; token ids follow `TokenLayout`."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layout = TokenLayout(cfg)
        self.tok_emb = nn.Embedding(cfg.padded_vocab_size, cfg.n_embd)
        self.action_proj = nn.Linear(cfg.action_dim, cfg.n_embd, bias=False) if cfg.action_dim else None
        summed = cfg.action_dim and cfg.action_sum
        self.action_sum_proj = nn.Linear(cfg.action_dim, cfg.n_embd, bias=False) if summed else None
        self.pos_emb = nn.Embedding(cfg.max_sequence_length, cfg.n_embd) if cfg.learned_positions else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.norm = RMSNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.padded_vocab_size, bias=False)
        self.heads = FrameHeads(cfg)
        self.register_buffer("inv_freq", rope_frequencies(cfg.head_dim, cfg.rope_theta), persistent=False)
        self._init_weights()
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        logger.info("transformer: %.2fM parameters", self.num_params() / 1e6)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:  # residual projections scaled down with depth (GPT-2)
            for proj in (block.attn.proj, block.mlp.down):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.cfg.n_layer))
        # zero: adding actions or positions changes nothing at first; heads start at "reward 0, done p=0.5"
        zero_init = (self.action_proj, self.action_sum_proj, self.pos_emb, self.heads.reward, self.heads.done,
                     *(block.action_mod for block in self.blocks))
        for head in zero_init:
            if head is not None:
                nn.init.zeros_(head.weight)

    def forward(
        self,
        tokens: Tensor,
        actions: Tensor | None = None,
        kv_cache: KVCache | None = None,
        logit_positions: Tensor | None = None,
    ) -> TransformerOutput:
        """Run tokens (B, T) at positions [cache length, cache length + T).

        Args:
            tokens: int64 (B, T) token ids (see `TokenLayout`).
            actions: float (B, T, A_in) per-position action inputs (`frame_action_inputs`, placed by
                `TokenLayout.action_rows`); with `action_to="slot"` only rows at SLOT tokens are used.
                None: no action (same as zeros).
            kv_cache: cache to attend to and extend by T tokens; None runs the sequence from position 0.
            logit_positions: int (P,) positions to compute LM logits at (default all); the LM head is the
                widest matmul, and training and sampling need only a fraction of the positions.

        Returns:
            `TransformerOutput`.
        """
        t = self._check_inputs(tokens, actions)
        start = 0 if kv_cache is None else kv_cache.length
        x = self.tok_emb(tokens)  # (B, T, d)
        if actions is not None:
            weight = self.action_weight()
            actions = actions.to(weight.dtype)
            if self.cfg.action_to == "slot":  # the layout's rows are zero elsewhere; a caller's may not be
                actions = actions * (tokens == self.cfg.slot_id).unsqueeze(-1)
            x = x + actions @ weight  # (B, T, d)
        if self.pos_emb is not None:
            x = x + self.pos_emb(self._learned_positions(start, t, tokens.device))
        x = self.drop(x)
        rope = rope_cos_sin(torch.arange(start, start + t, device=tokens.device), self.inv_freq)
        mask = offset_causal_mask(start, t, tokens.device)  # None: plain causal (or a single query)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, mask, kv_cache, i, actions)
        if kv_cache is not None:
            kv_cache.advance(t)
        h = self.norm(x)  # (B, T, d)
        logits = self.lm_head(h if logit_positions is None else h[:, logit_positions])  # (B, T or P, V)
        reward_pred, done_logit = self.heads(h)
        return TransformerOutput(logits, reward_pred, done_logit, h)

    def frame_action_inputs(self, actions: Tensor, before: Tensor | None = None) -> Tensor:
        """Per-frame actions (B, T, A) of future frames -> the model's action inputs (B, T, A_in): the
        actions, and with `action_sum` beside them their running sum since the context (`before`: (B, A),
        the sum of earlier future frames' actions, e.g. of frames a rollout's window has dropped)."""
        if self.action_sum_proj is None:
            return actions
        total = actions.cumsum(1)
        if before is not None:
            total = total + before[:, None]
        return torch.cat([actions, total], dim=-1)

    def action_weight(self) -> Tensor:
        """(A_in, d): an action-input row times it is what the actions add to a token's embedding."""
        if self.action_sum_proj is None:
            return self.action_proj.weight.t()
        return torch.cat([self.action_proj.weight, self.action_sum_proj.weight], dim=1).t()

    def compute_loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float], TransformerOutput]:
        """Training loss of a batch of clips: CE on future codes, reward MSE and done BCE at frame ends.

        The training job runs this method as the forward of its DDP / compile wrapper
        (`Runtime.wrap(model, method="compute_loss")`), so gradients flow through the wrapper.

        Args:
            batch: clips of Tc context and Tf >= 1 future frames (`TokenBatch`). Row Tc + t of
                `actions`, `rewards` and `dones` belongs to future frame t (rows of context frames are
                ignored); clips without `has_actions` get no action, only clips with `has_rewards` train
                the reward/done heads; (B, T, 0) actions mean action-free data.

        Returns:
            The scalar loss; float metrics (loss, ce, accuracy and, with heads, reward_mse / done_bce); and
            the forward's output (LM logits at the target positions only).
        """
        context_codes, future_codes = batch.context_codes, batch.future_codes
        (b, tc), tf = context_codes.shape[:2], future_codes.shape[1]
        if tf < 1:
            raise ValueError(
                f"compute_loss: future_codes must hold at least one frame, got {tuple(future_codes.shape)}"
            )
        tokens = self.layout.build(context_codes, future_codes)  # (B, L)
        device = tokens.device
        targets_at = self.layout.target_positions(tc, tf, device)  # (Tf * n,)
        has_actions = batch.has_actions
        if self.training and self.cfg.action_dropout:
            has_actions = has_actions & (torch.rand(b, device=device) >= self.cfg.action_dropout)
        action_rows = self._clip_actions(batch.actions, has_actions, b, tc, tf)  # (B, L, A) or None
        targets = tokens[:, targets_at + 1]  # (B, Tf * n) future codes
        if self.training and self.cfg.self_feed:
            tokens = self._self_fed_inputs(tokens, action_rows, targets_at)
        if self.training and self.cfg.code_noise:
            vc, vf = self.cfg.context_vocab_size, self.cfg.future_vocab_size
            noise = torch.randint(vc, vc + vf, (b, targets_at.numel()), device=device)
            tokens = _mixed_inputs(tokens, targets_at + 1, noise, self.cfg.code_noise)
        out, token_nll = self._target_nll(tokens, action_rows, targets_at, targets)  # (B, Tf * n)
        ce = token_nll.mean()
        ends = self.layout.frame_end_positions(tc, tf, device)  # (Tf,)
        head_loss, metrics = self.heads.loss(
            None if out.reward_pred is None else out.reward_pred[:, ends],
            None if out.done_logit is None else out.done_logit[:, ends],
            _check_rows(batch.rewards, "rewards", b, tc + tf)[:, tc:],
            _check_rows(batch.dones, "dones", b, tc + tf)[:, tc:],
            batch.has_rewards,
        )
        fit = self._moving_weighted_ce(token_nll, batch.moving) if self.cfg.moving_weight else ce
        loss = fit + head_loss
        if self.cfg.action_contrast_weight and action_rows is not None:
            contrast, margin = self._action_contrast(batch, tokens, targets_at, targets,
                                                     token_nll.view(b, tf, -1))
            loss = loss + self.cfg.action_contrast_weight * contrast
            metrics = {**metrics, "action_contrast": contrast, "action_margin": margin}
        accuracy = (out.logits.argmax(-1) == targets).float().mean()
        metrics = {"loss": loss, "ce": ce, "accuracy": accuracy, **metrics}
        values = torch.stack([value.detach().float() for value in metrics.values()]).tolist()  # one sync
        return loss, dict(zip(metrics, values, strict=True)), out

    def _moving_weighted_ce(self, token_nll: Tensor, moving: Tensor | None) -> Tensor:
        """Mean NLL (B, Tf * n) of the codes, those whose patch moved weighing 1 + `cfg.moving_weight`."""
        if moving is None:
            raise ValueError("moving_weight needs token shards with moving.npy: re-run `ivideogpt tokenize` "
                             "to write them")
        weight = 1 + self.cfg.moving_weight * moving.flatten(1).to(token_nll.dtype)
        return (weight * token_nll).sum() / weight.sum()

    @torch.no_grad()
    def _self_fed_inputs(self, tokens: Tensor, action_rows: Tensor | None, targets_at: Tensor) -> Tensor:
        """Tokens (B, L) with future codes replaced by the model's own greedy choices (`cfg.self_feed`).

        One teacher-forced pass gives the argmax at every target position, i.e. what a greedy rollout would
        write there after a correct prefix; reading some of those instead of the truth teaches the model
        to carry on sensibly after its own mistakes (parallel scheduled sampling).
        """
        logits = self(tokens, action_rows, logit_positions=targets_at).logits  # (B, P, V)
        vc = self.cfg.context_vocab_size
        own = logits[..., vc : vc + self.cfg.future_vocab_size].argmax(-1) + vc  # (B, P) token ids
        return _mixed_inputs(tokens, targets_at + 1, own, self.cfg.self_feed)

    def _action_contrast(self, batch: TokenBatch, tokens: Tensor, targets_at: Tensor, targets: Tensor,
                         token_nll: Tensor) -> tuple[Tensor, Tensor]:
        """Action-contrast loss and its margin (nats per frame) of a batch whose own-action NLL is known.

        The negative is each clip's future actions in reverse order: the same actions, so the same policy
        statistics, and only when each was taken tells them apart; the loss softplus(NLL_own - NLL_reversed),
        per frame, pushes the model to read that. A clip whose reversed actions equal its own (a constant
        action) gives no gradient at all.
        """
        tc, tf = batch.context_codes.shape[1], batch.future_codes.shape[1]
        actions = batch.actions.clone()
        actions[:, tc:] = actions[:, tc:].flip(1)
        rows = self._clip_actions(actions, batch.has_actions, tokens.shape[0], tc, tf)
        reversed_nll = self._target_nll(tokens, rows, targets_at, targets)[1]
        gap = (token_nll.sum(-1) - reversed_nll.view_as(token_nll).sum(-1)).mean(-1)  # (B,) nats per frame
        used = batch.has_actions.to(gap.dtype)
        contrast = (F.softplus(gap) * used).sum() / used.sum().clamp(min=1)
        return contrast, (-gap * used).sum() / used.sum().clamp(min=1)

    @torch.no_grad()
    def token_nll(self, context_codes: Tensor, future_codes: Tensor, actions: Tensor | None) -> Tensor:
        """Negative log-likelihood (nats) of each future code, teacher-forced: float32 (B, Tf, n).

        Args:
            context_codes: int (B, Tc, N); future_codes: int (B, Tf, n).
            actions: float (B, Tf, A), row t producing future frame t; None for an action-free model.
        """
        (b, tc), tf = context_codes.shape[:2], future_codes.shape[1]
        tokens = self.layout.build(context_codes, future_codes)
        targets_at = self.layout.target_positions(tc, tf, tokens.device)
        rows = None if actions is None else self.future_action_rows(actions, tc)
        nll = self._target_nll(tokens, rows, targets_at, tokens[:, targets_at + 1])[1]
        return nll.float().view(b, tf, -1)

    def frame_nll(self, context_codes: Tensor, future_codes: Tensor, actions: Tensor | None) -> Tensor:
        """Negative log-likelihood (nats) of each future frame's codes, teacher-forced: float32 (B, Tf)."""
        return self.token_nll(context_codes, future_codes, actions).sum(-1)

    def frame_rewards(self, context_codes: Tensor, future_codes: Tensor, actions: Tensor | None) -> Tensor:
        """The reward head's reading of given future frames, teacher-forced: float32 (B, Tf), in reward units.

        What it predicts for real futures, beside what it predicts for imagined ones (sampling), tells the
        reward head's error apart from the imagination's. Args as `token_nll`; needs the reward head.
        """
        if self.heads.reward is None:
            raise ValueError("frame_rewards: this transformer has no reward head")
        tc, tf = context_codes.shape[1], future_codes.shape[1]
        tokens = self.layout.build(context_codes, future_codes)
        rows = None if actions is None else self.future_action_rows(actions, tc)
        out = self(tokens, rows, logit_positions=torch.zeros(0, dtype=torch.long, device=tokens.device))
        ends = self.layout.frame_end_positions(tc, tf, tokens.device)
        return self.heads.decode(out.reward_pred[:, ends].float(), None)[0]

    def _target_nll(self, tokens: Tensor, rows: Tensor | None, targets_at: Tensor, targets: Tensor
                    ) -> tuple[TransformerOutput, Tensor]:
        """The forward of `tokens` with logits at `targets_at` (P,), and the NLL (B, P) of `targets`, the code
        due after each (the tokens there, unless the inputs were noised)."""
        out = self(tokens, rows, logit_positions=targets_at)
        return out, F.cross_entropy(out.logits.transpose(1, 2), targets, reduction="none")

    def _clip_actions(self, actions: Tensor, has_actions: Tensor, b: int, tc: int, tf: int) -> Tensor | None:
        """Clip actions (B, Tc + Tf, A) -> per-position rows (B, L, A); None for action-free input."""
        if self.action_proj is None and actions.shape[-1] == 0:
            return None  # an action-free shard stores (B, T, 0) actions
        expected = (b, tc + tf, self.cfg.action_dim)
        if tuple(actions.shape) != expected:
            raise ValueError(
                f"compute_loss: actions must be (B, Tc + Tf, A) = {expected} "
                f"(action_dim={self.cfg.action_dim}), got {tuple(actions.shape)}"
            )
        actions = actions * has_actions.to(actions.dtype)[:, None, None]
        return self.future_action_rows(actions[:, tc:], tc)

    def future_action_rows(self, future_actions: Tensor, tc: int) -> Tensor:
        """Actions (B, Tf, A) of the future frames after Tc context frames -> position rows (B, L, A_in)."""
        inputs = self.frame_action_inputs(future_actions)
        context = inputs.new_zeros(inputs.shape[0], tc, inputs.shape[2])  # context frames have no action
        return self.layout.action_rows(torch.cat([context, inputs], dim=1), tc)

    def _learned_positions(self, start: int, t: int, device: torch.device) -> Tensor:
        """Positions [start, start + t) for `pos_emb`, which covers the trained window only."""
        if start + t > self.cfg.max_sequence_length:
            raise ValueError(
                f"Transformer: learned positions cover the trained window of {self.cfg.max_sequence_length} "
                f"tokens ({self.cfg.max_context_frames} context + {self.cfg.max_future_frames} future "
                f"frames); got tokens up to position {start + t}: slide the window (rollouts do)"
            )
        return torch.arange(start, start + t, device=device)

    def _check_inputs(self, tokens: Tensor, actions: Tensor | None) -> int:
        if tokens.ndim != 2 or tokens.dtype != torch.long:
            raise ValueError(
                f"Transformer: tokens must be int64 (B, T), got {tokens.dtype} {tuple(tokens.shape)}"
            )
        if actions is not None:
            if self.action_proj is None:
                raise ValueError(
                    "Transformer: this model is action-free (action_dim=0) but actions were given"
                )
            expected = (*tokens.shape, self.cfg.action_input_dim)
            if tuple(actions.shape) != expected:
                raise ValueError(
                    f"Transformer: action rows must be (B, T, A_in) = {expected} (A_in = action_dim "
                    f"{self.cfg.action_dim}{', x2 with action_sum' if self.cfg.action_sum else ''}), got "
                    f"{tuple(actions.shape)}"
                )
        return tokens.shape[1]

    # ------------------------------------------------------------------------------------ bookkeeping

    def num_params(self, exclude_embedding: bool = False) -> int:
        """Parameter count (shared tensors once), optionally without the token embedding (a lookup)."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embedding and not self.cfg.tie_embeddings:
            n -= self.tok_emb.weight.numel()
        return n

    def estimate_flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs (forward + backward) per token at sequence length `seq_len` (PaLM appendix B).

        6 per matmul weight per token, plus the attention scores and weighted sum (12 * layers * d * T).
        An upper bound: `compute_loss` runs the LM head at the target positions only.
        """
        matmul_params = sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))
        return 6 * matmul_params + 12 * self.cfg.n_layer * self.cfg.n_embd * seq_len


def _mixed_inputs(tokens: Tensor, code_at: Tensor, replacement: Tensor, max_rate: float) -> Tensor:
    """Tokens (B, L) with the codes at `code_at` (P,) swapped for `replacement` (B, P), each with probability
    u * `max_rate`, u ~ U(0, 1) per clip: clips see every level of corruption from none up, as a rollout's
    history is more or less wrong. Only inputs change; the caller keeps the true targets."""
    b = tokens.shape[0]
    rate = torch.rand(b, 1, device=tokens.device) * max_rate
    hit = torch.rand(b, code_at.numel(), device=tokens.device) < rate  # (B, P)
    mixed = tokens.clone()
    mixed[:, code_at] = torch.where(hit, replacement, tokens[:, code_at])
    return mixed


def _check_rows(x: Tensor, name: str, b: int, t: int) -> Tensor:
    if tuple(x.shape) != (b, t):
        raise ValueError(f"compute_loss: {name} must be (B, Tc + Tf) = {(b, t)}, got {tuple(x.shape)}")
    return x
