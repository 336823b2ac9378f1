#!/usr/bin/env python3
"""Summarise ncu CSV logs (--metrics gpu__time_duration.sum --csv) of one forward pass each: GPU time
per kernel kind and the GEMM kernels by grid.

    python3 scripts/kernel_times.py ncu_a.csv [ncu_b.csv ...]
"""
from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

UNIT_US = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3, "second": 1e6}
KINDS = (("attention", "attention"), ("skip_layernorm", "skip_layernorm"), ("embed", "embed_layernorm"),
         ("bias_gelu", "bias_gelu"), ("logits", "extract_logits"))


def kind_of(name: str) -> str:
    for key, kind in KINDS:
        if key in name:
            return kind
    return "gemm"


def rows(path: Path):
    lines = path.read_text(errors="replace").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        return []
    out = []
    for r in csv.DictReader(lines[start:]):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        us = float(r["Metric Value"].replace(",", "")) * UNIT_US.get(r.get("Metric Unit", "nsecond"), 1e-3)
        out.append((r["Kernel Name"], r.get("Grid Size", ""), r.get("Block Size", ""), us))
    return out


def main(argv=None) -> int:
    for arg in argv if argv is not None else sys.argv[1:]:
        path = Path(arg)
        rs = rows(path)
        total = sum(r[3] for r in rs)
        print(f"\n== {path.stem}: {len(rs)} kernels, {total:.1f} us of GPU time (sum, serialised by ncu)")
        by_kind = defaultdict(lambda: [0, 0.0])
        gemms = defaultdict(lambda: [0, 0.0])
        for name, grid, block, us in rs:
            k = kind_of(name)
            by_kind[k][0] += 1
            by_kind[k][1] += us
            if k == "gemm":
                short = name.split("(")[0][:70]
                gemms[(short, grid, block)][0] += 1
                gemms[(short, grid, block)][1] += us
        for k, (n, us) in sorted(by_kind.items(), key=lambda kv: -kv[1][1]):
            print(f"  {k:<16} {n:>5} launches {us:>10.1f} us  {100 * us / max(total, 1e-9):5.1f}%  "
                  f"{us / n:8.2f} us each")
        for (short, grid, block), (n, us) in sorted(gemms.items(), key=lambda kv: -kv[1][1])[:8]:
            print(f"    gemm {short:<70} grid {grid:<16} block {block:<12} x{n:<4} {us / n:8.2f} us each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
