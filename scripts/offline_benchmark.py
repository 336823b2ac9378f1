#!/usr/bin/env python3
"""Offline SQuAD benchmark in the manner of MLPerf's BERT offline scenario: every SQuAD dev v1.1 window
(max_seq_length 384, doc_stride 128, max_query_length 64) through BERT-large with random weights, on the
padded fixed-length engine and on the packed (variable sequence length) engine, in one run.

    python3 scripts/offline_benchmark.py [--out DIR] [--limit N]

Both engines are fp16, built here for this GPU, one pair per max batch B (-b, default 128 and 256;
-s 384; the packed one's token capacity is B x 384). Padded: windows in file order, B per call,
[B, 384] arrays. Packed: windows sorted by real length (longest first), each call filled up to B
windows / the token capacity, run through
CudaRunner.run_packed (sequences back to back, no padding computed). samples/s = windows / wall-clock
seconds of the timed pass (host staging, the forward pass, the logits copy; inputs already tokenized),
after untimed warm-up passes that settle each shape's eager first run and CUDA-graph capture. The two
engines' logits are compared on every window (relative error over its valid positions).
Writes offline_benchmark.json to --out (default $OUT, else /tmp/offline_benchmark).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import lzma
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from helpers.errors import UserError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--squad", default=str(REPO / ".carry" / "dev-v1.1.json.xz"), help="SQuAD dev v1.1 (.json or .xz)")
    p.add_argument("--model-dir", help="Hugging Face BERT dir (default: random BERT-large written here)")
    p.add_argument("--vocab", default=str(REPO / "models" / "minilm-l6-squad" / "vocab.txt"),
                   help="uncased WordPiece vocab (30522 tokens, BERT's)")
    p.add_argument("-b", "--batch-sizes", type=lambda t: [int(x) for x in t.split(",")], default=[128, 256],
                   help="max batch of each engine pair (padded -b B, packed -b B); comma-separated")
    p.add_argument("--streams", type=lambda t: [int(x) for x in t.split(",")], default=[1],
                   help="packed engine: also run with N runners of the engine, each on its own CUDA stream "
                        "and host thread, taking calls from one queue (comma-separated counts; default 1)")
    p.add_argument("-s", "--max-seq-length", type=int, default=384)
    p.add_argument("--doc-stride", type=int, default=128)
    p.add_argument("--max-query-length", type=int, default=64)
    p.add_argument("--limit", type=int, help="only the first N windows (quick runs)")
    p.add_argument("--max-candidates", type=int, default=8, help="GEMM algorithms timed per shape")
    p.add_argument("--residual-epilogue", choices=("tuned", "off", "both"), default="tuned",
                   help="the residual-in-GEMM-epilogue tactic: as the builder tunes it (default), never, or "
                        "both (an A/B: the packed engine also built without it, the two timed alternately)")
    p.add_argument("--out", default=os.environ.get("OUT") or "/tmp/offline_benchmark")
    p.add_argument("--work", default="/tmp/offline_benchmark_work", help="engines, checkpoint, timing cache")
    return p.parse_args(argv)


def timed_pass(fn, batches, clocks=None, label: str = "") -> tuple[float, list]:
    """Seconds for fn over every batch, and the outputs; with a ClockMonitor and a label, the
    pass's window is kept for clocks.summary(label)."""
    with clocks.timed(label) if clocks is not None and label else contextlib.nullcontext():
        t0 = time.perf_counter()
        outs = [fn(b) for b in batches]
        dt = time.perf_counter() - t0
    return dt, outs


def concurrent_pass(runners, fn, batches) -> tuple[float, list]:
    """Seconds for all batches spread over the runners, one host thread each, every thread taking
    the next batch from one shared queue (the runners release the GIL while the GPU works), and the
    outputs in batch order."""
    import itertools
    import threading
    from concurrent.futures import ThreadPoolExecutor

    outs, order, lock = [None] * len(batches), itertools.count(), threading.Lock()

    def worker(runner):
        while True:
            with lock:
                i = next(order)
            if i >= len(batches):
                return
            outs[i] = fn(runner, batches[i])

    with ThreadPoolExecutor(len(runners)) as pool:
        t0 = time.perf_counter()
        for f in [pool.submit(worker, r) for r in runners]:
            f.result()
        dt = time.perf_counter() - t0
    return dt, outs


