"""Checkpoint loaders: each format the user names on the command line -> (BertConfig, Weights).

    --hf DIR         load_hf(dir, allow_missing_qa_head=False)
    -m/--ckpt PREFIX load_tf(prefix, config_json=None, allow_missing_qa_head=False)
    -x/--onnx FILE   load_qat_onnx(path, config_json=None) -> (cfg, weights, amax)
    --megatron FILE  load_megatron(path, config_json=None, allow_missing_qa_head=False)

Weights use the canonical names and orientation of helpers/weights.py and pass
``check_weights`` (which names missing, unexpected and mis-shaped tensors).
Nothing is guessed from file names: the caller says which format it is.
Pooler, MLM and NSP heads and optimizer state are dropped silently; any other
tensor a loader does not know is reported as "unexpected". A checkpoint without
a question-answering head is refused unless allow_missing_qa_head=True, which
gives the head BERT's initialisation (weight N(0, 0.02), bias 0).

Hugging Face (``--hf``): config.json plus model.safetensors or pytorch_model.bin
(or their sharded ``*.index.json`` forms). Names are BertForQuestionAnswering's
("bert." + encoder names, "qa_outputs.") or a bare BertModel's (no prefix, e.g.
sentence-transformers MiniLM). safetensors is parsed here (a JSON header and raw
little-endian data), so bf16 is widened to float32 exactly; pytorch_model.bin goes
through helpers/torch_pickle.py, which never runs pickled code and needs no torch.

TensorFlow (``-m``): Google's BERT / NVIDIA NGC checkpoints, read by helpers/tf_checkpoint.py
(the index table and the raw data files; no tensorflow needed). Variables
bert/embeddings/..., bert/encoder/layer_N/attention/self/query/kernel, ...,
LayerNorm/gamma|beta, cls/squad/output_weights [2, H] and output_bias (Google's
run_squad.py). Kernels are [in, out] and are transposed; output_weights already
is [2, H]. Ignored: */adam_m, */adam_v, global_step, AMP loss-scale variables
(current_loss_scale, good_steps), bert/pooler/*, cls/predictions/*,
cls/seq_relationship/*. The config is bert_config.json beside the checkpoint.

QAT ONNX (``-x``), what we found:
  * demoBERT's builder_utils.load_onnx_weights_and_quant (TensorRT demo/BERT)
    reads only graph initializers, by name: the NGC file
    bert_large_v1_1_fake_quant.onnx keeps Hugging Face names
    (bert.encoder.layer.0.attention.self.query.weight, torch [out, in]) and keeps
    pytorch-quantization's amax buffers as initializers named
    ``<module>._input_quantizer._amax`` / ``._weight_quantizer._amax`` (plus
    attention.self.matmul_{q,k,v,a}_input_quantizer._amax for the two attention
    GEMMs). We read those names directly.
  * pytorch-quantization's ONNX export (TensorQuantizer.use_fb_fake_quant,
    tensor_quantizer.py ``_fb_fake_quant``) emits
    torch.fake_quantize_per_{tensor,channel}_affine with scale = amax / 127
    (bound 2^(bits-1)-1, zero point 0, weights per output channel, axis 0), i.e.
    QuantizeLinear -> DequantizeLinear pairs. A real export of
    BertForQuestionAnswering gives, per linear layer:
        x -> Q(s_in) -> DQ -> MatMul(., Transpose(DQ(Q(W[out,in], s_w[out], axis=0)))) -> Add(bias)
    with W and bias initializers keeping HF names (identical initializers are
    de-duplicated and re-named through Identity nodes), scales anonymous, and
    the query/key/value input Q/DQ shared. onnxruntime PR 9869 notes optimisers
    may fold the weight's QuantizeLinear so that an int8 initializer feeds only
    a DequantizeLinear, and other exporters store the weight pre-transposed
    ([in, out], anonymous "onnx::MatMul_N").
  We accept all of these: weights by HF name where initializers have one, else by
  following each MatMul/Gemm's constant operand back through Transpose / DQ / Q /
  Identity / Cast (dequantising int8 initializers), naming the layer from its
  weight or bias initializer, or failing that by graph order (q, k, v, attn_out,
  ffn_in, ffn_out per layer, then qa). amax = max(scale) * 127 for int8 (255 for
  uint8; non-zero zero points are refused), keyed "layers.0.query.input_amax",
  "layers.0.query.weight_amax" (per-channel weight scales reduce to their max);
  named amax initializers fill what the graph lacks, the attention GEMM ones as
  "layers.N.attention.matmul_{q,k,v,a}.input_amax". The config comes from tensor
  shapes; num_heads (not visible in shapes) from config_json if given, else from
  the 4-D Reshape [.., .., heads, head_size] constants that split heads, else an
  error asking for -c/--config-dir. layer_norm_eps / gelu kind are read off the
  graph (LayerNormalization epsilon or the Add before Sqrt; Erf vs Tanh).

Megatron (``--megatron``), what we found:
  * demoBERT's load_megatron_pickle_weights reads a *converted* pickle (names
    already in its post-conversion scheme, QKV already [3, heads, head_size]) and
    its builder_varseqlen.py ``--megatron`` ("assume Megatron style residuals
    instead of vanilla BERT") feeds each skip-LayerNorm the *un-normalised*
    residual stream (SkipLayerNorm plugin v4 second output) with Megatron's LNs
    shifted one slot (embeddings LN = layer 0's input_layernorm, a layer's output
    LN = the next layer's input_layernorm, the last = final_layernorm). That is
    Megatron's PRE-LayerNorm block, which our post-LN network cannot express.
  * Megatron-LM checkpoints (torch.save of {"model": {"language_model":
    {"embedding": {"word_embeddings": {"weight"}, "position_embeddings", ...},
    "encoder" (older: "transformer"): {"layers.N.input_layernorm.weight",
    "layers.N.self_attention.query_key_value.weight" (older: "attention."),
    "layers.N.self_attention.dense", "layers.N.post_attention_layernorm",
    "layers.N.mlp.dense_h_to_4h", "layers.N.mlp.dense_4h_to_h",
    "final_layernorm"}, "pooler"}, "lm_head", "binary_head"}, "args": Namespace,
    "checkpoint_version": float}). query_key_value rows are per-head interleaved:
    [heads, 3, head_size] for checkpoint_version >= 2, [heads, head_size, 3] for
    1.0, [3, heads, head_size] for 0 (Megatron's fix_query_key_value_ordering,
    mirrored in transformers' convert_megatron_bert_checkpoint.py). Word
    embeddings are padded to padded_vocab_size (truncated here to the config's
    vocab_size). Megatron's default block is pre-LN; with
    ``--apply-residual-connection-post-layernorm`` ("use original BERT residual
    connection ordering") the residual is taken after the LayerNorm and the block
    is exactly post-LN BERT with the LN shift above. So we map a checkpoint only
    when args.apply_residual_connection_post_layernorm is true (or the config json
    says "apply_residual_connection_post_layernorm": true, for files without
    args) and otherwise refuse it with a CheckpointError saying why.
    layer_norm_eps / gelu kind come from args when present (layernorm_epsilon;
    bias_gelu_fusion or openai_gelu mean the tanh approximation).
  A flat state dict (a live model's state_dict(), names with or without
  "language_model."/"module." prefixes) is in the current QKV layout unless the
  config json gives "checkpoint_version". A QA head is read from "qa_outputs.*"
  or "qa_head.*" when present.
"""
from __future__ import annotations

