"""BERT model configuration as a frozen dataclass."""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.errors import CheckpointError

# Activation names as checkpoints spell them, mapped to the two functions BERT uses.
_GELU_KINDS = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_tanh",
               "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh"}
# Our field names as Hugging Face / Google configs spell them (the others are spelled alike).
_HF_KEYS = {"num_layers": "num_hidden_layers", "num_heads": "num_attention_heads"}
_INT_FIELDS = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
               "max_position_embeddings", "type_vocab_size")
_INT_LIMIT = 1 << 30  # the C++ engine reader's bound as well (infer_c/engine_file.cpp positive_int)


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
        # Normalised in place (numpy integers -> int) so equality and to_dict see plain values.
        for name, value in _validated(dataclasses.asdict(self), {}).items():
            object.__setattr__(self, name, value)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BertConfig":
        """Read either our own field names or those of a Hugging Face / Google BERT config.
        A CheckpointError names the field as d spells it."""
        ours = "num_layers" in d  # our own serialisation
        keys = {} if ours else _HF_KEYS
        values = {}
        for f in dataclasses.fields(cls):
            key = keys.get(f.name, f.name)
            if key in d:
                values[f.name] = d[key]
            elif f.default is dataclasses.MISSING:
                raise CheckpointError(f"it lacks the field {key!r}")
        if not ours and "hidden_act" in values:
            act = values["hidden_act"]
            values["hidden_act"] = _GELU_KINDS.get(act, act) if isinstance(act, str) else act
        return cls(**_validated(values, keys))

    @classmethod
    def from_json_file(cls, path: str | Path) -> "BertConfig":
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"no config file at {path}") from None
        except OSError as exc:
            raise CheckpointError(f"cannot read BERT config {path}: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path} is not a JSON BERT config ({exc})") from None
        if not isinstance(d, dict):
            raise CheckpointError(f"{path} is not a JSON BERT config (top level is not an object)")
        try:
            return cls.from_dict(d)
        except CheckpointError as exc:
            raise CheckpointError(f"BERT config {path} is unusable: {exc}; correct it (it must "
                                  "describe the checkpoint's model)") from None


def _validated(values: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    """values (our field names) checked and normalised; a CheckpointError names a bad field as
    keys spells it. The one place that says what a usable BERT config is."""
    out = dict(values)
    for name in _INT_FIELDS:
        if name in out:
            out[name] = _positive_int(out[name], keys.get(name, name))
    if "layer_norm_eps" in out:
        out["layer_norm_eps"] = _epsilon(out["layer_norm_eps"], "layer_norm_eps")
    if "hidden_act" in out and out["hidden_act"] not in ("gelu", "gelu_tanh"):
        raise CheckpointError(f"hidden_act {_shown(out['hidden_act'])} is not supported "
                              f"(BERT uses gelu; known: {', '.join(_GELU_KINDS)})")
    if "hidden_size" in out and "num_heads" in out and out["hidden_size"] % out["num_heads"]:
        raise CheckpointError(f"hidden_size {out['hidden_size']} is not a multiple of "
                              f"{keys.get('num_heads', 'num_heads')} {out['num_heads']}")
    return out


def _positive_int(value: Any, key: str) -> int:
    # bool is an int in Python, and int() would truncate 384.7: both would build a wrong model.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise CheckpointError(f"{key} must be a positive integer, got {_shown(value)}")
    if value > _INT_LIMIT:
        raise CheckpointError(f"{key} is {value}, over the limit of 2^30")
    return int(value)


def _epsilon(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not (math.isfinite(value) and 0 < value < 1):
        raise CheckpointError(f"{key} must be a number between 0 and 1 (exclusive), got {_shown(value)}")
    return float(value)


def _shown(value: Any) -> str:
    """value as the JSON file spells it (true, "12", 384.7), else repr."""
    try:
        return json.dumps(value)[:60]
    except (TypeError, ValueError):
        return repr(value)[:60]
