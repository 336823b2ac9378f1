#!/usr/bin/env python3
"""Which kernels compute-sanitizer's initcheck blames on whole engines, with and without the
runtime's NaN-poisoned activations (BERTQA_POISON_ACTIVATIONS=1); the measurement behind
tests/test_sanitizer_gpu.py's choice of initcheck on fp32 engines and poisoning for fp16.

    python3 scripts/initcheck_breakdown.py      (GPU machine, after scripts/gpu_session.sh build)
"""
from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SEQ, BATCH = 64, 3


def main() -> int:
    from helpers import cuda_backend
    from helpers.config import BertConfig
    from helpers.engine_file import Profile, save_engine
    from helpers.weights import random_weights

    cfg = BertConfig(500, 128, 2, 2, 256, max_position_embeddings=SEQ)
    vocab = [f"t{i}" for i in range(cfg.vocab_size)]
    out = Path(tempfile.mkdtemp(prefix="initcheck_"))
    for kind in ("fp32", "fp16", "packed"):
        prof = [Profile(BATCH + 1, SEQ)] if kind == "packed" else [Profile(BATCH, SEQ)]
        engine = out / f"{kind}.engine"
        save_engine(engine, cuda_backend.build_engine(
            cfg, random_weights(cfg, seed=64), vocab, True, prof, "fp32" if kind == "fp32" else "fp16",
            packed=kind == "packed", max_candidates=2, tune_iterations=2))
        run = [sys.executable, str(REPO / "scripts" / "run_engine_once.py"), str(engine), "-b", str(BATCH),
               "-s", str(SEQ), "--lengths", f"1,{SEQ}", "--passes", "2"]
        for poison in ("0", "1"):
            env = dict(os.environ, BERTQA_POISON_ACTIVATIONS=poison)
            p = subprocess.run(["compute-sanitizer", "--tool", "initcheck", "--print-limit", "100000",
                                "--show-backtrace", "device"] + run, capture_output=True, text=True, env=env)
            log = p.stdout + p.stderr
            summary = re.findall(r"ERROR SUMMARY: [^\n]*", log)
            finite = [line for line in log.splitlines() if "finite" in line]
            print(f"== {kind} engine, poisoned activations={poison}: {summary[:1]} {finite}")
            kernels = collections.Counter(re.findall(r"Device Frame: (?:void )?([\w:<>, ]+?)\(", log))
            for name, count in kernels.most_common(8):
                print(f"   {count:6d} reports in {name[:100]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
