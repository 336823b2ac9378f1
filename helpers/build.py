"""Building engines: checkpoint + vocabulary + options -> an engine file.

builder.py and builder_varseqlen.py are thin command lines over this module.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from helpers import checkpoints
from helpers.config import BertConfig
from helpers.engine_file import Engine, Profile
from helpers.errors import UserError
from helpers.tokenization import check_vocab, read_vocab
from helpers.weights import Weights

PRODUCER = "bertqa 0.1"


@dataclass(frozen=True)
class Checkpoint:
    config: BertConfig
    weights: Weights
    vocab: tuple[str, ...]
    do_lower_case: bool
    amax: dict


def default_backend() -> str:
    """cuda where a GPU and the native module are present, else onnxruntime."""
    try:
        from helpers import cuda_backend
    except ImportError:
        return "onnxruntime"
    return "cuda" if cuda_backend.available()[0] else "onnxruntime"


def load_checkpoint(*, hf: str | None = None, ckpt: str | None = None, onnx: str | None = None,
                    megatron: str | None = None, config_dir: str | None = None,
                    vocab: str | None = None, do_lower_case: bool | None = None) -> Checkpoint:
    """Load exactly one checkpoint source with its vocabulary and casing.

    The vocabulary comes from `vocab`, else vocab.txt in the checkpoint (or config)
    directory; the casing from `do_lower_case`, else the checkpoint's
    tokenizer_config.json. Nothing is guessed from file names.
    """
    given = [k for k, v in (("--hf", hf), ("-m/--ckpt", ckpt), ("-x/--onnx", onnx),
                            ("--megatron", megatron)) if v]
    if len(given) != 1:
        raise UserError("give exactly one checkpoint: --hf DIR, -m/--ckpt TF_PREFIX, "
                        "-x/--onnx QAT_ONNX or --megatron FILE"
                        + (f" (got {', '.join(given)})" if given else ""))
    config_json = Path(config_dir) / "bert_config.json" if config_dir else None
    if config_json is not None and not config_json.is_file():
        config_json = Path(config_dir) / "config.json"
    amax: dict = {}
    if hf:
        cfg, weights = checkpoints.load_hf(hf)
        home = Path(hf)
    elif ckpt:
        cfg, weights = checkpoints.load_tf(ckpt, config_json)
        home = Path(config_dir) if config_dir else Path(ckpt).parent
    elif onnx:
        cfg, weights, amax = checkpoints.load_qat_onnx(onnx, config_json)
        home = Path(config_dir) if config_dir else Path(onnx).parent
    else:
        if config_json is None:
            raise UserError("--megatron needs -c/--config-dir with the model's bert_config.json")
        cfg, weights = checkpoints.load_megatron(megatron, config_json)
        home = Path(config_dir)
    vocab_path = Path(vocab) if vocab else home / "vocab.txt"
    if not vocab and not vocab_path.is_file() and config_dir:
        vocab_path = Path(config_dir) / "vocab.txt"
    if not vocab_path.is_file():
        raise UserError(f"no vocabulary at {vocab_path}; pass it with -v/--vocab-file")
    tokens = read_vocab(vocab_path)
    check_vocab(tokens, cfg.vocab_size)
    if do_lower_case is None:
        do_lower_case = _casing_from(home, config_dir)
    return Checkpoint(cfg, weights, tuple(tokens), do_lower_case, amax)


def _casing_from(*dirs) -> bool:
    for d in dirs:
        if d and (Path(d) / "tokenizer_config.json").is_file():
            try:
                tc = json.loads((Path(d) / "tokenizer_config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise UserError(f"cannot read {Path(d) / 'tokenizer_config.json'}: {exc}") from None
            if "do_lower_case" in tc:
                return bool(tc["do_lower_case"])
    raise UserError("the checkpoint does not say whether its vocabulary is cased: "
                    "pass --uncased or --cased")


# What the checkpoint loaders may read from a checkpoint's folder (--hf DIR, -c DIR, the folder of
# -m/-x): configs, tokenizer settings and shard indexes (.json), vocab.txt, weights (.safetensors,
# .bin). An existing file of these kinds there is an input; other files (an engine built there
# before) may be overwritten. TensorFlow checkpoints are PREFIX.index and PREFIX.data-*.
CHECKPOINT_SUFFIXES = (".json", ".txt", ".safetensors", ".bin")


def checkpoint_files(hf=None, ckpt=None, onnx=None, megatron=None, config_dir=None,
                     vocab=None) -> list[tuple[Path, str]]:
    """The files load_checkpoint may read for these options, (path, "the ..."), so that no output of
    the build overwrites one."""
    files = [(Path(p), f"the {opt} file") for opt, p in (("-x/--onnx", onnx), ("--megatron", megatron),
                                                         ("-v/--vocab-file", vocab)) if p]
    folders = [(Path(d), opt) for opt, d in (("--hf", hf), ("-c/--config-dir", config_dir)) if d]
    folders += [(Path(p).parent, opt) for opt, p in (("-m/--ckpt", ckpt), ("-x/--onnx", onnx)) if p]
    for folder, opt in folders:
        if folder.is_dir():
            files += [(f, f"a file of the {opt} checkpoint") for f in folder.iterdir()
                      if f.suffix in CHECKPOINT_SUFFIXES and f.is_file()]
    if ckpt:
        prefix = Path(ckpt.removesuffix(".index"))
        files += [(f, "a file of the -m/--ckpt checkpoint") for f in prefix.parent.glob(prefix.name + ".*")
                  if f.suffix == ".index" or ".data-" in f.name]
    return files


def profiles_from(batch_sizes: list[int], seq_lengths: list[int], max_position: int) -> list[Profile]:
    """One profile per (batch, sequence length), as demoBERT's -b/-s pairs."""
    for b in batch_sizes:
        if b < 1:
            raise UserError(f"batch size must be at least 1, got {b}")
    for s in seq_lengths:
        if not 1 <= s <= max_position:
            raise UserError(f"sequence length {s} is outside 1..{max_position} "
                            "(the model's max_position_embeddings)")
    return [Profile(b, s) for s in sorted(set(seq_lengths)) for b in sorted(set(batch_sizes))]


