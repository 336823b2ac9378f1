#!/usr/bin/env bash
# Where the GPU time goes, kernel by kernel (after scripts/gpu_session.sh build):
#   bash scripts/gpu_profile.sh
# ncu's GPU time of every kernel of one forward pass: BERT-large S=384 B=1 and B=128, BERT-base
# S=128 B=1 and B=128, the packed BERT-large engine on 256 SQuAD-like lengths and the padded one on
# the same lengths; summed per kernel kind by scripts/kernel_times.py. (compute-sanitizer over
# whole engines is a GPU test: tests/test_sanitizer_gpu.py.)
# Everything lands in $OUT (default /tmp/gpu_profile) as one archive plus a summary.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu_profile}; work=/tmp/gpu_profile_work; mkdir -p "$out" "$work/logs"
export PYTHONUNBUFFERED=1
py=python3
status=0
ckpt() { [ -f "$work/$1/model.safetensors" ] || $py scripts/make_random_checkpoint.py "$1" "$work/$1" > /dev/null; }

ckpt bert-large; ckpt bert-base
tcf="$work/timing_cache.json"
b() { $py builder.py --backend cuda --fp16 -tcf "$tcf" "$@" > /dev/null || { echo "build failed: $*"; status=1; }; }
b --hf "$work/bert-large" -o "$work/large_s384.engine" -s 384 -b 1 -b 128
b --hf "$work/bert-base" -o "$work/base_s128.engine" -s 128 -b 1 -b 128
$py builder_varseqlen.py --hf "$work/bert-large" -o "$work/large_packed.engine" --fp16 -b 256 -s 384 \
    -tcf "$tcf" > /dev/null || { echo "packed build failed"; status=1; }
prof() {  # name engine args...
    local name=$1; shift
    ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
        --log-file "$work/logs/ncu_$name.csv" $py scripts/run_engine_once.py "$@" > "$work/logs/ncu_$name.out" 2>&1 \
        || { echo "ncu $name failed"; tail -20 "$work/logs/ncu_$name.out"; status=1; }
}
prof large_s384_b1 "$work/large_s384.engine" -b 1 -s 384
prof large_s384_b128 "$work/large_s384.engine" -b 128 -s 384
prof base_s128_b1 "$work/base_s128.engine" -b 1 -s 128
prof base_s128_b128 "$work/base_s128.engine" -b 128 -s 128
prof large_packed_b256 "$work/large_packed.engine" -b 256 -s 384 --lengths 100,260
prof large_padded_b128_ragged "$work/large_s384.engine" -b 128 -s 384 --lengths 100,260
$py scripts/kernel_times.py "$work"/logs/ncu_*.csv | tee -a "$out/summary.txt"
tar czf "$out/profile_logs.tar.gz" -C "$work" logs
exit $status
