#!/usr/bin/env bash
# The GPU machine's correctness tools and per-kernel times, in one go (after scripts/gpu_session.sh
# or scripts/build_native.sh has built the module):
#   bash scripts/gpu_profile.sh [sanitize|kernels|all]
# sanitize: compute-sanitizer memcheck, racecheck, initcheck and synccheck over whole engines
#   (small random models, head sizes 32/64/128, fp32 and fp16, padded with ragged masks and packed),
#   two passes each (the eager first pass and the CUDA graph replay).
# kernels: ncu's GPU time of every kernel of one forward pass (BERT-large S=384 B=1 and B=128,
#   BERT-base S=128 B=1 and B=128, the packed BERT-large engine on 256 SQuAD-like lengths).
# Everything lands in $OUT (default /tmp/gpu_profile) as one archive plus a summary.
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
out=${OUT:-/tmp/gpu_profile}; work=/tmp/gpu_profile_work; mkdir -p "$out" "$work/logs"
export PYTHONUNBUFFERED=1
py=python3
status=0
ckpt() { [ -f "$work/$1/model.safetensors" ] || $py scripts/make_random_checkpoint.py "$1" "$work/$1" > /dev/null; }

if [ "$what" != kernels ]; then
    for m in minilm-l6 tiny-h64 tiny-h128; do
        ckpt $m
        $py builder.py --hf "$work/$m" -o "$work/$m.fp32.engine" --backend cuda -s 64 -b 3 > /dev/null &&
        $py builder.py --hf "$work/$m" -o "$work/$m.fp16.engine" --backend cuda --fp16 -s 64 -b 3 > /dev/null &&
        $py builder_varseqlen.py --hf "$work/$m" -o "$work/$m.packed.engine" --fp16 -b 4 -s 64 > /dev/null ||
        { echo "engine build failed for $m"; status=1; }
    done
    for tool in memcheck racecheck initcheck synccheck; do
        for e in "$work"/*.engine; do
            name=$(basename "$e" .engine)
            log="$work/logs/sanitizer_${tool}_$name.log"
            compute-sanitizer --tool "$tool" --error-exitcode 9 --print-limit 20 \
                $py scripts/run_engine_once.py "$e" -b 3 -s 64 --lengths 1,64 --passes 2 > "$log" 2>&1
            rc=$?
            echo "compute-sanitizer $tool $name: rc=$rc $(grep -E 'ERROR SUMMARY' "$log" | tail -1)" | tee -a "$out/summary.txt"
            [ $rc -eq 0 ] || { status=1; tail -30 "$log"; }
        done
    done
    rm -f "$work"/*.engine
fi

if [ "$what" != sanitize ]; then
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
fi
tar czf "$out/profile_logs.tar.gz" -C "$work" logs
exit $status
