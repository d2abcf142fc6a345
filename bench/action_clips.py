"""What the benches that feed a world model its clips' actions load: the model and those clips."""

from __future__ import annotations

from pathlib import Path

from ivideogpt.data.clips import ClipConfig, ClipDataset
from ivideogpt.world_model import WorldModel


def load_action_model(path: Path, data: Path, future_frames: int | None = None
                      ) -> tuple[WorldModel, ClipDataset]:
    """The world model at `path` and all clips of `data` (Tc context frames, as the model takes, and
    `future_frames`, default the model's), actions padded to the model's size as in training.

    Raises:
        ValueError: the model is action-free, or the episodes have no actions.
    """
    wm = WorldModel.load(path)
    if not wm.action_dim:
        raise ValueError(f"{path}: an action-free world model; this bench feeds it the clips' actions")
    clip_cfg = ClipConfig(context_frames=wm.num_context_frames,
                          future_frames=future_frames or wm.spec.future_frames)
    clips = ClipDataset([data], clip_cfg, "all", action_dim=wm.action_dim)
    if clips.stores[0].meta.action_dim is None:
        raise ValueError(f"{data}: episodes without actions; this bench feeds them to the model")
    return wm, clips
