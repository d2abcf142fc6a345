#!/usr/bin/env bash
# Fine-tune a world model on one Meta-World task before planning on it (README, "Visual planning"): record the
# task with the default behaviour-policy mixture (rewards included), tokenize it with the model's own
# tokenizer, fine-tune the model's transformer and reward head from its weights, then plan on the task with
# the parent and the fine-tuned model, on the same scenes, beside random actions. Each stage is skipped when
# its output exists (the fine-tune resumes from its last checkpoint); plan outputs are replaced.
#
#   TASK=push bash scripts/finetune_task.sh [MODEL] [WORK_DIR]
#
# Environment: TASK (reach), EPISODES (40 recorded), STEPS (500 fine-tune steps), ACTION_REPEAT (the model's
# control rate: 2 for the shipped model), MAX_STEPS (decisions per recorded episode; 100, or 50 to match a
# repeat-16 model's data), PLAN_EPISODES (10), PLAN_MODELS ("parent finetuned": which of
# the two to plan with), TRAIN_EXTRA / PLAN_EXTRA (more overrides of `ivideogpt train` / `ivideogpt plan`,
# e.g. PLAN_EXTRA="--max-steps 50 --workers 2").
set -euo pipefail
model=${1:-src/ivideogpt/pretrained/metaworld64}
task=${TASK:-reach}
work=${2:-runs/task-$task}
repeat=${ACTION_REPEAT:-2}
plan_models=${PLAN_MODELS:-parent finetuned}
for name in $plan_models; do  # checked before hours of work, not after
    case $name in
        parent | finetuned) ;;
        *) echo "finetune_task.sh: PLAN_MODELS names 'parent' and/or 'finetuned', not '$name'" >&2; exit 2 ;;
    esac
done
export MUJOCO_GL=egl

# 1. the task's episodes, a behaviour policy drawn per episode from the default mixture
[ -f "$work/data/meta.json" ] || ivideogpt collect metaworld --tasks "$task" --episodes "${EPISODES:-40}" \
    --out "$work/data" --workers 2 --action-repeat "$repeat" --max-steps "${MAX_STEPS:-100}"
# 2. codes of every clip, by the model's tokenizer (a clip starting every other frame)
[ -f "$work/tokens/train/meta.json" ] || ivideogpt tokenize --tokenizer "$model" --data "$work/data" \
    --out "$work/tokens" --start-stride 2 --overwrite
# 3. the transformer (and reward head) from the model's weights, a short schedule at a fine-tuning rate
resume=""
[ -f "$work/transformer/ckpt/last.txt" ] && resume="--resume"
ivideogpt train --config transformer_metaworld64 --tokens "$work/tokens" --out "$work/transformer" \
    --init-from "$model" --train.steps "${STEPS:-500}" --train.warmup-steps 20 --train.lr 3e-4 \
    --train.eval-every 100 --train.ckpt-every 100 $resume ${TRAIN_EXTRA:-}
# 4. plan with both models (or PLAN_MODELS) on the same scenes (the same --seed), random actions as the floor
for name in $plan_models; do
    m=$model
    [ "$name" = finetuned ] && m=$work/transformer
    ivideogpt plan --model "$m" --tasks "$task" --episodes "${PLAN_EPISODES:-10}" \
        --agents world_model random --out "$work/plan-$name" --overwrite ${PLAN_EXTRA:-}
done
