#!/usr/bin/env python3
"""Offline SQuAD benchmark in the manner of MLPerf's BERT offline scenario: every SQuAD dev v1.1 window
(max_seq_length 384, doc_stride 128, max_query_length 64) through BERT-large with random weights, on the
padded fixed-length engine and on the packed (variable sequence length) engine, in one run.

    python3 scripts/offline_benchmark.py [--out DIR] [--limit N]

Both engines are fp16, built here for this GPU (-b 128 -s 384; the packed one's token capacity is
128 x 384). Padded: windows in file order, 128 per call, [128, 384] arrays. Packed: windows sorted by
real length (longest first), each call filled up to 128 windows / the token capacity, run through
CudaRunner.run_packed (sequences back to back, no padding computed). samples/s = windows / wall-clock
seconds of the timed pass (host staging, the forward pass, the logits copy; inputs already tokenized),
after untimed warm-up passes that settle each shape's eager first run and CUDA-graph capture. The two
engines' logits are compared on every window (relative error over its valid positions).
Writes offline_benchmark.json to --out (default $OUT, else /tmp/offline_benchmark).
"""
from __future__ import annotations

import argparse
import json
import lzma
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--squad", default=str(REPO / ".carry" / "dev-v1.1.json.xz"), help="SQuAD dev v1.1 (.json or .xz)")
    p.add_argument("--model-dir", help="Hugging Face BERT dir (default: random BERT-large written here)")
    p.add_argument("--vocab", default=str(REPO / "models" / "minilm-l6-squad" / "vocab.txt"),
                   help="uncased WordPiece vocab (30522 tokens, BERT's)")
    p.add_argument("-b", "--batch-size", type=int, default=128)
    p.add_argument("-s", "--max-seq-length", type=int, default=384)
    p.add_argument("--doc-stride", type=int, default=128)
    p.add_argument("--max-query-length", type=int, default=64)
    p.add_argument("--limit", type=int, help="only the first N windows (quick runs)")
    p.add_argument("--max-candidates", type=int, default=8, help="GEMM algorithms timed per shape")
    p.add_argument("--out", default=os.environ.get("OUT") or "/tmp/offline_benchmark")
    p.add_argument("--work", default="/tmp/offline_benchmark_work", help="engines, checkpoint, timing cache")
    return p.parse_args(argv)


def timed_pass(fn, batches) -> tuple[float, list]:
    t0 = time.perf_counter()
    outs = [fn(b) for b in batches]
    return time.perf_counter() - t0, outs


