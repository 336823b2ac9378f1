"""Packed (variable sequence length) engines on the GPU: every sequence of a mixed-length packed batch
gives the logits of the fixed-length engine and of Hugging Face; graph replay vs eager; bad inputs.

Run on a GPU machine after building the native parts: pytest -m gpu tests/test_varseqlen_gpu.py
Tolerances as tests/test_cuda_engine_gpu.py: fp32 1e-3 absolute, fp16 1e-2 relative (norm).
"""
from __future__ import annotations

import numpy as np
import pytest

from helpers import packing
from helpers.engine_file import Profile, save_engine
from helpers.errors import UserError
from helpers.config import BertConfig
from helpers.weights import random_weights
from test_cuda_engine_gpu import (CONFIGS, Reference, cuda, engine_path, errors,  # noqa: F401 (cuda: fixture)
                                  random_inputs, reference_of, weights_of)

pytestmark = pytest.mark.gpu

PACKED = {"small": (8, 128), "large": (8, 384)}  # max batch, max seq
_PACKED: dict = {}


def packed_engine_path(cuda, tmp_path_factory, name: str, precision: str):  # noqa: F811
    key = (name, precision)
    if key not in _PACKED:
        cfg = CONFIGS[name]
        vocab = [f"t{i}" for i in range(cfg.vocab_size)]
        eng = cuda.build_engine(cfg, weights_of(name), vocab, True, [PACKED[name]], precision,
                                max_candidates=8, packed=True)
        assert eng.packed and eng.token_capacity == PACKED[name][0] * PACKED[name][1]
        path = tmp_path_factory.mktemp("packed") / f"{name}_{precision}.engine"
        save_engine(path, eng)
        _PACKED[key] = path
    return _PACKED[key]