import json
import re
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from helpers import tf_checkpoint, torch_pickle
from helpers.config import BertConfig
from helpers.errors import CheckpointError
from helpers.weights import LAYER_LINEARS, Weights, bf16_to_float32, check_weights

IGNORE = "<ignore>"  # a tensor dropped silently (pooler, MLM/NSP heads, optimizer state)

# ---------------------------------------------------------------- Hugging Face names
_HF_EMB = {"word_embeddings.weight": "embeddings.word",
           "position_embeddings.weight": "embeddings.position",
           "token_type_embeddings.weight": "embeddings.token_type"}
_HF_LAYER = {"attention.self.query": "query", "attention.self.key": "key",
             "attention.self.value": "value", "attention.output.dense": "attn_out",
             "intermediate.dense": "ffn_in", "output.dense": "ffn_out",
             "attention.output.LayerNorm": "attn_ln", "output.LayerNorm": "ffn_ln"}
_LN_PARAM = {"weight": "gamma", "bias": "beta", "gamma": "gamma", "beta": "beta"}
_HF_LAYER_RE = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias|gamma|beta)")
_HF_AMAX_RE = re.compile(r"(?:bert\.)?encoder\.layer\.(\d+)\.(.+?)\.(?:_?(input|weight)_quantizer"
                         r"|(matmul_[qkva])_input_quantizer)\._?amax")
_QA_AMAX_RE = re.compile(r"(?:bert\.)?qa_outputs\._?(input|weight)_quantizer\._?amax")


def _hf_name(name: str) -> str | None:
    """Canonical name of a Hugging Face BERT tensor, IGNORE, or None if unknown."""
    if name.startswith("cls."):
        return IGNORE
    n = name[5:] if name.startswith("bert.") else name
    if n.startswith("pooler.") or n in ("embeddings.position_ids", "embeddings.token_type_ids"):
        return IGNORE
    if n in ("qa_outputs.weight", "qa_outputs.bias"):
        return "qa." + n.split(".")[1]
    if n.startswith("embeddings."):
        rest = n[len("embeddings."):]
        if rest in _HF_EMB:
            return _HF_EMB[rest]
        if rest.startswith("LayerNorm.") and rest[10:] in _LN_PARAM:
            return "embeddings.ln." + _LN_PARAM[rest[10:]]
        return None
    m = _HF_LAYER_RE.fullmatch(n)
    if m and m.group(2) in _HF_LAYER:
        layer, part, param = m.groups()
        canon = _HF_LAYER[part]
        if canon.endswith("_ln"):
            return f"layers.{layer}.{canon}.{_LN_PARAM[param]}"
        if param in ("weight", "bias"):
            return f"layers.{layer}.{canon}.{param}"
    return None


