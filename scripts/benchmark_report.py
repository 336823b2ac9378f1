#!/usr/bin/env python3
"""Turn perf JSON files (ours and the peer's) into a markdown table and a latency plot."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load(path: Path) -> dict:
    return {(r["batch"], r["seq"]): r for r in json.loads(path.read_text())["results"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--case", action="append", nargs=3, metavar=("NAME", "OURS_JSON", "PEER_JSON"),
                   required=True, help="one model/sequence-length case (repeatable)")
    p.add_argument("--markdown", type=Path, required=True)
    p.add_argument("--plot", type=Path)
    args = p.parse_args(argv)
    lines = ["| case | batch | ours p50 ms | ours p99 ms | ours seq/s | peer p50 ms | peer seq/s | speed-up |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    curves = []
    for name, ours_path, peer_path in args.case:
        ours, peer = load(Path(ours_path)), load(Path(peer_path))
        xs, yo, yp = [], [], []
        for key in sorted(ours):
            o, q = ours[key], peer.get(key)
            speedup = f"{q['p50_ms'] / o['p50_ms']:.2f}x" if q else "-"
            lines.append(f"| {name} | {key[0]} | {o['p50_ms']:.3f} | {o['p99_ms']:.3f} | {o['sequences_per_s']:.0f} | "
                         + (f"{q['p50_ms']:.3f} | {q['sequences_per_s']:.0f} | {speedup} |" if q else "- | - | - |"))
            if q:
                xs.append(key[0]); yo.append(o["p50_ms"]); yp.append(q["p50_ms"])
        curves.append((name, xs, yo, yp))
    args.markdown.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
        for ax, (name, xs, yo, yp) in zip(axes[0], curves):
            ax.loglog(xs, yo, "o-", label="bertqa cuda fp16")
            ax.loglog(xs, yp, "s--", label="torch fp16 SDPA + CUDA graph")
            ax.set_title(name); ax.set_xlabel("batch size"); ax.set_ylabel("p50 latency (ms)")
            ax.grid(True, which="both", alpha=0.3); ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
