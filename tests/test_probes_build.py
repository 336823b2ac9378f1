"""The GPU probes and checks under plugins/bench/ still compile (CI has nvcc, no GPU).

plugins/bench/ holds probes that settled design questions (BENCHMARKS.md quotes their results) and
the kernels' own checks; they run on the device machine only, so nothing else would notice one that
stopped compiling after a shared header changed. Each is compiled to an object for sm_90a, the
architecture they are written for. Those that include the runtime's gemm.h need cuBLASLt's headers
(the toolkit's or the `nvidia-cublas` wheel's, as for the engine's build); the CUTLASS probe needs
CUTLASS's headers and is built by its own script on the device.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLKIT_ONLY = ["persistent_phase_probe.cu", "layer_megakernel_probe.cu"]
WITH_RUNTIME_HEADERS = ["attention_check.cu", "layernorm_check.cu", "pdl_gemm_probe.cu", "gemm_layernorm_probe.cu",
                        "small_m_feed_probe.cu"]


def _nvcc() -> str:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    return nvcc


def _cublaslt_include(nvcc: str) -> Path | None:
    """Where cublasLt.h is: the toolkit's include folder or an nvidia-* wheel's."""
    candidates = [Path(nvcc).resolve().parent.parent / "include"]
    spec = importlib.util.find_spec("nvidia")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            candidates += sorted(Path(root).glob("*/include"))
    return next((c for c in candidates if (c / "cublasLt.h").is_file()), None)


def _compile(nvcc: str, probe: str, out: Path, extra: list[str]) -> None:
    cmd = [nvcc, "-c", "-std=c++17", "-gencode", "arch=compute_90a,code=sm_90a", "-Xcompiler", "-fopenmp",
           "-DBERTQA_ATTENTION_SM90A=1", *extra, str(REPO / "plugins" / "bench" / probe), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert out.stat().st_size > 0


@pytest.mark.parametrize("probe", TOOLKIT_ONLY)
def test_toolkit_only_probe_compiles(probe, tmp_path):
    _compile(_nvcc(), probe, tmp_path / "probe.o", [])


@pytest.mark.parametrize("probe", WITH_RUNTIME_HEADERS)
def test_probe_with_runtime_headers_compiles(probe, tmp_path):
    nvcc = _nvcc()
    include = _cublaslt_include(nvcc)
    if include is None:
        pytest.skip("no cublasLt.h (the toolkit's or pip install nvidia-cublas)")
    _compile(nvcc, probe, tmp_path / "probe.o",
             [f"-I{REPO / 'plugins'}", f"-I{REPO / 'infer_c'}", f"-I{include}"])
