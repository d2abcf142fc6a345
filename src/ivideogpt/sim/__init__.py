"""Real simulators as gymnasium envs, with their scripted experts: the bottom of the package.

Collectors (`data.metaworld`), the demo, planners and RL import simulators from here; nothing here
imports a model. `ivideogpt.sim.metaworld` is the Meta-World wrapper (imported from there: it loads
MuJoCo). The world-model envs live in `ivideogpt.envs`, above `world_model.py`.
"""
