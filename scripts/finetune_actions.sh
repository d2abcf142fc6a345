#!/usr/bin/env bash
# Fine-tune the shipped metaworld64 world model on data that teaches control (README, "Actions"):
# Meta-World episodes from the default behaviour-policy mixture (ivideogpt.data.policies), tokenized with
# the shipped tokenizer, then the transformer trained from the shipped weights. Resumable: re-running it
# skips the finished stages and resumes the transformer from its last checkpoint.
#
#   bash scripts/finetune_actions.sh [WORK_DIR]        (STEPS=1500 by default; EXTRA= more overrides)
set -euo pipefail
work=${1:-runs/actions}
steps=${STEPS:-1500}
extra=${EXTRA:-}
shipped=src/ivideogpt/pretrained/metaworld64
export MUJOCO_GL=egl

# 1. 400 episodes, the 10 default tasks x 40, behaviour policy drawn per episode from the default mixture
[ -f data/mw-mix/meta.json ] || ivideogpt collect metaworld --episodes 40 --out data/mw-mix --workers 2
# 2. codes with the shipped tokenizer (its split settings), a clip starting every 4th frame
[ -f "$work/tokens/train/meta.json" ] || ivideogpt tokenize --tokenizer "$shipped" --data data/mw-mix \
    --out "$work/tokens" --start-stride 4 --overwrite
# 3. the transformer from the shipped weights (architecture from the preset must match them)
resume=""
[ -f "$work/transformer/ckpt/last.txt" ] && resume="--resume"
ivideogpt train --config transformer_metaworld64 --tokens "$work/tokens" --out "$work/transformer" \
    --init-from "$shipped" --train.steps "$steps" --train.warmup-steps 50 --train.lr 3e-4 \
    --train.eval-every 250 --train.ckpt-every 100 $resume $extra
