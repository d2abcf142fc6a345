#!/usr/bin/env bash
# A RoboDesk world model from the Meta-World one, then VP2's RoboDesk tasks planned with it (README,
# "Visual planning", RoboDesk). The paper's recipe (docs/method.md §3) on another robot: RoboDesk episodes of
# random policies, the Meta-World tokenizer fine-tuned on them, their codes, and the action-trained
# Meta-World transformer fine-tuned on those codes with RoboDesk's 5-d actions (its action layers start at
# zero: `--init-new-actions`; its body, reward head and the codes' meaning carry over).
# Every stage is resumable: re-running the same command skips finished stages and resumes training from its
# last checkpoint. Needs `pip install -e ".[robodesk]"`.
#
#   bash scripts/train_robodesk.sh [WORK_DIR]
#
# Environment: EPISODES (per task, 60: 420 episodes of 50 steps; on this CPU RoboDesk's own render draws about
# 8 frames/s with 2 workers, so 45 min; a GPU renderer is far faster), CAMERA (vp2; vp2-fast renders 9x faster
# but darker, and planning must then use it too), TOKENIZER_STEPS (1000), TRANSFORMER_STEPS (4000),
# PARENT (the world model whose transformer starts: checkpoints/metaworld64-actions-r16), TOKENIZER_PARENT
# (checkpoints/metaworld64-tokenizer: the one that made PARENT's codes), PLAN_EPISODES (10), PLAN_EXTRA (more
# bench/planning.py options, e.g. "--tasks push_red open_slide --precision bfloat16"), AMP, EXTRA, COMPILE as
# in scripts/train_pretrained.sh (scripts/recipe_env.sh). Finished stages kept elsewhere skip theirs:
# TOKENIZER (an adapted tokenizer: skips stage 2), TOKENS (codes made by it: skips stages 1-3), e.g.
# TOKENIZER=checkpoints/robodesk64-tokenizer TOKENS=checkpoints/robodesk64-tokens (checkpoints/README.md).
# RELABEL (e.g. "push_red push_blue") gives each task listed its own reward head and plans it with that model
# (stage 5); RELABEL_STEPS (500) its fine-tune's length; PLAN_EXTRA must then name no --tasks.
set -euo pipefail
work=${1:-runs/robodesk}
episodes=${EPISODES:-60}
camera=${CAMERA:-vp2}
parent=${PARENT:-checkpoints/metaworld64-actions-r16}
tokenizer_parent=${TOKENIZER_PARENT:-checkpoints/metaworld64-tokenizer}
source "$(dirname "$0")/recipe_env.sh"  # amp, extra, compile
export MUJOCO_GL=egl
data=$work/data
tokenizer=${TOKENIZER:-$work/tokenizer}
tokens=${TOKENS:-$work/tokens}

# 1. VP2's seven tasks, smooth random and uniform random actions (RoboDesk has no scripted expert)
[ -n "${TOKENS:-}" ] || [ -f "$data/meta.json" ] || ivideogpt collect robodesk --episodes "$episodes" \
    --out "$data" --workers 2 --camera "$camera"
# 2. the Meta-World tokenizer adapted to the desk (its architecture is the parent's)
if [ -z "${TOKENIZER:-}" ] && [ -z "${TOKENS:-}" ]; then
    resume=""
    [ -f "$work/tokenizer/ckpt/last.txt" ] && resume="--resume"
    ivideogpt train-tokenizer --config tokenizer_metaworld64 --init-from "$tokenizer_parent" --data "$data" \
        --out "$work/tokenizer" --loss.recon l2 --loss.motion-weight 20 --train.lr 1e-4 \
        --train.steps "${TOKENIZER_STEPS:-1000}" --train.warmup-steps 50 --train.eval-every 100 \
        --train.ckpt-every 100 --train.num-workers 0 $resume $extra
fi
# 3. codes of every clip, a clip starting every 4th frame
[ -n "${TOKENS:-}" ] || ivideogpt tokenize --tokenizer "$tokenizer" --data "$data" --out "$tokens" \
    --start-stride 4 --resume
# 4. the transformer: the parent's body on the desk's codes, new 5-d action layers, the action on every token
resume=""
[ -f "$work/transformer/ckpt/last.txt" ] && resume="--resume"
ivideogpt train --config transformer_metaworld64 --tokens "$tokens" --out "$work/transformer" \
    --init-from "$parent" --init-new-actions --model.action-to frame --model.attn-dropout 0 \
    --train.steps "${TRANSFORMER_STEPS:-4000}" --train.warmup-steps 50 --train.lr 3e-4 \
    --train.eval-every 500 --train.ckpt-every 100 $compile $resume $extra
# 5. one reward per task: RoboDesk's tasks share one desk, so the reward head of stage 4, taught by episodes
#    of seven tasks each paid by its own, learns their average. Each task in RELABEL gets the codes paid by
#    its reward alone (`ivideogpt relabel`: every episode replayed in the simulator) and its own fine-tune of
#    the stage-4 model on them (RELABEL_STEPS, 500), then is planned with that model
plan=(--suite robodesk --camera "$camera" --episodes "${PLAN_EPISODES:-10}")
for task in ${RELABEL:-}; do
    [ -d "$work/tokens-$task" ] || ivideogpt relabel --tokens "$tokens" --task "$task" \
        --out "$work/tokens-$task"
    resume=""
    [ -f "$work/transformer-$task/ckpt/last.txt" ] && resume="--resume"
    ivideogpt train --config transformer_metaworld64 --tokens "$work/tokens-$task" \
        --out "$work/transformer-$task" --init-from "$work/transformer/world_model" --model.action-to frame \
        --model.attn-dropout 0 --train.steps "${RELABEL_STEPS:-500}" --train.warmup-steps 50 --train.lr 3e-4 \
        --train.eval-every 250 --train.ckpt-every 100 $compile $resume $extra
    python bench/planning.py "${plan[@]}" --model "$work/transformer-$task/world_model" --tasks "$task" \
        --work "$work/plan-$task" --json "$work/planning-$task.json" ${PLAN_EXTRA:-}
done
# 6. without RELABEL: VP2's tasks planned with the stage-4 model, beside random actions and the simulator
#    planner on the same scenes
if [ -z "${RELABEL:-}" ]; then
    python bench/planning.py "${plan[@]}" --model "$work/transformer/world_model" --work "$work/plan" \
        --json "$work/planning.json" ${PLAN_EXTRA:-}
fi
