"""The goal distance in the tokenizer's features instead of pixels (`--objective.goal-space features`).

Pixel MSE to a goal image barely sees a small arm or button move (docs/planning-log.md). Here every
frame is embedded by the world model's own context encoder, the one that turns a real frame into its 16x16
grid of code vectors, before quantization; each grid cell's vector is normalised to unit length (the
codebook's geometry when it is l2-normalised, and a scale-free one otherwise), and the distance of a frame to
the goal is the mean over cells of half the squared distance between them (1 - cosine), averaged over the
horizon like the pixel cost. The encoder is the tokenizer the frames were imagined with, so real and
imagined frames are embedded alike; any model's tokenizer can be named instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ivideogpt.data.frames import to_model

_BATCH = 256  # frames embedded per pass: bounds the encoder's activations for large plans


class FeatureGoal:
    """Distance of frames to one goal image in a tokenizer's context-encoder features.

    Args:
        tokenizer: a world-model folder (its tokenizer) or a tokenizer export/run folder.
        goal: uint8 (H, W, 3), the goal image.
        device: where the encoder runs ("auto": CUDA if available), the world model's device in `plan`.
    """

    def __init__(self, tokenizer: str | Path, goal: np.ndarray, device: str = "cpu") -> None:
        from ivideogpt.artifacts import load_any_tokenizer  # the tokenizer stack: only for this objective
        from ivideogpt.device import resolve_device

        self.device = resolve_device(device)
        self.tokenizer = load_any_tokenizer(tokenizer, self.device)  # in eval mode, and never trained here
        size = self.tokenizer.resolution
        self.frame_shape = (size, size, 3)
        if goal.shape != self.frame_shape:
            raise ValueError(f"goal image of shape {goal.shape}: the tokenizer of {tokenizer} reads "
                             f"{self.frame_shape} frames")
        self.goal = self.embed(goal[None])  # (1, g, g, D)

    @torch.no_grad()
    def embed(self, frames: np.ndarray) -> Tensor:
        """uint8 (N, H, W, 3) -> unit code vectors (N, g, g, D)."""
        vqgan = self.tokenizer.context_vqgan
        out = []
        for start in range(0, len(frames), _BATCH):
            chunk = torch.from_numpy(np.ascontiguousarray(frames[start : start + _BATCH]))
            out.append(vqgan.embed(to_model(chunk.to(self.device)))[0].permute(0, 2, 3, 1))
        return F.normalize(torch.cat(out), dim=-1)

    def distance(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (N, T, H, W, 3) -> (N,): 1 - cosine to the goal, mean over cells and frames."""
        if frames.shape[2:] != self.frame_shape:
            raise ValueError(f"frames of shape {frames.shape[2:]} do not match the goal image's "
                             f"{self.frame_shape}")
        n, t = frames.shape[:2]
        embedded = self.embed(frames.reshape(n * t, *frames.shape[2:]))  # (N * T, g, g, D)
        cosine = (embedded * self.goal).sum(-1)  # (N * T, g, g)
        return (1.0 - cosine).reshape(n, t, -1).mean(dim=(1, 2)).double().cpu().numpy()
