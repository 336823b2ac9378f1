#!/usr/bin/env bash
# The persistent-encoder probe (plugins/bench/layer_megakernel_probe.cu) and, in the same run, its
# peer: the engine's BERT-base S=128 B=1 graph replay (build/perf) on random weights.
#   bash scripts/megakernel_probe.sh [probe|peer|all] [probe args...]
# Output goes to $OUT (default /tmp/megakernel).
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}; shift || true
out=${OUT:-/tmp/megakernel}; mkdir -p "$out"
echo "== $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader)"
if [ "$what" = probe ] || [ "$what" = all ]; then
    nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -Xcompiler -fopenmp plugins/bench/layer_megakernel_probe.cu \
        -o /tmp/layer_megakernel_probe -lgomp || { echo "PROBE BUILD FAILED"; exit 1; }
    # (a variant that hangs would hold the device: every result before it is already printed)
    timeout 300 /tmp/layer_megakernel_probe "$@" 2>&1 | tee "$out/probe.txt"
fi
if [ "$what" = peer ] || [ "$what" = all ]; then
    bash scripts/gpu_session.sh build > "$out/peer_build.txt" 2>&1 || { tail -20 "$out/peer_build.txt"; exit 1; }
    ckpt=/tmp/mk_ckpt/bert-base
    [ -f "$ckpt/model.safetensors" ] || python3 scripts/make_random_checkpoint.py bert-base "$ckpt" > /dev/null
    python3 builder.py --hf "$ckpt" -o /tmp/mk_ckpt/base_s128.engine --backend cuda --fp16 -s 128 -b 1 > /dev/null
    ./build/perf -e /tmp/mk_ckpt/base_s128.engine -s 128 -b 1 -i 500 -w 50 --enable_graph 2>&1 | tee "$out/peer.txt"
fi
