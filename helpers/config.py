"""BERT model configuration as a frozen dataclass."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from helpers.errors import CheckpointError

# Activation names as checkpoints spell them, mapped to the two functions BERT uses.
_GELU_KINDS = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_tanh",
               "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh"}


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"  # "gelu" (erf, as BERT) or "gelu_tanh"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise CheckpointError(
                f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        if self.hidden_act not in ("gelu", "gelu_tanh"):
            raise CheckpointError(f"unsupported activation {self.hidden_act!r}: BERT uses gelu")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BertConfig":
        """Read either our own field names or those of a Hugging Face / Google BERT config."""
        try:
            if "num_layers" in d:  # our own serialisation
                return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})
            act = d.get("hidden_act", "gelu")
            if act not in _GELU_KINDS:
                raise CheckpointError(f"unsupported activation {act!r}: BERT uses gelu")
            return cls(
                vocab_size=int(d["vocab_size"]),
                hidden_size=int(d["hidden_size"]),
                num_layers=int(d["num_hidden_layers"]),
                num_heads=int(d["num_attention_heads"]),
                intermediate_size=int(d["intermediate_size"]),
                max_position_embeddings=int(d.get("max_position_embeddings", 512)),
                type_vocab_size=int(d.get("type_vocab_size", 2)),
                layer_norm_eps=float(d.get("layer_norm_eps", 1e-12)),
                hidden_act=_GELU_KINDS[act],
            )
        except KeyError as exc:
            raise CheckpointError(f"BERT config lacks the field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"BERT config has a malformed field: {exc}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> "BertConfig":
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"no config file at {path}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path} is not a JSON BERT config ({exc})") from None
        if not isinstance(d, dict):
            raise CheckpointError(f"{path} is not a JSON BERT config (top level is not an object)")
        return cls.from_dict(d)
