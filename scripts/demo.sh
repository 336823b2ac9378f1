#!/usr/bin/env bash
# Set up (once) and answer a question about a sample passage with the shipped model:
# on the GPU where there is one, else on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python inference.py -pf scripts/sample_passage.txt \
    -q "What is TensorRT?" -q "What does TensorRT include?" "$@"
