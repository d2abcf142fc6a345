"""Visual planning: CEM / MPPI over action sequences imagined by a world model (or the simulator).

    planner = Planner(PlannerConfig(method="mppi", horizon=10, samples=200), action_dim=4)
    plan = planner.plan(WorldModelRollouts(wm, frames), make_objective(ObjectiveConfig("reward")))
    env.step(plan.actions[0]); planner.advance(1)     # receding horizon, warm-started next time

`ivideogpt plan` (`planning.run`) runs closed-loop Meta-World episodes with it beside baselines.
"""

from ivideogpt.planning.objectives import ObjectiveConfig, goal_distance, make_objective
from ivideogpt.planning.planner import Imagined, Plan, Planner, PlannerConfig, RolloutModel, Score

__all__ = ["Imagined", "ObjectiveConfig", "Plan", "Planner", "PlannerConfig", "RolloutModel", "Score",
           "goal_distance", "make_objective"]
