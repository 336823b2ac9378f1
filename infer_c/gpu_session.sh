#!/usr/bin/env bash
# One GPU session of the runtime's checks, for the device machine: build, GPU tests, perf.
#   bash infer_c/gpu_session.sh [tests|perf|all] [extra pytest args...]
# Logs go to $OUT (or /tmp/gpu_session) so that they come back with the run.
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}; shift || true
out=${OUT:-/tmp/gpu_session}; mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=$(command -v python3)
echo "== $(date +%T) build ($(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null))"
t0=$SECONDS
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DPython_EXECUTABLE="$py" \
      -DBERTQA_REQUIRE_CUDA=ON > "$out/build.log" 2>&1 \
  && cmake --build build -j 16 --target _bertqa_cuda _timing_stats perf >> "$out/build.log" 2>&1 \
  || { tail -60 "$out/build.log"; echo "BUILD FAILED"; exit 1; }
grep -E "^-- bertqa" "$out/build.log"; echo "build took $((SECONDS - t0)) s"

run_tests() {  # $1: label, rest: pytest args
  local label=$1; shift
  echo "== $(date +%T) GPU tests: $label"
  local t0=$SECONDS
  $py -m pytest -m gpu -q -s -p no:cacheprovider tests/test_cuda_engine_gpu.py "$@" 2>&1 \
    | tee "$out/tests_$label.log" | grep -E "^\[|passed|failed|rror|FAILED|assert|Exception" | head -60
  echo "tests ($label) took $((SECONDS - t0)) s"
}

run_perf() {
  echo "== $(date +%T) perf engines (random weights, fp16)"
  local t0=$SECONDS
  $py - <<'PY' 2>&1 | tail -40
from helpers.config import BertConfig
from helpers.weights import random_weights
from helpers import cuda_backend as cb
from helpers.engine_file import save_engine
for name, (L, H, A, I), S in [("large", (24, 1024, 16, 4096), 384), ("base", (12, 768, 12, 3072), 128)]:
    cfg = BertConfig(30522, H, L, A, I)
    e = cb.build_engine(cfg, random_weights(cfg), [f"t{i}" for i in range(30522)], True,
                        [(1, S), (128, S)], "fp16", timing_cache="/tmp/perf_tc.json", verbose=True)
    save_engine(f"/tmp/{name}_fp16.engine", e)
PY
  echo "engines took $((SECONDS - t0)) s"
  ./build/perf -e /tmp/large_fp16.engine -b 1 -b 128 -s 384 -i 100 -w 10 --enable_graph --op-times --json "$out/perf_large.json"
  ./build/perf -e /tmp/base_fp16.engine -b 1 -b 128 -s 128 -i 300 -w 20 --enable_graph --op-times --json "$out/perf_base.json"
  ./build/perf -e /tmp/base_fp16.engine -b 1 -s 128 -i 300 -w 20
}

case "$what" in
  tests) run_tests all "$@" ;;
  perf) run_perf ;;
  all)
    run_tests quick -k "small or graph or timing or corrupt or wrong or bad_inputs or perf_binary or memory" "$@"
    run_tests fallback -k "stale" "$@"
    run_perf
    run_tests models -k "base or large" "$@" ;;
esac
echo "== $(date +%T) done"
