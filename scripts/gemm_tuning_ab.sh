#!/usr/bin/env bash
# A/B of the GEMM tuner's settings (keyword arguments of helpers.cuda_backend.build_engine), each
# variant given as comma-separated Python keywords:
#   bash scripts/gemm_tuning_ab.sh "cold_weights=False" "cold_weights=True"   (the default pair)
# (at bb86dd5, before its revert: "sustained_ms=0" "sustained_ms=100", BENCHMARKS.md)
# Random BERT-large S=384 and BERT-base S=128 fp16 engines with profiles B=1, 8, 128, one per
# variant (no timing cache: every variant tunes afresh), then build/perf on each in alternating
# rounds, so that clock drift and the GPU's temperature hit every variant alike. Prints the
# algorithm picked per GEMM shape and perf's table per (model, variant, round).
# ROUNDS (default 2), ITERS (default 200), BATCHES (default "1 8 128"), MODELS (default
# "bert-large bert-base") override the repetition, the batch sizes timed and the models.
#   (on the GPU machine, after scripts/gpu_session.sh build)
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || set -- "cold_weights=False" "cold_weights=True"
w=/tmp/gemm_tuning_ab; mkdir -p $w
rounds=${ROUNDS:-2}; iters=${ITERS:-200}; models=${MODELS:-bert-large bert-base}
bflags=$(for b in ${BATCHES:-1 8 128}; do printf -- "-b %s " "$b"; done)
for model in $models; do
    [ -f $w/$model/model.safetensors ] || python3 scripts/make_random_checkpoint.py $model $w/$model > /dev/null
done
python3 - "$w" "$models" "$@" <<'PY' || exit 1
import sys, time
sys.path.insert(0, ".")
from helpers import cuda_backend
from helpers.build import load_checkpoint, profiles_from
from helpers.engine_file import save_engine
w, models, variants = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
for model in models:
    seq = 384 if model == "bert-large" else 128
    ck = load_checkpoint(hf=f"{w}/{model}")
    profs = profiles_from([1, 8, 128], [seq], ck.config.max_position_embeddings)
    for vi, spec in enumerate(variants):
        kwargs = eval(f"dict({spec})")  # the caller's own command line
        t = time.time()
        e = cuda_backend.build_engine(ck.config, ck.weights, list(ck.vocab), ck.do_lower_case, profs, "fp16", **kwargs)
        save_engine(f"{w}/{model}_v{vi}.engine", e)
        algos = {(a["m"], a["n"], a["k"]): (a["algo"][:6], round(a["time_us"], 1)) for a in e.backend_info["gemm_algos"]}
        print(f"{model} [{spec}] build {time.time() - t:.0f}s", algos, flush=True)
PY
for model in $models; do
    seq=$([ $model = bert-large ] && echo 384 || echo 128)
    for round in $(seq "$rounds"); do
        vi=0
        for spec in "$@"; do
            echo "== $model S=$seq [$spec] (round $round)"
            ./build/perf -e $w/${model}_v$vi.engine -s $seq $bflags -i "$iters" -w 20 --enable_graph | grep -E "^ +[0-9]"
            vi=$((vi + 1))
        done
    done
done
