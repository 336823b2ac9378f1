#!/usr/bin/env bash
# Everything the GPU machine is for, in one go: build, GPU tests, speed sweep, offline SQuAD run.
#   bash scripts/gpu_session.sh [STEPS] [extra pytest args...]
# STEPS, comma-separated: tests, bench (the speed sweep), offline (the offline SQuAD benchmark, calls
# of 1024 windows), all (tests and bench), build (the build alone, e.g. before scripts/gpu_profile.sh).
# e.g. bash scripts/gpu_session.sh tests,offline tests/test_varseqlen_gpu.py
# Logs and results go to $OUT (default /tmp/gpu_session), so that they come back with the run.
# Data the tests need travels in .carry/ (dev-v1.1.json.xz), unpacked here.
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}; shift || true
for step in ${what//,/ }; do
    case $step in tests|bench|offline|all|build) ;;
        *) echo "error: unknown step '$step': use tests, bench, offline, all or build (comma-separated)" >&2
           exit 2 ;;
    esac
done
wants() { [[ ",$what," == *",$1,"* || ( $1 != offline && ",$what," == *",all,"* ) ]]; }
out=${OUT:-/tmp/gpu_session}; mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHON=python3
if [ -f .carry/dev-v1.1.json.xz ] && [ ! -f /tmp/shared/squad/dev-v1.1.json ]; then
    mkdir -p /tmp/shared/squad && xz -dc .carry/dev-v1.1.json.xz > /tmp/shared/squad/dev-v1.1.json
fi
[ -d /tmp/shared ] && export BERTQA_SHARED_DATA=/tmp/shared
echo "== $(date +%T) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
t0=$SECONDS
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DPython_EXECUTABLE="$(command -v python3)" \
      -DBERTQA_REQUIRE_CUDA=ON > "$out/build.log" 2>&1 \
  && cmake --build build -j 16 >> "$out/build.log" 2>&1 \
  || { tail -60 "$out/build.log"; echo "BUILD FAILED"; exit 1; }
echo "build took $((SECONDS - t0)) s"
if wants tests; then
    t0=$SECONDS
    BERTQA_PLUGINS_BUILD_DIR=build python3 -m pytest -m gpu -q -rs -p no:cacheprovider --durations=15 "$@" 2>&1 \
        | tee "$out/gpu_tests.log" | grep -E "passed|failed|FAILED|SKIPPED|Error|default model on the GPU|^[0-9.]+s (call|setup)" \
        | head -60
    echo "GPU tests took $((SECONDS - t0)) s"
fi
if wants bench; then
    t0=$SECONDS
    OUT="$out" bash scripts/inference_benchmark.sh 2>&1 | tee "$out/bench.log" | grep -vE "^ +" | tail -60
    echo "benchmark took $((SECONDS - t0)) s"
fi
if wants offline; then
    t0=$SECONDS
    python3 scripts/offline_benchmark.py --out "$out" -b 1024 \
        --work /tmp/offw 2>&1 | tee "$out/offline.log" | tail -30
    echo "offline benchmark took $((SECONDS - t0)) s"
fi
echo "== $(date +%T) done"