def main(argv=None) -> int:
    args = parse_args(argv)
    from helpers import cuda_backend
    from helpers.build import load_checkpoint
    from helpers.engine_file import Profile, save_engine
    from helpers.packing import pack, plan_batches
    from helpers.squad_features import FeatureConfig, convert_examples_to_features, read_squad_examples, stack_features
    from helpers.tokenization import load_tokenizer

    out_dir, work = Path(args.out), Path(args.work)
    out_dir.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    # Windows.
    raw = Path(args.squad).read_bytes()
    data = json.loads(lzma.decompress(raw) if args.squad.endswith(".xz") else raw)
    examples = read_squad_examples(data, is_training=False)
    tok = load_tokenizer(args.vocab, True)
    feats = convert_examples_to_features(examples, tok, FeatureConfig(args.max_seq_length, args.doc_stride,
                                                                      args.max_query_length))
    if args.limit:
        feats = feats[:args.limit]
    arrays = stack_features(feats)
    ids, seg, mask = arrays["input_ids"], arrays["segment_ids"], arrays["input_mask"]
    lengths = mask.sum(axis=1)
    n = len(feats)
    t_feat = time.perf_counter() - t_start
    print(f"{n} windows from {len(examples)} questions; real tokens mean {lengths.mean():.1f}, "
          f"min {lengths.min()}, max {lengths.max()} of {args.max_seq_length} ({t_feat:.1f} s)", flush=True)

    # Engines: BERT-large, random weights, fp16, -b B -s S padded and packed (shared timing cache).
    model_dir = Path(args.model_dir) if args.model_dir else work / "bert-large-random"
    if not (model_dir / "config.json").is_file():
        sys.path.insert(0, str(REPO / "scripts"))
        import make_random_checkpoint

        make_random_checkpoint.main(["bert-large", str(model_dir)])
    ck = load_checkpoint(hf=str(model_dir), vocab=args.vocab, do_lower_case=True)
    runners, build_s = {}, {}
    for mode in ("padded", "packed"):
        t0 = time.perf_counter()
        eng = cuda_backend.build_engine(ck.config, ck.weights, list(ck.vocab), True,
                                        [Profile(args.batch_size, args.max_seq_length)], "fp16",
                                        timing_cache=work / "timing.cache", max_candidates=args.max_candidates,
                                        packed=mode == "packed", producer="offline_benchmark")
        path = work / f"bert-large-{mode}.engine"
        save_engine(path, eng)
        runners[mode] = cuda_backend.CudaRunner(path)
        build_s[mode] = time.perf_counter() - t0
        print(f"built {mode} engine in {build_s[mode]:.1f} s", flush=True)
    dev = runners["padded"].engine_info["device"]

    # Padded: file order, B windows per call.
    pad_batches = [slice(lo, min(lo + args.batch_size, n)) for lo in range(0, n, args.batch_size)]
    padded = runners["padded"]
    run_padded = lambda s: padded.run(ids[s], seg[s], mask[s])  # noqa: E731
    for s in pad_batches[:1] + pad_batches[-1:]:  # each shape: eager pass, then graph capture
        run_padded(s), run_padded(s)
    pad_s, pad_out = timed_pass(run_padded, pad_batches)

    # Packed: sorted by length, filled to B windows / the token capacity; packed before the timing
    # (the padded run's inputs are ready-made arrays too), and once more through the padded-array API.
    packed = runners["packed"]
    idx_batches = plan_batches(lengths, args.batch_size, packed.token_capacity)
    packs = [pack(ids[i], seg[i], mask[i]) for i in idx_batches]
    run_packed = lambda pb: packed.run_packed(pb.input_ids, pb.segment_ids, pb.cu_seqlens)  # noqa: E731
    warm_s = [timed_pass(run_packed, packs)[0] for _ in range(2)]  # eager passes, then graph captures
    pk_s, pk_out = timed_pass(run_packed, packs)
    api_s, _ = timed_pass(lambda i: packed.run(ids[i], seg[i], mask[i]), idx_batches)

    # The two engines agree on every window.
    pad_logits = np.concatenate(pad_out)
    rel = np.empty(n)
    for i, pb, o in zip(idx_batches, packs, pk_out):
        for j, row in enumerate(i.tolist()):
            a = o[pb.cu_seqlens[j]:pb.cu_seqlens[j + 1]].astype(np.float64)
            r = pad_logits[row, :lengths[row]].astype(np.float64)
            rel[row] = np.linalg.norm(a - r) / max(np.linalg.norm(r), 1e-30)

    graphs = packed.stats["graphs"]
    res = {
        "device": dev["name"], "sm": dev["sm"], "cublaslt_version": dev["cublaslt_version"],
        "model": "BERT-large (random weights), fp16", "windows": n, "questions": len(examples),
        "max_seq_length": args.max_seq_length, "doc_stride": args.doc_stride, "batch": args.batch_size,
        "mean_real_tokens": float(lengths.mean()), "padding_fraction": float(1 - lengths.mean() / args.max_seq_length),
        "padded": {"seconds": pad_s, "samples_per_s": n / pad_s, "calls": len(pad_batches)},
        "packed": {"seconds": pk_s, "samples_per_s": n / pk_s, "calls": len(idx_batches),
                   "mean_tokens_per_call": float(lengths.sum() / len(idx_batches)),
                   "token_capacity": packed.token_capacity, "graphs": graphs, "warm_up_passes_s": warm_s},
        "packed_via_padded_api": {"seconds": api_s, "samples_per_s": n / api_s},
        "speedup": pad_s / pk_s,
        "packed_vs_padded_rel_error": {"max": float(rel.max()), "mean": float(rel.mean())},
        "build_s": build_s, "features_s": t_feat,
        "command": "python3 scripts/offline_benchmark.py" + "".join(f" {a}" for a in (argv or sys.argv[1:])),
    }
    (out_dir / "offline_benchmark.json").write_text(json.dumps(res, indent=1))
    print(f"\noffline SQuAD dev v1.1 ({n} windows, mean {lengths.mean():.1f} real tokens of "
          f"{args.max_seq_length}), BERT-large fp16, {dev['name']}")
    print(f"{'engine':<28} {'calls':>6} {'seconds':>8} {'samples/s':>10}")
    print(f"{'padded (B=128, S=384)':<28} {len(pad_batches):>6} {pad_s:>8.3f} {n / pad_s:>10.1f}")
    print(f"{'packed (run_packed)':<28} {len(idx_batches):>6} {pk_s:>8.3f} {n / pk_s:>10.1f}")
    print(f"{'packed (padded-array API)':<28} {len(idx_batches):>6} {api_s:>8.3f} {n / api_s:>10.1f}")
    print(f"speedup packed/padded {pad_s / pk_s:.2f}x; packed vs padded logits rel error max {rel.max():.2e} "
          f"mean {rel.mean():.2e}; wrote {out_dir / 'offline_benchmark.json'}")
    return 0


if __name__ == "__main__":
    from helpers.errors import run_main

    run_main(main)
