#!/usr/bin/env bash
# Rebuild the world model shipped in src/ivideogpt/pretrained/metaworld64/ with the project's own commands
# (its MODEL_CARD.md records the run this script made, with the figures). About 2.5 hours on 2 CPU cores.
# Training uses a GPU when there is one (--train.device auto); EXTRA passes more overrides to both training
# commands (e.g. EXTRA="--train.batch-size 32"), TRANSFORMER_STEPS and TEMPERATURE set those.
#
#   bash scripts/train_pretrained.sh [WORK_DIR] [SHIP_DIR]
set -euo pipefail
work=${1:-runs/pretrained}
ship=${2:-src/ivideogpt/pretrained/metaworld64}
extra=${EXTRA:-}
export MUJOCO_GL=egl

# 1. 300 Meta-World episodes: the 10 default tasks x 30, scripted experts with small action noise (seed 0)
[ -f data/metaworld/meta.json ] || ivideogpt collect metaworld --episodes 30 --out data/metaworld \
    --workers 2 --policy expert
# 2. compressive tokenizer with future_blend (README, "Tokenizer"); L2 pixel loss: PSNR is what is scored
ivideogpt train-tokenizer --config tokenizer_metaworld64 --data data/metaworld --out "$work/tokenizer" \
    --tokenizer.future-blend --loss.recon l2 --train.steps 2400 --train.eval-every 200 \
    --train.num-workers 0 $extra
# 3. codes of every clip (a clip starts every other frame), train/val split by episode as the tokenizer's
ivideogpt tokenize --tokenizer "$work/tokenizer" --data data/metaworld --out "$work/tokens" --start-stride 2
# 4. action-conditioned transformer with the reward head
ivideogpt train --config transformer_metaworld64 --tokens "$work/tokens" --out "$work/transformer" \
    --train.steps "${TRANSFORMER_STEPS:-3000}" $extra
# 5. held-out evaluation (validation episodes), with the sampling the model ships with
ivideogpt eval --model "$work/transformer" --data data/metaworld --out "$work/eval" --clips 256 \
    --temperature "${TEMPERATURE:-0}"
# 6. ship: float16 weights, that sampling as the default
ivideogpt export --model "$work/transformer" --out "$ship" --dtype float16 --temperature "${TEMPERATURE:-0}"
