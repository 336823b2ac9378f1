"""The stand-alone GPU probes that need only the CUDA toolkit still compile (CI has nvcc, no GPU).

plugins/bench/ holds probes that settled design questions (BENCHMARKS.md quotes their results);
they run on the device machine only, so nothing else would notice one that stopped compiling.
Each is compiled to an object for sm_90a, the architecture it is written for. The probes that
need the runtime library or CUTLASS's headers are built by their own scripts on the device.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBES = ["persistent_phase_probe.cu", "layer_megakernel_probe.cu"]


@pytest.mark.parametrize("probe", PROBES)
def test_probe_compiles(probe, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    cmd = [nvcc, "-c", "-std=c++17", "-gencode", "arch=compute_90a,code=sm_90a", "-Xcompiler", "-fopenmp",
           str(REPO / "plugins" / "bench" / probe), "-o", str(tmp_path / "probe.o")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    assert (tmp_path / "probe.o").stat().st_size > 0
