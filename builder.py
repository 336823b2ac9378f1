#!/usr/bin/env python3
"""Build a BERT question-answering engine file from a checkpoint (demoBERT's builder options)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    src = p.add_argument_group("checkpoint (give one)")
    src.add_argument("--hf", metavar="DIR", help="Hugging Face directory (config.json + model.safetensors "
                     "or pytorch_model.bin)")
    src.add_argument("-m", "--ckpt", metavar="PREFIX", help="TensorFlow checkpoint prefix (model.ckpt); "
                     "needs the tensorflow extra")
    src.add_argument("-x", "--onnx", metavar="FILE", help="fake-quant QAT ONNX model")
    src.add_argument("--megatron", metavar="FILE", help="Megatron BERT state-dict pickle")
    p.add_argument("-c", "--config-dir", help="directory with bert_config.json (and vocab.txt)")
    p.add_argument("-v", "--vocab-file", help="WordPiece vocab.txt (default: the checkpoint's)")
    case = p.add_mutually_exclusive_group()
    case.add_argument("--uncased", dest="do_lower_case", action="store_true", default=None,
                      help="the vocabulary is uncased (lower-case the text)")
    case.add_argument("--cased", dest="do_lower_case", action="store_false")
    p.add_argument("-o", "--output", help="engine file to write")
    p.add_argument("--onnx-out", metavar="FILE", help="also write the network as ONNX (opset 17)")
    p.add_argument("-b", "--batch-size", type=int, action="append",
                   help="batch size of a profile (repeatable; default 1)")
    p.add_argument("-s", "--sequence-length", type=int, action="append",
                   help="sequence length of a profile (repeatable; default 128)")
    p.add_argument("--backend", choices=("onnxruntime", "cuda"),
                   help="default: cuda where a GPU and the native module are present")
    p.add_argument("--fp16", action="store_true", help="FP16 weights and activations")
    p.add_argument("--int8", action="store_true", help="INT8 (not supported yet)")
    p.add_argument("-w", "--workspace-size", type=int, help="GEMM workspace in MiB (cuda backend)")
    p.add_argument("-tcf", "--timing-cache-file", help="reuse GEMM timings across builds")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if not args.output and not args.onnx_out:
        p.error("give -o ENGINE and/or --onnx-out FILE")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from helpers.build import build_engine, default_backend, load_checkpoint, profiles_from
    from helpers.engine_file import save_engine

    t0 = time.perf_counter()
    ck = load_checkpoint(hf=args.hf, ckpt=args.ckpt, onnx=args.onnx, megatron=args.megatron,
                         config_dir=args.config_dir, vocab=args.vocab_file,
                         do_lower_case=args.do_lower_case)
    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    if args.onnx_out:
        from helpers.onnx_export import write_onnx

        write_onnx(args.onnx_out, ck.config, ck.weights, fp16=args.fp16)
        print(f"wrote {args.onnx_out}")
    if args.output:
        profiles = profiles_from(args.batch_size or [1], args.sequence_length or [128],
                                 ck.config.max_position_embeddings)
        backend = args.backend or default_backend()
        engine = build_engine(ck, backend, profiles, precision, timing_cache=args.timing_cache_file,
                              workspace_mb=args.workspace_size, verbose=args.verbose)
        save_engine(args.output, engine)
        print(f"wrote {args.output}: {backend} {precision}, {len(profiles)} profile(s), "
              f"{Path(args.output).stat().st_size / 2**20:.1f} MiB, {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    from helpers.errors import run_main

    run_main(main)