def check_args(args) -> None:
    """UserError for an option that cannot work, before anything is read, built or written."""
    from helpers.squad_features import FeatureConfig, check_positive_int

    FeatureConfig(args.max_seq_length, args.doc_stride, args.max_query_length)  # -s, --doc-stride, ...
    for b in args.batch_sizes:
        check_positive_int(b, "batch size", "-b")
    for k in args.streams:
        check_positive_int(k, "stream count", "--streams")
    check_positive_int(args.max_candidates, "GEMM candidates", "--max-candidates")
    if not args.model_dir and args.max_seq_length > 512:
        raise UserError(f"-s {args.max_seq_length} is over the random BERT-large's 512 positions: use -s <= 512")
    if args.limit is not None:  # (0 or less used to mean all, or all but the last -N, silently)
        check_positive_int(args.limit, "window limit", "--limit")
    if args.model_dir and not (Path(args.model_dir) / "config.json").is_file():
        # (a random checkpoint used to be written into it)
        raise UserError(f"--model-dir {args.model_dir} holds no config.json: pass a Hugging Face BERT "
                        "directory, or leave --model-dir out for a random BERT-large")
    for path, flag in ((args.out, "--out"), (args.work, "--work")):
        if Path(path).exists() and not Path(path).is_dir():
            raise UserError(f"{flag} {path} is a file, not a directory: give a directory (it is created "
                            "if missing)")


def read_squad(path: str) -> list:
    """The questions of a SQuAD .json or .json.xz, or a UserError naming what is wrong with the file."""
    from helpers.squad_features import read_squad_examples

    fix = "pass SQuAD dev v1.1 (.json or .json.xz) with --squad"
    if not path.endswith(".xz"):
        examples = read_squad_examples(path, is_training=False)  # read_json's one-line errors
    elif not Path(path).is_file():
        raise UserError(f"no SQuAD file at {path} (not found, or not a file): {fix}")
    else:
        try:
            with lzma.open(path, "rt", encoding="utf-8") as f:
                data = json.load(f)
        except (lzma.LZMAError, EOFError, UnicodeDecodeError, json.JSONDecodeError, OSError) as exc:
            raise UserError(f"cannot read SQuAD file {path} ({type(exc).__name__}: {exc}): {fix}") from None
        if not isinstance(data, dict):
            raise UserError(f"SQuAD file {path} is not in SQuAD format (no top-level object): {fix}")
        examples = read_squad_examples(data, is_training=False)
    if not examples:
        raise UserError(f"SQuAD file {path} holds no questions: {fix}")
    return examples


def make_dirs(*dirs: Path) -> None:
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the directory {d}: {exc.strerror or exc}") from None


