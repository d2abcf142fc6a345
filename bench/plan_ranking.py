"""How well the world model ranks a planner's action sequences, against the simulator's own returns.

A planner needs no faithful video, only the right order among its samples: the sequence the model scores
best should be one the simulator rewards. This bench measures that order directly, minutes instead of the
hour of `bench/planning.py`: in states that the simulator-as-model planner reaches (its first k steps of an
episode, k spread over the episode), the planner's first round of action sequences (MPPI's correlated
samples around zero) is played in the simulator from the state (the true return of each) and imagined by the
world model under each sampling mode (the predicted return: the reward head's sum over the horizon).

Per state and mode: Spearman's rank correlation between predicted and true returns, and the true return of
the sequence the model ranks first, as a quantile of the samples' true returns (1: it picked the best, 0.5:
a random pick). Modes: `independent` (each sequence its own sampling noise, the planner's default),
`common` (common random numbers: every sequence the same draw, `--common-noise` of `bench/planning.py`),
`greedy` (temperature 0), and `teacher`: no imagination, the reward head reading each sequence's real
frames (rendered by the simulator, tokenized, teacher-forced), which tells the reward head's errors apart
from the imagination's. With `--reward-model` (a `ivideogpt train-reward` run), `learned` scores each
sequence by that CNN's reading of its imagined frames (independent draws, the planner's
`--objective.kind learned`) and `learned_teacher` by its reading of the real frames. States where the true
returns are all equal rank nothing and are skipped.

    python bench/plan_ranking.py --model checkpoints/metaworld64-actions-r16 --precision bfloat16 \
        --json bench/results/plan_ranking_r16.json
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro
from record import planning_header, write_result
from scipy.stats import spearmanr
from tqdm import tqdm

from ivideogpt.data.collect import episode_seed
from ivideogpt.data.frames import to_model
from ivideogpt.modes import eval_mode
from ivideogpt.planning.episodes import PlanningAgent
from ivideogpt.planning.frame_reward import FrameReward, load_frame_reward
from ivideogpt.planning.models import SimulatorRollouts, WorldModelRollouts
from ivideogpt.planning.objectives import ObjectiveConfig
from ivideogpt.planning.planner import Imagined, Planner, PlannerConfig
from ivideogpt.planning.run import PlanConfig, resolve_settings
from ivideogpt.precision import Precision
from ivideogpt.sim import load_suite
from ivideogpt.sim.base import TaskEnv
from ivideogpt.world_model import WorldModel

# sampling mode -> (temperature override or None for the model's, common noise, particles per sequence)
MODES: dict[str, tuple[float | None, bool, int]] = {
    "independent": (None, False, 1),
    "common": (None, True, 1),
    "greedy": (0.0, False, 1),
    "independent4": (None, False, 4),  # PETS particles: each sequence imagined 4 times, the mean scored
    "common4": (None, True, 4),  # 4 particles, particle k of every sequence sharing a draw
}
TEACHER = "teacher"  # not imagined: the reward head reading each sequence's real (simulated) frames
LEARNED, LEARNED_TEACHER = "learned", "learned_teacher"  # the reward model on imagined / real frames
NEEDS_REAL_FRAMES = (TEACHER, LEARNED_TEACHER)


@dataclass
class RankingConfig:
    model: Path  # world-model folder
    tasks: tuple[str, ...] = ("drawer-close", "faucet-open", "window-open")
    episodes: int = 4  # scenes per task
    states: int = 4  # states per scene, after 0, s, 2s, ... steps of the simulator planner (s = its stride)
    stride: int = 8  # simulator-planner steps between two states of a scene
    samples: int = 32  # action sequences per state (the planning bench's)
    horizon: int = 5
    # any of MODES, TEACHER, and with a reward model LEARNED and LEARNED_TEACHER
    modes: tuple[str, ...] = ("independent", "common", "greedy", TEACHER)
    reward_model: Path | None = None  # a `ivideogpt train-reward` run, for the learned modes
    precision: Precision = "float32"
    seed: int = 0  # scenes from episode_seed(seed + 50000, task, index): none of the planning bench's
    json: Path = Path("bench/results/plan_ranking.json")

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in (*MODES, TEACHER, LEARNED, LEARNED_TEACHER)]
        if unknown:
            known = ", ".join([*MODES, TEACHER, LEARNED, LEARNED_TEACHER])
            raise SystemExit(f"plan_ranking: unknown modes {unknown}; choose from {known}")
        if (self.reward_model is not None) != any(m in (LEARNED, LEARNED_TEACHER) for m in self.modes):
            raise SystemExit("plan_ranking: --reward-model goes with the modes learned / learned_teacher")


def main(cfg: RankingConfig) -> dict[str, Any]:
    plan_cfg = PlanConfig(model=cfg.model, tasks=cfg.tasks, agents=("world_model",), precision=cfg.precision)
    settings, model_info = resolve_settings(plan_cfg)
    sim = load_suite(settings.suite)
    wm = WorldModel.load(cfg.model)
    wm.precision = cfg.precision
    reader = None if cfg.reward_model is None else load_frame_reward(cfg.reward_model)
    planner_cfg = PlannerConfig(samples=cfg.samples, horizon=cfg.horizon, replan_every=2)
    max_steps = cfg.stride * (cfg.states - 1) + 1
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    bar = tqdm(total=len(cfg.tasks) * cfg.episodes * cfg.states, unit="state", desc="rank")
    for task in plan_cfg.task_list:
        env = sim.Env(task, settings.size, settings.camera, 0, settings.action_repeat, max_steps)
        for index in range(cfg.episodes):
            seed = episode_seed(cfg.seed + 50000, task, index)
            sampler = Planner(planner_cfg, sim.ACTION_DIM, seed=seed + 1)
            for frames in _scene_states(env, planner_cfg, seed, cfg.states, cfg.stride):
                shape = (cfg.horizon, sim.ACTION_DIM)
                actions = sampler.sample(np.zeros(shape, np.float32),
                                         np.full(shape, planner_cfg.init_std, np.float32))  # (N, T, A)
                real = SimulatorRollouts(env).imagine(actions, any(m in NEEDS_REAL_FRAMES for m in cfg.modes))
                truth = real.rewards.sum(1)
                row = {"task": task, "episode": index, "step": len(frames) - 1,
                       "true_return_range": float(truth.max() - truth.min())}
                for mode, predicted in _mode_returns(wm, reader, frames, real, actions, cfg.modes, seed):
                    row[mode] = _ranking(predicted, truth)
                rows.append(row)
                bar.update()
        env.close()
    bar.close()
    summary = _summarize(rows, cfg.modes, plan_cfg.task_list)
    for task, per_mode in summary.items():
        print(task, "  ".join(f"{m}: rho {v['spearman']:.3f}, pick {v['pick_quantile']:.3f}"
                              for m, v in per_mode.items()))
    result = {
        **planning_header("plan_ranking", cfg, settings, planner_cfg, start),
        "model": model_info,
        "reward_model": None if reader is None else str(cfg.reward_model),
        "summary": summary,
        "states": rows,
    }
    write_result(cfg.json, result)
    return result


def _scene_states(env: TaskEnv, planner_cfg: PlannerConfig, seed: int, states: int, stride: int
                  ) -> Iterator[np.ndarray]:
    """The real frames so far (T, H, W, 3) at `states` moments of the scene of `seed`: its start, then every
    `stride` steps of the simulator-as-model planner (which leaves `env` in that state each time)."""
    guide = PlanningAgent(Planner(planner_cfg, env.action_space.shape[0], seed),
                          lambda e, f: SimulatorRollouts(e), ObjectiveConfig())
    frame, _ = env.reset(seed=seed)
    guide.reset(seed, None)
    frames = [frame]
    for k in range(states):
        for _ in range(stride if k else 0):
            frames.append(env.step(guide.act(env, np.stack(frames)))[0])
        yield np.stack(frames)


def _mode_returns(wm: WorldModel, reader: FrameReward | None, frames: np.ndarray, real: Imagined,
                  actions: np.ndarray, modes: tuple[str, ...], seed: int) -> Iterator[tuple[str, np.ndarray]]:
    """(mode, predicted returns (N,)) for each of `modes` in one state. `independent` and `learned` score one
    draw (the planner's), imagined once, with frames only when the reward model reads them."""
    draw = None
    for mode in modes:
        if mode == TEACHER:
            yield mode, _teacher_returns(wm, frames, real.frames, actions)
        elif mode == LEARNED_TEACHER:
            yield mode, reader.read(real.frames).sum(1)
        elif mode in ("independent", LEARNED):
            if draw is None:
                draw = WorldModelRollouts(wm, frames, seed).imagine(actions, LEARNED in modes)
            yield mode, reader.read(draw.frames).sum(1) if mode == LEARNED else draw.rewards.sum(1)
        else:
            yield mode, _imagined_returns(wm, frames, actions, mode, seed)


def _imagined_returns(wm: WorldModel, frames: np.ndarray, actions: np.ndarray, mode: str, seed: int
                      ) -> np.ndarray:
    """The reward head's sum over each sequence's imagined future, sampled as `mode` says (`MODES`)."""
    temperature, common, particles = MODES[mode]
    sampling = {} if temperature is None else {"temperature": temperature}
    model = WorldModelRollouts(wm, frames, seed, sampling, particles if common else 0)
    imagined = model.imagine(np.repeat(actions, particles, axis=0), False)  # rewards (N * K, T)
    return imagined.rewards.sum(1).reshape(-1, particles).mean(1)


def _teacher_returns(wm: WorldModel, frames: np.ndarray, futures: np.ndarray, actions: np.ndarray
                     ) -> np.ndarray:
    """The reward head's summed reading of each sequence's real future frames (N, T, H, W, 3), teacher-forced
    after the same context a plan imagines from."""
    context = WorldModelRollouts(wm, frames).context  # (1, Tc, H, W, 3), padded as the planner pads it
    clips = np.concatenate([np.repeat(context, len(futures), axis=0), futures], axis=1)  # (N, Tc + T, ...)
    with torch.no_grad(), eval_mode(wm.tokenizer, wm.transformer):
        ctx, fut = wm.tokenizer.tokenize(to_model(torch.from_numpy(clips).to(wm.device)), context.shape[1])
        rewards = wm.transformer.frame_rewards(ctx.flatten(2), fut.flatten(2),
                                               torch.from_numpy(actions).to(wm.device))
    return rewards.sum(1).cpu().numpy()


def _ranking(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Spearman's rho of the predicted against the true returns; the true quantile of the model's pick."""
    if np.ptp(truth) == 0:
        return {"spearman": float("nan"), "pick_quantile": float("nan")}
    pick = truth[int(np.argmax(predicted))]
    quantile = (np.sum(truth < pick) + 0.5 * (np.sum(truth == pick) - 1)) / (len(truth) - 1)
    rho = spearmanr(predicted, truth).statistic if np.ptp(predicted) > 0 else 0.0
    return {"spearman": float(rho), "pick_quantile": float(quantile)}


def _summarize(rows: list[dict[str, Any]], modes: tuple[str, ...],
               tasks: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Per task (and "all") and mode: mean rho and pick quantile over the states that rank something."""
    out = {}
    for task in [*tasks, "all"]:
        mine = [r for r in rows if task in ("all", r["task"]) and r["true_return_range"] > 0]
        out[task] = {m: {"spearman": float(np.mean([r[m]["spearman"] for r in mine])),
                         "pick_quantile": float(np.mean([r[m]["pick_quantile"] for r in mine])),
                         "states": len(mine)} for m in modes}
    return out


if __name__ == "__main__":
    main(tyro.cli(RankingConfig))
