#!/usr/bin/env python3
"""Measure an engine's latency and throughput (demoBERT's perf options), for any backend."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-e", "--engine", help="engine file (default: the shipped MiniLM model)")
    p.add_argument("--backend", choices=("onnxruntime", "cuda"), help="backend for the default model")
    p.add_argument("-b", "--batch-size", type=int, action="append", help="repeatable; default 1")
    p.add_argument("-s", "--sequence-length", type=int, default=128)
    p.add_argument("-i", "--iterations", type=int, default=200)
    p.add_argument("-w", "--warm-up-runs", type=int, default=10)
    p.add_argument("-r", "--random-seed", type=int, default=12345)
    p.add_argument("--no-graph", action="store_true", help="cuda: launch kernels without CUDA graphs")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    args.batch_size = args.batch_size or [1]
    for opt, value, least in (("-b/--batch-size", min(args.batch_size), 1),
                              ("-s/--sequence-length", args.sequence_length, 1),
                              ("-i/--iterations", args.iterations, 1), ("-w/--warm-up-runs", args.warm_up_runs, 0),
                              ("-r/--random-seed", args.random_seed, 0)):
        if value < least:
            p.error(f"{opt} must be at least {least}, got {value}")
    if args.engine and args.backend:
        p.error("--backend picks the default model's backend; with -e the engine file says which backend it is")
    return args


def random_batch(rng, batch: int, seq: int, vocab_size: int):
    """Valid random inputs (never zeros): [CLS] tokens [SEP] ..., two segments, no padding."""
    import numpy as np

    low = 999 if vocab_size > 2000 else 0  # past BERT's special and unused tokens
    ids = rng.integers(low, vocab_size, size=(batch, seq), dtype=np.int32)
    ids[:, 0] = 101 if vocab_size > 102 else 1
    seg = np.zeros((batch, seq), np.int32)
    seg[:, seq // 4:] = 1
    return ids, seg, np.ones((batch, seq), np.int32)


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np

    from helpers.errors import check_outputs, write_file_atomic
    from helpers.gpu_clocks import ClockMonitor, joules_per_item, limiter
    from helpers.runtime import open_engine
    from helpers.timing import summarize

    check_outputs([(args.json, "JSON results file")], [(args.engine, "the engine file")])

    if args.engine:
        path = args.engine
    else:
        from helpers.default_model import default_engine_path

        path = default_engine_path(args.backend)
    runner = open_engine(path, enable_graph=not args.no_graph)
    engine = runner.engine
    # Every shape checked before any is timed: a bad last -b must not cost the earlier ones' runs.
    # Runners that take any length (ONNX Runtime) run any sequence up to a profile's.
    for batch in args.batch_size:
        engine.profile_for(batch, args.sequence_length, shorter_seq=getattr(runner, "shorter_seq", False))
    rng = np.random.default_rng(args.random_seed)
    rows = []
    # The GPU's SM clock over each timed loop (nvidia-smi): large batches run at the power cap.
    with ClockMonitor(enabled=engine.backend == "cuda") as clocks:
        for batch in args.batch_size:
            inputs = random_batch(rng, batch, args.sequence_length, engine.config.vocab_size)
            for _ in range(args.warm_up_runs):
                runner.run(*inputs)
            latencies = []
            with clocks.timed(str(batch)):
                for _ in range(args.iterations):
                    t0 = time.perf_counter()
                    runner.run(*inputs)
                    latencies.append(1e3 * (time.perf_counter() - t0))
            rows.append({"batch": batch, "seq": args.sequence_length, **summarize(latencies, batch)})
    for r in rows:
        r["gpu_clocks"] = clocks.summary(str(r["batch"]))
        r["joules_per_sequence"] = joules_per_item(r["gpu_clocks"], r["sequences_per_s"])
    show_clock = any(r["gpu_clocks"]["samples"] for r in rows)
    print(f"engine {path}: {engine.backend} {engine.precision}, {engine.config.num_layers} layers, "
          f"hidden {engine.config.hidden_size}; {args.iterations} iterations after {args.warm_up_runs} warm-up")
    print(f"{'batch':>5} {'seq':>4} {'mean ms':>9} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'seq/s':>10}"
          + (f" {'SM MHz':>7} {'J/seq':>7}  clock held back by" if show_clock else ""))
    for r in rows:
        c, clock = r["gpu_clocks"], ""
        if show_clock:
            j = r["joules_per_sequence"]
            clock = (f" {c['sm_clock_mhz_mean']:>7.0f} {j:>7.4f}  {limiter(c)}" if j is not None
                     else f" {'-':>7} {'-':>7}")
        print(f"{r['batch']:>5} {r['seq']:>4} {r['mean_ms']:>9.3f} {r['p50_ms']:>9.3f} {r['p95_ms']:>9.3f} "
              f"{r['p99_ms']:>9.3f} {r['sequences_per_s']:>10.1f}{clock}")
    if args.json:
        meta = {"engine": str(path), "backend": engine.backend, "precision": engine.precision,
                "iterations": args.iterations, "warm_up_runs": args.warm_up_runs}
        write_file_atomic(args.json, json.dumps({**meta, "results": rows}, indent=1), "JSON results file")
    return 0


if __name__ == "__main__":
    from helpers.errors import run_main

    run_main(main)
