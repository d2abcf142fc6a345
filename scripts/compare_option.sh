#!/usr/bin/env bash
# A/B of one training option against the same fine-tune without it: both arms start from one world model,
# train on the same token shards with the same settings, one thread each side by side, and differ only in
# OPTION (docs/actions-log.md has the A/Bs run with it). Resumable: re-running it resumes each arm from
# its last checkpoint (every 100 steps).
#
#   BASE=runs/actions-p2/snap3300/world_model OPTION="--model.action-sum" NAME=sum \
#       bash scripts/compare_option.sh [WORK_DIR]
#
# Environment: BASE (required: the world model both arms start from), OPTION (required: the `ivideogpt
# train` flags of the second arm), NAME (that arm's folder, "option"), TOKENS (runs/actions-p2/tokens),
# STEPS (1500), EXTRA (more `ivideogpt train` overrides for both arms).
set -euo pipefail
work=${1:-runs/ab-option}
base=${BASE:?set BASE to the world model both arms start from}
option=${OPTION:?set OPTION to the flags the second arm adds}
name=${NAME:-option}
tokens=${TOKENS:-runs/actions-p2/tokens}
steps=${STEPS:-1500}
extra=${EXTRA:-}
mkdir -p "$work"

run_arm() {  # NAME [OPTION FLAGS...]
    local arm=$1 out=$work/$1 resume=""
    shift
    [ -f "$out/ckpt/last.txt" ] && resume="--resume"
    OMP_NUM_THREADS=1 ivideogpt train --config transformer_metaworld64 --tokens "$tokens" --out "$out" \
        --init-from "$base" --model.action-to frame --train.steps "$steps" --train.warmup-steps 50 \
        --train.lr 4e-4 --train.eval-every 250 --train.ckpt-every 100 $resume $extra "$@" \
        > "$work/$arm.log" 2>&1
}

run_arm control &
# shellcheck disable=SC2086  # OPTION holds several flags
run_arm "$name" $option &
wait
