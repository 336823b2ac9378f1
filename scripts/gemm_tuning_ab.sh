#!/usr/bin/env bash
# A/B of the GEMM tuner's weight residency (helpers.cuda_backend.build_engine(cold_weights=...)):
# random BERT-large S=384 and BERT-base S=128 fp16 engines with profiles B=1, 8, 128, tuned once
# with the weights streamed from DRAM (cold_weights=True, every shape) and once L2-resident (False),
# then build/perf on each, twice, alternating. Prints the algorithm picked per GEMM shape.
#   bash scripts/gemm_tuning_ab.sh        (on the GPU machine, after scripts/gpu_session.sh build)
set -uo pipefail
cd "$(dirname "$0")/.."
w=/tmp/gemm_tuning_ab; mkdir -p $w
for model in bert-large bert-base; do
    [ -f $w/$model/model.safetensors ] || python3 scripts/make_random_checkpoint.py $model $w/$model > /dev/null
done
python3 - "$w" <<'PY'
import sys, time
sys.path.insert(0, ".")
from helpers import cuda_backend
from helpers.build import load_checkpoint, profiles_from
from helpers.engine_file import save_engine
w = sys.argv[1]
for model, seq in (("bert-large", 384), ("bert-base", 128)):
    ck = load_checkpoint(hf=f"{w}/{model}")
    profs = profiles_from([1, 8, 128], [seq], ck.config.max_position_embeddings)
    for cold in (True, False):
        t = time.time()
        e = cuda_backend.build_engine(ck.config, ck.weights, list(ck.vocab), ck.do_lower_case, profs, "fp16",
                                      cold_weights=cold)
        save_engine(f"{w}/{model}_{'cold' if cold else 'hot'}.engine", e)
        algos = {(a["m"], a["n"], a["k"]): (a["algo"][:4], round(a["time_us"], 1)) for a in e.backend_info["gemm_algos"]}
        print(model, "cold" if cold else "hot", f"build {time.time() - t:.0f}s", algos, flush=True)
PY
for model in bert-large bert-base; do
    seq=$([ $model = bert-large ] && echo 384 || echo 128)
    for round in 1 2; do for v in hot cold; do
        echo "== $model $v (round $round)"
        ./build/perf -e $w/${model}_$v.engine -s $seq -b 1 -b 8 -b 128 -i 200 -w 20 --enable_graph | grep -vE "^\s*$" | tail -4
    done; done
done
