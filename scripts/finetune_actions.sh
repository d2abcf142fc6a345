#!/usr/bin/env bash
# Fine-tune the shipped metaworld64 world model on data that teaches control (README, "Teaching the model to
# use its actions"): Meta-World episodes from the default behaviour-policy mixture (ivideogpt.data.policies),
# tokenized with the shipped tokenizer, then the transformer trained from the shipped weights with the action
# added to every token of its frame (--model.action-to frame). Resumable: re-running it skips the finished
# stages and resumes the transformer from its last checkpoint (checkpoints every 100 steps).
#
#   bash scripts/finetune_actions.sh [WORK_DIR]     (STEPS=3000 by default; EXTRA= more overrides)
set -euo pipefail
work=${1:-runs/actions}
steps=${STEPS:-3000}
extra=${EXTRA:-}
shipped=src/ivideogpt/pretrained/metaworld64
export MUJOCO_GL=egl

# 1. 400 episodes, the 10 default tasks x 40, behaviour policy drawn per episode from the default mixture
[ -f data/mw-mix/meta.json ] || ivideogpt collect metaworld --episodes 40 --out data/mw-mix --workers 2
# 2. codes with the shipped tokenizer (its split settings), a clip starting every 4th frame
[ -f "$work/tokens/train/meta.json" ] || ivideogpt tokenize --tokenizer "$shipped" --data data/mw-mix \
    --out "$work/tokens" --start-stride 4 --overwrite
# 3. the transformer from the shipped weights (the preset's architecture is the shipped one)
resume=""
[ -f "$work/transformer-frame/ckpt/last.txt" ] && resume="--resume"
ivideogpt train --config transformer_metaworld64 --tokens "$work/tokens" --out "$work/transformer-frame" \
    --init-from "$shipped" --model.action-to frame --train.steps "$steps" --train.warmup-steps 50 \
    --train.lr 5e-4 --train.eval-every 250 --train.ckpt-every 100 $resume $extra
