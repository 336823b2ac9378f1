"""The network description as a standard ONNX graph (opset 17).

One translation serves two users: ONNX Runtime runs it on the CPU (the
"onnxruntime" backend), and builder.py --onnx-out writes it for TensorRT's
trtexec or any other ONNX consumer. Inputs are int32 [batch, seq] tensors named
as demoBERT's (input_ids, segment_ids, input_mask); the output cls_squad_logits
is float32 [batch, seq, 2] whatever the compute precision.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from helpers.network import Network, Op

OPSET = 17
MASK_BIAS = -10000.0  # added to the scores of padding keys; exp() of it is 0 in fp16 and fp32


class _Graph:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self, dtype: np.dtype):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.dtype = dtype
        self._n = 0

    def const(self, name: str, value, dtype=None) -> str:
        arr = np.asarray(value, dtype=dtype or self.dtype)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        self._n += 1
        out = name or f"{op.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"n{self._n}_{op}", **attrs))
        return out


def _gelu(g: _Graph, x: str, kind: str) -> str:
    if kind == "gelu":  # 0.5 x (1 + erf(x / sqrt 2)); ONNX Runtime fuses this into its Gelu kernel
        t = g.node("Erf", [g.node("Mul", [x, g.const(f"c{g._n}_rsqrt2", 1 / math.sqrt(2))])])
    else:  # tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        x3 = g.node("Mul", [g.node("Mul", [x, x]), x])
        inner = g.node("Add", [x, g.node("Mul", [x3, g.const(f"c{g._n}_k", 0.044715)])])
        t = g.node("Tanh", [g.node("Mul", [inner, g.const(f"c{g._n}_s", math.sqrt(2 / math.pi))])])
    one_plus = g.node("Add", [t, g.const(f"c{g._n}_one", 1.0)])
    return g.node("Mul", [g.node("Mul", [x, one_plus]), g.const(f"c{g._n}_half", 0.5)])


def _op(g: _Graph, op: Op, w: dict, env: dict) -> str:
    a = op.attrs
    if op.kind == "embed_layernorm":
        word, pos, tt, gamma, beta = op.weights
        ids, seg = env[op.inputs[0]], env[op.inputs[1]]
        seq = g.node("Gather", [g.node("Shape", [ids]), g.const("c_one_idx", 1, np.int64)], axis=0)
        positions = g.node("Range", [g.const("c_zero_i64", 0, np.int64), seq,
                                     g.const("c_one_i64", 1, np.int64)])
        x = g.node("Add", [g.node("Gather", [word, ids]), g.node("Gather", [pos, positions])])
        x = g.node("Add", [x, g.node("Gather", [tt, seg])])
        return g.node("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=a["eps"])
    if op.kind == "linear":
        weight, bias = op.weights
        y = g.node("Add", [g.node("MatMul", [env[op.inputs[0]], weight + ".T"]), bias])
        return y if a["activation"] == "none" else _gelu(g, y, a["activation"])
    if op.kind == "skip_layernorm":
        gamma, beta = op.weights
        x = g.node("Add", [env[op.inputs[0]], env[op.inputs[1]]])
        return g.node("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=a["eps"])
    if op.kind == "attention":
        heads, d = a["num_heads"], a["head_size"]
        qkv = g.node("Reshape", [env[op.inputs[0]],
                                 g.const(f"c{g._n}_shape5", [0, 0, 3, heads, d], np.int64)])
        qkv = g.node("Transpose", [qkv], perm=[2, 0, 3, 1, 4])  # [3, B, N, S, d]
        q, k, v = (g.node("Gather", [qkv, g.const(f"c{g._n}_i{i}", i, np.int64)], axis=0)
                   for i in range(3))
        scores = g.node("MatMul", [q, g.node("Transpose", [k], perm=[0, 1, 3, 2])])
        scores = g.node("Add", [g.node("Mul", [scores, g.const(f"c{g._n}_scale", a["scale"])]),
                                env["__mask_bias"]])
        ctx = g.node("MatMul", [g.node("Softmax", [scores], axis=-1), v])  # [B, N, S, d]
        ctx = g.node("Transpose", [ctx], perm=[0, 2, 1, 3])
        return g.node("Reshape", [ctx, g.const(f"c{g._n}_shape3", [0, 0, heads * d], np.int64)])
    raise ValueError(f"op kind {op.kind!r} has no ONNX translation")


def to_onnx(network: Network, weights: dict[str, np.ndarray], fp16: bool = False) -> onnx.ModelProto:
    """The ONNX model of network with weights (network_weights names) as initializers."""
    dtype = np.dtype(np.float16 if fp16 else np.float32)
    g = _Graph(dtype)
    for name in network.weight_names():
        arr = weights[name]
        if name.endswith(".weight") and arr.ndim == 2:  # linear: MatMul wants [in, out]
            g.const(name + ".T", np.ascontiguousarray(arr.T), dtype)
        else:
            g.const(name, arr, dtype)
    env = {n: n for n in network.inputs}
    mask = g.node("Cast", ["input_mask"], to=helper.np_dtype_to_tensor_dtype(dtype))
    mask = g.node("Unsqueeze", [mask, g.const("c_axes12", [1, 2], np.int64)])  # [B, 1, 1, S]
    env["__mask_bias"] = g.node("Mul", [g.node("Sub", [g.const("c_one", 1.0), mask]),
                                        g.const("c_mask_bias", MASK_BIAS)])
    for op in network.ops:
        env[op.output] = _op(g, op, weights, env)
    out = env[network.output]
    g.nodes.append(helper.make_node("Cast", [out], [network.output], to=TensorProto.FLOAT,
                                    name="output_cast"))
    int_input = [helper.make_tensor_value_info(n, TensorProto.INT32, ["batch", "seq"])
                 for n in network.inputs]
    output = helper.make_tensor_value_info(network.output, TensorProto.FLOAT, ["batch", "seq", 2])
    graph = helper.make_graph(g.nodes, "bert_qa", int_input, [output], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="bertqa")
    model.ir_version = 8  # readable by ONNX Runtime and TensorRT releases of the last years
    return model


def write_onnx(path, cfg, weights, fp16: bool = False) -> None:
    """Write the network of cfg with canonical weights as an ONNX file (external data if > 2 GB).
    OSErrors pass through: builder.py writes through helpers.errors.replacing, which names the path
    the user gave, not the temporary one."""
    from helpers.network import build_network, network_weights

    model = to_onnx(build_network(cfg), network_weights(cfg, weights), fp16=fp16)
    large = model.ByteSize() > 2**31 - 2**26
    onnx.save_model(model, str(path), save_as_external_data=large,
                    location=f"{Path(path).name}.data" if large else None)
