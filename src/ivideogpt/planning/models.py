"""The rollout models a planner imagines with: the world model, or the simulator itself.

`WorldModelRollouts` encodes the current context frames once and fans them out to all N samples
(`WorldModel.reset` + `select` + `imagine`): the transformer's prefix and the tokenizer's context features
are computed once per iteration, whatever N, and the prefix's keys are stored once and read once per
decode step for all N rows (`KVCache`'s shared prefix). `SimulatorRollouts` replays each sample in the real
simulator from a snapshot of its state and restores it afterwards: the planner's upper bound, which has no
model error, so the gap between the two isolates what the world model costs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ivideogpt.planning.planner import Imagined
from ivideogpt.sim.base import TaskEnv
from ivideogpt.world_model import WorldModel


class WorldModelRollouts:
    """Imagine action sequences from the last real frames with a `WorldModel`.

    Args:
        wm: the world model.
        context: uint8 (T, H, W, 3), the real frames so far (at least one); the last `Tc` are the
            context. With fewer than `Tc` (the first steps of an episode) the first frame is repeated in
            front, as if the robot had stood still.
        seed: seeds the sampling of every `imagine` call.
        sampling: overrides of the model's sampling defaults (`WorldModel.reset`: temperature, top_k,
            action_guidance, still_split).
        noise_period: > 0: common random numbers, row i of a batch drawing row (i mod p)'s sampling noise
            (`WorldModelState.share_noise`); 0: every row its own.
    """

    def __init__(self, wm: WorldModel, context: np.ndarray, seed: int = 0,
                 sampling: Mapping[str, float | bool] | None = None, noise_period: int = 0) -> None:
        tc = wm.num_context_frames
        if context.ndim != 4 or len(context) < 1:
            raise ValueError(f"WorldModelRollouts: context must be uint8 (T >= 1, H, W, 3), "
                             f"got {context.shape}")
        if len(context) < tc:
            context = np.concatenate([np.repeat(context[:1], tc - len(context), axis=0), context])
        self.wm, self.context, self.seed = wm, context[None, -tc:], seed  # (1, Tc, H, W, 3)
        self.action_dim = wm.action_dim
        self.sampling = dict(sampling or {})
        self.noise_period = noise_period

    def imagine(self, actions: np.ndarray, frames: bool) -> Imagined:
        n = len(actions)
        # one context encoding, fanned out to N rows
        state = self.wm.reset(self.context, seed=self.seed, **self.sampling).select(np.zeros(n, np.int64))
        state.share_noise(self.noise_period)
        out = self.wm.imagine(state, actions, decode=frames)
        return Imagined(out.frames, out.rewards)


class SimulatorRollouts:
    """Imagine action sequences by playing each in the simulator from its current state, then restoring it."""

    def __init__(self, env: TaskEnv) -> None:
        self.env = env
        self.action_dim = env.action_space.shape[0]

    def imagine(self, actions: np.ndarray, frames: bool) -> Imagined:
        env = self.env
        n, t = actions.shape[:2]
        snap = env.snapshot()
        rewards = np.zeros((n, t), np.float32)
        video = None
        try:
            for i in range(n):
                env.restore(snap)
                for j in range(t):
                    rewards[i, j], _ = env.advance(actions[i, j])
                    if frames:
                        frame = env.render()
                        video = np.empty((n, t, *frame.shape), np.uint8) if video is None else video
                        video[i, j] = frame
        finally:
            env.restore(snap)
        return Imagined(video, rewards)
