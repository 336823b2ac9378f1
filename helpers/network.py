"""BERT question answering as data: one network description for every backend.

The builder turns a BertConfig into a Network (a list of Ops over named
activations and named weights) once. Each backend consumes the same list:
helpers/onnx_export.py translates it to an ONNX graph (ONNX Runtime on the CPU,
and the --onnx-out export for TensorRT users), and the native CUDA runtime in
infer_c/ executes it op by op. The description travels inside the engine file
(Network.to_dict), so a runtime never re-derives the graph from the config.

Ops (inputs and outputs are activation names; weights are engine tensor names):
  embed_layernorm  (input_ids, segment_ids) -> [B,S,H]
                   weights word, position, token_type, gamma, beta; attrs eps
  linear           x[B,S,K] -> x @ W^T + b [B,S,N]; weights (W [N,K], b [N]);
                   attrs activation "none" | "gelu" | "gelu_tanh" (fused epilogue)
  attention        (qkv [B,S,3H], input_mask [B,S]) -> context [B,S,H];
                   qkv holds Q, K, V in that order, each [num_heads, head_size];
                   padding positions (mask 0) get no attention weight;
                   attrs num_heads, head_size, scale
  skip_layernorm   (x, residual) -> LayerNorm(x + residual); weights gamma, beta; attrs eps
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from helpers.config import BertConfig
from helpers.weights import Weights, expected_shapes, fuse_qkv

INPUTS = ("input_ids", "segment_ids", "input_mask")
OUTPUT = "cls_squad_logits"  # [B, S, 2]: start and end logits, demoBERT's output name
OP_KINDS = ("embed_layernorm", "linear", "attention", "skip_layernorm")


@dataclass(frozen=True)
class Op:
    kind: str
    inputs: tuple[str, ...]
    output: str
    weights: tuple[str, ...] = ()
    attrs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "inputs": list(self.inputs), "output": self.output,
                "weights": list(self.weights), "attrs": dict(self.attrs)}

    @classmethod
    def from_dict(cls, d: dict) -> "Op":
        if d["kind"] not in OP_KINDS:
            raise ValueError(f"unknown op kind {d['kind']!r}")
        return cls(d["kind"], tuple(d["inputs"]), d["output"], tuple(d["weights"]), dict(d["attrs"]))


@dataclass(frozen=True)
class Network:
    config: BertConfig
    ops: tuple[Op, ...]
    inputs: tuple[str, ...] = INPUTS
    output: str = OUTPUT

    def to_dict(self) -> dict:
        return {"inputs": list(self.inputs), "output": self.output,
                "ops": [op.to_dict() for op in self.ops]}

    @classmethod
    def from_dict(cls, config: BertConfig, d: dict) -> "Network":
        return cls(config, tuple(Op.from_dict(o) for o in d["ops"]), tuple(d["inputs"]), d["output"])

    def weight_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for op in self.ops:
            seen.update(dict.fromkeys(op.weights))
        return list(seen)


def build_network(cfg: BertConfig) -> Network:
    """The BERT-for-question-answering graph of cfg (post-LayerNorm BERT, as Google's)."""
    eps = cfg.layer_norm_eps
    ops = [Op("embed_layernorm", ("input_ids", "segment_ids"), "hidden_0",
              ("embeddings.word", "embeddings.position", "embeddings.token_type",
               "embeddings.ln.gamma", "embeddings.ln.beta"), {"eps": eps})]
    for i in range(cfg.num_layers):
        p, x = f"layers.{i}.", f"hidden_{i}"
        ops += [
            Op("linear", (x,), p + "qkv", (p + "qkv.weight", p + "qkv.bias"), {"activation": "none"}),
            Op("attention", (p + "qkv", "input_mask"), p + "context", (),
               {"num_heads": cfg.num_heads, "head_size": cfg.head_size,
                "scale": 1.0 / math.sqrt(cfg.head_size)}),
            Op("linear", (p + "context",), p + "attn_proj", (p + "attn_out.weight", p + "attn_out.bias"),
               {"activation": "none"}),
            Op("skip_layernorm", (p + "attn_proj", x), p + "attn_ln",
               (p + "attn_ln.gamma", p + "attn_ln.beta"), {"eps": eps}),
            Op("linear", (p + "attn_ln",), p + "ffn_act", (p + "ffn_in.weight", p + "ffn_in.bias"),
               {"activation": cfg.hidden_act}),
            Op("linear", (p + "ffn_act",), p + "ffn_proj", (p + "ffn_out.weight", p + "ffn_out.bias"),
               {"activation": "none"}),
            Op("skip_layernorm", (p + "ffn_proj", p + "attn_ln"), f"hidden_{i + 1}",
               (p + "ffn_ln.gamma", p + "ffn_ln.beta"), {"eps": eps}),
        ]
    ops.append(Op("linear", (f"hidden_{cfg.num_layers}",), OUTPUT, ("qa.weight", "qa.bias"),
                  {"activation": "none"}))
    return Network(cfg, tuple(ops))


def _fused_away(name: str) -> bool:
    """Whether a canonical weight is one of the Q, K, V projections the network fuses."""
    return any(f".{k}." in name for k in ("query", "key", "value"))


def network_weights(cfg: BertConfig, weights: Weights) -> dict[str, np.ndarray]:
    """The canonical weights transformed for the network: Q, K and V fused per layer."""
    out = {n: w for n, w in weights.items() if not _fused_away(n)}
    for i in range(cfg.num_layers):
        out[f"layers.{i}.qkv.weight"], out[f"layers.{i}.qkv.bias"] = fuse_qkv(weights, i)
    return out


def weight_shapes(cfg: BertConfig, output_rows: int = 2) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor build_network(cfg) reads (what network_weights gives): the
    canonical shapes with Q, K and V fused, the output linear's 2 rows padded to output_rows (the
    cuda backend pads them to 8). Engine loading checks a file's tensors against it."""
    h = cfg.hidden_size
    shapes = {n: s for n, s in expected_shapes(cfg).items() if not _fused_away(n)}
    for i in range(cfg.num_layers):
        shapes[f"layers.{i}.qkv.weight"], shapes[f"layers.{i}.qkv.bias"] = (3 * h, h), (3 * h,)
    shapes["qa.weight"], shapes["qa.bias"] = (output_rows, h), (output_rows,)
    return shapes
