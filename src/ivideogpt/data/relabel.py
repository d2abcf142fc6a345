"""Hindsight reward relabelling: token shards of a RoboDesk collection, every clip paid by one task's reward.

RoboDesk's tasks share one desk, so a reward head trained on episodes of all seven tasks, each labelled
with its own task's reward, sees the same frames paid differently and can only learn their average. A
dense reward is a function of the simulator's state, so any episode can be paid by any task: each one is
replayed without rendering from its scene seed and its recorded actions (MuJoCo is deterministic) in an
env of the chosen task, and its clips get that task's rewards. The episodes recorded for that task check
the replay (in a split without any, its first episode is replayed in its own task's env): their recomputed
rewards must equal the stored ones, or nothing is written.

Meta-World is refused: each of its tasks has its own scene, so another task's reward of an episode is
undefined. The codes are shared with the source shards (hard links where the file system allows); the
new shards differ in `rewards.npy`, `flags.npy` (every clip labelled) and `meta.json` (`extra.relabelled`).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ivideogpt.atomic import ReplacedFolder, naming
from ivideogpt.data.collect import RobodeskCollectConfig, make_jobs
from ivideogpt.data.tokens import TokenShardError, TokenShards
from ivideogpt.sim.robodesk import TASKS, RoboDeskEnv, task_name  # robodesk itself is imported by the env

SPLITS = ("train", "val")
CHANGED = ("rewards.npy", "flags.npy", "meta.json")  # the files a relabelled shard does not share


@dataclass
class RelabelConfig:
    """Settings of `ivideogpt relabel`."""

    tokens: Path  # token shards of a `collect robodesk` dataset (<tokens>/train, <tokens>/val)
    task: str  # the RoboDesk task whose reward every clip gets ("push_red" or "push-red")
    out: Path  # the relabelled shards (<out>/train, <out>/val)
    overwrite: bool = False  # replace shards at `out` (only once the new ones are complete)
    atol: float = 1e-4  # the replay check on the task's own episodes: largest reward difference allowed


def relabel_rewards(cfg: RelabelConfig) -> Path:
    """Write `cfg.tokens`' shards with `cfg.task`'s rewards to `cfg.out`.

    Raises:
        ValueError: not a RoboDesk collection's shards, an unknown task, clips that leave an episode's
            actions unknown, or a replay that does not give the recorded rewards back.
        FileExistsError: `out` holds shards and `overwrite` is off.
    """
    splits = [s for s in SPLITS if (Path(cfg.tokens) / s / "meta.json").exists()]
    if not splits:
        raise ValueError(f"{cfg.tokens}: no token shards ({' or '.join(SPLITS)} with a meta.json)")
    try:
        collect = TokenShards(Path(cfg.tokens) / splits[0]).meta.extra.get("collect") or {}
    except TokenShardError as e:
        raise ValueError(str(e)) from e
    if not collect.get("tasks") or not set(collect["tasks"]) <= set(TASKS):
        raise ValueError(f"{cfg.tokens}: not the shards of a `collect robodesk` dataset (their meta "
                         "records no RoboDesk collection); relabelling needs tasks that share one scene, "
                         "which Meta-World's do not")
    task = task_name(cfg.task)
    env = _replay_env(task, collect)
    try:
        with ReplacedFolder(cfg.out, "relabelled token shards", lambda n: n in SPLITS, cfg.overwrite,
                            always_stage=True) as work:
            for split in splits:
                clips, error = _relabel_split(Path(cfg.tokens) / split, work / split, env, cfg.atol)
                print(f"relabel {split}: {clips} clips replayed to their recorded rewards within "
                      f"{error:.2g}")
    finally:
        env.close()
    print(f"relabel: shards with {task}'s rewards in {cfg.out}")
    return Path(cfg.out)


def _replay_env(task: str, collect: dict) -> RoboDeskEnv:
    """An env of `task` stepping as the collection did; replays are never truncated."""
    return RoboDeskEnv(task, camera=collect["camera"], action_repeat=collect["action_repeat"],
                       max_steps=10**6)


def _episode_rewards(env: RoboDeskEnv, seed: int, actions: np.ndarray) -> np.ndarray:
    """float32 (T,): the env task's reward of each frame (row 0: 0) when `actions[t]` (T, A) made frame t."""
    env.reset(seed=seed)
    rewards = np.zeros(len(actions), np.float32)
    for t in range(1, len(actions)):
        rewards[t], _ = env.advance(actions[t])
    return rewards


