"""The canonical set of BERT question-answering weights.

Every checkpoint loader (helpers/checkpoints.py) returns ``(BertConfig, Weights)``
where Weights maps the names below to float32 numpy arrays. Linear weights are
stored as [out_features, in_features] (the orientation of torch.nn.Linear);
TensorFlow kernels are transposed on load. Q, K and V stay separate here; the
network builder fuses them into one QKV projection (fuse_qkv) at build time.

    embeddings.word                 [vocab, H]
    embeddings.position             [max_position, H]
    embeddings.token_type           [type_vocab, H]
    embeddings.ln.gamma / .beta     [H]
    layers.{i}.query.weight         [H, H]     .bias [H]
    layers.{i}.key.weight           [H, H]     .bias [H]
    layers.{i}.value.weight         [H, H]     .bias [H]
    layers.{i}.attn_out.weight      [H, H]     .bias [H]
    layers.{i}.attn_ln.gamma/.beta  [H]
    layers.{i}.ffn_in.weight        [I, H]     .bias [I]
    layers.{i}.ffn_out.weight       [H, I]     .bias [H]
    layers.{i}.ffn_ln.gamma/.beta   [H]
    qa.weight                       [2, H]     qa.bias [2]   (row 0 start, row 1 end)

Quantization ranges from QAT checkpoints travel beside the weights as a
``dict[str, float]`` of amax values keyed by "<linear name>.weight_amax" or
"<linear name>.input_amax" (e.g. "layers.0.query.input_amax").
"""
from __future__ import annotations

import numpy as np

from helpers.config import BertConfig
from helpers.errors import CheckpointError

Weights = dict[str, np.ndarray]

LAYER_LINEARS = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")
LAYER_NORMS = ("attn_ln", "ffn_ln")


def expected_shapes(cfg: BertConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor the canonical weights must hold, in a stable order."""
    h, i = cfg.hidden_size, cfg.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word": (cfg.vocab_size, h),
        "embeddings.position": (cfg.max_position_embeddings, h),
        "embeddings.token_type": (cfg.type_vocab_size, h),
        "embeddings.ln.gamma": (h,),
        "embeddings.ln.beta": (h,),
    }
    linear = {"query": (h, h), "key": (h, h), "value": (h, h), "attn_out": (h, h),
              "ffn_in": (i, h), "ffn_out": (h, i)}
    for layer in range(cfg.num_layers):
        p = f"layers.{layer}."
        for name in LAYER_LINEARS:
            shapes[p + name + ".weight"] = linear[name]
            shapes[p + name + ".bias"] = (linear[name][0],)
        for name in LAYER_NORMS:
            shapes[p + name + ".gamma"] = (h,)
            shapes[p + name + ".beta"] = (h,)
    shapes["qa.weight"] = (2, h)
    shapes["qa.bias"] = (2,)
    return shapes


def check_weights(cfg: BertConfig, weights: Weights, source: str = "checkpoint") -> Weights:
    """Check names and shapes against cfg; return the weights as contiguous float32.

    Raises CheckpointError naming the missing, unexpected or mis-shaped tensors.
    """
    shapes = expected_shapes(cfg)
    missing = [n for n in shapes if n not in weights]
    unexpected = [n for n in weights if n not in shapes]
    wrong = [f"{n} {tuple(weights[n].shape)} (config says {shapes[n]})"
             for n in shapes if n in weights and tuple(weights[n].shape) != shapes[n]]
    problems = []
    if missing:
        problems.append("missing " + name_list(missing))
    if unexpected:
        problems.append("unexpected " + name_list(unexpected))
    if wrong:
        problems.append("shape mismatch " + name_list(wrong))
    if problems:
        raise CheckpointError(f"{source} does not match its BERT config: " + "; ".join(problems))
    return {n: np.ascontiguousarray(weights[n], dtype=np.float32) for n in shapes}


def bf16_to_float32(raw: np.ndarray) -> np.ndarray:
    """bfloat16 values held as their uint16 bit patterns -> float32, exactly (numpy has no bfloat16;
    a bfloat16 is the top half of the float32 with the same value)."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def fuse_qkv(weights: Weights, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """The fused QKV projection of one layer: weight [3H, H] (rows Q, then K, then V), bias [3H]."""
    p = f"layers.{layer}."
    w = np.concatenate([weights[p + n + ".weight"] for n in ("query", "key", "value")], axis=0)
    b = np.concatenate([weights[p + n + ".bias"] for n in ("query", "key", "value")], axis=0)
    return w, b


def random_weights(cfg: BertConfig, seed: int = 0, scale: float = 0.02) -> Weights:
    """Random weights of the right shapes (BERT's init: N(0, 0.02), LayerNorm near 1/0)."""
    rng = np.random.default_rng(seed)
    out: Weights = {}
    for name, shape in expected_shapes(cfg).items():
        if name.endswith(".gamma"):
            out[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif name.endswith((".beta", ".bias")):
            out[name] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
        else:
            out[name] = (scale * rng.standard_normal(shape)).astype(np.float32)
    return out


def name_list(items: list[str], limit: int = 6) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
