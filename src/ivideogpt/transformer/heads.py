"""Per-frame scalar heads: reward and termination, read at the last token of each frame.

The last code of a future frame has attended to the whole frame and to the action on its slot, so its
hidden state is where "what did this step yield" can be read (docs/method.md §2). The reference only
predicts rewards; termination is our addition (docs/method.md §5: no termination prediction).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ivideogpt.transformer.config import TransformerConfig


def symlog(x: Tensor) -> Tensor:
    """sign(x) log(1 + |x|): compresses large rewards so one MSE fits every reward scale (DreamerV3)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    """Inverse of `symlog`."""
    return torch.sign(x) * torch.expm1(x.abs())


class FrameHeads(nn.Module):
    """Reward regression and termination logit, each a Linear(n_embd, 1); either may be absent."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.symlog = cfg.reward_symlog
        self.reward_weight = cfg.reward_loss_weight
        self.done_weight = cfg.done_loss_weight
        self.reward = nn.Linear(cfg.n_embd, 1) if cfg.reward_head else None
        self.done = nn.Linear(cfg.n_embd, 1) if cfg.done_head else None
        for head in (self.reward, self.done):
            if head is not None:  # start from "no reward, no termination" instead of noise
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    def forward(self, h: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Hidden (B, T, d) -> reward predictions (B, T) (symlog space if configured), done logits (B, T)."""
        reward = self.reward(h).squeeze(-1) if self.reward is not None else None
        done = self.done(h).squeeze(-1) if self.done is not None else None
        return reward, done

    def decode(
        self, reward_pred: Tensor | None, done_logit: Tensor | None
    ) -> tuple[Tensor | None, Tensor | None]:
        """Raw head outputs -> rewards in environment units and termination probabilities."""
        reward = None if reward_pred is None else (symexp(reward_pred) if self.symlog else reward_pred)
        done = None if done_logit is None else torch.sigmoid(done_logit)
        return reward, done

    def loss(
        self,
        reward_pred: Tensor | None,
        done_logit: Tensor | None,
        rewards: Tensor | None,
        dones: Tensor | None,
        weight: Tensor,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Weighted reward MSE and termination BCE over the future frames of labelled clips.

        Args:
            reward_pred: (B, Tf) head outputs at each future frame's last token (None without a reward head).
            done_logit: (B, Tf) likewise for termination.
            rewards: (B, Tf) float targets (None: no reward loss).
            dones: (B, Tf) bool targets (None: no termination loss).
            weight: (B,) 1 for clips whose rewards/dones are real, 0 for unlabelled clips (action-free video).

        Returns:
            The weighted sum of the terms present (a zero tensor when none is), and the unweighted terms.
        """
        total = weight.new_zeros((), dtype=torch.float32)
        metrics: dict[str, Tensor] = {}
        w = weight.float()[:, None]  # (B, 1)
        if reward_pred is not None and rewards is not None:
            target = symlog(rewards.float()) if self.symlog else rewards.float()
            mse = _weighted_mean((reward_pred.float() - target).square(), w)
            total = total + self.reward_weight * mse
            metrics["reward_mse"] = mse.detach()
        if done_logit is not None and dones is not None:
            bce = F.binary_cross_entropy_with_logits(done_logit.float(), dones.float(), reduction="none")
            bce = _weighted_mean(bce, w)
            total = total + self.done_weight * bce
            metrics["done_bce"] = bce.detach()
        return total, metrics


def _weighted_mean(values: Tensor, w: Tensor) -> Tensor:
    """Mean of values (B, T) over the rows with weight w (B, 1) = 1; 0 when no row is labelled."""
    return (values * w).sum() / (w.sum() * values.shape[1]).clamp(min=1.0)
