#!/usr/bin/env bash
# The still-code experiment (docs/actions-log.md, "A still code for still patches"), on top of a
# `scripts/train_pretrained.sh` work folder: the recipe's wide tokenizer fine-tuned so that every future
# patch where nothing moved gets the one reserved code (--tokenizer.still-threshold), its codes, and the
# recipe's transformer continued on them (its tokenizer is the new one's parent, so every weight carries
# over and only the still code changes meaning), then the counterfactual bench and the exposure bench.
# Resumable like the recipe: the same command skips finished stages and resumes training.
# On 2 CPU cores: tokenizer 1.0 s a step (1,500 steps), tokenize ~40 min, transformer ~2.2 s a step.
#
#   bash scripts/still_codes.sh [WORK_DIR]
#
# Environment: THRESHOLD (5 grey levels), TOKENIZER_STEPS (1500), TRANSFORMER_STEPS (3000), AMP (as in
# train_pretrained.sh), EXTRA (more overrides for both training commands).
set -euo pipefail
work=${1:-runs/pretrained}
source "$(dirname "$0")/recipe_env.sh"  # amp, extra, data
[ -f "$work/tokenizer/tokenizer/config.json" ] || { echo "no finished tokenizer in $work/tokenizer: run \
scripts/train_pretrained.sh $work first" >&2; exit 1; }
[ -f "$work/transformer/ckpt/last.txt" ] || { echo "no transformer checkpoint in $work/transformer: run \
scripts/train_pretrained.sh $work first" >&2; exit 1; }

# 1. the tokenizer: the recipe's loss, lr 2e-4, still patches coded as one
resume=""
[ -f "$work/tok-still/ckpt/last.txt" ] && resume="--resume"
ivideogpt train-tokenizer --config tokenizer_metaworld64 --data "${data[@]}" --out "$work/tok-still" \
    --init-from "$work/tokenizer/tokenizer" --reshape --tokenizer.future-blend \
    --tokenizer.still-threshold "${THRESHOLD:-5}" --loss.recon l2 --loss.motion-weight 20 \
    --train.lr 2e-4 --train.warmup-steps 50 --train.steps "${TOKENIZER_STEPS:-1500}" --train.eval-every 100 \
    --train.ckpt-every 100 --train.num-workers 0 $resume $extra
# 2. codes of every clip, as the recipe's
ivideogpt tokenize --tokenizer "$work/tok-still" --data "${data[@]}" --out "$work/tokens-still" \
    --start-stride 4 --resume
# 3. the parent: the recipe's transformer at its last checkpoint, exported once
parent="$work/transformer-parent"
last=$(cat "$work/transformer/ckpt/last.txt")
[ -f "$parent/world_model.json" ] || ivideogpt export --model "$work/transformer/ckpt/$last" --out "$parent" \
    --dtype float32
# 4. the transformer continued on the new codes
resume=""
[ -f "$work/transformer-still/ckpt/last.txt" ] && resume="--resume"
ivideogpt train --config transformer_metaworld64 --tokens "$work/tokens-still" \
    --out "$work/transformer-still" --init-from "$parent" --model.action-to frame \
    --train.steps "${TRANSFORMER_STEPS:-3000}" \
    --train.warmup-steps 50 --train.lr 3e-4 --train.eval-every 250 --train.ckpt-every 100 $resume $extra
# 5. the benches: counterfactual (greedy) and the first imagined frame's exposure, beside the parent
python bench/actions.py --models "$work/transformer-still" --work runs/bench_actions \
    --json "$work/actions_still.json"
python bench/exposure.py --models "$parent" "$work/transformer-still/world_model" \
    --json "$work/exposure_still.json" --grid "$work/exposure_still"
