"""Issue 15's targets for the planning bench, judged the same way on one run and on pooled runs.

"Clearly above random" is a one-sided Fisher exact test of the world-model planner's successes against
random actions' on the same scenes (p < 0.05): at 10 episodes a task that needs, e.g., 5 successes against
1, where a fixed margin of 10 points would pass 2 against 1. "Half the simulator planner" is the ratio of
the two success rates, needed on at least two tasks.
"""

from __future__ import annotations

from typing import Any

from scipy.stats import fisher_exact

SIMULATOR_SHARE = 0.5  # the world-model planner reaches this share of the simulator planner's success
SIGNIFICANCE = 0.05  # "clearly above random": one-sided Fisher exact p below this
RULE = (f"above random: one-sided Fisher exact test of successes, p < {SIGNIFICANCE}; "
        f"share of the simulator planner's success >= {SIMULATOR_SHARE} on at least two tasks")


def successes(agent: dict[str, Any]) -> int:
    return agent.get("successes", round(agent["success_rate"] * agent["episodes"]))


def p_above(agent: dict[str, Any], baseline: dict[str, Any]) -> float:
    """One-sided p-value that `agent` succeeds more often than `baseline` (Fisher's exact test)."""
    table = [[successes(a), a["episodes"] - successes(a)] for a in (agent, baseline)]
    return float(fisher_exact(table, alternative="greater").pvalue)


def targets(tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The targets per task and overall, where the agents they compare ran (None where they did not)."""
    per_task = {}
    for task, agents in tasks.items():
        if "world_model" not in agents:
            continue
        wm = agents["world_model"]
        row: dict[str, Any] = {}
        if "random" in agents:
            row["p_above_random"] = round(p_above(wm, agents["random"]), 4)
            row["above_random"] = row["p_above_random"] < SIGNIFICANCE
        if "simulator" in agents:
            sim = agents["simulator"]["success_rate"]
            row["share_of_simulator"] = wm["success_rate"] / sim if sim > 0 else None
        per_task[task] = row
    shares = [r.get("share_of_simulator") for r in per_task.values()]
    ran = {key: any(key in r for r in per_task.values()) for key in ("above_random", "share_of_simulator")}
    return {
        "rule": RULE,
        "per_task": per_task,
        "above_random_on_every_task": (all(r.get("above_random", False) for r in per_task.values())
                                       if ran["above_random"] else None),
        "half_of_simulator_on_two_tasks": (sum(s is not None and s >= SIMULATOR_SHARE for s in shares) >= 2
                                           if ran["share_of_simulator"] else None),
    }
