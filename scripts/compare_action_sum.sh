#!/usr/bin/env bash
# A/B of the running action sum (`--model.action-sum`) against the same fine-tune without it: both arms
# start from one world model, train on the same token shards with the same settings, one thread each side
# by side, and differ only in that option (README, "Teaching the model to use its actions"). Resumable:
# re-running it resumes each arm from its last checkpoint (every 100 steps).
#
#   BASE=runs/actions-p2/snap3400/world_model bash scripts/compare_action_sum.sh [WORK_DIR]
#
# Environment: BASE (required: the world model both arms start from), TOKENS (runs/actions-p2/tokens),
# STEPS (1500), EXTRA (more `ivideogpt train` overrides for both arms).
set -euo pipefail
work=${1:-runs/ab-sum}
base=${BASE:?set BASE to the world model both arms start from}
tokens=${TOKENS:-runs/actions-p2/tokens}
steps=${STEPS:-1500}
extra=${EXTRA:-}
mkdir -p "$work"

run_arm() {  # NAME [ARCHITECTURE FLAGS...]
    local name=$1 out=$work/$1 resume=""
    shift
    [ -f "$out/ckpt/last.txt" ] && resume="--resume"
    OMP_NUM_THREADS=1 ivideogpt train --config transformer_metaworld64 --tokens "$tokens" --out "$out" \
        --init-from "$base" --model.action-to frame --train.steps "$steps" --train.warmup-steps 50 \
        --train.lr 4e-4 --train.eval-every 250 --train.ckpt-every 100 $resume $extra "$@" \
        > "$work/$name.log" 2>&1
}

run_arm control &
run_arm sum --model.action-sum &
wait
