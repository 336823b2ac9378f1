#!/usr/bin/env bash
# A/B of runtime settings given as environment assignments, on the same engines in one run:
# random BERT-large S=384 and BERT-base S=128 fp16 engines with profiles B=1, 8, 128 (built once,
# timing cache in /tmp/perf_ab), then build/perf per setting, in alternating rounds so that clock
# drift hits every setting alike. Prints perf's table per (model, setting, round).
#   bash scripts/perf_ab.sh "" "BERTQA_SOME_SWITCH=1"
# (on the GPU machine, after scripts/gpu_session.sh build; "" = the defaults). The runtime at
# main has no A/B switches: they live in the experiment commits that BENCHMARKS.md cites (e.g.
# BERTQA_PDL=1 and BERTQA_FUSE_RESIDUAL=1 at 8c9a0ec).
# ROUNDS (default 2) and ITERS (default 100) override the repetition; BATCHES (default "1 8 128")
# the batch sizes timed (the engines' profiles stay B=1, 8, 128).
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 'VAR=VALUE ...' ['VAR=VALUE ...' ...]" >&2; exit 2; }
w=/tmp/perf_ab; mkdir -p $w
rounds=${ROUNDS:-2}; iters=${ITERS:-100}; bflags=$(for b in ${BATCHES:-1 8 128}; do printf -- "-b %s " "$b"; done)
for spec in "bert-large 384" "bert-base 128"; do
    read -r model s <<< "$spec"
    [ -f $w/$model/model.safetensors ] || python3 scripts/make_random_checkpoint.py $model $w/$model > /dev/null
    [ -f $w/${model}_s$s.engine ] || python3 builder.py --hf $w/$model -o $w/${model}_s$s.engine --backend cuda \
        --fp16 -s $s -b 1 -b 8 -b 128 -tcf $w/timing_cache.json > $w/build_$model.log 2>&1 \
        || { tail -20 $w/build_$model.log; exit 1; }
done
for spec in "bert-large 384" "bert-base 128"; do
    read -r model s <<< "$spec"
    for round in $(seq "$rounds"); do
        for setting in "$@"; do
            echo "== $model S=$s [${setting:-defaults}] (round $round)"
            env $setting ./build/perf -e $w/${model}_s$s.engine -s "$s" $bflags -i "$iters" -w 10 \
                --enable_graph | grep -E "^ +[0-9]"
        done
    done
done
