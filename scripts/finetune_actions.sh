#!/usr/bin/env bash
# Fine-tune the shipped metaworld64 world model on data that teaches control (README, "Teaching the model to
# use its actions"): Meta-World episodes from the default behaviour-policy mixture (ivideogpt.data.policies),
# tokenized with the shipped tokenizer (or TOKENIZER), then the transformer trained from the shipped weights
# with the action added to every token of its frame (--model.action-to frame). Resumable: re-running it skips
# the finished stages and resumes the transformer from its last checkpoint (checkpoints every 100 steps).
#
#   bash scripts/finetune_actions.sh [WORK_DIR]
#
# Environment: STEPS (3000), ACTION_REPEAT (2: the shipped model's control rate; 4 moves the arm twice as far
# per frame), DATA (dataset folders, space-separated; data/mw-mix, or data/mw-mix-r<N> for another repeat; the
# first is recorded when missing), TOKENIZER (the shipped one), INIT (the world model whose transformer and
# reward head start the run: the shipped one), NEW_CODES (1 when TOKENIZER is unrelated to INIT's: only its
# body loads, the code embeddings and logits start fresh), EVAL_EVERY (250), EXTRA (more `ivideogpt train`
# overrides).
set -euo pipefail
work=${1:-runs/actions}
steps=${STEPS:-3000}
repeat=${ACTION_REPEAT:-2}
default_data=data/mw-mix
[ "$repeat" = 2 ] || default_data=data/mw-mix-r$repeat
read -r -a data <<< "${DATA:-$default_data}"
shipped=src/ivideogpt/pretrained/metaworld64
tokenizer=${TOKENIZER:-$shipped}
init=${INIT:-$shipped}
extra=${EXTRA:-}
new_codes=""
[ "${NEW_CODES:-0}" = 1 ] && new_codes="--init-new-codes"
export MUJOCO_GL=egl

# 1. 400 episodes, the 10 default tasks x 40, behaviour policy drawn per episode from the default mixture
[ -f "${data[0]}/meta.json" ] || ivideogpt collect metaworld --episodes 40 --out "${data[0]}" --workers 2 \
    --action-repeat "$repeat"
# 2. codes of every clip (the tokenizer's split settings), a clip starting every 4th frame
ivideogpt tokenize --tokenizer "$tokenizer" --data "${data[@]}" --out "$work/tokens" --start-stride 4 --resume
# 3. the transformer from the shipped (or INIT's) weights (the preset's architecture is the shipped one)
resume=""
[ -f "$work/transformer-frame/ckpt/last.txt" ] && resume="--resume"
ivideogpt train --config transformer_metaworld64 --tokens "$work/tokens" --out "$work/transformer-frame" \
    --init-from "$init" --model.action-to frame --train.steps "$steps" --train.warmup-steps 50 \
    --train.lr 5e-4 --train.eval-every "${EVAL_EVERY:-250}" --train.ckpt-every 100 $resume $new_codes $extra
