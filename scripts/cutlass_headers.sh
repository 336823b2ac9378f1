#!/usr/bin/env bash
# Unpacks CUTLASS's C++ headers from the nvidia-cutlass wheel (header-only; used by
# plugins/bench/cutlass_gemm_probe.cu) into DIR and prints DIR.
#   bash scripts/cutlass_headers.sh WHEEL DIR
# The wheel (6.4 MB; the GPU machine cannot download it): here, `python3 -m pip download --no-deps
# -d .carry nvidia-cutlass==4.2.0.0`, then name .carry in the device call's carry.
# CUTLASS 4.2's stream-K scheduler does not compile with programmatic dependent launch on
# (CUTLASS_ENABLE_GDC_FOR_SM90): its const is_last_tile() passes the member unit_iter_start_ to a
# function taking uint32_t&. The fix applied here passes a copy, which is also what a query that
# must not move the scheduler needs.
set -euo pipefail
wheel=$1; dir=$2
mkdir -p "$dir"
python3 -m zipfile -e "$wheel" "$dir/wheel" >/dev/null
src="$dir/wheel/cutlass_library/source"
python3 - "$src/include/cutlass/gemm/kernel/sm90_tile_scheduler_stream_k.hpp" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
old = "    return not get_current_work_for_linear_idx(\n        unit_iter_start_,"
new = "    uint32_t unit_iter_start = unit_iter_start_;\n    return not get_current_work_for_linear_idx(\n        unit_iter_start,"
if old in text:
    open(path, "w").write(text.replace(old, new, 1))
PY
echo "$src"