def _relabel_split(src: Path, dst: Path, env: RoboDeskEnv, atol: float) -> tuple[int, float]:
    """Write `src`'s shard with `env.task`'s rewards to `dst`; (clips checked, their largest error).

    The task's own episodes are the check; a split without any replays its first episode in its own task's
    env instead.

    Episode `e` of a collection is job `e` of `data.collect.make_jobs`, which gives its task and scene seed.
    """
    shards = TokenShards(src)
    collect = shards.meta.extra["collect"]
    tasks = collect["tasks"]
    index, actions = shards.arrays["index"], shards.arrays["actions"]  # index: (N, 3) source, episode, start
    if len(set(index[:, 0].tolist())) > 1:
        raise ValueError(f"{src}: clips of several datasets; relabel the shards of one collection")
    if shards.meta.extra.get("frame_stride", 1) != 1:  # a clip would skip the actions between its frames
        raise ValueError(f"{src}: tokenized with --frame-stride {shards.meta.extra['frame_stride']}; "
                         "relabelling replays every action, so it needs the shards of --frame-stride 1")
    clip_len = actions.shape[1]
    starts = index[:, 2].astype(int)
    by_episode: dict[int, list[int]] = {}
    for clip, episode in enumerate(index[:, 1].tolist()):
        by_episode.setdefault(episode, []).append(clip)
    jobs = make_jobs(RobodeskCollectConfig(out=src, tasks=tuple(tasks), seed=collect["seed"],
                                           episodes=max(by_episode) // len(tasks) + 1))
    own_episodes = any(jobs[e].task == env.task for e in by_episode)
    recorded = np.asarray(shards.arrays["rewards"], np.float32)
    rewards = recorded.copy()
    checked, worst = 0, 0.0
    for i, (episode, clips) in enumerate(tqdm(sorted(by_episode.items()), desc=f"relabel {src.name}",
                                              unit="episode")):
        task, seed = jobs[episode].task, jobs[episode].seed
        episode_actions = _episode_actions(actions[clips], starts[clips],
                                           f"{src}: the clips of episode {episode}")
        new = _episode_rewards(env, seed, episode_actions)
        replayed = None  # this episode's own task's rewards, replayed: the check
        if task == env.task:
            replayed = new
        elif i == 0 and not own_episodes:  # none of the task's own to check with: this one, as recorded
            own = _replay_env(task, collect)
            try:
                replayed = _episode_rewards(own, seed, episode_actions)
            finally:
                own.close()
        for c in clips:
            window = slice(starts[c], starts[c] + clip_len)
            if replayed is not None:
                checked, worst = checked + 1, max(worst, float(np.abs(replayed[window] - recorded[c]).max()))
            rewards[c] = new[window]
    if worst > atol:
        raise ValueError(f"{src}: the replayed episodes give rewards up to {worst:.3g} away from the "
                         "recorded ones: these shards' episodes are not in the collection's order "
                         "(relabelling needs one `collect robodesk` dataset, tokenized whole)")
    _write_shard(src, dst, shards, rewards, env.task)
    return checked, worst


def _episode_actions(clip_actions: np.ndarray, starts: np.ndarray, what: str) -> np.ndarray:
    """float32 (T, A): an episode's actions gathered from its clips' (C, L, A) starting at frames `starts`."""
    clip_len = clip_actions.shape[1]
    frames = int(starts.max()) + clip_len
    actions, covered = np.zeros((frames, clip_actions.shape[2]), np.float32), np.zeros(frames, bool)
    for start, clip in zip(starts, clip_actions, strict=True):
        actions[start : start + clip_len], covered[start : start + clip_len] = clip, True
    missing = np.flatnonzero(~covered[1:]) + 1  # frame 0 has no action
    if missing.size:
        raise ValueError(f"{what} leave the actions of frames {missing[:5].tolist()} unknown; tokenize with "
                         "a --start-stride of at most the clip length")
    return actions


def _write_shard(src: Path, dst: Path, shards: TokenShards, rewards: np.ndarray, task: str) -> None:
    """`src`'s shard at `dst` with `rewards` on every clip; the unchanged files hard-linked (or copied)."""
    dst.mkdir(parents=True)
    with naming(dst):
        for name in os.listdir(src):
            if name not in CHANGED:
                try:
                    os.link(src / name, dst / name)
                except OSError:
                    shutil.copy2(src / name, dst / name)
        np.save(dst / "rewards.npy", rewards)
        flags = np.array(shards.arrays["flags"])
        flags[:, 1] = True  # has_rewards
        np.save(dst / "flags.npy", flags)
        meta = json.loads((src / "meta.json").read_text())
        meta["extra"]["relabelled"] = {"task": task, "from": str(src.resolve())}
        if meta["extra"].get("tokenizer_relpath"):  # still found from the new place
            tokenizer = (src.parent / meta["extra"]["tokenizer_relpath"]).resolve()
            meta["extra"]["tokenizer_relpath"] = os.path.relpath(tokenizer, dst.parent.resolve())
        (dst / "meta.json").write_text(json.dumps(meta, indent=2))
