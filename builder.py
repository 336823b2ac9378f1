#!/usr/bin/env python3
"""Build a BERT question-answering engine file from a checkpoint (demoBERT's builder options).

builder_varseqlen.py is this builder with varseqlen=True: a packed (variable sequence length) engine
for at most -b sequences of at most -s tokens each (token capacity b x s), cuda backend only.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


VARSEQLEN_DESCRIPTION = ("Build a variable sequence length (packed) BERT question-answering engine: "
                         "sequences run back to back without padding (cuda backend).")


def parse_args(argv=None, varseqlen: bool = False) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=VARSEQLEN_DESCRIPTION if varseqlen else __doc__)
    src = p.add_argument_group("checkpoint (give one)")
    src.add_argument("--hf", metavar="DIR", help="Hugging Face directory (config.json + model.safetensors "
                     "or pytorch_model.bin)")
    src.add_argument("-m", "--ckpt", metavar="PREFIX", help="TensorFlow checkpoint prefix (model.ckpt for "
                     "model.ckpt.index and .data-*; bert_config.json beside it)")
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
    if varseqlen:
        p.add_argument("-b", "--max-batch-size", dest="batch_size", type=int, action="append",
                       help="maximum number of sequences per run (default 1)")
        p.add_argument("-s", "--max-sequence-length", dest="sequence_length", type=int, action="append",
                       help="maximum tokens of one sequence (default 128); token capacity = b x s")
        p.add_argument("--backend", choices=("cuda",), default="cuda",
                       help="cuda (the onnxruntime backend runs padded engines only)")
    else:
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
    args.varseqlen = varseqlen
    if not args.output and not args.onnx_out:
        p.error("give -o ENGINE and/or --onnx-out FILE")
    if args.workspace_size is not None and args.workspace_size < 0:
        p.error(f"-w/--workspace-size is in MiB and must be at least 0, got {args.workspace_size}")
    if (cuda_opts := cuda_only_options(args)) and args.backend == "onnxruntime":
        p.error(f"-w/-tcf apply to the cuda backend only: with --backend onnxruntime leave out {cuda_opts}")
    if varseqlen:
        for opt, vals in (("-b", args.batch_size), ("-s", args.sequence_length)):
            if vals and len(set(vals)) > 1:
                p.error(f"{opt} is given more than once: a packed engine has one maximum batch size and one "
                        "maximum sequence length")
        if args.batch_size and args.batch_size[0] < 1:
            p.error(f"-b must be at least 1, got {args.batch_size[0]}")
        if args.sequence_length and args.sequence_length[0] < 1:
            p.error(f"-s must be at least 1, got {args.sequence_length[0]}")
    return args


def cuda_only_options(args) -> str:
    """The options given that only the cuda backend's build reads ("" when none)."""
    return "/".join(opt for opt, v in (("-w", args.workspace_size), ("-tcf", args.timing_cache_file))
                    if v is not None)


def main(argv=None, varseqlen: bool = False) -> int:
    args = parse_args(argv, varseqlen)
    from helpers.build import build_engine, checkpoint_files, default_backend, load_checkpoint, profiles_from
    from helpers.engine_file import save_engine
    from helpers.errors import check_outputs, replacing

    check_outputs([(args.output, "engine file"), (args.onnx_out, "ONNX file"),
                   (args.timing_cache_file, "timing cache file")],
                  checkpoint_files(args.hf, args.ckpt, args.onnx, args.megatron, args.config_dir,
                                   args.vocab_file))
    backend = (args.backend or default_backend()) if args.output else None  # no GPU probe for ONNX only
    if (cuda_opts := cuda_only_options(args)) and backend != "cuda":
        print(f"warning: -w/-tcf apply to the cuda backend's engine build (-o); {cuda_opts} ignored",
              file=sys.stderr)
    t0 = time.perf_counter()
    ck = load_checkpoint(hf=args.hf, ckpt=args.ckpt, onnx=args.onnx, megatron=args.megatron,
                         config_dir=args.config_dir, vocab=args.vocab_file,
                         do_lower_case=args.do_lower_case)
    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    if args.onnx_out:
        from helpers.onnx_export import write_onnx

        with replacing(args.onnx_out, "ONNX file") as tmp:  # a failed write keeps the old file
            write_onnx(tmp, ck.config, ck.weights, fp16=args.fp16)
        print(f"wrote {args.onnx_out}")
    if args.output:
        profiles = profiles_from(args.batch_size or [1], args.sequence_length or [128],
                                 ck.config.max_position_embeddings)
        engine = build_engine(ck, backend, profiles, precision, timing_cache=args.timing_cache_file,
                              workspace_mb=args.workspace_size, verbose=args.verbose, packed=varseqlen)
        save_engine(args.output, engine)
        kind = (f"packed, max batch {profiles[0].batch} x max seq {profiles[0].seq} = "
                f"{engine.token_capacity} tokens" if varseqlen else f"{len(profiles)} profile(s)")
        print(f"wrote {args.output}: {backend} {precision}, {kind}, "
              f"{Path(args.output).stat().st_size / 2**20:.1f} MiB, {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    from helpers.errors import run_main

    run_main(main)
