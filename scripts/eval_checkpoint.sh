#!/usr/bin/env bash
# A quick look at a transformer run's checkpoint while it trains: export it (float32) and put it through
# bench/actions.py on 16 counterfactual scenes of the default tasks and 8 ordinary clips, greedy (6.5 min
# on 2 CPU cores beside a running training; 16 scenes x 12 ordered branch pairs, so differences of a few
# hundredths are noise).
#
#   bash scripts/eval_checkpoint.sh RUN_DIR STEP        e.g. runs/pretrained/transformer 2000
#
# Writes runs/snaps/<run>-<step>/ (the world model) and runs/evals/<run>-<step>.json (the bench's figures),
# <run> being RUN_DIR without runs/ and with "/" as "-" (two A/Bs' "control" arms must not share an
# export); the bench's test sets are recorded under runs/bench_actions once and reused.
set -euo pipefail
run=${1:?RUN_DIR}
step=${2:?STEP}
ckpt="$run/ckpt/$(printf 'step_%09d' "$step")"
if [ ! -d "$ckpt" ]; then
    echo "no checkpoint $ckpt (have: $(ls "$run/ckpt" 2>/dev/null | tr '\n' ' '))" >&2
    exit 1
fi
run_name=${run%/}
run_name=${run_name#runs/}
name="${run_name//\//-}-$step"
[ -f "runs/snaps/$name/world_model.json" ] || ivideogpt export --model "$ckpt" --out "runs/snaps/$name" \
    --dtype float32
MUJOCO_GL=${MUJOCO_GL:-egl} python bench/actions.py --models "runs/snaps/$name" --work runs/bench_actions \
    --scenes 16 --clips 8 --no-unseen --temperature 0 --json "runs/evals/$name.json"
