"""The finished episodes of a running `ivideogpt plan`, kept on disk so that an interrupted run resumes.

A plan of many episodes runs for hours on a CPU. Each finished episode is saved at once in a hidden folder
beside the output (`.<out>.partial/`: the output itself is replaced only by a complete run), with the
run's settings; `--resume` takes the episodes saved there and plays only the rest. The folder is deleted
once the run's outputs are written.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from ivideogpt.atomic import atomic_path, discard, partial_path
from ivideogpt.config import read_json
from ivideogpt.planning.episodes import AgentStats, EpisodeResult

SETTINGS_FILE = "settings.json"
START_OVER = "start over with --overwrite"  # what to do with saved episodes that cannot be read
# settings that do not change what an episode plays: a run may resume with other values of these
# (an episode's scene comes from --seed, its task and its index, not from how many episodes the run plays)
FREE_SETTINGS = ("out", "overwrite", "resume", "workers", "episodes")


def episode_key(episode: Any) -> str:
    """The saved name of an episode: a `run.Job` or an `EpisodeResult` (both have task, agent, index)."""
    return f"{episode.task}_{episode.agent}_{episode.index:04d}"


class PlanProgress:
    """Saves each finished episode; loads those of an interrupted run with the same settings."""

    def __init__(self, out: Path, settings: dict[str, Any], resume: bool, overwrite: bool) -> None:
        """
        Args:
            out: the plan's output folder (the progress folder is `partial_path(out)`).
            settings: what decides the episodes' outcomes (the run's config and the model's weights), as
                JSON; a resumed run must have the same.
            resume: take the episodes an interrupted run saved.
            overwrite: discard an interrupted run's episodes and start over.

        Raises:
            FileExistsError: an interrupted run's episodes are there and neither `resume` nor `overwrite`.
            FileNotFoundError: `resume`, but no interrupted run's episodes are there.
            ValueError: `resume` on episodes saved with other settings (the differences are named).
        """
        self.root = partial_path(out)
        self.settings = json.loads(json.dumps(settings))  # as the file will read back
        self.earlier_seconds = 0.0  # wall time of the interrupted sessions of this run
        saved = self.root / SETTINGS_FILE
        if self.root.exists() and not saved.is_file():  # killed before it wrote its settings: nothing kept
            discard(self.root)
        if resume and not self.root.exists():
            raise FileNotFoundError(f"{out}: no interrupted plan to resume (no {self.root}); run without "
                                    "--resume")
        if self.root.exists() and not resume:
            if not overwrite:
                raise FileExistsError(f"{out}: an interrupted plan left its finished episodes in "
                                      f"{self.root}; continue it with --resume, or start over with "
                                      "--overwrite")
            discard(self.root)
        if self.root.exists():
            earlier = read_json(saved, hint=START_OVER)
            differ = sorted(k for k in self.settings.keys() | earlier["settings"].keys()
                            if self.settings.get(k) != earlier["settings"].get(k))
            if differ:
                raise ValueError(f"{self.root}: the interrupted plan ran with other settings "
                                 f"({', '.join(differ)}); resume it with the same ones, or start over with "
                                 "--overwrite")
            self.earlier_seconds = float(earlier["seconds"])
        else:
            self.root.mkdir(parents=True)
            self._write_settings(0.0)

    def load(self) -> dict[str, EpisodeResult]:
        """The episodes saved so far, by `episode_key`."""
        done = {}
        for path in sorted(self.root.glob("*.json")):
            if path.name == SETTINGS_FILE:
                continue
            fields = read_json(path, hint=START_OVER)
            video = path.with_suffix(".npy")
            try:
                stats, frames = AgentStats(**fields.pop("stats")), np.load(video) if video.is_file() else None
                result = EpisodeResult(**fields, stats=stats, video=frames)
            except (KeyError, TypeError, ValueError, OSError) as e:
                raise ValueError(f"{path}: not a saved episode ({e}); {START_OVER}") from e
            done[episode_key(result)] = result
        return done

    def save(self, result: EpisodeResult, session_seconds: float) -> None:
        """Keep one finished episode (its video first: an episode's JSON marks it complete), and the run's
        wall time: the interrupted sessions' and `session_seconds` of this one."""
        path = self.root / f"{episode_key(result)}.json"
        if result.video is not None:
            with atomic_path(path.with_suffix(".npy")) as tmp, open(tmp, "wb") as f:
                np.save(f, result.video)
        fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)
                  if f.name not in ("video", "stats")}
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(fields | {"stats": dataclasses.asdict(result.stats)}))
        self._write_settings(self.earlier_seconds + session_seconds)

    def remove(self) -> None:
        """Delete the saved episodes (the run's outputs are written)."""
        discard(self.root)

    def _write_settings(self, seconds: float) -> None:
        with atomic_path(self.root / SETTINGS_FILE) as tmp:
            tmp.write_text(json.dumps({"settings": self.settings, "seconds": seconds}, indent=1))

