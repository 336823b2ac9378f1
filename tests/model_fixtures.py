"""Small Hugging Face BERT QA models written to disk, shared by the tests that need one."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (CI, developers); BERTQA_SHARED_DATA where it travels elsewhere.
SHARED = Path(os.environ.get("BERTQA_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_MODEL = REPO / "models" / "minilm-l6-squad"


def cuda_backend_or_skip():
    """helpers.cuda_backend where the native module is built and a GPU is usable; else skip the test."""
    import pytest

    try:
        from helpers import cuda_backend
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"helpers.cuda_backend does not import: {exc}")
    ok, why = cuda_backend.available()
    if not ok:
        pytest.skip(f"CUDA engine not available: {why}")
    return cuda_backend


def write_vocab(path: Path, size: int) -> list[str]:
    """A WordPiece vocabulary of `size` entries: BERT's special tokens, letters, words, pieces."""
    base = ["[PAD]"] + [f"[unused{i}]" for i in range(4)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789.,?!'\"-()")
    words = ["the", "a", "of", "is", "in", "what", "who", "when", "where", "paris", "france",
             "capital", "city", "river", "seine", "built", "tower", "eiffel", "year", "people"]
    pieces = ["##" + c for c in letters[:26]] + ["##s", "##ed", "##ing"]
    tokens = base + letters + words + pieces
    tokens += [f"tok{i}" for i in range(size - len(tokens))]
    path.write_text("\n".join(tokens[:size]) + "\n", encoding="utf-8")
    return tokens[:size]


def save_random_hf_model(out: Path, *, vocab_size=120, hidden=64, layers=2, heads=4, inter=128,
                         max_pos=128, seed=0, safe=True) -> Path:
    """A random BertForQuestionAnswering saved as a Hugging Face directory with vocab + casing."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=inter,
                     max_position_embeddings=max_pos)
    model = BertForQuestionAnswering(cfg).eval()
    with torch.no_grad():  # LayerNorm and biases away from their 1/0 init, so every weight matters
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=safe)
    write_vocab(out / "vocab.txt", vocab_size)
    (out / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    return out


def hf_logits(model_dir: Path, input_ids, segment_ids, input_mask) -> np.ndarray:
    """Hugging Face transformers' logits [B, S, 2] in float32 (the independent reference)."""
    import torch
    from transformers import BertForQuestionAnswering

    model = BertForQuestionAnswering.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(input_ids, dtype=torch.long),
                    token_type_ids=torch.as_tensor(segment_ids, dtype=torch.long),
                    attention_mask=torch.as_tensor(input_mask, dtype=torch.long))
    return np.stack([out.start_logits.numpy(), out.end_logits.numpy()], axis=-1)


def random_inputs(rng, batch: int, seq: int, vocab_size: int, min_len: int = 1):
    """Random ids and segments with a random valid length per row (prefix mask)."""
    ids = rng.integers(0, vocab_size, (batch, seq), dtype=np.int32)
    seg = rng.integers(0, 2, (batch, seq), dtype=np.int32)
    mask = np.zeros((batch, seq), np.int32)
    for b, n in enumerate(rng.integers(min_len, seq + 1, batch)):
        mask[b, :n] = 1
    mask[0] = 1  # one full row in every batch
    return ids, seg, mask