# ---------------------------------------------------------------- shared finishing
def _finish(cfg: BertConfig, found: dict[str, np.ndarray], unknown: list[str], source: str,
            allow_missing_qa_head: bool) -> Weights:
    """Add a QA head if allowed, then validate; unknown raw names are reported as unexpected."""
    if "qa.weight" not in found and "qa.bias" not in found:
        if not allow_missing_qa_head:
            raise CheckpointError(
                f"{source} has no question-answering head (qa_outputs): it is a plain BERT "
                "encoder; use a checkpoint fine-tuned for SQuAD, or fine-tune this one first")
        rng = np.random.default_rng(0)
        found["qa.weight"] = rng.normal(0.0, 0.02, (2, cfg.hidden_size)).astype(np.float32)
        found["qa.bias"] = np.zeros(2, np.float32)
    weights = dict(found)
    for raw in unknown:
        weights.setdefault(raw, np.zeros(0))
    return check_weights(cfg, weights, source)


def _put(found: dict[str, np.ndarray], canon: str, value: np.ndarray, raw: str, source: str) -> None:
    if canon in found:
        raise CheckpointError(f"{source} holds {canon} twice (again as {raw})")
    found[canon] = value


def _as_float(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "fiu" and a.dtype.name != "bfloat16":  # ml_dtypes bfloat16 (onnx may give it)
        raise CheckpointError(f"{what} has non-numeric dtype {a.dtype}")
    return a.astype(np.float32, copy=False)


# ---------------------------------------------------------------- Hugging Face
_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
              "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file as numpy (bf16 widened to float32 exactly)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 2 <= n <= min(size - 8, 1 << 27):
            raise CheckpointError(f"{path} is not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CheckpointError(f"{path} is not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a safetensors file (header is not an object)")
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n) if size > 8 + n else np.zeros(0, np.uint8)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dt = np.dtype(_ST_DTYPES[info["dtype"]])
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name} has an unsupported or malformed "
                                  f"entry {str(info)[:80]}") from None
        if not (0 <= begin <= end <= data.size and end - begin == int(np.prod(shape)) * dt.itemsize):
            raise CheckpointError(f"{path}: tensor {name} lies outside the file (truncated?)")
        arr = np.frombuffer(data[begin:end].tobytes(), dtype=dt).reshape(shape)
        if info["dtype"] == "BF16":
            arr = bf16_to_float32(arr)
        out[name] = arr
    return out


