#!/usr/bin/env bash
# Build the native parts with CMake into build/: the timing statistics module always,
# and where CUDA is present the plugins, the runtime, its Python module and perf.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$PWD/.venv/bin/python}
[ -x "$python" ] || python=python3
# An absolute path: CMake would otherwise resolve a relative one against the build folder and
# fall back to another interpreter (one without the venv's pybind11 and nvidia-cublas).
python=$(cd "$(dirname "$(command -v "$python")")" && pwd)/$(basename "$python")
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$python" \
      -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" > build.log 2>&1 \
    || { cat build.log; echo "error: CMake configuration failed (log above)"; exit 1; }
grep -E "^-- bertqa:|skipping" build.log || true
cmake --build build -j "$(nproc)" >> build.log 2>&1 \
    || { tail -40 build.log; echo "error: the native build failed (full log in build.log)"; exit 1; }
