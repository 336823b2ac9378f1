#!/usr/bin/env bash
# The speed sweep: BERT-base and BERT-large (random weights) x S in {128, 384} x B in
# {1..128}, our cuda fp16 engine (build/perf, CUDA graphs) against the peer measured in the
# same run (Hugging Face BertForQuestionAnswering, fp16, SDPA attention, CUDA graph replay).
# Writes a markdown table, a PNG plot and the raw JSON under $OUT (default /tmp/bench).
#   bash scripts/inference_benchmark.sh [--quick]
# MODELS="bert-base" / SEQS="384" narrow the sweep (e.g. to split it over two device calls; the raw
# JSON of each case stays under $OUT/raw_results.tar.gz, and benchmark_report.py joins any cases).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/bench}; mkdir -p "$out"
py=${PYTHON:-python3}
batches="1 2 4 8 12 16 24 32 64 128"
iters=100
[ "${1:-}" = "--quick" ] && { batches="1 128"; iters=30; }
bflags=$(for b in $batches; do printf -- "-b %s " "$b"; done)
[ -x build/perf ] || { echo "error: build/perf is missing: run scripts/build_native.sh first"; exit 1; }
cases=()
for model in ${MODELS:-bert-base bert-large}; do
    ckpt=/tmp/bench_ckpt/$model
    [ -f "$ckpt/model.safetensors" ] || $py scripts/make_random_checkpoint.py "$model" "$ckpt"
    for seq in ${SEQS:-128 384}; do
        engine=/tmp/bench_ckpt/${model}_s${seq}_fp16.engine
        $py builder.py --hf "$ckpt" -o "$engine" --backend cuda --fp16 -s "$seq" $bflags \
            -tcf /tmp/bench_ckpt/timing_cache.json
        ./build/perf -e "$engine" -s "$seq" $bflags -i "$iters" -w 10 --enable_graph \
            --json "$out/ours_${model}_s${seq}.json" | tee "$out/ours_${model}_s${seq}.txt"
        $py scripts/peer_benchmark.py --hf "$ckpt" -s "$seq" $bflags -i "$iters" -w 10 \
            --json "$out/peer_${model}_s${seq}.json"
        cases+=(--case "$model S=$seq" "$out/ours_${model}_s${seq}.json" "$out/peer_${model}_s${seq}.json")
    done
done
$py scripts/benchmark_report.py "${cases[@]}" --markdown "$out/benchmark.md" --plot "$out/latency.png"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/device.txt"
# The raw results travel as one archive (the device tool brings back at most 8 files).
tar czf "$out/raw_results.tar.gz" -C "$out" $(cd "$out" && ls ours_*.json ours_*.txt peer_*.json device.txt)
rm -f "$out"/ours_*.json "$out"/ours_*.txt "$out"/peer_*.json
