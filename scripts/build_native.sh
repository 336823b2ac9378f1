#!/usr/bin/env bash
# Build the native parts with CMake into build/: the timing statistics module always,
# and where CUDA is present the plugins, the runtime, its Python module and perf.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$(command -v "$python" || echo "$python")" \
      -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" > build.log 2>&1 \
    || { cat build.log; echo "error: CMake configuration failed (log above)"; exit 1; }
grep -E "^-- bertqa:" build.log || true
cmake --build build -j "$(nproc)" >> build.log 2>&1 \
    || { tail -40 build.log; echo "error: the native build failed (full log in build.log)"; exit 1; }