def build_engine(ck: Checkpoint, backend: str, profiles: list[Profile], precision: str = "fp32",
                 timing_cache: str | None = None, workspace_mb: int | None = None,
                 verbose: bool = False, packed: bool = False) -> Engine:
    """packed=True: a variable sequence length engine (one profile: max batch, max seq)."""
    if precision in ("int8", "fp8"):
        raise UserError(f"{precision} engines are not supported yet; build with --fp16 or fp32")
    if backend == "onnxruntime":
        if packed:
            raise UserError("variable sequence length (packed) engines need the cuda backend; the onnxruntime "
                            "backend runs padded batches only: use builder.py for a padded onnxruntime engine")
        from helpers import ort_backend

        return ort_backend.build_engine(ck.config, ck.weights, list(ck.vocab), ck.do_lower_case,
                                        profiles, precision, producer=PRODUCER)
    if backend == "cuda":
        from helpers import cuda_backend

        ok, why = cuda_backend.available()
        if not ok:
            # The CPU alternative exists for padded engines only: packed ones need the GPU.
            cpu = "" if packed else "; or build a CPU engine with --backend onnxruntime"
            raise UserError(f"cannot build a cuda engine here: {why}{cpu}")
        return cuda_backend.build_engine(ck.config, ck.weights, list(ck.vocab), ck.do_lower_case,
                                         profiles, precision, timing_cache=timing_cache,
                                         workspace_mb=workspace_mb, verbose=verbose, packed=packed)
    raise UserError(f"unknown backend {backend!r}: choose onnxruntime or cuda")
