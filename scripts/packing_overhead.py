#!/usr/bin/env python3
"""Host time of the padded-array API on a packed engine: packing.pack of [B, S] arrays and
packing.unpack_logits of the [T, 2] result, the two steps CudaRunner.run adds around run_packed.
No GPU needed; lengths are drawn like SQuAD dev windows at 384 (41..384 real tokens).

    python3 scripts/packing_overhead.py [-b 1024] [-s 384] [-r 20]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-b", "--batch", type=int, default=1024)
    p.add_argument("-s", "--seq", type=int, default=384)
    p.add_argument("-r", "--repeats", type=int, default=20)
    args = p.parse_args()
    if args.batch < 1 or args.seq < 2 or args.repeats < 1:
        p.error("-b and -r must be positive and -s at least 2")
    from helpers import packing

    rng = np.random.default_rng(0)
    lengths = rng.integers(min(41, args.seq), args.seq + 1, args.batch)
    mask = (np.arange(args.seq)[None, :] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(1, 30000, mask.shape, dtype=np.int32) * mask
    seg = rng.integers(0, 2, mask.shape, dtype=np.int32) * mask
    logits = rng.standard_normal((int(lengths.sum()), 2)).astype(np.float32)
    best = [float("inf")] * 2
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        pb = packing.pack(ids, seg, mask)
        t1 = time.perf_counter()
        packing.unpack_logits(logits, pb.cu_seqlens, args.seq)
        t2 = time.perf_counter()
        best = [min(best[0], t1 - t0), min(best[1], t2 - t1)]
    print(f"B={args.batch} S={args.seq} tokens={pb.tokens}: pack {1e3 * best[0]:.2f} ms, unpack "
          f"{1e3 * best[1]:.2f} ms, both {1e3 * sum(best):.2f} ms (best of {args.repeats} each)")


if __name__ == "__main__":
    main()
