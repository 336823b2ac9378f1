#!/usr/bin/env python3
"""The peer: Hugging Face BertForQuestionAnswering in fp16 with SDPA attention on the GPU.

Latency per (batch, sequence length) is timed on a CUDA graph replay of the whole
forward pass (the fairest fast PyTorch baseline), with the same statistics code as
perf.py and the perf binary. Weights are the same random checkpoint our engine uses.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--hf", required=True, help="Hugging Face BERT QA directory")
    p.add_argument("-b", "--batch-size", type=int, action="append", required=True)
    p.add_argument("-s", "--sequence-length", type=int, default=384)
    p.add_argument("-i", "--iterations", type=int, default=100)
    p.add_argument("-w", "--warm-up-runs", type=int, default=10)
    p.add_argument("--json", help="write results as JSON")
    args = p.parse_args(argv)
    import torch
    from transformers import BertForQuestionAnswering

    from helpers.timing import summarize

    model = BertForQuestionAnswering.from_pretrained(args.hf, dtype=torch.float16,
                                                     attn_implementation="sdpa").cuda().eval()
    vocab = model.config.vocab_size
    rows = []
    for batch in args.batch_size:
        g = torch.Generator(device="cuda").manual_seed(batch)
        ids = torch.randint(999, vocab, (batch, args.sequence_length), device="cuda", generator=g)
        seg = torch.zeros_like(ids)
        seg[:, args.sequence_length // 4:] = 1
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    model(input_ids=ids, token_type_ids=seg, attention_mask=mask)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = model(input_ids=ids, token_type_ids=seg, attention_mask=mask)
            for _ in range(args.warm_up_runs):
                graph.replay()
            torch.cuda.synchronize()
            latencies = []  # CUDA events around each replay, as our perf binary times its graphs
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            for _ in range(args.iterations):
                start.record()
                graph.replay()
                end.record()
                end.synchronize()
                latencies.append(start.elapsed_time(end))
            assert torch.isfinite(out.start_logits).all()
        rows.append({"batch": batch, "seq": args.sequence_length, **summarize(latencies, batch)})
        del graph
        torch.cuda.empty_cache()
    for r in rows:
        print(f"peer torch fp16 sdpa graph B={r['batch']:>3} S={r['seq']} mean {r['mean_ms']:.3f} ms "
              f"p50 {r['p50_ms']:.3f} p99 {r['p99_ms']:.3f} {r['sequences_per_s']:.1f} seq/s")
    if args.json:
        Path(args.json).write_text(json.dumps({"peer": f"torch {torch.__version__} fp16 sdpa cuda-graph",
                                               "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