def mixed_batch(rng, cfg, max_batch: int, max_seq: int):
    """Padded [B, max_seq] arrays with lengths 1, max_seq and random ones in between."""
    lengths = [max_seq, 1, 37, max_seq - 1, 5, 64, max_seq // 2 + 3, 2][:max_batch]
    ids, seg, _ = random_inputs(rng, cfg, len(lengths), max_seq, "random")
    mask = (np.arange(max_seq)[None, :] < np.asarray(lengths)[:, None]).astype(np.int32)
    ids[mask == 0] = 0
    for b, n in enumerate(lengths):
        seg[b] = 0
        seg[b, n // 3:n] = 1
    return ids, seg, mask


def fixed_logits(cuda, tmp_path_factory, name, precision, ids, seg, mask):  # noqa: F811
    """The fixed-length engine's logits on the same [B, S] arrays (in chunks its profiles run)."""
    runner = cuda.CudaRunner(engine_path(cuda, tmp_path_factory, name, precision))
    seq = ids.shape[1]
    step = max(p.batch for p in runner.profiles if p.seq == seq)
    return np.concatenate([runner.run(ids[i:i + step], seg[i:i + step], mask[i:i + step])
                           for i in range(0, len(ids), step)])


@pytest.mark.parametrize("name", ["small", "large"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_packed_matches_fixed_and_hugging_face(cuda, tmp_path_factory, name, precision):  # noqa: F811
    cfg = CONFIGS[name]
    max_batch, max_seq = PACKED[name]
    runner = cuda.CudaRunner(packed_engine_path(cuda, tmp_path_factory, name, precision))
    assert runner.packed and runner.engine.packed and runner.token_capacity == max_batch * max_seq
    rng = np.random.default_rng(21)
    ids, seg, mask = mixed_batch(rng, cfg, max_batch, max_seq)
    ref = reference_of(name)(ids, seg, mask)
    fixed = fixed_logits(cuda, tmp_path_factory, name, precision, ids, seg, mask)
    pb = packing.pack(ids, seg, mask)
    out = runner.run_packed(pb.input_ids, pb.segment_ids, pb.cu_seqlens, pb.max_seqlen)
    assert out.shape == (pb.tokens, 2) and out.dtype == np.float32
    padded = packing.unpack_logits(out, pb.cu_seqlens, max_seq)
    worst = []
    scale = float(np.sqrt(np.mean(ref[mask == 1] ** 2)))  # rms of the batch's logits
    for b in range(len(ids)):  # every sequence on its own: length 1 and the maximum included
        m = mask[b:b + 1]
        for other, what in ((ref[b:b + 1], "hf"), (fixed[b:b + 1], "fixed")):
            max_abs, rel = errors(padded[b:b + 1], other.astype(np.float64), m)
            worst.append((max_abs, rel, int(m.sum()), what))
            if precision == "fp32":
                assert max_abs <= 1e-3, (b, int(m.sum()), what, max_abs, rel)
            else:  # relative 1e-2; a 1-token sequence (2 logits) may instead be within 1e-2 of the batch's rms
                assert rel <= 1e-2 or max_abs <= 1e-2 * scale, (b, int(m.sum()), what, max_abs, rel, scale)
    # the padded-array API packs and returns the same logits, PAD_LOGIT at padding
    via_run = runner.run(ids, seg, mask)
    np.testing.assert_allclose(via_run[mask == 1], padded[mask == 1], rtol=0, atol=1e-6)
    assert (via_run[mask == 0] == packing.PAD_LOGIT).all()
    w = max(worst, key=lambda x: x[1])
    print(f"\n[varseqlen] {name} {precision}: lengths {mask.sum(1).tolist()}, worst max|out-ref| "
          f"{max(x[0] for x in worst):.3g}, rel {w[1]:.3g} (length {w[2]}, vs {w[3]}); per sequence (rel vs hf, "
          f"vs fixed): {[(x[2], round(x[1], 5)) for x in worst]}")


def test_activations_over_2_gib(cuda, tmp_path):  # noqa: F811
    """Engines whose activation buffers pass 2 GiB (B=1024 x S=384 tokens, FFN width 3072: 2.4 GB)
    compute the sequences at the far end of their buffers as well as the first ones: no 32-bit
    offset anywhere between the GEMMs, the plugins and the buffers (a two-layer BERT-base shape)."""
    cfg = BertConfig(1000, 768, 2, 12, 3072, max_position_embeddings=384)
    w = random_weights(cfg, seed=11)
    vocab = [f"t{i}" for i in range(cfg.vocab_size)]
    batch, seq = 1024, 384
    rng = np.random.default_rng(5)
    lengths = np.full(batch, seq)  # nearly all full, so that the packed batch fills its capacity too
    lengths[[1, 2, 513, batch - 2]] = [1, 37, 200, 5]
    ids = rng.integers(1, cfg.vocab_size, size=(batch, seq), dtype=np.int32)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
    ids[mask == 0] = 0
    seg = np.zeros_like(ids)
    for b, n in enumerate(lengths):
        seg[b, n // 3:n] = 1
    rows = np.r_[0:4, 511:515, batch - 4:batch]  # the first, middle and last sequences
    ref = Reference(cfg, w)(ids[rows], seg[rows], mask[rows])
    outs = {}
    for packed in (False, True):
        eng = cuda.build_engine(cfg, w, vocab, True, [(batch, seq)], "fp16", max_candidates=4, packed=packed)
        path = tmp_path / f"big_{int(packed)}.engine"
        save_engine(path, eng)
        runner = cuda.CudaRunner(path)
        assert runner.engine_info["device_memory_bytes"] > 2 ** 31
        outs[packed] = runner.run(ids, seg, mask)
        del runner
    for packed, out in outs.items():
        for i, b in enumerate(rows):
            m = mask[b:b + 1]
            max_abs, rel = errors(out[b:b + 1], ref[i:i + 1].astype(np.float64), m)
            scale = float(np.sqrt(np.mean(ref[mask[rows] == 1] ** 2)))
            assert rel <= 1e-2 or max_abs <= 1e-2 * scale, (packed, int(b), int(lengths[b]), max_abs, rel)
    np.testing.assert_allclose(outs[True][mask == 1], outs[False][mask == 1], rtol=0, atol=5e-2)


@pytest.mark.parametrize("split,residual", [(4, False), (1, True)])
def test_packed_split_k(cuda, tmp_path_factory, tmp_path, split, residual):  # noqa: F811
    """A packed engine whose attention-out and FFN-out linears run split-K (or add the LayerNorm's
    residual in their epilogue) at every token bucket gives the logits of the packed engine built
    with the tuned choices (fp32), graph replay included."""
    cfg = CONFIGS["small"]
    vocab = [f"t{i}" for i in range(cfg.vocab_size)]
    eng = cuda.build_engine(cfg, weights_of("small"), vocab, True, [PACKED["small"]], "fp32", max_candidates=4,
                            packed=True, split_k=split, residual_epilogue=residual)
    assert {(a["partials"], a["residual"]) for a in eng.backend_info["gemm_algos"]
            if a["n"] == cfg.hidden_size and a["epilogue"] == "bias"} == {(split, residual)}
    save_engine(tmp_path / "split.engine", eng)
    split = cuda.CudaRunner(tmp_path / "split.engine")
    plain = cuda.CudaRunner(packed_engine_path(cuda, tmp_path_factory, "small", "fp32"))
    rng = np.random.default_rng(8)
    for lengths in ([128, 1, 37, 127, 5, 64, 67, 2], [3], [128, 128, 100]):
        cu = packing.cu_seqlens_from_lengths(lengths)
        t = int(cu[-1])
        ids = rng.integers(1, cfg.vocab_size, t).astype(np.int32)
        seg = rng.integers(0, 2, t).astype(np.int32)
        want = plain.run_packed(ids, seg, cu)
        for _ in range(3):
            np.testing.assert_allclose(split.run_packed(ids, seg, cu), want, rtol=0, atol=1e-4)


def test_graph_replay_and_eager_agree(cuda, tmp_path_factory):  # noqa: F811
    path = packed_engine_path(cuda, tmp_path_factory, "small", "fp32")
    cfg = CONFIGS["small"]
    graph = cuda.CudaRunner(path, enable_graph=True)
    eager = cuda.CudaRunner(path, enable_graph=False)
    rng = np.random.default_rng(5)
    # (1) one shape run 3 times: eager first pass, capture, replay
    ids, seg, mask = mixed_batch(rng, cfg, 8, 128)
    pb = packing.pack(ids, seg, mask)
    want = eager.run_packed(pb.input_ids, pb.segment_ids, pb.cu_seqlens)
    for _ in range(3):
        np.testing.assert_allclose(graph.run_packed(pb.input_ids, pb.segment_ids, pb.cu_seqlens), want,
                                   rtol=0, atol=1e-6)
    assert graph.stats["graphs"] == 1 and eager.stats["graphs"] == 0
    # (2) other batches of the same token bucket (128) and batch bucket (2): the same graph replays
    for lengths in ([50, 30], [100, 28], [1, 127], [64, 64]):
        cu = packing.cu_seqlens_from_lengths(lengths)
        t = int(cu[-1])
        ids1 = rng.integers(1, cfg.vocab_size, t).astype(np.int32)
        seg1 = rng.integers(0, 2, t).astype(np.int32)
        for _ in range(2):
            got = graph.run_packed(ids1, seg1, cu)
        np.testing.assert_allclose(got, eager.run_packed(ids1, seg1, cu), rtol=0, atol=1e-6)
    assert graph.stats["graphs"] == 2
    # (3) a 3-sequence batch (batch bucket 4) and a longer one (bucket 256) each get their own graph
    for lengths in ([10, 20, 30], [128, 100]):
        cu = packing.cu_seqlens_from_lengths(lengths)
        t = int(cu[-1])
        ids1 = rng.integers(1, cfg.vocab_size, t).astype(np.int32)
        seg1 = np.zeros(t, np.int32)
        outs = [graph.run_packed(ids1, seg1, cu) for _ in range(3)]
        for o in outs:
            np.testing.assert_allclose(o, eager.run_packed(ids1, seg1, cu), rtol=0, atol=1e-6)
    assert graph.stats["graphs"] == 4


def test_packed_bad_inputs(cuda, tmp_path_factory):  # noqa: F811
    runner = cuda.CudaRunner(packed_engine_path(cuda, tmp_path_factory, "small", "fp32"))
    cfg = CONFIGS["small"]
    ok_ids, ok_seg = np.ones(10, np.int32), np.zeros(10, np.int32)
    cases = [
        (ok_ids, ok_seg, [0, 6, 4, 10], "non-decreasing"),
        (ok_ids, ok_seg, [1, 5, 10], "start at 0"),
        (ok_ids, ok_seg, [0, 5, 9], "end at the token count"),
        (ok_ids, ok_seg, [0, 5, 5, 10], "empty"),
        (np.ones(200, np.int32), np.zeros(200, np.int32), [0, 200], "longer than this engine's maximum sequence"),
        (np.ones(1100, np.int32), np.zeros(1100, np.int32), [0] + [100 * i for i in range(1, 11)] + [1100],
         "maximum batch 8"),
        (np.r_[ok_ids[:9], cfg.vocab_size].astype(np.int32), ok_seg, [0, 10], "vocabulary"),
        (np.r_[ok_ids[:9], -1].astype(np.int32), ok_seg, [0, 10], "vocabulary"),
        (ok_ids, np.r_[ok_seg[:9], 2].astype(np.int32), [0, 10], "segment_ids"),
        (ok_ids, ok_seg[:5], [0, 10], "same length"),
        (ok_ids, ok_seg, [0], "at least 2 entries"),
    ]
    for ids, seg, cu, what in cases:
        with pytest.raises(UserError, match=what):
            runner.run_packed(ids, seg, np.asarray(cu, np.int32))
    # over the token capacity (8 x 128 = 1024): checked before the sequences
    with pytest.raises(UserError, match="token capacity 1024"):
        runner.run_packed(np.ones(1030, np.int32), np.zeros(1030, np.int32), np.array([0, 1030], np.int32))
    with pytest.raises(UserError, match="max_seqlen"):
        runner.run_packed(ok_ids, ok_seg, np.array([0, 10], np.int32), max_seqlen=4)
    # padded arrays longer than the engine's maximum; the native padded API names the packed one
    with pytest.raises(UserError, match="maximum"):
        runner.run(np.ones((1, 129), np.int32), np.zeros((1, 129), np.int32), np.ones((1, 129), np.int32))
    with pytest.raises(Exception, match="packed"):
        runner._rt.run(np.ones((1, 8), np.int32), np.zeros((1, 8), np.int32), np.ones((1, 8), np.int32))
    # a padded engine refuses packed inputs
    fixed = cuda.CudaRunner(engine_path(cuda, tmp_path_factory, "small", "fp32"))
    with pytest.raises(UserError, match="builder_varseqlen"):
        fixed.run_packed(ok_ids, ok_seg, np.array([0, 10], np.int32))
    # the runner still works after the errors
    out = runner.run_packed(ok_ids, ok_seg, np.array([0, 4, 10], np.int32))
    assert out.shape == (10, 2) and np.isfinite(out).all()


def test_answerer_packed_equals_padded(tmp_path):
    """helpers/qa.py on a packed engine of the shipped model: the same answers as the fixed engine."""
    from helpers.build import build_engine, load_checkpoint
    from helpers.qa import Answerer, QAConfig
    from model_fixtures import DEFAULT_MODEL, cuda_backend_or_skip

    cuda_backend = cuda_backend_or_skip()
    ck = load_checkpoint(hf=str(DEFAULT_MODEL))
    paths = {}
    for packed in (False, True):
        eng = build_engine(ck, "cuda", [Profile(16, 128)], "fp16", packed=packed)
        paths[packed] = tmp_path / f"{packed}.engine"
        save_engine(paths[packed], eng)
    passage = ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is "
               "named after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 "
               "to 1889. Locally nicknamed La dame de fer, it was constructed as the centerpiece of the 1889 "
               "World's Fair. " + " ".join(f"Filler sentence number {i} talks about bridge {i * 7} and river "
                                            f"{i * 3}." for i in range(40)) +
               " The tower is 330 metres tall and was the tallest man-made structure until 1930.")
    questions = ["Who designed the tower?", "When was it built?", "Where is the tower?", "What is its nickname?",
                 "How tall is the tower?"]
    got = {}
    for packed, path in paths.items():
        runner = cuda_backend.CudaRunner(path)
        a = Answerer(runner, QAConfig(max_seq_length=128, doc_stride=48, max_query_length=32))
        got[packed] = a.answer(passage, questions)
    for x, y in zip(got[False], got[True]):
        assert x["answer"] == y["answer"], (x, y)
        assert abs(x["score"] - y["score"]) < 0.1


def test_command_lines(tmp_path):
    """builder_varseqlen.py -> inference.py and perf.py on the packed engine, transparently."""
    import json
    import subprocess
    import sys

    from model_fixtures import DEFAULT_MODEL, REPO, cuda_backend_or_skip

    cuda_backend_or_skip()
    eng = tmp_path / "v.engine"

    def run(*argv):
        r = subprocess.run([sys.executable, *map(str, argv)], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        return r.stdout

    out = run("builder_varseqlen.py", "--hf", DEFAULT_MODEL, "-b", "4", "-s", "128", "--fp16", "-o", eng)
    assert "packed, max batch 4 x max seq 128 = 512 tokens" in out
    out = run("inference.py", "-e", eng, "-s", "128", "--max-query-length", "32", "-p",
              "Paris is the capital of France. The Eiffel tower was built in 1889.",
              "-q", "What is the capital of France?", "-q", "When was the tower built?", "--json")
    answers = [json.loads(line)["answer"] for line in out.splitlines()]
    assert "Paris" in answers[0] and "1889" in answers[1], answers
    out = run("perf.py", "-e", eng, "-b", "1", "-b", "4", "-s", "96", "-i", "5", "-w", "2", "--json",
              str(tmp_path / "perf.json"))
    assert "seq/s" in out
    rows = json.loads((tmp_path / "perf.json").read_text())["results"]
    assert [r["batch"] for r in rows] == [1, 4] and all("samples" in r["gpu_clocks"] for r in rows)
