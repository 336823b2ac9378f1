#!/usr/bin/env python3
"""Does the GEMM tuner pick the algorithm that is fastest when the GPU is power-capped?

Sustained large batches run at the H100's 700 W cap, far below the boost clock
(helpers/gpu_clocks.py), while the builder's tuner times each cuBLASLt candidate for ~20
products, a burst that mostly runs before the cap bites. An algorithm that spends less energy
per product (bigger tiles, fewer bytes moved) can then be faster in service though slower in
the burst. This times every candidate of the BERT linears at large batches both ways, the
sustained way with ~0.25 s of back-to-back products per timing (after as long a warm-up), and
reports whether the choice changes and what it is worth. (Measured 2026-11-23: 3 of the 4
BERT-large B=128 GEMMs have another fastest candidate at the cap, -2.0% of GEMM time in this
loop; but a builder that chose that way, commit bb86dd5, made the whole network 2% slower at
B=128, so the builder keeps the burst timing: BENCHMARKS.md.)

    python3 scripts/gemm_sustained.py [--models large base] [--seconds 0.25] [--out FILE.json]

Needs the built extension and a GPU.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemm_l2_residency import linears  # noqa: E402

MODELS = {"large": (1024, 4096, 384, 128, 24), "base": (768, 3072, 128, 128, 12)}  # hidden, inter, S, B, layers


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["large", "base"], choices=sorted(MODELS))
    p.add_argument("--seconds", type=float, default=0.25, help="products per sustained timing, in seconds")
    p.add_argument("--max-candidates", type=int, default=8)
    p.add_argument("--out")
    args = p.parse_args(argv)
    from helpers import _bertqa_cuda as mod
    from helpers.gpu_clocks import ClockMonitor, describe

    rows = []
    with ClockMonitor() as clocks:
        for name in args.models:
            h, inter, s, b, layers = MODELS[name]
            m = b * s
            for label, n, k, epi in linears(h, inter):
                shape = [(m, n, k, "fp16", epi, 1, False)]
                burst = mod.tune_gemms(shape, 32 << 20, args.max_candidates, 20, True, True)[0]
                iters = max(20, math.ceil(args.seconds * 1e6 / burst["time_us"]))
                w0 = time.time()
                sus = mod.tune_gemms(shape, 32 << 20, args.max_candidates, iters, True, True)[0]
                window = clocks.window(w0, time.time(), busy_only=True)
                tb = {tuple(a): t for a, t in burst["timings"]}
                ts = {tuple(a): t for a, t in sus["timings"]}
                pick_b, pick_s = tuple(burst["algo"]), tuple(sus["algo"])
                row = {"model": name, "gemm": label, "m": m, "n": n, "k": k, "layers": layers,
                       "candidates": len(ts), "sustained_iterations": iters,
                       "burst_pick": list(pick_b), "sustained_pick": list(pick_s),
                       "burst_pick_us": {"burst": tb[pick_b], "sustained": ts.get(pick_b)},
                       "sustained_pick_us": {"burst": tb.get(pick_s), "sustained": ts[pick_s]},
                       "tflops_sustained": 2e-6 * m * n * k / ts[pick_s], "clocks": window,
                       "timings": [[list(a), tb.get(a), ts.get(a)] for a in ts]}
                rows.append(row)
                gain = (ts.get(pick_b, float("nan")) - ts[pick_s]) / ts.get(pick_b, float("nan"))
                print(f"{name:5s} {label:8s} m={m} n={n} k={k}: burst pick {tb[pick_b]:.1f} us burst / "
                      f"{ts.get(pick_b, float('nan')):.1f} us sustained; sustained pick {ts[pick_s]:.1f} us "
                      f"({gain:+.1%}, {'same' if pick_b == pick_s else 'different'} algorithm {list(pick_s)[:4]}); "
                      f"{row['tflops_sustained']:.0f} TFLOP/s sustained; {describe(window)}", flush=True)
    for name in args.models:
        sel = [r for r in rows if r["model"] == name]
        if sel:
            layers = sel[0]["layers"]
            a = sum(r["burst_pick_us"]["sustained"] or float("nan") for r in sel) * layers / 1e3
            c = sum(r["sustained_pick_us"]["sustained"] for r in sel) * layers / 1e3
            print(f"{name}: GEMMs of one B={sel[0]['m'] // MODELS[name][2]} S={MODELS[name][2]} forward at the cap: "
                  f"{a:.2f} ms with the burst picks, {c:.2f} ms with the sustained picks ({(c - a) / a:+.1%})")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
