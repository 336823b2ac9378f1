#!/usr/bin/env python3
"""Time the BERT linears with the builder's GEMM tuner and print, per shape, cuBLASLt's best
algorithm against the overall winner (linear_wgmma's configurations are among the candidates on
sm_90). Needs the built extension and a GPU:  python3 scripts/gemm_compare.py [--batches 1 8]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = {"base": (768, 3072, 128), "large": (1024, 4096, 384)}  # hidden, intermediate, sequence


def shapes(batches: list[int]) -> list[tuple[str, int, int, int, str]]:
    out = []
    for b in batches:
        for name, (h, i, s) in MODELS.items():
            m = b * s
            out += [(f"{name} B={b} QKV", m, 3 * h, h, "bias"), (f"{name} B={b} attn-out", m, h, h, "bias"),
                    (f"{name} B={b} FFN-in", m, i, h, "gelu_bias"), (f"{name} B={b} FFN-out", m, h, i, "bias")]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = p.parse_args(argv)
    from helpers import _bertqa_cuda as mod
    todo = shapes(args.batches)
    results = mod.tune_gemms([(m, n, k, "fp16", epi) for _, m, n, k, epi in todo], 32 << 20, 16, 20, True, True)
    print(f"{'shape':22s} {'m':>6s} {'n':>5s} {'k':>5s} | {'cuBLASLt us':>11s} {'best us':>8s} {'gain':>6s}  algo")
    for (name, m, n, k, _), r in zip(todo, results):
        algo = list(r["algo"])
        kind = f"linear_wgmma block_n={algo[1]} split_k={algo[3]}" if algo[0] == -100 else f"cuBLASLt {algo}"
        print(f"{name:22s} {m:6d} {n:5d} {k:5d} | {r['cublaslt_time_us']:11.2f} {r['time_us']:8.2f} "
              f"{r['cublaslt_time_us'] / r['time_us']:5.2f}x  {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
