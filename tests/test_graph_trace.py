"""scripts/graph_trace.py's parsing of a profiler trace: passes cut at the embedding, GEMMs named by
their place in the layer, kernel time and gaps summed per op (the tracing itself needs a GPU and
runs on the device machine)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph_trace():
    sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location("graph_trace", ROOT / "scripts" / "graph_trace.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LAYER = ["sm90_xmma_gemm_qkv", "attention_kernel<...>", "sm90_xmma_gemm_out", "skip_layernorm_kernel<...>",
         "sm90_xmma_gemm_gelu", "sm90_xmma_gemm_ffn_out", "skip_layernorm_kernel<...>"]


def fake_trace(passes: int, layers: int, dur: float, gap: float) -> dict:
    events, t = [{"cat": "cpu_op", "name": "aten::empty", "ts": 0.0, "dur": 1.0}], 100.0
    for _ in range(passes):
        for name in ["embed_layernorm_kernel<...>"] + LAYER * layers:
            events.append({"cat": "kernel", "name": name, "ts": t, "dur": dur})
            t += dur + gap
        t += 500.0  # host work between passes: not a gap of the graph
    return {"traceEvents": events}


def test_labels_follow_the_layer(graph_trace):
    kinds = [graph_trace.kind_of(n) for n in ["embed_layernorm_kernel"] + LAYER * 2]
    assert graph_trace.label_ops(kinds) == ["embed_layernorm"] + [
        "QKV GEMM", "attention", "attention-out GEMM", "skip_layernorm", "FFN-in GEMM", "FFN-out GEMM",
        "skip_layernorm"] * 2


def test_summary_splits_kernels_and_gaps(graph_trace):
    passes = graph_trace.passes_from_trace(fake_trace(passes=3, layers=2, dur=4.0, gap=1.5))
    assert len(passes) == 3 and all(len(p) == 15 for p in passes)
    s = graph_trace.summarise(passes)
    assert s["passes"] == 3
    assert s["kernel_us"] == pytest.approx(15 * 4.0)
    assert s["span_us"] == pytest.approx(15 * 4.0 + 14 * 1.5)  # the host time between passes is left out
    assert s["ops"]["QKV GEMM"] == {"count": 2, "kernel_us": 8.0, "gap_us": 3.0}
    assert s["ops"]["skip_layernorm"]["count"] == 4
    assert s["ops"]["embed_layernorm"]["gap_us"] == 0.0
    assert s["other"]["gpu_memset"] == {"count": 0, "us": 0}


def test_memsets_inside_a_pass_are_counted(graph_trace):
    trace = fake_trace(passes=2, layers=1, dur=4.0, gap=1.5)
    kernels = [e for e in trace["traceEvents"] if e.get("cat") == "kernel"]
    first = kernels[1]["ts"] + 4.5  # in the gap after pass 1's first GEMM
    trace["traceEvents"] += [{"cat": "gpu_memset", "name": "Memset", "ts": first, "dur": 0.5},
                             {"cat": "gpu_memcpy", "name": "Memcpy HtoD", "ts": 10.0, "dur": 2.0}]  # before any pass
    s = graph_trace.summarise(graph_trace.passes_from_trace(trace), graph_trace.other_ops(trace))
    assert s["other"]["gpu_memset"] == {"count": 0.5, "us": 0.25}  # median of one pass with it, one without
    assert s["other"]["gpu_memcpy"] == {"count": 0, "us": 0}
