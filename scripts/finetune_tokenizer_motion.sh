#!/usr/bin/env bash
# Fine-tune the shipped tokenizer so that its future codes keep what the actions move (README, "Teaching the
# model to use its actions"): moving pixels weighted in the loss, on the behaviour-policy data at action
# repeat 4, optionally with a finer future grid (PATCH=2: 8x8 = 64 tokens per future frame, the patch
# projections start fresh, everything else from the shipped weights). Resumable (checkpoints every 100 steps).
#
#   PATCH=2 bash scripts/finetune_tokenizer_motion.sh runs/tok-motion-p2
#   INIT=runs/tok-motion-p2 DATA="data/mw-mix-r4 data/mw-mix-r4-s1" STEPS=4000 LR=2e-4 \
#       bash scripts/finetune_tokenizer_motion.sh runs/tok-motion-p2-long     # continue a finished one
#   INIT=scratch CHANNELS="32 64 128" PATCH=2 bash scripts/finetune_tokenizer_motion.sh runs/tok-wide32
#
# Environment: STEPS (1000), PATCH (4: the shipped grid), MOTION (20), LR (3e-4), DATA (dataset folders,
# space-separated; data/mw-mix-r4), INIT (the tokenizer to start from: the shipped one; any other keeps its
# own grid, PATCH is then ignored; `scratch`: a fresh tokenizer with the 8x8-grid recipe's blend mask),
# CHANNELS (conv widths per level of a fresh tokenizer, e.g. "32 64 128"; default the preset's 16 32 64),
# EXTRA (more `ivideogpt train-tokenizer` overrides).
set -euo pipefail
out=${1:-runs/tok-motion}
patch=${PATCH:-4}
read -r -a data <<< "${DATA:-data/mw-mix-r4}"
shipped=src/ivideogpt/pretrained/metaworld64
init=${INIT:-$shipped}
export MUJOCO_GL=egl

[ -f "${data[0]}/meta.json" ] || ivideogpt collect metaworld --episodes 40 --out "${data[0]}" --workers 2 \
    --action-repeat 4
resume=""
[ -f "$out/ckpt/last.txt" ] && resume="--resume"
if [ "$init" = scratch ]; then
    # a capacity test: the same recipe from fresh weights, so width is the only difference
    start="--tokenizer.patch-size $patch --tokenizer.future-blend"
    [ -z "${CHANNELS:-}" ] || start="$start --tokenizer.channels $CHANNELS"
else
    start="--init-from $init"
    [ "$patch" = 4 ] || [ "$init" != "$shipped" ] || start="$start --reshape --tokenizer.patch-size $patch"
fi
ivideogpt train-tokenizer --config tokenizer_metaworld64 --data "${data[@]}" --out "$out" \
    $start --loss.recon l2 --loss.motion-weight "${MOTION:-20}" \
    --train.lr "${LR:-3e-4}" --train.warmup-steps 50 --train.steps "${STEPS:-1000}" \
    --train.eval-every 100 --train.ckpt-every 100 --train.num-workers 0 $resume ${EXTRA:-}