def main(argv=None) -> int:
    args = parse_args(argv)
    from helpers.errors import check_writable

    # Everything that can be checked is, before SQuAD is tokenized or a 1.3 GB checkpoint is written.
    check_args(args)
    t_start = time.perf_counter()
    examples = read_squad(args.squad)
    from helpers.tokenization import check_vocab, load_tokenizer, read_vocab

    vocab = read_vocab(args.vocab)
    if not args.model_dir:  # the random BERT-large (make_random_checkpoint) has BERT's 30522 tokens
        check_vocab(vocab, 30522)
    tok = load_tokenizer(vocab, True)
    from helpers import cuda_backend

    ok, why = cuda_backend.available()
    if not ok:  # why ends with what to do: build the module, or run on a machine with a GPU
        raise UserError(f"this benchmark builds and times cuda engines, which cannot run here: {why}")
    out_dir, work = Path(args.out), Path(args.work)
    make_dirs(out_dir, work)
    check_writable(out_dir / "offline_benchmark.json", "results file")

    from helpers.build import load_checkpoint
    from helpers.engine_file import Profile, save_engine
    from helpers.packing import pack, plan_batches
    from helpers.squad_features import FeatureConfig, convert_examples_to_features, stack_features

    # Windows.
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

    def build(mode: str, batch: int, residual_off: bool = args.residual_epilogue == "off"):
        t0 = time.perf_counter()
        eng = cuda_backend.build_engine(ck.config, ck.weights, list(ck.vocab), True,
                                        [Profile(batch, args.max_seq_length)], "fp16",
                                        timing_cache=work / "timing.cache", max_candidates=args.max_candidates,
                                        packed=mode == "packed", producer="offline_benchmark",
                                        residual_epilogue=False if residual_off else None)
        path = work / f"bert-large-{mode}-b{batch}{'-noresidual' if residual_off else ''}.engine"
        save_engine(path, eng)
        runner = cuda_backend.CudaRunner(path)
        fused = sum(bool(a.get("residual")) for a in eng.backend_info["gemm_algos"])
        print(f"built {mode} engine -b {batch} -s {args.max_seq_length} in {time.perf_counter() - t0:.1f} s "
              f"({fused} of {len(eng.backend_info['gemm_algos'])} tuned GEMM shapes add the residual in the epilogue)",
              flush=True)
        return runner, time.perf_counter() - t0

    from helpers.gpu_clocks import ClockMonitor, describe, joules_per_item

    rows, dev = [], None
    with ClockMonitor() as clocks:  # SM clock and power over each timed pass (nvidia-smi)
        for batch in args.batch_sizes:
            # Padded: file order, B windows per call.
            padded, b_pad = build("padded", batch)
            dev = padded.engine_info["device"]
            pad_batches = [slice(lo, min(lo + batch, n)) for lo in range(0, n, batch)]
            run_padded = lambda s: padded.run(ids[s], seg[s], mask[s])  # noqa: E731
            for s in pad_batches[:1] + pad_batches[-1:]:  # each shape: eager pass, then graph capture
                run_padded(s), run_padded(s)
            pad_s, pad_out = timed_pass(run_padded, pad_batches, clocks, f"padded-b{batch}")
            pad_logits = np.concatenate(pad_out)
            del pad_out
            rows.append({"engine": "padded", "batch": batch, "seconds": pad_s, "samples_per_s": n / pad_s,
                         "calls": len(pad_batches), "build_s": b_pad})

            # Packed: sorted by length, filled to B windows / the token capacity; packed before the timing
            # (the padded run's inputs are ready-made arrays too), and once more through the padded-array API.
            packed, b_pk = build("packed", batch)
            idx_batches = plan_batches(lengths, batch, packed.token_capacity)
            packs = [pack(ids[i], seg[i], mask[i]) for i in idx_batches]
            run_packed = lambda pb: packed.run_packed(pb.input_ids, pb.segment_ids, pb.cu_seqlens)  # noqa: E731
            warm_s = [timed_pass(run_packed, packs)[0] for _ in range(2)]  # eager passes, then graph captures
            pk_s, pk_out = timed_pass(run_packed, packs, clocks, f"packed-b{batch}")
            api_s, _ = timed_pass(lambda i: packed.run(ids[i], seg[i], mask[i]), idx_batches)
            rel = np.empty(n)  # the two engines agree on every window
            for i, pb, o in zip(idx_batches, packs, pk_out):
                for j, row in enumerate(i.tolist()):
                    a = o[pb.cu_seqlens[j]:pb.cu_seqlens[j + 1]].astype(np.float64)
                    r = pad_logits[row, :lengths[row]].astype(np.float64)
                    rel[row] = np.linalg.norm(a - r) / max(np.linalg.norm(r), 1e-30)
            rows.append({"engine": "packed", "batch": batch, "seconds": pk_s, "samples_per_s": n / pk_s,
                         "calls": len(idx_batches), "build_s": b_pk,
                         "mean_tokens_per_call": float(lengths.sum() / len(idx_batches)),
                         "token_capacity": packed.token_capacity, "graphs": packed.stats["graphs"],
                         "warm_up_passes_s": warm_s, "speedup_vs_padded_same_batch": pad_s / pk_s,
                         "via_padded_api": {"seconds": api_s, "samples_per_s": n / api_s},
                         "rel_error_vs_padded": {"max": float(rel.max()), "mean": float(rel.mean())}})
            if args.residual_epilogue == "both":
                # A/B in one run: the engine without the tactic, then the tuned one again, alternating.
                off, _ = build("packed", batch, residual_off=True)
                run_off = lambda pb: off.run_packed(pb.input_ids, pb.segment_ids, pb.cu_seqlens)  # noqa: E731
                for _ in range(2):
                    timed_pass(run_off, packs)
                for rnd in (1, 2):
                    for label, fn in (("packed, residual off", run_off), ("packed, tuned", run_packed)):
                        tag = f"{label}-b{batch}-r{rnd}"
                        t, _ = timed_pass(fn, packs, clocks, tag)
                        rows.append({"engine": label, "batch": batch, "seconds": t, "samples_per_s": n / t,
                                     "calls": len(idx_batches), "round": rnd, "clock_label": tag,
                                     "speedup_vs_padded_same_batch": pad_s / t})
                del off
            for k in (k for k in args.streams if k > 1):
                # k runners of the same engine file (weights and activations each), graphs captured per
                # runner before the timing; calls dealt from one queue.
                runners = [packed] + [cuda_backend.CudaRunner(packed.engine_info["path"]) for _ in range(k - 1)]
                call = lambda r, pb: r.run_packed(pb.input_ids, pb.segment_ids, pb.cu_seqlens)  # noqa: E731
                for r in runners[1:]:
                    for _ in range(2):
                        [call(r, pb) for pb in packs]
                label = f"packed-b{batch}-x{k}"
                with clocks.timed(label):
                    ks, k_out = concurrent_pass(runners, call, packs)
                same = all(np.array_equal(a, b) for a, b in zip(k_out, pk_out))
                rows.append({"engine": f"packed x{k}", "batch": batch, "seconds": ks, "samples_per_s": n / ks,
                             "calls": len(idx_batches), "streams": k, "speedup_vs_padded_same_batch": pad_s / ks,
                             "speedup_vs_one_stream": pk_s / ks, "logits_equal_to_one_stream": bool(same),
                             "clock_label": label})
                del runners, k_out
            del pk_out

    for r in rows:
        r["gpu_clocks"] = clocks.summary(r.pop("clock_label", f"{r['engine']}-b{r['batch']}"))
        r["joules_per_window"] = joules_per_item(r["gpu_clocks"], r["samples_per_s"])
    res = {
        "device": dev["name"], "sm": dev["sm"], "cublaslt_version": dev["cublaslt_version"],
        "model": "BERT-large (random weights), fp16", "windows": n, "questions": len(examples),
        "max_seq_length": args.max_seq_length, "doc_stride": args.doc_stride,
        "mean_real_tokens": float(lengths.mean()), "padding_fraction": float(1 - lengths.mean() / args.max_seq_length),
        "results": rows, "features_s": t_feat,
        "command": "python3 scripts/offline_benchmark.py" + "".join(f" {a}" for a in (argv or sys.argv[1:])),
    }
    (out_dir / "offline_benchmark.json").write_text(json.dumps(res, indent=1))
    print(f"\noffline SQuAD dev v1.1 ({n} windows, mean {lengths.mean():.1f} real tokens of "
          f"{args.max_seq_length}), BERT-large fp16, {dev['name']}")
    print(f"{'engine':<8} {'max batch':>9} {'calls':>6} {'seconds':>8} {'samples/s':>10} {'vs padded':>9} "
          f"{'padded-array API':>16} {'max rel err':>11}")
    for r in rows:
        pk = r["engine"] == "packed"
        if "round" in r:
            print(f"{r['engine'] + ' (round ' + str(r['round']) + ')':<30} {r['batch']:>5} {r['seconds']:>8.3f} "
                  f"{r['samples_per_s']:>10.1f}")
            continue
        if "streams" in r:
            print(f"{r['engine']:<8} {r['batch']:>9} {r['calls']:>6} {r['seconds']:>8.3f} {r['samples_per_s']:>10.1f} "
                  f"{str(round(r['speedup_vs_padded_same_batch'], 2)) + 'x':>9} "
                  f"({r['speedup_vs_one_stream']:.3f}x one stream; logits "
                  f"{'equal' if r['logits_equal_to_one_stream'] else 'DIFFER'})")
            continue
        print(f"{r['engine']:<8} {r['batch']:>9} {r['calls']:>6} {r['seconds']:>8.3f} {r['samples_per_s']:>10.1f} "
              f"{(str(round(r['speedup_vs_padded_same_batch'], 2)) + 'x') if pk else '':>9} "
              f"{(str(round(r['via_padded_api']['samples_per_s'], 1)) + '/s') if pk else '':>16} "
              f"{('%.2e' % r['rel_error_vs_padded']['max']) if pk else '':>11}")
    for r in rows:
        energy = "" if r["joules_per_window"] is None else f"; {r['joules_per_window']:.4f} J per window"
        print(f"{r['engine']} -b {r['batch']} timed pass: {describe(r['gpu_clocks'])}{energy}")
    print(f"wrote {out_dir / 'offline_benchmark.json'}")
    return 0


if __name__ == "__main__":
    from helpers.errors import run_main

    run_main(main)
