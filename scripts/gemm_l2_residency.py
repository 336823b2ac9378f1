#!/usr/bin/env python3
"""Time the BERT linears at batch 1 and 8 with the builder's GEMM tuner twice: weights streamed
from DRAM (cold, as in a forward pass) and L2-resident (hot), to show what keeping the next GEMM's
weights in L2 could buy. Needs the built extension and a GPU:  python3 scripts/gemm_l2_residency.py"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = {"base": (768, 3072, 128), "large": (1024, 4096, 384)}  # hidden, intermediate, sequence


def linears(hidden: int, intermediate: int) -> list[tuple[str, int, int, str]]:
    """The four GEMMs of a BERT layer as (name, n, k, epilogue), as the builder tunes them."""
    return [("QKV", 3 * hidden, hidden, "bias"), ("attn-out", hidden, hidden, "bias"),
            ("FFN-in", intermediate, hidden, "gelu_bias"), ("FFN-out", hidden, intermediate, "bias")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = p.parse_args(argv)
    from helpers import _bertqa_cuda as mod
    todo = []
    for b in args.batches:
        for name, (h, i, s) in MODELS.items():
            m = b * s
            todo += [(f"{name} B={b} {label}", m, n, k, epi) for label, n, k, epi in linears(h, i)]
    shapes = [(m, n, k, "fp16", epi, 1, False) for _, m, n, k, epi in todo]
    cold = mod.tune_gemms(shapes, 32 << 20, 16, 20, True, True)
    hot = mod.tune_gemms(shapes, 32 << 20, 16, 20, True, False)
    print(f"{'shape':22s} {'m':>6s} {'n':>5s} {'k':>5s} | {'cold us':>8s} {'hot us':>8s}  algo cold / hot")
    for (name, m, n, k, _), c, h in zip(todo, cold, hot):
        print(f"{name:22s} {m:6d} {n:5d} {k:5d} | {c['time_us']:8.2f} {h['time_us']:8.2f}  "
              f"{list(c['algo'])[:4]} / {list(h['algo'])[:4]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
