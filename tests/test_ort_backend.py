"""The onnxruntime backend and the ONNX export against Hugging Face transformers' BERT."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from helpers.build import build_engine, load_checkpoint, profiles_from
from helpers.engine_file import load_engine, save_engine
from helpers.errors import UserError
from helpers.onnx_export import write_onnx
from helpers.ort_backend import OrtRunner
from model_fixtures import DEFAULT_MODEL, REPO, hf_logits, random_inputs, save_random_hf_model


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    return save_random_hf_model(tmp_path_factory.mktemp("hf") / "small")


def engine_for(model_dir, tmp_path, batch=4, seqs=(16, 64)):
    ck = load_checkpoint(hf=str(model_dir))
    engine = build_engine(ck, "onnxruntime", profiles_from([batch], list(seqs), 512))
    path = tmp_path / "model.engine"
    save_engine(path, engine)
    return OrtRunner(load_engine(path, backend="onnxruntime"))


@pytest.mark.parametrize("seq", [16, 64])
def test_small_random_model_matches_transformers(small_model, tmp_path, seq):
    runner = engine_for(small_model, tmp_path)
    rng = np.random.default_rng(seq)
    ids, seg, mask = random_inputs(rng, 4, seq, 120)
    ours, ref = runner.run(ids, seg, mask), hf_logits(small_model, ids, seg, mask)
    assert ours.shape == (4, seq, 2) and ours.dtype == np.float32
    assert np.abs(ours - ref).max() <= 1e-4


@pytest.mark.skipif(not (DEFAULT_MODEL / "model.safetensors").is_file(), reason="default model not committed")
def test_real_minilm_weights_match_transformers(tmp_path):
    runner = engine_for(DEFAULT_MODEL, tmp_path, batch=2, seqs=(128,))
    rng = np.random.default_rng(7)
    ids, seg, mask = random_inputs(rng, 2, 128, runner.engine.config.vocab_size, min_len=20)
    ours, ref = runner.run(ids, seg, mask), hf_logits(DEFAULT_MODEL, ids, seg, mask)
    assert np.abs(ours - ref).max() <= 1e-4


def test_onnx_export_is_standard_and_matches(small_model, tmp_path):
    ck = load_checkpoint(hf=str(small_model))
    path = tmp_path / "bert.onnx"
    write_onnx(path, ck.config, ck.weights)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == ["input_ids", "segment_ids", "input_mask"]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids, seg, mask = random_inputs(np.random.default_rng(1), 3, 24, 120)
    out = sess.run(None, {"input_ids": ids, "segment_ids": seg, "input_mask": mask})[0]
    assert np.abs(out - hf_logits(small_model, ids, seg, mask)).max() <= 1e-4


def test_onnx_export_fp16(small_model, tmp_path):
    ck = load_checkpoint(hf=str(small_model))
    path = tmp_path / "bert16.onnx"
    write_onnx(path, ck.config, ck.weights, fp16=True)
    onnx.checker.check_model(str(path))
    ids, seg, mask = random_inputs(np.random.default_rng(2), 2, 16, 120)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input_ids": ids, "segment_ids": seg, "input_mask": mask})[0]
    ref = hf_logits(small_model, ids, seg, mask)
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) <= 1e-2


def test_bad_inputs_are_refused(small_model, tmp_path):
    runner = engine_for(small_model, tmp_path)
    ids, seg, mask = random_inputs(np.random.default_rng(3), 2, 16, 120)
    with pytest.raises(UserError, match="outside this engine's profiles"):
        runner.run(np.zeros((5, 16), np.int32), seg[:1].repeat(5, 0), mask[:1].repeat(5, 0))
    with pytest.raises(UserError, match="outside this engine's profiles"):  # S = 80 > 64
        runner.run(ids[:, :4].repeat(20, 1), seg[:, :4].repeat(20, 1), mask[:, :4].repeat(20, 1))
    bad = ids.copy()
    bad[0, 0] = 120
    with pytest.raises(UserError, match="token ids"):
        runner.run(bad, seg, mask)
    with pytest.raises(UserError, match="segment ids"):
        runner.run(ids, seg + 1, mask)
    with pytest.raises(UserError, match="differ in shape"):
        runner.run(ids, seg[:, :8], mask)
    with pytest.raises(UserError, match="token ids"):  # int64 ids over 2**32: not wrapped into range
        runner.run(ids.astype(np.int64) + 2**33, seg, mask)
    gaps = mask.copy()
    gaps[0] = 0
    gaps[0, 1] = 1
    with pytest.raises(UserError, match="a 1 after padding"):  # as the cuda engines require
        runner.run(ids, seg, gaps)
    with pytest.raises(UserError, match="is all zeros"):
        runner.run(ids, seg, np.zeros_like(mask))


def test_fp16_needs_cuda(small_model):
    ck = load_checkpoint(hf=str(small_model))
    with pytest.raises(UserError, match="fp32 only"):
        build_engine(ck, "onnxruntime", profiles_from([1], [16], 512), "fp16")


def test_shorter_sequences_run_within_a_profile(small_model, tmp_path):
    runner = engine_for(small_model, tmp_path)  # B <= 4 at S = 16 and 64: any S <= 64 runs
    ids, seg, mask = random_inputs(np.random.default_rng(4), 3, 40, 120)
    assert np.abs(runner.run(ids, seg, mask) - hf_logits(small_model, ids, seg, mask)).max() <= 1e-4
    with pytest.raises(UserError, match="outside this engine's profiles"):
        runner.run(*(np.tile(a, (1, 2)) for a in (ids, seg, mask)))  # S = 80


class WholeWindows:
    """The same runner without shorter_seq: the Answerer then runs every window at full length."""

    def __init__(self, runner):
        self.engine, self.run = runner.engine, runner.run


@pytest.mark.skipif(not (DEFAULT_MODEL / "model.safetensors").is_file(), reason="default model not committed")
def test_length_sorted_cut_batches_answer_as_whole_windows(tmp_path):
    from helpers.qa import Answerer, QAConfig

    runner = engine_for(DEFAULT_MODEL, tmp_path, batch=4, seqs=(64,))
    passage = (REPO / "scripts" / "sample_passage.txt").read_text()
    questions = ["What is TensorRT?", "What does it optimize?", "Who makes it?", "Which GPUs?", "Why?"]
    cfg = QAConfig(max_seq_length=64, doc_stride=24, max_query_length=16, batch_size=3)  # ragged windows
    cut, whole = Answerer(runner, cfg), Answerer(WholeWindows(runner), cfg)
    assert cut.shorter_seq and not whole.shorter_seq
    for a, b in zip(cut.answer(passage, questions), whole.answer(passage, questions)):
        assert (a["answer"], a["start"], a["end"]) == (b["answer"], b["start"], b["end"])
        assert abs(a["score"] - b["score"]) <= 1e-3
