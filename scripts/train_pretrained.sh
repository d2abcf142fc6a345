#!/usr/bin/env bash
# Rebuild the action-conditioned metaworld64 world model with the project's own commands: behaviour-policy
# data at action repeat 4, the wide 8x8-grid tokenizer trained from scratch with moving pixels weighted and
# one still code for every future patch where nothing moved, the transformer on its codes with the action on
# every token of its frame, then the issue's benchmarks (README, "The pretrained model in the package";
# every figure and its history in docs/actions-log.md).
# Every stage is resumable: re-running the same command skips finished stages and resumes training from its
# last checkpoint (every 100 steps), so the recipe survives being stopped, e.g. between sessions.
# On 2 CPU cores: data 10 min, tokenizer 1 h 45 min, tokenize 36 min, transformer ~0.7 s a step (compiled,
# without attention dropout: bench/train_step.py).
#
#   bash scripts/train_pretrained.sh [WORK_DIR] [SHIP_DIR]
#
# Without SHIP_DIR it stops after the benchmarks; with it, the float16 export goes there too (the shipped
# folder is replaced only whole, once the export is complete).
# Environment: TOKENIZER (a finished tokenizer, e.g. the recipe's own kept in checkpoints/: stage 2 is then
# skipped and its codes are the ones tokenized), TRANSFORMER_STEPS (6000), INIT (the world model whose
# transformer body starts the run: the shipped one; its code embeddings and logits start fresh, the codes
# being new), AMP (bf16 autocast; default on when the CPU has AMX, where it halves a step; set AMP=bf16 on a
# GPU), EXTRA (more overrides for both training commands, e.g. EXTRA="--train.batch-size 32" on a GPU),
# COMPILE (0: the transformer uncompiled), THRESHOLD (5 grey levels: a future patch
# none of whose pixels changed more since the last context frame gets the still code; 0 turns it off, the
# recipe before docs/actions-log.md's "A still code for still patches").
set -euo pipefail
work=${1:-runs/pretrained}
ship=${2:-}
shipped=src/ivideogpt/pretrained/metaworld64
init=${INIT:-$shipped}
steps=${TRANSFORMER_STEPS:-6000}
threshold=${THRESHOLD:-5}
tokenizer=${TOKENIZER:-$work/tokenizer}
source "$(dirname "$0")/recipe_env.sh"  # amp, extra, compile, data
export MUJOCO_GL=egl

# 1. 1,600 Meta-World episodes at action repeat 4 (20 frames/s): the 10 default tasks x (40 + 120), the
#    behaviour policy drawn per episode from the default mixture (README, "Data that teaches control")
[ -f data/mw-mix-r4/meta.json ] || ivideogpt collect metaworld --episodes 40 --out data/mw-mix-r4 \
    --workers 2 --action-repeat 4 --seed 0
[ -f data/mw-mix-r4-s1/meta.json ] || ivideogpt collect metaworld --episodes 120 --out data/mw-mix-r4-s1 \
    --workers 2 --action-repeat 4 --seed 1
# 2. the tokenizer: channels 32/64/128, 8x8 future grid (patch 2), future_blend, L2 with moving pixels
#    weighted 20x, still patches coded as one; 4,500 steps at lr 5e-4, then 1,200 at 1e-4 (the run resumes
#    with the lower rate)
tokenizer_args=(--config tokenizer_metaworld64 --data "${data[@]}" --out "$work/tokenizer"
    --tokenizer.channels 32 64 128 --tokenizer.patch-size 2 --tokenizer.future-blend
    --tokenizer.still-threshold "$threshold" --loss.recon l2 --loss.motion-weight 20
    --train.warmup-steps 50 --train.eval-every 100 --train.ckpt-every 100 --train.num-workers 0)
if [ -z "${TOKENIZER:-}" ]; then
    resume=""
    [ -f "$work/tokenizer/ckpt/last.txt" ] && resume="--resume"
    ivideogpt train-tokenizer "${tokenizer_args[@]}" --train.lr 5e-4 --train.steps 4500 $resume $extra
    ivideogpt train-tokenizer "${tokenizer_args[@]}" --train.lr 1e-4 --train.steps 5700 --resume $extra
fi
# 3. codes of every clip, a clip starting every 4th frame; train/val split by episode as the tokenizer's
ivideogpt tokenize --tokenizer "$tokenizer" --data "${data[@]}" --out "$work/tokens" --start-stride 4 --resume
# 4. the transformer (4 layers, width 256) with the reward head, its body from INIT, the action added to
#    every token of its frame; without attention dropout, which on CPUs halves a step (the fused attention
#    kernel takes no dropout; bench/train_step.py) and which a run of under two epochs hardly needs
resume=""
[ -f "$work/transformer/ckpt/last.txt" ] && resume="--resume"
ivideogpt train --config transformer_metaworld64 --tokens "$work/tokens" --out "$work/transformer" \
    --init-from "$init" --init-new-codes --model.action-to frame --model.attn-dropout 0 \
    --train.steps "$steps" --train.warmup-steps 50 --train.lr 5e-4 --train.eval-every 250 \
    --train.ckpt-every 100 $resume $extra $compile
# 5. the issue's benchmarks: counterfactual scenes and ordinary episodes with seeds no run trained on
#    (greedy, and the mean of 8 samples), and closed-loop planning in the simulator; `--still-split True`
#    decodes greedily still-or-moved first (README, "Still split"; it did not help the step-6,000 model)
python bench/actions.py --models "$work/transformer" --work runs/bench_actions --temperature 0 \
    --json "$work/actions.json"
python bench/actions.py --models "$work/transformer" --work runs/bench_actions --samples 8 --temperature 1 \
    --json "$work/actions_k8.json"
python bench/planning.py --model "$work/transformer" --precision bfloat16 --temperature 0 \
    --work "$work/bench_planning" --json "$work/planning.json"
# 6. ship: float16 weights, greedy sampling as the default
[ -z "$ship" ] || ivideogpt export --model "$work/transformer" --out "$ship" --dtype float16 --temperature 0 \
    --overwrite
