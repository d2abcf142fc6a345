"""The names of the files and folders a run, a checkpoint and an export are made of.

One home for them so that every module that reads or writes these folders (`ivideogpt.artifacts`,
`ivideogpt.world_model_io`, the training jobs) agrees on them without importing each other.
"""

# A run folder (`ivideogpt.artifacts` draws its tree)
CKPT_DIR = "ckpt"  # checkpoints of a run live in <run>/ckpt/
LAST_FILE = "last.txt"  # <run>/ckpt/last.txt names the newest complete step folder
STEP_PREFIX = "step_"  # step folders: step_000001000
MODEL_FILE = "model.safetensors"  # weights of every module, "<module>.<parameter>"
CONFIG_FILE = "config.json"  # the resolved run config
STATE_FILE = "train_state.pt"  # optimizer and RNG states, step (checkpoints only)
TOKENIZER_EXPORT = "tokenizer"  # the tokenizer export inside a run folder
REWARD_MODEL_EXPORT = "reward_model"  # the frame-reward export inside a `train-reward` run folder

# A world-model folder (docs/world-model-format.md)
EXPORT_DIR = "world_model"  # the folder inside a run folder
SPEC_FILE = "world_model.json"
TOKENIZER_FILE = "tokenizer.safetensors"
TRANSFORMER_FILE = "transformer.safetensors"
