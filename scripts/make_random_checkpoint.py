#!/usr/bin/env python3
"""Write a Hugging Face BERT QA directory with random weights (for speed benchmarks and GPU tests)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESETS = {  # layers, hidden, heads, intermediate
    "bert-base": (12, 768, 12, 3072),
    "bert-large": (24, 1024, 16, 4096),
    "minilm-l6": (6, 384, 12, 1536),
}


def hf_names(layer: int) -> dict[str, str]:
    p = f"bert.encoder.layer.{layer}."
    return {"query": p + "attention.self.query", "key": p + "attention.self.key",
            "value": p + "attention.self.value", "attn_out": p + "attention.output.dense",
            "ffn_in": p + "intermediate.dense", "ffn_out": p + "output.dense",
            "attn_ln": p + "attention.output.LayerNorm", "ffn_ln": p + "output.LayerNorm"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("preset", choices=sorted(PRESETS))
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from safetensors.numpy import save_file

    from helpers.config import BertConfig
    from helpers.weights import random_weights

    layers, hidden, heads, inter = PRESETS[args.preset]
    cfg = BertConfig(30522, hidden, layers, heads, inter)
    w = random_weights(cfg, seed=args.seed)
    out = {"bert.embeddings.word_embeddings.weight": w["embeddings.word"],
           "bert.embeddings.position_embeddings.weight": w["embeddings.position"],
           "bert.embeddings.token_type_embeddings.weight": w["embeddings.token_type"],
           "bert.embeddings.LayerNorm.weight": w["embeddings.ln.gamma"],
           "bert.embeddings.LayerNorm.bias": w["embeddings.ln.beta"],
           "qa_outputs.weight": w["qa.weight"], "qa_outputs.bias": w["qa.bias"]}
    for i in range(layers):
        for ours, theirs in hf_names(i).items():
            a, b = ("gamma", "beta") if ours.endswith("_ln") else ("weight", "bias")
            out[theirs + ".weight"] = w[f"layers.{i}.{ours}.{a}"]
            out[theirs + ".bias"] = w[f"layers.{i}.{ours}.{b}"]
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.astype(np.float16) for k, v in out.items()}, str(args.out / "model.safetensors"))
    (args.out / "config.json").write_text(json.dumps({
        "architectures": ["BertForQuestionAnswering"], "model_type": "bert", "vocab_size": 30522,
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": inter, "max_position_embeddings": 512, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "hidden_act": "gelu"}, indent=1))
    (args.out / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    vocab = Path(__file__).resolve().parents[2] / "shared/data/vocab/bert-base-uncased-vocab.txt"
    tokens = vocab.read_text(encoding="utf-8") if vocab.is_file() else \
        "\n".join(["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                  + [f"tok{i}" for i in range(30522 - 104)]) + "\n"
    (args.out / "vocab.txt").write_text(tokens, encoding="utf-8")
    print(f"wrote {args.out}: {args.preset}, random weights (seed {args.seed}), fp16 safetensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
