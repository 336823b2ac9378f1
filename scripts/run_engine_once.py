#!/usr/bin/env python3
"""Run one forward pass of a cuda engine on random inputs, for tools that watch a whole process
(compute-sanitizer, ncu): nothing else touches the GPU.

    python3 scripts/run_engine_once.py ENGINE -b B -s S [--lengths LO,HI] [--passes N]

Padded engines get [B, S] inputs whose valid lengths are drawn from [LO, HI] (default: all S, so
the padding path is exercised only when asked); packed engines get B sequences of those lengths.
--passes > 1 also replays the CUDA graph captured after the first (eager) pass.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("engine")
    p.add_argument("-b", "--batch", type=int, required=True)
    p.add_argument("-s", "--seq", type=int, required=True)
    p.add_argument("--lengths", type=lambda t: tuple(int(x) for x in t.split(",")), help="LO,HI valid lengths")
    p.add_argument("--passes", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from helpers import cuda_backend, packing

    runner = cuda_backend.CudaRunner(args.engine)
    rng = np.random.default_rng(args.seed)
    lo, hi = args.lengths or (args.seq, args.seq)
    lengths = rng.integers(lo, hi + 1, args.batch)
    vocab = runner.engine.config.vocab_size
    ids = rng.integers(1, vocab, (args.batch, args.seq)).astype(np.int32)
    seg = (np.arange(args.seq)[None, :] >= args.seq // 4).astype(np.int32).repeat(args.batch, 0)
    mask = (np.arange(args.seq)[None, :] < lengths[:, None]).astype(np.int32)
    for _ in range(args.passes):
        if runner.packed:
            pb = packing.pack(ids, seg, mask)
            out = runner.run_packed(pb.input_ids, pb.segment_ids, pb.cu_seqlens)
        else:
            out = runner.run(ids, seg, mask)
    finite = bool(np.isfinite(out).all())
    print(f"{Path(args.engine).name}: {'packed' if runner.packed else 'padded'} B={args.batch} S={args.seq} "
          f"tokens={int(lengths.sum())} passes={args.passes} logits finite={finite}")
    return 0 if finite else 1


if __name__ == "__main__":
    from helpers.errors import run_main

    run_main(main)
