"""plan.json and report.html of `ivideogpt plan`.

plan.json:

    {"format": "ivideogpt-plan", "seconds": float,
     "settings": {every PlanConfig field (planner and objective nested), "env": {size, camera,
                  action_repeat, max_steps}, "elites": int, "imagined_per_plan": int},
     "model": {"path", "weights_sha256" (of its two weight files), "context_frames", "image_size",
               "sampling", "trained_on", "fps"},
     "tasks": {task: {agent: {"episodes", "successes", "success_rate", "success_ci95" (95% Wilson
                              interval), "final_success_rate", "mean_return",
                              "std_return", and for planners "ms_per_plan", "imagined_per_s",
                              "plans_per_episode"; for goal objectives "goal_solved_rate"}}},
     "episodes": [one entry per episode: task, agent, index, seed, success, final_success, first_success,
                  episode_return, steps, goal_solved, plans, plan_seconds, imagined]}
"""

from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

from ivideogpt.atomic import atomic_path
from ivideogpt.config import to_dict
from ivideogpt.eval.report import html_page, media_section
from ivideogpt.media import add_label, save_video
from ivideogpt.planning.episodes import EpisodeResult

PLAN_FILE = "plan.json"
FORMAT = "ivideogpt-plan"
VIDEO_SCALE = 2  # 64x64 frames are tiny on screen


def summarize(cfg: Any, env: dict[str, Any], model: dict[str, Any], results: list[EpisodeResult],
              seconds: float) -> dict[str, Any]:
    """The plan.json record of a run (see the module docstring)."""
    settings = to_dict(cfg)
    settings["env"] = {k: env[k] for k in ("size", "camera", "action_repeat", "max_steps")}
    settings["objective"] = to_dict(env["objective"])  # as played: the features model filled in
    settings["elites"] = cfg.planner.num_elites if cfg.planner.method == "cem" else None
    settings["imagined_per_plan"] = cfg.planner.imagined_per_plan
    tasks: dict[str, dict[str, Any]] = {}
    for task in cfg.task_list:
        tasks[task] = {}
        for agent in cfg.agents:
            mine = [r for r in results if r.task == task and r.agent == agent]
            if mine:
                tasks[task][agent] = agent_summary(mine)
    episodes = [{k: v for k, v in dataclasses.asdict(r).items() if k not in ("video", "stats")}
                | dataclasses.asdict(r.stats) for r in results]
    return {"format": FORMAT, "seconds": round(seconds, 1), "settings": settings, "model": model,
            "tasks": tasks, "episodes": episodes}


def success_interval(successes: int, episodes: int) -> list[float]:
    """95% Wilson interval of a success rate: at 10 episodes about +-0.3 wide, so it is shown beside it."""
    interval = binomtest(successes, episodes).proportion_ci(confidence_level=0.95, method="wilson")
    return [round(float(interval.low), 3), round(float(interval.high), 3)]


def agent_summary(results: list[EpisodeResult]) -> dict[str, Any]:
    """Success rates, return and planning speed over one agent's episodes of one task."""
    returns = np.array([r.episode_return for r in results])
    wins = sum(bool(r.success) for r in results)
    out: dict[str, Any] = {
        "episodes": len(results),
        "successes": wins,
        "success_rate": wins / len(results),
        "success_ci95": success_interval(wins, len(results)),
        "final_success_rate": float(np.mean([r.final_success for r in results])),
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
    }
    plans = sum(r.stats.plans for r in results)
    if plans:
        plan_seconds = sum(r.stats.plan_seconds for r in results)
        out |= {"plans_per_episode": plans / len(results), "ms_per_plan": 1000.0 * plan_seconds / plans,
                "imagined_per_s": sum(r.stats.imagined for r in results) / plan_seconds}
    solved = [r.goal_solved for r in results if r.goal_solved is not None]
    if solved:
        out["goal_solved_rate"] = float(np.mean(solved))
    return out


def write_plan_outputs(out: Path, record: dict[str, Any], results: list[EpisodeResult], fps: float) -> Path:
    """plan.json, videos/*.mp4 and report.html in `out`; returns the report's path."""
    media = {}
    goal = record["settings"]["objective"]["kind"] in ("goal", "both")  # videos show the goal frame first
    for r in results:
        if r.video is None:
            continue
        header = ("goal | " if goal else "") + f"real | {r.agent} plan"
        path = save_video(out / "videos" / f"{r.task}_{r.agent}_ep{r.index}.mp4", add_label(r.video, header),
                          fps=min(fps, 10.0), scale=VIDEO_SCALE)
        outcome = f"success at step {r.first_success}" if r.success else "no success"
        caption = f"{r.task}, episode {r.index}, {r.agent} planner: {outcome}, return {r.episode_return:.0f}"
        media[caption] = path
    with atomic_path(out / PLAN_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    sections = ["<h1>ivideogpt visual planning</h1>", _settings_section(record), _results_section(record)]
    if media:
        sections.append(media_section(media))
    path = out / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(html_page("ivideogpt visual planning", sections))
    return path


def _settings_section(record: dict[str, Any]) -> str:
    s = record["settings"]
    rows = {"model": record["model"]["path"], "tasks": ", ".join(s["tasks"]),
            "episodes per task": s["episodes"], "env": json.dumps(s["env"]),
            "planner": json.dumps(s["planner"]), "objective": json.dumps(s["objective"]),
            "imagined frames per plan": s["imagined_per_plan"], "seed": s["seed"],
            "wall time (s)": record["seconds"]}
    body = "".join(f"<tr><th>{k}</th><td style='text-align:left'>{_esc(v)}</td></tr>"
                   for k, v in rows.items())
    return f"<h2>Settings</h2>\n<table>{body}</table>"


def _results_section(record: dict[str, Any]) -> str:
    head = ("<tr><th>task</th><th>agent</th><th>episodes</th><th>success (95% interval)</th>"
            "<th>final success</th><th>return</th><th>ms / plan</th><th>imagined frames/s</th></tr>")
    rows = []
    for task, agents in record["tasks"].items():
        for agent, v in agents.items():
            ms = f"{v['ms_per_plan']:.0f}" if "ms_per_plan" in v else ""
            fps = f"{v['imagined_per_s']:.1f}" if "imagined_per_s" in v else ""
            low, high = v["success_ci95"]
            rows.append(f"<tr><th>{_esc(task)}</th><td>{_esc(agent)}</td><td>{v['episodes']}</td>"
                        f"<td>{v['success_rate']:.0%} ({low:.0%}-{high:.0%})</td>"
                        f"<td>{v['final_success_rate']:.0%}</td>"
                        f"<td>{v['mean_return']:.1f} ± {v['std_return']:.1f}</td><td>{ms}</td>"
                        f"<td>{fps}</td></tr>")
    note = ("<p class='note'>success: the simulator's success flag at any step of the episode; final: at its "
            "last step. For the simulator planner, imagined frames are simulated steps.</p>")
    return f"<h2>Results</h2>\n<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>\n{note}"


def _esc(value: Any) -> str:
    return html.escape(str(value))
