"""Probe: would running a batch-1 layer's row-wise ops as concurrent row chunks hide the fixed
per-kernel latency that dominates batch 1? (GPU only; torch; a measurement, not part of the engine.)

BERT's ops other than attention work row by row, so after the attention of a layer the rows can
be split into C chunks that each run attention-out GEMM, LayerNorm, FFN-in (+GELU), FFN-out,
LayerNorm and the next layer's QKV GEMM on their own stream, joining again before the next
attention. At M = 128..384 each cuBLASLt product is mostly fixed latency (infer_c/NOTES.md, split-K
into the LayerNorm), so C concurrent chains of M / C rows might take little longer than one chain.

This times a BERT-large-shaped layer stack (fp16, distinct weights per layer so they stream from
DRAM as in the engine; torch's own GEMMs, SDPA attention and LayerNorm) captured as one CUDA graph,
with C = 1 (one stream) against C = 2, 3 (fork after each attention, join before the next).
  python3 scripts/row_chunk_probe.py [--seq 384] [--hidden 1024] [--layers 24] [--chunks 1 2 3]
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=384)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--iters", type=int, default=200)
    args = ap.parse_args()
    dev, dt = "cuda", torch.float16
    S, H, L = args.seq, args.hidden, args.layers
    heads, inter = H // 64, 4 * H
    g = torch.Generator(device=dev).manual_seed(0)

    def rnd(*shape, scale=0.02):
        return (torch.randn(*shape, device=dev, dtype=torch.float32, generator=g) * scale).to(dt)

    layers = [dict(qkv=rnd(3 * H, H), bqkv=rnd(3 * H), o=rnd(H, H), bo=rnd(H), w1=rnd(inter, H), b1=rnd(inter),
                   w2=rnd(H, inter), b2=rnd(H), g1=torch.ones(H, device=dev, dtype=dt), e1=rnd(H),
                   g2=torch.ones(H, device=dev, dtype=dt), e2=rnd(H)) for _ in range(L)]
    x0 = rnd(S, H, scale=1.0)

    def rows_tail(p, nxt, ctx, x, r0, r1, qkv_out):
        """Row-wise part of a layer for rows [r0, r1) (x: those rows): attention-out, LN, FFN, LN,
        and the next layer's QKV written into its rows of qkv_out (no concatenation kernel)."""
        h = F.layer_norm(F.linear(ctx[r0:r1], p["o"], p["bo"]) + x, (H,), p["g1"], p["e1"])
        f = torch._addmm_activation(p["b1"], h, p["w1"].t(), use_gelu=True)
        y = F.layer_norm(F.linear(f, p["w2"], p["b2"]) + h, (H,), p["g2"], p["e2"])
        if nxt is not None:
            torch.addmm(nxt["bqkv"], y, nxt["qkv"].t(), out=qkv_out[r0:r1])
        return y

    def attention(qkv):
        q, k, v = qkv.view(S, 3, heads, 64).permute(1, 2, 0, 3).unbind(0)
        return F.scaled_dot_product_attention(q[None], k[None], v[None])[0].permute(1, 0, 2).reshape(S, H)

    def forward(chunks, streams):
        bounds = [S * i // chunks for i in range(chunks + 1)]
        xs = [x0[bounds[c]:bounds[c + 1]] for c in range(chunks)]  # the hidden rows, chunk by chunk
        qkv = F.linear(x0, layers[0]["qkv"], layers[0]["bqkv"])
        main = torch.cuda.current_stream()
        for i, p in enumerate(layers):
            ctx = attention(qkv)
            nxt = layers[i + 1] if i + 1 < L else None
            qkv = torch.empty(S, 3 * H, device=dev, dtype=dt) if nxt is not None else None
            if chunks == 1:
                xs = [rows_tail(p, nxt, ctx, xs[0], 0, S, qkv)]
                continue
            ys = []
            for c, s in enumerate(streams[:chunks]):
                s.wait_stream(main)
                with torch.cuda.stream(s):
                    ys.append(rows_tail(p, nxt, ctx, xs[c], bounds[c], bounds[c + 1], qkv))
            for s in streams[:chunks]:
                main.wait_stream(s)
            xs = ys
        return torch.cat(xs)

    streams = [torch.cuda.Stream() for _ in range(max(args.chunks))]
    ref = None
    for chunks in args.chunks:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                forward(chunks, streams)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = forward(chunks, streams)
        graph.replay()
        torch.cuda.synchronize()
        if ref is None:
            ref = out.float().clone()
        err = float((out.float() - ref).abs().max())
        times = []
        for _ in range(args.iters):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            graph.replay()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        times.sort()
        print(f"S={S} H={H} layers={L} chunks={chunks}: p50 {times[len(times) // 2]:.3f} ms, "
              f"min {times[0]:.3f} ms, max |out - chunks=1| {err:.3g}")


if __name__ == "__main__":
    main()