def _read_state_dict_pickle(path: Path) -> dict[str, np.ndarray]:
    obj = torch_pickle.load(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a flat state dict of tensors")
    return obj


_HF_FILES = ("model.safetensors", "model.safetensors.index.json",
             "pytorch_model.bin", "pytorch_model.bin.index.json")


def _read_hf_tensors(d: Path) -> tuple[dict[str, np.ndarray], Path]:
    for fname in _HF_FILES:
        p = d / fname
        if p.is_file():
            break
    else:
        raise CheckpointError(f"{d} has no model.safetensors or pytorch_model.bin "
                              "(save the model with save_pretrained)")
    reader = read_safetensors if "safetensors" in fname else _read_state_dict_pickle
    if not fname.endswith(".index.json"):
        return reader(p), p
    try:
        shards = sorted(set(json.loads(p.read_text())["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{p} is not a sharded-checkpoint index (no weight_map)") from None
    tensors: dict[str, np.ndarray] = {}
    for shard in shards:
        if not (d / shard).is_file():
            raise CheckpointError(f"{p} lists shard {shard}, which is missing from {d}")
        tensors.update(reader(d / shard))
    return tensors, p


def load_hf(path: str | Path, allow_missing_qa_head: bool = False) -> tuple[BertConfig, Weights]:
    """A Hugging Face BERT directory (config.json + model.safetensors / pytorch_model.bin)."""
    d = Path(path)
    if not d.is_dir():
        raise CheckpointError(f"no such directory: {d} (--hf takes a Hugging Face model directory)")
    if not (d / "config.json").is_file() and (tf_prefix := _tf_prefix_in(d)):
        raise CheckpointError(f"{d} holds a TensorFlow checkpoint, not a Hugging Face model (no config.json): "
                              f"use -m {tf_prefix}")
    cfg = BertConfig.from_json_file(d / "config.json")
    tensors, source = _read_hf_tensors(d)
    found: dict[str, np.ndarray] = {}
    unknown = []
    for raw, value in tensors.items():
        canon = _hf_name(raw)
        if canon == IGNORE:
            continue
        if canon is None:
            unknown.append(raw)
        else:
            _put(found, canon, _as_float(value, raw), raw, str(source))
    return cfg, _finish(cfg, found, unknown, str(source), allow_missing_qa_head)


# ---------------------------------------------------------------- TensorFlow
_TF_LAYER = {k.replace(".", "/"): v for k, v in _HF_LAYER.items()}
_TF_LAYER_RE = re.compile(r"bert/encoder/layer_(\d+)/(.+)/(kernel|bias|gamma|beta)")
_TF_TOP = {"bert/embeddings/word_embeddings": "embeddings.word",
           "bert/embeddings/position_embeddings": "embeddings.position",
           "bert/embeddings/token_type_embeddings": "embeddings.token_type",
           "bert/embeddings/LayerNorm/gamma": "embeddings.ln.gamma",
           "bert/embeddings/LayerNorm/beta": "embeddings.ln.beta",
           "cls/squad/output_weights": "qa.weight", "cls/squad/output_bias": "qa.bias"}
_TF_IGNORE_NAMES = {"global_step", "current_loss_scale", "good_steps", "loss_scale"}
_TF_IGNORE_SUFFIX = ("/adam_m", "/adam_v", "/Adam", "/Adam_1", "/Momentum")
_TF_IGNORE_PREFIX = ("bert/pooler/", "cls/predictions/", "cls/seq_relationship/")


def _tf_name(name: str) -> tuple[str | None, bool]:
    """(canonical name or IGNORE or None, whether to transpose)."""
    if (name in _TF_IGNORE_NAMES or name.endswith(_TF_IGNORE_SUFFIX)
            or name.startswith(_TF_IGNORE_PREFIX)):
        return IGNORE, False
    if name in _TF_TOP:
        return _TF_TOP[name], False
    m = _TF_LAYER_RE.fullmatch(name)
    if m and m.group(2) in _TF_LAYER:
        layer, part, param = m.groups()
        canon = _TF_LAYER[part]
        if canon.endswith("_ln") and param in ("gamma", "beta"):
            return f"layers.{layer}.{canon}.{param}", False
        if not canon.endswith("_ln") and param in ("kernel", "bias"):
            return f"layers.{layer}.{canon}.{'weight' if param == 'kernel' else 'bias'}", param == "kernel"
    return None, False


def _tf_prefix_in(directory: Path) -> Path | None:
    """The prefix of a TensorFlow checkpoint in directory (the first by name), if it holds one."""
    return next((p.with_suffix("") for p in sorted(directory.glob("*.index"))), None)


def _tf_prefix_hint(path: Path) -> str:
    """What to pass instead of a path that is no checkpoint prefix."""
    if path.is_dir():
        if tf_prefix := _tf_prefix_in(path):
            return f"pass the prefix, e.g. {tf_prefix}"
        if any((path / f).is_file() for f in _HF_FILES) and (path / "config.json").is_file():
            return "it is a Hugging Face directory: use --hf"
    return "pass the prefix, e.g. .../model.ckpt for model.ckpt.index"


def load_tf(prefix: str | Path, config_json: str | Path | None = None,
            allow_missing_qa_head: bool = False) -> tuple[BertConfig, Weights]:
    """A Google / NGC TensorFlow BERT checkpoint given by its prefix (…/model.ckpt)."""
    prefix = str(prefix)
    if prefix.endswith(".index"):
        prefix = prefix[: -len(".index")]
    if not Path(prefix + ".index").is_file():
        raise CheckpointError(f"no TensorFlow checkpoint at {prefix} (expected {prefix}.index and "
                              f"{prefix}.data-*): {_tf_prefix_hint(Path(prefix))}")
    config_json = Path(config_json) if config_json else Path(prefix).parent / "bert_config.json"
    cfg = BertConfig.from_json_file(config_json)
    bundle = tf_checkpoint.Bundle(prefix)
    found: dict[str, np.ndarray] = {}
    unknown = []
    for name in sorted(bundle.entries):
        canon, transpose = _tf_name(name)
        if canon == IGNORE:
            continue
        if canon is None:
            unknown.append(name)
            continue
        value = _as_float(bundle.tensor(name), name)
        _put(found, canon, value.T if transpose else value, name, prefix)
    return cfg, _finish(cfg, found, unknown, prefix, allow_missing_qa_head)


# ---------------------------------------------------------------- QAT ONNX
class _Graph:
    """The constants and wiring of an ONNX graph, enough to trace weights and scales."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper
        g = model.graph
        self.nodes = list(g.node)
        self.inputs = {i.name for i in g.input}
        self.const: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list] = defaultdict(list)
        for n in self.nodes:
            for i in n.input:
                self.consumers[i].append(n)
            if n.op_type == "Constant" and n.output:
                for a in n.attribute:
                    if a.name == "value":
                        self.const[n.output[0]] = numpy_helper.to_array(a.t)
                    elif a.name in ("value_float", "value_int"):
                        self.const[n.output[0]] = np.array(a.f if a.name == "value_float" else a.i)
                    elif a.name in ("value_floats", "value_ints"):
                        self.const[n.output[0]] = np.array(
                            list(a.floats) if a.name == "value_floats" else list(a.ints))
            elif n.op_type == "Identity" and n.input and n.input[0] in self.const:
                self.const[n.output[0]] = self.const[n.input[0]]
        self.ops = {n.op_type for n in self.nodes}

    @staticmethod
    def attr(node: Any, name: str, default: Any = None) -> Any:
        from onnx import helper
        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def qparams(self, node: Any) -> tuple[np.ndarray, np.ndarray, int]:
        """(scale, zero point, axis) of a Quantize/DequantizeLinear node, constants required."""
        scale = self.const.get(node.input[1])
        if scale is None:
            raise CheckpointError(f"{node.op_type} {node.name or node.output[0]} has a computed "
                                  "scale; only constant Q/DQ scales are supported")
        zp = self.const.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return scale.astype(np.float32), (np.zeros(1, np.uint8) if zp is None else zp), \
            int(self.attr(node, "axis", 1))

    def amax(self, node: Any) -> float:
        scale, zp, _ = self.qparams(node)
        if np.any(zp != 0):
            raise CheckpointError(f"{node.op_type} {node.name or node.output[0]} is asymmetric "
                                  "(non-zero zero point); TensorRT INT8 needs symmetric ranges")
        bound = {np.dtype(np.int8): 127.0, np.dtype(np.uint8): 255.0}.get(zp.dtype)
        if bound is None:
            raise CheckpointError(f"{node.op_type} {node.name or node.output[0]} quantizes to "
                                  f"{zp.dtype}; only int8 Q/DQ is supported")
        return float(np.max(np.abs(scale))) * bound

    def trace_weight(self, name: str) -> tuple[np.ndarray, list[str], float | None] | None:
        """Follow a constant matrix operand back to its initializer.

        Returns (matrix as the consuming op sees it, initializer names passed, weight amax)
        or None if the operand is not constant (an attention GEMM)."""
        transposed, amax, names = False, None, []
        for _ in range(16):
            if name in self.const:
                arr = self.const[name]
                names.append(name)
                break
            node = self.producer.get(name)
            if node is None:
                return None
            if node.op_type == "Transpose":
                perm = self.attr(node, "perm")
                if perm is not None and list(perm) != [1, 0]:
                    return None
                transposed = not transposed
            elif node.op_type == "DequantizeLinear":
                amax = self.amax(node) if amax is None else amax
                src = node.input[0]
                if src in self.const and self.const[src].dtype.kind in "iu":
                    scale, zp, axis = self.qparams(node)
                    q = self.const[src]
                    shape = [1] * q.ndim
                    if scale.size > 1:
                        shape[axis % q.ndim] = -1
                    arr = (q.astype(np.float32) - zp.astype(np.float32).reshape(shape)) * scale.reshape(shape)
                    names.append(src)
                    break
            elif node.op_type == "QuantizeLinear":
                amax = self.amax(node) if amax is None else amax
            elif node.op_type not in ("Identity", "Cast"):
                return None
            name = node.input[0]
        else:
            return None
        if arr.ndim != 2 or arr.dtype.kind != "f":
            return None
        return (arr.T if transposed else arr), names, amax

    def input_amax(self, name: str) -> float | None:
        """amax of the Q/DQ pair feeding an activation, if any."""
        for _ in range(4):
            node = self.producer.get(name)
            if node is None:
                return None
            if node.op_type in ("DequantizeLinear", "QuantizeLinear"):
                return self.amax(node)
            if node.op_type not in ("Identity", "Cast"):
                return None
            name = node.input[0]
        return None

    def ints(self, name: str, depth: int = 0) -> list[int | None] | None:
        """A shape vector's known entries (None where computed at run time)."""
        if name in self.const:
            v = self.const[name]
            return [int(x) for x in v.reshape(-1)] if v.dtype.kind in "iu" and v.ndim <= 1 else None
        node = self.producer.get(name)
        if node is None or depth > 8:
            return None
        if node.op_type == "Concat":
            out: list[int | None] = []
            for i in node.input:
                part = self.ints(i, depth + 1)
                out += part if part is not None else [None]  # a dynamic 1-element dim
            return out
        if node.op_type in ("Unsqueeze", "Cast", "Identity"):
            return self.ints(node.input[0], depth + 1)
        return None


def _linear_slots(num_layers: int) -> list[str]:
    return [f"layers.{i}.{n}" for i in range(num_layers) for n in LAYER_LINEARS] + ["qa"]


def _onnx_heads(g: _Graph, hidden: int) -> set[int]:
    heads = set()
    for n in g.nodes:
        if n.op_type == "Reshape" and len(n.input) > 1:
            shape = g.ints(n.input[1])  # [batch, seq, heads, head_size]; heads may be -1
            if not shape or len(shape) != 4 or not shape[3] or not 1 < shape[3] < hidden \
                    or hidden % shape[3]:
                continue
            if shape[2] in (None, -1) or shape[2] * shape[3] == hidden:
                heads.add(hidden // shape[3])
    return heads


def _onnx_eps_act(g: _Graph) -> tuple[float | None, str]:
    eps = None
    for n in g.nodes:
        if n.op_type == "LayerNormalization":
            eps = float(g.attr(n, "epsilon", 1e-5))
            break
        if n.op_type == "Sqrt" and n.input[0] in g.producer and g.producer[n.input[0]].op_type == "Add":
            for i in g.producer[n.input[0]].input:
                if i in g.const and g.const[i].size == 1:
                    eps = float(g.const[i].reshape(-1)[0])
            if eps is not None:
                break
    act = "gelu"
    gelu_nodes = [n for n in g.nodes if n.op_type == "Gelu"]
    if gelu_nodes and g.attr(gelu_nodes[0], "approximate", b"none") in (b"tanh", "tanh"):
        act = "gelu_tanh"
    elif "Erf" not in g.ops and not gelu_nodes and {"Tanh", "Pow"} <= g.ops:
        act = "gelu_tanh"
    return eps, act


def load_qat_onnx(path: str | Path, config_json: str | Path | None = None
                  ) -> tuple[BertConfig, Weights, dict[str, float]]:
    """A fake-quantized (Q/DQ) QAT BERT ONNX: weights, config and INT8 amax ranges."""
    import onnx
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not an ONNX file (-x takes the .onnx file itself)")
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors vary
        raise CheckpointError(f"{path} is not an ONNX model ({type(exc).__name__}: "
                              f"{str(exc)[:120]})") from None
    if not model.graph.node and not model.graph.initializer:
        raise CheckpointError(f"{path} is not an ONNX model (empty graph)")
    g = _Graph(model)
    source = str(path)
    found: dict[str, np.ndarray] = {}
    amax: dict[str, float] = {}
    named_amax: dict[str, float] = {}

    # 1. Tensors that carry Hugging Face names (any exporter, and NGC's amax buffers).
    for name, value in g.const.items():
        canon = _hf_name(name)
        if canon and canon != IGNORE and value.dtype.kind == "f" and canon not in found:
            found[canon] = value
            continue
        m = _HF_AMAX_RE.fullmatch(name)
        if m and value.size >= 1:
            layer, module, kind, bmm = m.groups()
            if bmm:
                named_amax[f"layers.{layer}.attention.{bmm}.input_amax"] = float(np.max(value))
            elif module in _HF_LAYER and not _HF_LAYER[module].endswith("_ln"):
                named_amax[f"layers.{layer}.{_HF_LAYER[module]}.{kind}_amax"] = float(np.max(value))
        elif m := _QA_AMAX_RE.fullmatch(name):
            named_amax[f"qa.{m.group(1)}_amax"] = float(np.max(value))
    if not {"QuantizeLinear", "DequantizeLinear"} & g.ops and not named_amax:
        raise CheckpointError(
            f"{source} is not a fake-quant QAT ONNX (no QuantizeLinear/DequantizeLinear nodes, no "
            "amax initializers): -x/--onnx reads QAT exports; for a Hugging Face model use "
            "builder.py --hf DIR")

    # 2. Linear layers from the graph: MatMul/Gemm with a constant operand.
    anonymous = []
    for node in g.nodes:
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            continue
        traced = g.trace_weight(node.input[1])
        if traced is None:
            continue
        mat, names, w_amax = traced
        if node.op_type == "Gemm" and g.attr(node, "transB", 0):
            mat = mat.T
        weight = mat.T  # [out, in]
        bias_name = None
        if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
            bias_name = node.input[2]
        else:
            for c in g.consumers.get(node.output[0], []):
                if c.op_type == "Add":
                    other = [i for i in c.input if i != node.output[0]]
                    if other and other[0] in g.const and g.const[other[0]].shape == (weight.shape[0],):
                        bias_name = other[0]
        linear = None
        for n in names + ([bias_name] if bias_name else []):
            canon = _hf_name(n)
            if canon and canon != IGNORE and canon.endswith((".weight", ".bias")) \
                    and ("_ln." not in canon):
                linear = canon.rsplit(".", 1)[0]
                break
        entry = (weight, g.const.get(bias_name) if bias_name else None, w_amax,
                 g.input_amax(node.input[0]))
        if linear is None:
            anonymous.append(entry)
        else:
            _store_linear(found, amax, linear, entry)
    if anonymous:  # no names at all: graph order is q, k, v, attn_out, ffn_in, ffn_out; then qa
        named = {k[: -len(".weight")] for k in found if k.endswith(".weight")
                 and k.split(".")[-2] in LAYER_LINEARS + ("qa",)}
        layers = (len(named) + len(anonymous) - 1) // len(LAYER_LINEARS)
        free = [s for s in _linear_slots(layers) if s not in named]
        if len(free) != len(anonymous):
            raise CheckpointError(
                f"{source}: {len(anonymous)} MatMul/Gemm weights carry no layer name and "
                f"{len(free)} linear layers are unaccounted for; cannot tell which is which")
        for slot, entry in zip(free, anonymous):
            _store_linear(found, amax, slot, entry)
    for k, v in named_amax.items():
        amax.setdefault(k, v)

    # 3. Embeddings and LayerNorms without names, from Gather / LayerNormalization nodes.
    _onnx_unnamed_embeddings(g, found)
    _onnx_unnamed_layernorms(g, found)

    # 4. The config: shapes, plus heads from a config json or the graph's Reshape constants.
    if config_json:
        cfg = BertConfig.from_json_file(config_json)
    else:
        cfg = _onnx_config(g, found, source)
    return cfg, _finish(cfg, found, [], source, False), amax


def _store_linear(found, amax, linear, entry) -> None:
    weight, bias, w_amax, in_amax = entry
    found[linear + ".weight"] = weight
    if bias is not None:
        found[linear + ".bias"] = bias
    if w_amax is not None:
        amax[linear + ".weight_amax"] = w_amax
    if in_amax is not None:
        amax[linear + ".input_amax"] = in_amax


def _onnx_unnamed_embeddings(g: _Graph, found: dict[str, np.ndarray]) -> None:
    if all(k in found for k in ("embeddings.word", "embeddings.position", "embeddings.token_type")):
        return
    for n in g.nodes:
        if n.op_type != "Gather" or n.input[0] not in g.const or g.const[n.input[0]].ndim != 2:
            continue
        src, idx = n.input[1], None
        for _ in range(6):  # walk the indices back to a graph input
            if src in g.inputs:
                idx = src.lower()
                break
            p = g.producer.get(src)
            if p is None or not p.input:
                break
            src = p.input[0]
        if idx is None:
            key = "embeddings.position"
        elif "token_type" in idx or "segment" in idx:
            key = "embeddings.token_type"
        elif "input_ids" in idx or idx in ("ids", "input"):
            key = "embeddings.word"
        else:
            continue
        found.setdefault(key, g.const[n.input[0]])


def _onnx_unnamed_layernorms(g: _Graph, found: dict[str, np.ndarray]) -> None:
    lns = [n for n in g.nodes if n.op_type == "LayerNormalization" and len(n.input) >= 3]
    layers = (len(lns) - 1) // 2
    slots = ["embeddings.ln"] + [f"layers.{i}.{ln}" for i in range(layers)
                                 for ln in ("attn_ln", "ffn_ln")]
    if len(lns) != len(slots):
        return
    for slot, n in zip(slots, lns):
        if n.input[1] in g.const and n.input[2] in g.const:
            found.setdefault(slot + ".gamma", g.const[n.input[1]])
            found.setdefault(slot + ".beta", g.const[n.input[2]])


def _onnx_config(g: _Graph, found: dict[str, np.ndarray], source: str) -> BertConfig:
    need = ("embeddings.word", "embeddings.position", "embeddings.token_type", "layers.0.ffn_in.weight")
    missing = [k for k in need if k not in found]
    if missing:
        raise CheckpointError(f"{source}: cannot derive the BERT config, no tensor found for "
                              + ", ".join(missing) + " (is it a BERT model?)")
    hidden = found["embeddings.word"].shape[1]
    heads = _onnx_heads(g, hidden)
    if len(heads) != 1:
        why = "no Reshape splits attention heads" if not heads else f"Reshapes disagree ({sorted(heads)})"
        raise CheckpointError(f"{source}: cannot tell the number of attention heads ({why}); "
                              "pass the model's bert_config.json directory with -c/--config-dir")
    eps, act = _onnx_eps_act(g)
    layers = 1 + max(int(k.split(".")[1]) for k in found if k.startswith("layers."))
    return BertConfig(
        vocab_size=found["embeddings.word"].shape[0], hidden_size=hidden, num_layers=layers,
        num_heads=heads.pop(), intermediate_size=found["layers.0.ffn_in.weight"].shape[0],
        max_position_embeddings=found["embeddings.position"].shape[0],
        type_vocab_size=found["embeddings.token_type"].shape[0],
        layer_norm_eps=1e-12 if eps is None else float(f"{eps:.6g}"), hidden_act=act)


# ---------------------------------------------------------------- Megatron-LM
_MEG_LAYER_RE = re.compile(
    r"(?:encoder|transformer)\.layers\.(\d+)\.(input_layernorm|post_attention_layernorm|"
    r"(?:self_)?attention\.query_key_value|(?:self_)?attention\.dense|mlp\.dense_h_to_4h|"
    r"mlp\.dense_4h_to_h)\.(weight|bias)")
_MEG_PART = {"attention.dense": "attn_out", "self_attention.dense": "attn_out",
             "mlp.dense_h_to_4h": "ffn_in", "mlp.dense_4h_to_h": "ffn_out"}
_MEG_TOP = {"embedding.word_embeddings.weight": "embeddings.word",
            "embedding.position_embeddings.weight": "embeddings.position",
            "embedding.tokentype_embeddings.weight": "embeddings.token_type",
            "qa_outputs.weight": "qa.weight", "qa_outputs.bias": "qa.bias",
            "qa_head.weight": "qa.weight", "qa_head.bias": "qa.bias"}
_MEG_IGNORE = ("pooler.", "lm_head.", "binary_head.", "embedding.position_ids")


def _flatten(obj: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def _meg_strip(name: str) -> str:
    for p in ("module.", "model.", "bert_model.", "language_model."):
        if name.startswith(p):
            name = name[len(p):]
    return name


def _megatron_args_config(args: dict, vocab_size: int, source: str) -> BertConfig:
    """The BERT config a Megatron checkpoint's training args describe. Values go in as stored
    (no int()): BertConfig refuses what int() would silently turn into another model (True, 12.5)."""
    fix = "give the BERT config json with -c/--config-dir"
    try:
        hidden = args["hidden_size"]
        cfg = {"vocab_size": vocab_size, "hidden_size": hidden, "num_layers": args["num_layers"],
               "num_heads": args["num_attention_heads"],
               "max_position_embeddings": args.get("max_position_embeddings", 512)}
    except KeyError as exc:
        raise CheckpointError(f"{source}: its training args lack {exc}; {fix}") from None
    ffn = args.get("ffn_hidden_size")
    # Megatron's default FFN width is 4 h; a bad hidden_size goes through as is, for BertConfig to name.
    cfg["intermediate_size"] = ffn if ffn else 4 * hidden if type(hidden) is int else hidden
    try:
        return BertConfig(**cfg)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: its training args give an unusable BERT config "
                              f"({exc}); {fix}") from None


def _uninterleave(t: np.ndarray, version: float, heads: int) -> list[np.ndarray]:
    """Megatron's fused QKV rows -> [q, k, v] (each [H, ...] in torch orientation)."""
    rest = t.shape[1:]
    hd = t.shape[0] // (3 * heads)
    if version >= 2.0:
        t = t.reshape((heads, 3, hd) + rest).swapaxes(0, 1)
    elif version == 1.0:
        t = np.moveaxis(t.reshape((heads, hd, 3) + rest), 2, 0)
    else:
        t = t.reshape((3, heads, hd) + rest)
    t = t.reshape((3, heads * hd) + rest)
    return [t[0], t[1], t[2]]


def load_megatron(path: str | Path, config_json: str | Path | None = None,
                  allow_missing_qa_head: bool = False) -> tuple[BertConfig, Weights]:
    """A Megatron-LM BERT torch.save file (zip or legacy), read without torch."""
    path = Path(path)
    source = str(path)
    obj = torch_pickle.load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source} does not hold a Megatron state dict (top level is "
                              f"{type(obj).__name__})")
    wrapped = isinstance(obj.get("model"), dict)
    args = obj.get("args") if wrapped else None
    args = vars(args) if args is not None and hasattr(args, "__dict__") else {}
    jcfg: dict = {}
    if config_json:
        try:
            jcfg = json.loads(Path(config_json).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            jcfg = {}  # BertConfig.from_json_file below reports the real problem
    version = float(jcfg.get("checkpoint_version",
                             obj.get("checkpoint_version", 0.0) if wrapped else 3.0))
    tensors = _flatten(obj["model"] if wrapped else obj)

    qkv: dict[tuple[int, str], np.ndarray] = {}
    lns: dict[tuple[str, int, str], np.ndarray] = {}  # (kind, layer, param)
    found: dict[str, np.ndarray] = {}
    unknown = []
    for raw, value in tensors.items():
        if not isinstance(value, np.ndarray):
            continue  # metadata, e.g. TransformerEngine _extra_state
        name = _meg_strip(raw)
        if name.startswith(_MEG_IGNORE):
            continue
        if name in ("encoder.final_layernorm.weight", "encoder.final_layernorm.bias",
                    "transformer.final_layernorm.weight", "transformer.final_layernorm.bias"):
            lns[("final", 0, name.rsplit(".", 1)[1])] = value
            continue
        if name in _MEG_TOP:
            _put(found, _MEG_TOP[name], _as_float(value, raw), raw, source)
            continue
        m = _MEG_LAYER_RE.fullmatch(name)
        if m is None:
            unknown.append(raw)
            continue
        layer, part, param = int(m.group(1)), m.group(2), m.group(3)
        if part.endswith("layernorm"):
            lns[(part, layer, param)] = value
        elif part.endswith("query_key_value"):
            qkv[(layer, param)] = value
        else:
            _put(found, f"layers.{layer}.{_MEG_PART[part]}.{param}", _as_float(value, raw), raw, source)
    if not qkv:
        raise CheckpointError(f"{source} is not a Megatron-LM BERT state dict (no "
                              "layers.N.self_attention.query_key_value tensors)")

    post_ln = args.get("apply_residual_connection_post_layernorm",
                       jcfg.get("apply_residual_connection_post_layernorm"))
    if not post_ln:
        raise CheckpointError(
            f"{source} is a pre-LayerNorm Megatron BERT (Megatron's default residual ordering); "
            "this engine runs post-LN BERT and would compute wrong answers with it. Only "
            "checkpoints trained with --apply-residual-connection-post-layernorm can be "
            "converted (for a file without its training args, say so with "
            '"apply_residual_connection_post_layernorm": true in the config json)')

    if config_json:
        cfg = BertConfig.from_json_file(config_json)
    elif args and "embeddings.word" in found:
        cfg = _megatron_args_config(args, found["embeddings.word"].shape[0], source)
    else:
        raise CheckpointError(f"{source} carries no training args: give its BERT config json "
                              "(hidden_size, num_attention_heads, ...) with -c/--config-dir")
    if args:
        act = "gelu_tanh" if args.get("bias_gelu_fusion") or args.get("openai_gelu") else "gelu"
        try:
            cfg = BertConfig(**{**cfg.to_dict(), "hidden_act": act,
                                "layer_norm_eps": args.get("layernorm_epsilon", cfg.layer_norm_eps)})
        except CheckpointError as exc:
            raise CheckpointError(f"{source}: its training args give an unusable layernorm_epsilon "
                                  f"({exc})") from None

    for (layer, param), value in qkv.items():
        if value.shape[0] != 3 * cfg.hidden_size or value.shape[0] % (3 * cfg.num_heads):
            raise CheckpointError(f"{source}: layer {layer} query_key_value {param} has shape "
                                  f"{value.shape}, config says {3 * cfg.hidden_size} rows")
        for part, t in zip(("query", "key", "value"), _uninterleave(value, version, cfg.num_heads)):
            found[f"layers.{layer}.{part}.{param}"] = _as_float(t, "query_key_value")
    # Post-LN equivalence: emb LN = layer 0 input LN; layer i's output LN = layer i+1's input LN.
    for (kind, layer, param), value in lns.items():
        p = _LN_PARAM[param]
        if kind == "post_attention_layernorm":
            slot = f"layers.{layer}.attn_ln"
        elif kind == "input_layernorm":
            slot = "embeddings.ln" if layer == 0 else f"layers.{layer - 1}.ffn_ln"
        else:
            slot = f"layers.{cfg.num_layers - 1}.ffn_ln"
        _put(found, f"{slot}.{p}", _as_float(value, kind), kind, source)
    word = found.get("embeddings.word")
    if word is not None and word.shape[0] > cfg.vocab_size:
        found["embeddings.word"] = word[: cfg.vocab_size]  # Megatron pads the vocabulary
    return cfg, _finish(cfg, found, unknown, source, allow_missing_qa_head)

