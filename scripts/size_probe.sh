#!/usr/bin/env bash
# Does the transformer's size limit how much of the action it reads? Trains transformers of several widths
# from scratch on the same token shards, the same data order and the same settings as the repeat-16 runs
# (README, "Teaching the model to use its actions"), so their validation CE and action_gain at equal steps
# compare size alone; then `scripts/eval_checkpoint.sh` scores each last checkpoint's likelihood
# discrimination on the counterfactual scenes. Resumable: re-running skips finished runs.
#
#   bash scripts/size_probe.sh TOKENS [WORK_DIR]      e.g. runs/r16f/tokens runs/size
#
# Environment: STEPS (2000), SIZES (space-separated name:n_embd:n_head:mlp_hidden:n_layer; default
# small:128:4:352:4 base:256:4:704:4, base being the 4.3M-parameter preset; add e.g. wide:384:6:1056:4).
set -euo pipefail
tokens=${1:?TOKENS}
work=${2:-runs/size}
steps=${STEPS:-2000}
read -r -a sizes <<< "${SIZES:-small:128:4:352:4 base:256:4:704:4}"
for size in "${sizes[@]}"; do
    IFS=: read -r name embd heads hidden layers <<< "$size"
    out="$work/$name"
    final="$out/ckpt/$(printf 'step_%09d' "$steps")"
    if [ ! -d "$final" ]; then
        resume=""
        [ -f "$out/ckpt/last.txt" ] && resume="--resume"
        ivideogpt train --config transformer_metaworld64 --tokens "$tokens" --out "$out" \
            --model.n-embd "$embd" --model.n-head "$heads" --model.mlp-hidden "$hidden" \
            --model.n-layer "$layers" --model.action-to frame --model.attn-dropout 0 --train.amp bf16 \
            --train.compile --train.steps "$steps" --train.eval-every 500 --train.ckpt-every 100 $resume
    fi
    bash scripts/eval_checkpoint.sh "$out" "$steps"
done
