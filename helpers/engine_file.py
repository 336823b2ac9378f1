"""The engine file: one versioned file per built engine, for every backend.

Layout (all integers little-endian):

    0   8 bytes  magic b"BQAENGN\\0"
    8   u32      format version (FORMAT_VERSION)
    12  u32      reserved, 0
    16  u64      header size in bytes
    24  u64      data size in bytes
    32  u32      CRC-32 of the header
    36  u32      CRC-32 of the data
    40  24 bytes reserved, 0
    64  header   UTF-8 JSON (see below)
        padding  zeros up to a multiple of ALIGN
        data     the tensors, each starting at a multiple of ALIGN from the data start

The JSON header holds: "backend" ("onnxruntime" | "cuda"), "precision",
"config" (BertConfig), "network" (helpers.network), "profiles" (list of
{"batch", "seq"}), "vocab" (list of tokens), "do_lower_case", "tensors"
(list of {"name", "dtype", "shape", "offset", "nbytes"}, offsets relative to the
data start), "producer", and "backend_info" (what the backend chose at build
time, e.g. the GPU architecture and GEMM algorithms), and "sequence_mode":
"padded" (fixed [batch, seq] inputs; files without the field are padded) or
"packed" (variable sequence length, builder_varseqlen.py: one profile {max
batch, max seq} and "token_capacity" = max batch x max seq tokens per run).
The C++ runtime reads the same layout (infer_c/engine_file.h).
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers.config import BertConfig
from helpers.errors import CheckpointError, EngineFileError, replacing
from helpers.network import Network, weight_shapes
from helpers.weights import name_list

MAGIC = b"BQAENGN\0"
FORMAT_VERSION = 1
ALIGN = 256
PREAMBLE = struct.Struct("<8sIIQQII24x")  # 64 bytes
BACKENDS = ("onnxruntime", "cuda")
SEQUENCE_MODES = ("padded", "packed")
DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "int32": np.int32}
# backend -> precision -> the dtypes its weights may have. ONNX Runtime runs fp32 only
# (helpers/ort_backend.py) and widens float16 weights exactly; the cuda runtime reads the
# weights in the precision's own type (infer_c/bert_runtime.cpp).
PRECISIONS = {"onnxruntime": {"fp32": ("float32", "float16")},
              "cuda": {"fp32": ("float32",), "fp16": ("float16",)}}


@dataclass(frozen=True)
class Profile:
    batch: int  # largest batch the profile runs
    seq: int    # sequence length the profile runs


@dataclass(frozen=True)
class Engine:
    """A loaded engine file: everything a backend needs to run the network."""
    backend: str
    precision: str
    config: BertConfig
    network: Network
    profiles: tuple[Profile, ...]
    vocab: tuple[str, ...]
    do_lower_case: bool
    tensors: dict  # name -> numpy array (read-only views of the file's data)
    backend_info: dict
    producer: str = ""
    sequence_mode: str = "padded"  # "padded" | "packed" (variable sequence length)
    token_capacity: int = 0        # packed: max batch x max seq tokens per run

    @property
    def packed(self) -> bool:
        return self.sequence_mode == "packed"

    def profile_for(self, batch: int, seq: int, shorter_seq: bool = False) -> Profile:
        """The smallest profile that runs (batch, seq), or a UserError naming the profiles.
        Packed engines, and runners that take any shape (shorter_seq=True: ONNX Runtime), run any
        sequence length up to a profile's; the cuda engine's padded profiles are exact lengths."""
        if self.packed or shorter_seq:
            fits = [p for p in self.profiles if p.seq >= seq and p.batch >= batch]
        else:
            fits = [p for p in self.profiles if p.seq == seq and p.batch >= batch]
        if not fits:
            have = ", ".join(f"B<={p.batch} S={p.seq}" for p in self.profiles)
            raise EngineFileError(
                f"batch {batch} x sequence length {seq} is outside this engine's profiles ({have}); "
                "rebuild with builder.py -b/-s covering it")
        return min(fits, key=lambda p: p.batch)


def check_sequence_mode(engine: Engine, where: str = "the engine") -> None:
    """EngineFileError unless the sequence mode and (packed) its profile and capacity agree."""
    if engine.sequence_mode not in SEQUENCE_MODES:
        raise EngineFileError(f"{where}: unknown sequence_mode {engine.sequence_mode!r} "
                              f"(expected {' or '.join(SEQUENCE_MODES)})")
    if engine.packed:
        if len(engine.profiles) != 1 or engine.token_capacity != engine.profiles[0].batch * engine.profiles[0].seq:
            raise EngineFileError(f"{where}: a packed engine has one profile (max batch, max seq) and "
                                  "token_capacity = max batch x max seq")


def _pad(n: int) -> int:
    return (-n) % ALIGN


def save_engine(path: str | Path, engine: Engine) -> None:
    """Write engine to path atomically (a partial file never replaces a good one, and none is left
    behind: not after a failed write, nor after Ctrl-C)."""
    table, offset = [], 0
    blobs = []
    for name, arr in engine.tensors.items():
        arr = np.ascontiguousarray(arr)
        dtype = arr.dtype.name
        if dtype not in DTYPES:
            raise ValueError(f"tensor {name} has unsupported dtype {dtype}")
        table.append({"name": name, "dtype": dtype, "shape": list(arr.shape),
                      "offset": offset, "nbytes": arr.nbytes})
        blobs.append((arr, _pad(arr.nbytes)))
        offset += arr.nbytes + _pad(arr.nbytes)
    header = {
        "format_version": FORMAT_VERSION, "producer": engine.producer, "backend": engine.backend,
        "precision": engine.precision, "config": engine.config.to_dict(),
        "network": engine.network.to_dict(),
        "profiles": [{"batch": p.batch, "seq": p.seq} for p in engine.profiles],
        "vocab": list(engine.vocab), "do_lower_case": engine.do_lower_case,
        "backend_info": engine.backend_info, "tensors": table,
        "sequence_mode": engine.sequence_mode,
    }
    if engine.packed:
        header["token_capacity"] = int(engine.token_capacity)
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    crc = 0
    for arr, pad in blobs:
        crc = zlib.crc32(memoryview(arr).cast("B"), crc)
        crc = zlib.crc32(b"\0" * pad, crc)
    pre = PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, len(hbytes), offset, zlib.crc32(hbytes), crc)
    # Through helpers.errors.replacing: a failed or interrupted write (full disk, Ctrl-C) never
    # leaves a cut-off engine where a good one was, nor a temporary file behind.
    with replacing(path, "engine file") as tmp, open(tmp, "wb") as f:
        f.write(pre)
        f.write(hbytes)
        f.write(b"\0" * _pad(len(pre) + len(hbytes)))
        for arr, pad in blobs:
            f.write(memoryview(arr).cast("B"))
            f.write(b"\0" * pad)


def load_engine(path: str | Path, backend: str | None = None, tensors: bool = True) -> Engine:
    """Read and verify an engine file; backend, if given, must match the file's.

    tensors=False reads and checks only the preamble and header (for a backend
    whose native runtime reads and verifies the weights itself); the tensor table
    in the header is checked against the config either way.
    """
    path = Path(path)
    if backend is not None and backend not in BACKENDS:  # a caller's typo, not the file's fault
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    data, size = _read(path, tensors)
    where = f"{path} is not a usable engine file"
    hbytes, view, dsize = _verified_parts(data, size, tensors, where)
    try:
        h = json.loads(hbytes.decode("utf-8"))
        table = _tensor_table(h["tensors"], dsize, where)
        engine = _engine_from_header(h, table, view if tensors else None, where)
        if backend is not None and engine.backend != backend:  # named first: the likelier mistake
            raise EngineFileError(f"{path} was built for the {engine.backend} backend, not {backend}; "
                                  f"rebuild it with builder.py --backend {backend}")
        problem = _inconsistency(engine, table)
    except CheckpointError as exc:  # the header's config is not a usable BERT config
        raise EngineFileError(_inconsistent(path, f"config: {exc}")) from None
    except EngineFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EngineFileError(f"{where}: its header is malformed ({exc!s})") from None
    if problem:
        raise EngineFileError(_inconsistent(path, problem))
    return engine


def _read(path: Path, tensors: bool) -> tuple[bytes, int]:
    """(the whole file, or its preamble and header when not tensors; the file's size)."""
    try:
        if tensors:
            data = path.read_bytes()
            return data, len(data)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(PREAMBLE.size)
            if len(data) == PREAMBLE.size and data[:8] == MAGIC:
                # min: a corrupt header size must not ask for more memory than the file holds
                data += f.read(min(PREAMBLE.unpack_from(data)[3], size))
        return data, size
    except FileNotFoundError:
        raise EngineFileError(f"no engine file at {path}; build one with builder.py -o {path}") from None
    except IsADirectoryError:
        raise EngineFileError(f"{path} is a directory, not an engine file") from None
    except OSError as exc:
        raise EngineFileError(f"cannot read engine file {path}: {exc.strerror}") from None


def _verified_parts(data: bytes, size: int, tensors: bool, where: str) -> tuple[bytes, memoryview, int]:
    """(header bytes, data view, data size) once magic, version, size and checksums agree."""
    if len(data) < PREAMBLE.size or data[:8] != MAGIC:
        raise EngineFileError(f"{where}: it does not start with the engine magic (a foreign file?)")
    magic, version, _, hsize, dsize, hcrc, dcrc = PREAMBLE.unpack_from(data)
    if version != FORMAT_VERSION:
        raise EngineFileError(f"{where}: it has format version {version}, this program reads "
                              f"version {FORMAT_VERSION}; rebuild it with this builder.py")
    hstart = PREAMBLE.size
    dstart = hstart + hsize + _pad(hstart + hsize)
    if size != dstart + dsize:
        raise EngineFileError(f"{where}: it is {size} bytes but its preamble says "
                              f"{dstart + dsize} (truncated or appended to)")
    hbytes = bytes(data[hstart:hstart + hsize])
    if zlib.crc32(hbytes) != hcrc:
        raise EngineFileError(f"{where}: its header checksum does not match (corrupt file)")
    view = memoryview(data)[dstart:]
    if tensors and zlib.crc32(view) != dcrc:
        raise EngineFileError(f"{where}: its weights checksum does not match (corrupt file)")
    return hbytes, view, dsize


@dataclass(frozen=True)
class _TensorEntry:
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int


def _tensor_table(entries: list, dsize: int, where: str) -> dict[str, _TensorEntry]:
    """The header's tensor list by name, each entry well-formed and inside the data."""
    table = {}
    for t in entries:
        name = t["name"]
        shape = tuple(_whole(d, f"tensor {name} shape", 0) for d in t["shape"])
        entry = _TensorEntry(np.dtype(DTYPES[t["dtype"]]), shape, _whole(t["offset"], "offset", 0),
                             _whole(t["nbytes"], "nbytes", 0))
        count = int(np.prod(shape, dtype=np.int64))
        if count * entry.dtype.itemsize != entry.nbytes or entry.offset + entry.nbytes > dsize:
            raise EngineFileError(f"{where}: tensor {name} lies outside the data")
        if name in table:
            raise ValueError(f"tensor {name} is listed twice")
        table[name] = entry
    return table


def _engine_from_header(h: dict, table: dict[str, _TensorEntry], view: memoryview | None,
                        where: str) -> Engine:
    if h["backend"] not in BACKENDS:
        raise EngineFileError(f"{where}: unknown backend {h['backend']!r}")
    cfg = BertConfig.from_dict(h["config"])
    arrays = {}
    for name, t in table.items() if view is not None else ():
        arrays[name] = np.frombuffer(view, t.dtype, t.nbytes // t.dtype.itemsize,
                                     t.offset).reshape(t.shape)
    engine = Engine(
        backend=h["backend"], precision=h["precision"], config=cfg,
        network=Network.from_dict(cfg, h["network"]),
        profiles=tuple(Profile(_whole(p["batch"], "profile batch"), _whole(p["seq"], "profile seq"))
                       for p in h["profiles"]),
        vocab=tuple(h["vocab"]), do_lower_case=bool(h["do_lower_case"]),
        tensors=arrays, backend_info=dict(h.get("backend_info", {})),
        producer=h.get("producer", ""), sequence_mode=h.get("sequence_mode", "padded"),
        token_capacity=_whole(h.get("token_capacity", 0), "token_capacity", 0))
    check_sequence_mode(engine, where)
    return engine


def _whole(value, what: str, lowest: int | None = None) -> int:
    """value if it is an integer (JSON true or 4.5 are not), else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or (lowest is not None and value < lowest):
        raise ValueError(f"{what} is {json.dumps(value)[:40]}, not a whole number"
                         + (f" >= {lowest}" if lowest is not None else ""))
    return value


def _inconsistency(engine: Engine, table: dict[str, _TensorEntry]) -> str | None:
    """Why a well-formed engine cannot run as its header says, or None. Header-only (cheap)."""
    cfg = engine.config
    precisions = PRECISIONS[engine.backend]
    if engine.precision not in precisions:
        return (f"precision {engine.precision!r}: the {engine.backend} backend runs "
                f"{' or '.join(precisions)}")
    if not engine.profiles:
        return "it has no profiles"
    for p in engine.profiles:
        if p.batch < 1:
            return f"a profile has batch size {p.batch}, below 1"
        if not 1 <= p.seq <= cfg.max_position_embeddings:
            return (f"a profile has sequence length {p.seq}, outside 1..{cfg.max_position_embeddings} "
                    "(the config's max_position_embeddings)")
    if len(engine.vocab) != cfg.vocab_size or not all(isinstance(t, str) for t in engine.vocab):
        return f"its vocabulary has {len(engine.vocab)} entries, its config's vocab_size is {cfg.vocab_size}"
    return _network_problem(engine) or _tensor_problem(engine, table)


def _output_rows(engine: Engine) -> int | None:
    """Rows of the output linear's weight: 2 logits, padded by the cuda backend (backend_info);
    None when backend_info says something else than a whole number >= 2."""
    rows = engine.backend_info.get("output_rows", 2) if engine.backend == "cuda" else 2
    return rows if isinstance(rows, int) and not isinstance(rows, bool) and rows >= 2 else None


def _network_problem(engine: Engine) -> str | None:
    cfg, net = engine.config, engine.network
    layers = sum(op.kind == "attention" for op in net.ops)
    if layers != cfg.num_layers:
        return f"its config says {cfg.num_layers} layers, its network has {layers}"
    for op in net.ops:
        heads = (op.attrs.get("num_heads"), op.attrs.get("head_size"))
        if op.kind == "attention" and heads != (cfg.num_heads, cfg.head_size):
            return (f"attention {op.output} has {heads[0]} heads of size {heads[1]}, its config says "
                    f"{cfg.num_heads} of {cfg.head_size}")
    want, used = weight_shapes(cfg), net.weight_names()
    missing = [n for n in want if n not in used]
    extra = [n for n in used if n not in want]
    if missing or extra:
        return "its network's weights are not its config's (" + "; ".join(
            (["not used: " + name_list(missing)] if missing else [])
            + (["unknown: " + name_list(extra)] if extra else [])) + ")"
    return None


def _tensor_problem(engine: Engine, table: dict[str, _TensorEntry]) -> str | None:
    missing = [n for n in engine.network.weight_names() if n not in table]
    if missing:
        return f"it lacks the weights {name_list(missing)}"
    rows = _output_rows(engine)
    if rows is None:
        return "its backend_info.output_rows is not a whole number of at least 2"
    dtypes = PRECISIONS[engine.backend][engine.precision]
    for name, shape in weight_shapes(engine.config, rows).items():
        t = table[name]
        if t.dtype.name not in dtypes:
            return (f"tensor {name} is {t.dtype.name}, a {engine.backend} {engine.precision} engine "
                    f"holds {' or '.join(dtypes)}")
        if t.shape != shape:
            return f"tensor {name} has shape {list(t.shape)}, its config implies {list(shape)}"
    return None


def _inconsistent(path: Path, why: str) -> str:
    return f"engine file {path} is inconsistent ({why}): rebuild it with builder.py"
