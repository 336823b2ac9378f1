#!/usr/bin/env python3
"""A/B of a builder tactic on the same weights in one run: random BERT-large S=384 and BERT-base
S=128 fp16 engines (profiles B=1, 8, 128) built with the tactic as the builder tunes it and with it
off, then `build/perf` on each in alternating rounds, so that clock drift hits both alike.

    python3 scripts/tactic_ab.py [--rounds 2] [--iters 100] [--work /tmp/tactic_ab]

The tactic: the residual added in the epilogue of the GEMMs that feed a skip_layernorm
(helpers.cuda_backend.build_engine(residual_epilogue=...)). Prints, per engine, the profiles whose
linears took the tactic, and perf's table per (model, variant, round). Run on the GPU machine after
`bash scripts/gpu_session.sh build`.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODELS = (("bert-large", 384), ("bert-base", 128))
BATCHES = (1, 8, 128)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--work", default="/tmp/tactic_ab", help="checkpoints, engines, timing cache")
    p.add_argument("--variants", default="tuned,off", help="comma-separated: tuned, off, on (forced)")
    p.add_argument("--models", default="bert-large,bert-base")
    p.add_argument("-b", "--batch", type=int, action="append", help="profiles (default 1, 8, 128)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from helpers import cuda_backend
    from helpers.build import load_checkpoint
    from helpers.engine_file import Profile, save_engine

    sys.path.insert(0, str(REPO / "scripts"))
    import make_random_checkpoint

    variants = {"tuned": None, "off": False, "on": True}
    chosen = [v for v in args.variants.split(",") if v]
    if any(v not in variants for v in chosen):
        raise SystemExit(f"--variants: choose from {', '.join(variants)}")
    batches = tuple(args.batch or BATCHES)
    models = [(m, s) for m, s in MODELS if m in args.models.split(",")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    engines = {}
    for model, seq in models:
        mdir = work / model
        if not (mdir / "config.json").is_file():
            make_random_checkpoint.main([model, str(mdir)])
        ck = load_checkpoint(hf=str(mdir), vocab=None, do_lower_case=True)
        for variant in chosen:
            residual = variants[variant]
            eng = cuda_backend.build_engine(ck.config, ck.weights, list(ck.vocab), True,
                                            [Profile(b, seq) for b in batches], "fp16",
                                            timing_cache=work / "timing.cache", residual_epilogue=residual)
            path = work / f"{model}-s{seq}-{variant}.engine"
            save_engine(path, eng)
            engines[(model, variant)] = path
            fused = sorted({(batches[a["profile"]], a["n"], a["k"]) for a in eng.backend_info["gemm_algos"]
                            if a.get("residual")})
            for a in eng.backend_info["gemm_algos"]:
                print(f"  B={batches[a['profile']]} n={a['n']} k={a['k']} {a['epilogue']} partials={a['partials']} "
                      f"residual={a.get('residual', False)}: {a['time_us']:.1f} us, algo {a['algo']}")
            print(f"{model} S={seq} [{variant}]: residual in the epilogue at (batch, n, k) {fused or 'nowhere'}",
                  flush=True)
    # The tuner's timings behind the choices (the timing cache), for the linears feeding a LayerNorm.
    import json

    entries = json.loads((work / "timing.cache").read_text())["entries"]
    for key in sorted(entries):
        if " bias" in key and ("+layernorm" in key or "+residual" in key):
            print(f"  {key.split('|')[-1]}: {entries[key]['time_us']:.1f} us")
    bflags = [x for b in batches for x in ("-b", str(b))]
    for model, seq in models:
        for rnd in range(1, args.rounds + 1):
            for variant in chosen:
                print(f"== {model} S={seq} [{variant}] (round {rnd})", flush=True)
                r = subprocess.run([str(REPO / "build" / "perf"), "-e", str(engines[(model, variant)]), "-s",
                                    str(seq), *bflags, "-i", str(args.iters), "-w", "10", "--enable_graph"],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    print(r.stderr.strip(), file=sys.stderr)
                    return r.returncode
                print("\n".join(line for line in r.stdout.splitlines() if line.strip()[:1].isdigit()), flush=True)
    return 0


if __name__ == "__main__":
    from helpers.errors import run_main

    run_main(main)
