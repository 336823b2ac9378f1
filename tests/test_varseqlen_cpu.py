"""Variable sequence length (packed) engines without a GPU: builder_varseqlen.py's arguments, the
engine header (Python and the C++ reader), the packing helpers and cu_seqlens validation."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

import builder
import builder_varseqlen
from helpers import packing
from helpers.build import build_engine
from helpers.engine_file import Profile, load_engine, save_engine
from helpers.errors import EngineFileError, UserError
from model_fixtures import REPO
from test_build_cuda_cpu import _check, _engine, cpu_build  # noqa: F401  (cpu_build is a fixture)
from test_engine_file import make_engine


# ------------------------------------------------------------------------------------------------
# builder_varseqlen.py
# ------------------------------------------------------------------------------------------------
def test_varseqlen_arguments():
    a = builder_varseqlen.parse_args(["--hf", "m", "-o", "e.engine", "-b", "64", "-s", "384", "--fp16"])
    assert a.varseqlen and a.batch_size == [64] and a.sequence_length == [384] and a.fp16
    assert a.backend == "cuda" and a.hf == "m"
    a = builder_varseqlen.parse_args(["-m", "ck/model.ckpt", "-c", "ck", "-o", "e.engine",
                                      "--max-batch-size", "8", "--max-sequence-length", "128"])
    assert a.batch_size == [8] and a.sequence_length == [128] and a.ckpt == "ck/model.ckpt"
    # the fixed builder is unchanged: repeatable profiles, both backends, no varseqlen
    a = builder.parse_args(["--hf", "m", "-o", "e", "-b", "1", "-b", "8", "-s", "128", "--backend", "onnxruntime"])
    assert not a.varseqlen and a.batch_size == [1, 8] and a.backend == "onnxruntime"


@pytest.mark.parametrize("argv, what", [
    (["--hf", "m", "-o", "e", "-b", "8", "-b", "16"], "more than once"),
    (["--hf", "m", "-o", "e", "-s", "128", "-s", "384"], "more than once"),
    (["--hf", "m", "-o", "e", "-b", "0"], "at least 1"),
    (["--hf", "m", "-o", "e", "-s", "-3"], "at least 1"),
    (["--hf", "m", "-o", "e", "--backend", "onnxruntime"], "invalid choice"),
    (["--hf", "m"], "give -o"),
])
def test_varseqlen_bad_arguments(argv, what, capsys):
    with pytest.raises(SystemExit) as exc:
        builder_varseqlen.parse_args(argv)
    assert exc.value.code == 2 and what in capsys.readouterr().err


def test_varseqlen_cli_help_and_ort_error():
    r = subprocess.run([sys.executable, str(REPO / "builder_varseqlen.py"), "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "--max-batch-size" in r.stdout and "packed" in r.stdout
    with pytest.raises(UserError, match="packed.*cuda backend"):
        build_engine(None, "onnxruntime", [Profile(8, 128)], "fp16", packed=True)


# ------------------------------------------------------------------------------------------------
# Engine header
# ------------------------------------------------------------------------------------------------
def packed_engine(backend="cuda", **kw):
    return dataclasses.replace(_engine(backend), profiles=(Profile(8, 64),), sequence_mode="packed",
                               token_capacity=8 * 64, **kw)


def test_header_round_trip(tmp_path):
    p = tmp_path / "p.engine"
    save_engine(p, packed_engine())
    back = load_engine(p)
    assert back.packed and back.sequence_mode == "packed" and back.token_capacity == 512
    assert back.profiles == (Profile(8, 64),)
    assert load_engine(p, tensors=False).packed
    # a packed engine runs any length up to its maximum, any batch up to its maximum
    assert back.profile_for(3, 17) == Profile(8, 64) and back.profile_for(8, 64) == Profile(8, 64)
    with pytest.raises(EngineFileError, match="outside"):
        back.profile_for(9, 10)
    with pytest.raises(EngineFileError, match="outside"):
        back.profile_for(1, 65)
    # fixed engines say "padded"
    f = tmp_path / "f.engine"
    save_engine(f, make_engine())
    assert load_engine(f).sequence_mode == "padded" and not load_engine(f).packed


def _rewrite_header(src, dst, edit):
    """A copy of src whose JSON header went through edit(dict) (preamble sizes and CRC redone)."""
    import zlib

    from helpers.engine_file import ALIGN, PREAMBLE

    data = src.read_bytes()
    magic, version, _, hsize, dsize, _, dcrc = PREAMBLE.unpack_from(data)
    h = json.loads(data[PREAMBLE.size:PREAMBLE.size + hsize])
    edit(h)
    hb = json.dumps(h).encode()
    dstart = PREAMBLE.size + hsize + (-(PREAMBLE.size + hsize)) % ALIGN
    body = data[dstart:]
    pad = (-(PREAMBLE.size + len(hb))) % ALIGN
    dst.write_bytes(PREAMBLE.pack(magic, version, 0, len(hb), dsize, zlib.crc32(hb), dcrc) + hb + b"\0" * pad + body)
    return dst


def test_old_files_read_as_padded(tmp_path):
    src = tmp_path / "f.engine"
    save_engine(src, make_engine())
    old = _rewrite_header(src, tmp_path / "old.engine", lambda h: h.pop("sequence_mode"))
    e = load_engine(old)
    assert e.sequence_mode == "padded" and e.token_capacity == 0


def test_bad_sequence_mode(tmp_path):
    src = tmp_path / "p.engine"
    save_engine(src, packed_engine())
    bad = _rewrite_header(src, tmp_path / "b1.engine", lambda h: h.update(sequence_mode="ragged"))
    with pytest.raises(EngineFileError, match="sequence_mode"):
        load_engine(bad)
    bad = _rewrite_header(src, tmp_path / "b2.engine", lambda h: h.update(token_capacity=100))
    with pytest.raises(EngineFileError, match="token_capacity"):
        load_engine(bad)


def test_cpp_reader(cpu_build, tmp_path):  # noqa: F811
    p = tmp_path / "p.engine"
    save_engine(p, packed_engine())
    r = _check(cpu_build, p)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "profiles=B<=8 S=64" in r.stdout and "mode=packed capacity=512" in r.stdout.splitlines()[0]
    f = tmp_path / "f.engine"
    save_engine(f, _engine())
    old = _rewrite_header(f, tmp_path / "old.engine", lambda h: h.pop("sequence_mode"))
    for path in (f, old):
        r = _check(cpu_build, path)
        assert r.returncode == 0 and "mode=padded capacity=0" in r.stdout, r.stdout
    for i, edit in enumerate([lambda h: h.update(sequence_mode="ragged"), lambda h: h.update(token_capacity=100),
                              lambda h: h.pop("token_capacity")]):
        bad = _rewrite_header(p, tmp_path / f"bad{i}.engine", edit)
        r = _check(cpu_build, bad)
        assert r.returncode == 2 and ("sequence_mode" in r.stdout or "token_capacity" in r.stdout), r.stdout


# ------------------------------------------------------------------------------------------------
# Packing helpers and validation
# ------------------------------------------------------------------------------------------------
def test_pack_unpack_round_trip():
    rng = np.random.default_rng(0)
    lengths = np.array([5, 1, 8, 3])
    ids = rng.integers(1, 100, (4, 8), dtype=np.int32)
    seg = rng.integers(0, 2, (4, 8), dtype=np.int32)
    mask = (np.arange(8)[None, :] < lengths[:, None]).astype(np.int64)
    pb = packing.pack(ids, seg, mask)
    assert pb.cu_seqlens.tolist() == [0, 5, 6, 14, 17] and pb.tokens == 17 and pb.batch == 4 and pb.max_seqlen == 8
    assert pb.input_ids.dtype == np.int32 and pb.input_ids.flags.c_contiguous
    for b in range(4):
        np.testing.assert_array_equal(pb.input_ids[pb.cu_seqlens[b]:pb.cu_seqlens[b + 1]], ids[b, :lengths[b]])
        np.testing.assert_array_equal(pb.segment_ids[pb.cu_seqlens[b]:pb.cu_seqlens[b + 1]], seg[b, :lengths[b]])
    logits = rng.standard_normal((17, 2)).astype(np.float32)
    out = packing.unpack_logits(logits, pb.cu_seqlens, 8)
    assert out.shape == (4, 8, 2)
    for b in range(4):
        np.testing.assert_array_equal(out[b, :lengths[b]], logits[pb.cu_seqlens[b]:pb.cu_seqlens[b + 1]])
        assert (out[b, lengths[b]:] == packing.PAD_LOGIT).all()
    with pytest.raises(UserError, match="do not match"):
        packing.unpack_logits(logits[:-1], pb.cu_seqlens, 8)
    # a strided float64 view with three columns: copied, converted and scattered the same way
    wide = rng.standard_normal((17, 6))[:, ::2]
    out3 = packing.unpack_logits(wide, pb.cu_seqlens, 8, fill=-1.0)
    assert out3.shape == (4, 8, 3) and out3.dtype == np.float32
    for b in range(4):
        np.testing.assert_array_equal(out3[b, :lengths[b]], wide[pb.cu_seqlens[b]:pb.cu_seqlens[b + 1]].astype(np.float32))
        assert (out3[b, lengths[b]:] == -1.0).all()
    assert packing.unpack_logits(np.zeros((17, 0), np.float32), pb.cu_seqlens, 8).shape == (4, 8, 0)
    # a bool mask packs as its 0/1 form does
    pb_bool = packing.pack(ids, seg, mask.astype(bool))
    np.testing.assert_array_equal(pb_bool.input_ids, pb.input_ids)
    np.testing.assert_array_equal(pb_bool.cu_seqlens, pb.cu_seqlens)


def test_packing_overhead_script():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "packing_overhead.py"), "-b", "4", "-s", "16", "-r", "2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("B=4 S=16 tokens=") and "both" in r.stdout


@pytest.mark.parametrize("row, what", [([1, 1, 0, 1], "pad at the end"), ([0, 0, 0, 0], "CLS"),
                                       ([1, 2, 0, 0], "other than 0 and 1"), ([1, 0.5, 0, 0], "other than 0 and 1"),
                                       ([1, float("nan"), 0, 0], "other than 0 and 1"),
                                       ([1, 1, 1, -1], "other than 0 and 1"), ([0, 1, 1, 1], "pad at the end")])
def test_pack_bad_masks(row, what):
    mask = np.array([[1, 1, 1, 1], row])
    with pytest.raises(UserError, match=what):
        packing.pack(np.zeros((2, 4), np.int32), np.zeros((2, 4), np.int32), mask)


LIMITS = dict(vocab_size=100, type_vocab_size=2, max_batch=4, max_seq=8, token_capacity=20)


def test_check_packed_accepts_valid():
    packing.check_packed(np.arange(12) % 100, np.zeros(12), [0, 8, 9, 12], **LIMITS)
    packing.check_packed([5], [1], [0, 1], **LIMITS)  # one sequence of length 1


@pytest.mark.parametrize("ids, seg, cu, what", [
    (range(10), [0] * 10, [0, 6, 4, 10], "non-decreasing"),
    (range(10), [0] * 10, [1, 5, 10], "start at 0"),
    (range(10), [0] * 10, [0, 5, 9], "end at the token count"),
    (range(10), [0] * 10, [0, 5, 11], "end at the token count"),
    (range(10), [0] * 10, [0, 1, 10], "longer than this engine's maximum sequence length 8"),
    (range(10), [0] * 10, [0, 5, 5, 10], "empty"),
    ([0] * 24, [0] * 24, [0, 8, 16, 24], "token capacity 20"),
    ([0] * 5, [0] * 5, [0, 1, 2, 3, 4, 5], "maximum batch 4"),
    ([0, 100], [0, 0], [0, 2], r"input_ids\[1\] = 100 is outside"),
    ([0, -1], [0, 0], [0, 2], r"input_ids\[1\] = -1"),
    ([0, 1], [0, 2], [0, 2], r"segment_ids\[1\] = 2"),
    ([0, 1], [0], [0, 2], "same length"),
    ([0, 1], [0, 0], [0], "at least 2 entries"),
    ([], [], [0, 0], "no tokens"),
])
def test_check_packed_rejects(ids, seg, cu, what):
    with pytest.raises(UserError, match=what):
        packing.check_packed(np.asarray(list(ids)), np.asarray(list(seg)), np.asarray(cu), **LIMITS)


def test_plan_batches():
    lengths = np.array([10, 300, 384, 1, 50, 200, 384, 7])
    batches = packing.plan_batches(lengths, max_batch=3, token_capacity=768)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(8))                       # every row once
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)   # longest first
    for b in batches:
        assert len(b) <= 3 and lengths[b].sum() <= 768
    assert [len(b) for b in batches] == [2, 3, 3]  # 384+384 fill the capacity
    with pytest.raises(UserError, match="capacity"):
        packing.plan_batches([800], 4, 768)
    assert packing.plan_batches([], 4, 768) == []
    for lengths, max_batch, capacity, what in (([1] * 10, 0, 100, "max_batch"), ([1], 2.5, 100, "max_batch"),
                                               ([1], 4, True, "token_capacity"), ([-5, 3], 8, 100, "lengths"),
                                               ([2.7, 3.9], 8, 100, "lengths"), ([[1, 2]], 8, 100, "lengths"),
                                               ("12", 8, 100, "lengths")):
        with pytest.raises(ValueError, match=what):
            packing.plan_batches(lengths, max_batch, capacity)


# ------------------------------------------------------------------------------------------------
# helpers/qa.py's packed path (an onnxruntime engine behind a runner that behaves as CudaRunner does
# for packed engines: any width up to the maximum, PAD_LOGIT at padding)
# ------------------------------------------------------------------------------------------------
class _PackedLike:
    def __init__(self, ort_runner, max_batch, max_seq):
        self.inner, self.max_seq, self.calls = ort_runner, max_seq, []
        self.engine = dataclasses.replace(ort_runner.engine, sequence_mode="packed",
                                          profiles=(Profile(max_batch, max_seq),),
                                          token_capacity=max_batch * max_seq)

    def run(self, ids, seg, mask):
        b, w = ids.shape
        pb = packing.pack(ids, seg, mask)
        packing.check_packed(pb.input_ids, pb.segment_ids, pb.cu_seqlens, vocab_size=self.engine.config.vocab_size,
                             max_batch=self.engine.profiles[0].batch, max_seq=self.max_seq,
                             token_capacity=self.engine.token_capacity)
        self.calls.append((b, w, np.asarray(mask).sum(1).tolist()))
        full = [np.zeros((b, self.max_seq), np.int32) for _ in range(3)]
        for f, a in zip(full, (ids, seg, mask)):
            f[:, :w] = a
        out = self.inner.run(*full)[:, :w]
        return np.where(np.asarray(mask)[..., None] == 1, out, packing.PAD_LOGIT).astype(np.float32)


def test_answerer_packed_batches(tmp_path):
    from helpers.build import load_checkpoint, profiles_from
    from helpers.ort_backend import OrtRunner
    from helpers.qa import Answerer, QAConfig
    from helpers.squad_features import convert_examples_to_features, example_from_text
    from model_fixtures import save_random_hf_model

    model = save_random_hf_model(tmp_path / "hf")
    ck = load_checkpoint(hf=str(model))
    path = tmp_path / "m.engine"
    save_engine(path, build_engine(ck, "onnxruntime", profiles_from([4], [64], 128)))
    ort = OrtRunner(load_engine(path))
    fake = _PackedLike(ort, 4, 64)
    cfg = QAConfig(max_seq_length=64, doc_stride=16, max_query_length=16)
    padded_a, packed_a = Answerer(ort, cfg), Answerer(fake, cfg)
    assert packed_a.packed and not padded_a.packed and packed_a.batch_size == 4
    passage = " ".join(["paris is the capital of france", "the eiffel tower was built in year 1889",
                        "the seine river runs in the city"] * 5)
    examples = [example_from_text(passage[:n], q, str(i))
                for i, (n, q) in enumerate([(400, "what is the capital?"), (40, "who?"), (120, "when was it built?"),
                                            (300, "what river?"), (15, "where?")])]
    feats = convert_examples_to_features(examples, padded_a.tokenizer, padded_a.features_cfg)
    want, _ = padded_a.infer(feats)
    got, _ = packed_a.infer(feats)
    assert set(got) == set(want) and len(feats) > 4
    lengths = {f.unique_id: int(f.input_mask.sum()) for f in feats}
    for f in feats:
        n = lengths[f.unique_id]
        for g, w in zip(got[f.unique_id], want[f.unique_id]):
            assert g.shape == (64,)
            np.testing.assert_allclose(g[:n], w[:n], atol=1e-5)
            assert (g[n:] == packing.PAD_LOGIT).all()
    seen = [n for _, _, ls in fake.calls for n in ls]
    assert seen == sorted(lengths.values(), reverse=True)            # longest first
    assert all(b <= 4 and w == max(ls) for b, w, ls in fake.calls)   # trimmed to the longest window
    with pytest.raises(UserError, match="over this packed engine's maximum"):
        Answerer(fake, QAConfig(max_seq_length=128))
