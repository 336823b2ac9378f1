#!/usr/bin/env python3
"""Where a CUDA-graph replay of an engine spends its time: every kernel's start and end inside the
graph (CUPTI through torch.profiler; torch is needed here, nowhere else), split into time spent in
kernels and the gaps between one kernel's end and the next one's start.

    python3 scripts/graph_trace.py ENGINE -b B -s S [--passes N] [--json OUT]

ncu (scripts/gpu_profile.sh) times each kernel alone and serialised; build/perf --op-times brackets
each op with events in eager passes. Neither shows a graph replay as it runs: this does. Each pass
is cut at its embed_layernorm kernel; the table gives, per op of the layer (GEMMs named by their
place in it), the kernel time and the gap before it summed over one pass, median over the passes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from kernel_times import kind_of  # noqa: E402  (the kernel-kind names of the ncu summary)


def label_ops(kinds: list[str]) -> list[str]:
    """Name each GEMM by its place in the layer: QKV (after the embedding or the layer's second
    LayerNorm), attention-out (after attention), FFN-in (after the first LayerNorm), FFN-out."""
    out, norms, prev = [], 0, ""
    for k in kinds:
        if k == "skip_layernorm":
            norms += 1
        if k != "gemm":
            out.append(k)
        elif prev == "attention":
            out.append("attention-out GEMM")
        elif prev == "gemm":
            out.append("FFN-out GEMM")
        elif prev == "skip_layernorm" and norms % 2 == 1:
            out.append("FFN-in GEMM")
        else:
            out.append("QKV GEMM")
        prev = k
    return out


OTHER_GPU_OPS = ("gpu_memset", "gpu_memcpy")  # CUPTI's other device activities, as torch names them


def other_ops(trace: dict) -> list[tuple[str, float, float]]:
    """Memsets and copies on the device (category, start us, duration us)."""
    return sorted((e["cat"], float(e["ts"]), float(e["dur"])) for e in trace.get("traceEvents", [])
                  if e.get("cat") in OTHER_GPU_OPS and "dur" in e)


def passes_from_trace(trace: dict) -> list[list[tuple[str, float, float]]]:
    """Kernel events (name, start us, duration us) split into forward passes at embed_layernorm."""
    kernels = sorted((e["ts"], e["dur"], e["name"]) for e in trace.get("traceEvents", [])
                     if e.get("cat") == "kernel" and "dur" in e)
    passes: list[list[tuple[str, float, float]]] = []
    for ts, dur, name in kernels:
        if "embed_layernorm" in name or not passes:
            passes.append([])
        passes[-1].append((name, float(ts), float(dur)))
    return [p for p in passes if p and "embed_layernorm" in p[0][0]]


def summarise(passes, others=()) -> dict:
    """Per pass: the span, the time in kernels, per op the kernel time and the gaps before it, and
    the memsets / copies that ran inside the span (others: other_ops' events)."""
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"kernel": [], "gap": [], "count": []})
    spans, busy, inside = [], [], []
    for p in passes:
        start, end = p[0][1], max(ts + d for _, ts, d in p)
        inside.append([(c, d) for c, ts, d in others if start <= ts < end])
        labels = label_ops([kind_of(n) for n, _, _ in p])
        per: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
        prev_end = None
        for label, (_, ts, dur) in zip(labels, p):
            per[label][0] += dur
            per[label][1] += max(0.0, ts - prev_end) if prev_end is not None else 0.0
            per[label][2] += 1
            prev_end = ts + dur if prev_end is None else max(prev_end, ts + dur)
        for label, (k, g, c) in per.items():
            rows[label]["kernel"].append(k)
            rows[label]["gap"].append(g)
            rows[label]["count"].append(c)
        spans.append(p[-1][1] + p[-1][2] - p[0][1])
        busy.append(sum(d for _, _, d in p))
    med = statistics.median
    other = {c: {"count": med([sum(1 for k, _ in i if k == c) for i in inside]),
                 "us": med([sum(d for k, d in i if k == c) for i in inside])} for c in OTHER_GPU_OPS}
    return {"passes": len(passes), "span_us": med(spans), "kernel_us": med(busy), "other": other,
            "ops": {k: {"count": int(med(v["count"])), "kernel_us": med(v["kernel"]), "gap_us": med(v["gap"])}
                    for k, v in rows.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("engine")
    p.add_argument("-b", "--batch", type=int, required=True)
    p.add_argument("-s", "--seq", type=int, required=True)
    p.add_argument("--passes", type=int, default=20, help="graph replays traced (default 20)")
    p.add_argument("--json", type=Path, help="write the summary here")
    args = p.parse_args(argv)
    import torch
    from torch.profiler import ProfilerActivity, profile

    from helpers import cuda_backend

    runner = cuda_backend.CudaRunner(args.engine)
    if runner.packed:
        raise SystemExit("graph_trace.py: give a padded (fixed sequence length) engine")
    rng = np.random.default_rng(0)
    ids = rng.integers(1, runner.engine.config.vocab_size, (args.batch, args.seq)).astype(np.int32)
    seg = (np.arange(args.seq)[None, :] >= args.seq // 4).astype(np.int32).repeat(args.batch, 0)
    mask = np.ones_like(ids)
    for _ in range(20):  # eager pass, capture, warm replays
        runner.run(ids, seg, mask)
    torch.cuda.init()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(args.passes):
            runner.run(ids, seg, mask)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "trace.json"
        prof.export_chrome_trace(str(path))
        trace = json.loads(path.read_text())
    passes = passes_from_trace(trace)
    if not passes:
        raise SystemExit("graph_trace.py: the trace holds no kernels of the engine (CUPTI saw no graph kernels)")
    s = summarise(passes, other_ops(trace))
    print(f"{Path(args.engine).name} B={args.batch} S={args.seq}: {s['passes']} passes traced; per pass (median): "
          f"first kernel start to last kernel end {s['span_us']:.1f} us, in kernels {s['kernel_us']:.1f} us, "
          f"between kernels {s['span_us'] - s['kernel_us']:.1f} us")
    print(f"| op | kernels per pass | kernel us | gap before us |\n|---|---:|---:|---:|")
    for label, r in sorted(s["ops"].items(), key=lambda kv: -kv[1]["kernel_us"] - kv[1]["gap_us"]):
        print(f"| {label} | {r['count']} | {r['kernel_us']:.1f} | {r['gap_us']:.1f} |")
    print("inside the pass, besides kernels: " + ", ".join(
        f"{c.removeprefix('gpu_')} {r['count']:g} ({r['us']:.1f} us)" for c, r in s["other"].items()))
    if args.json:
        args.json.write_text(json.dumps(s, indent=1))
    return 0


if __name__ == "__main__":
    from helpers.errors import run_main

    run_main(main)
