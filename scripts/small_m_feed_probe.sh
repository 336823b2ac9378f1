#!/usr/bin/env bash
# The small-M data-path probe (plugins/bench/small_m_feed_probe.cu): builds it with the engine's GEMM
# tuner (infer_c/gemm.cpp, for cuBLASLt's tuned time per shape) and runs it. Output also in $OUT.
#   bash scripts/small_m_feed_probe.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/small_m_feed}; mkdir -p "$out"
echo "== $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader)"
nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -t 4 -Iinfer_c -Iplugins plugins/bench/small_m_feed_probe.cu \
    infer_c/gemm.cpp infer_c/kernels.cu plugins/skip_layernorm.cu -lcublasLt -o /tmp/small_m_feed_probe \
    || { echo "PROBE BUILD FAILED"; exit 1; }
timeout 400 /tmp/small_m_feed_probe 2>&1 | tee "$out/probe.txt"
