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
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers.config import BertConfig
from helpers.errors import EngineFileError
from helpers.network import Network

MAGIC = b"BQAENGN\0"
FORMAT_VERSION = 1
ALIGN = 256
PREAMBLE = struct.Struct("<8sIIQQII24x")  # 64 bytes
BACKENDS = ("onnxruntime", "cuda")
SEQUENCE_MODES = ("padded", "packed")
DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8, "int32": np.int32}


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
    """Write engine to path atomically (a partial file never replaces a good one)."""
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
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        with open(tmp, "wb") as f:
            f.write(pre)
            f.write(hbytes)
            f.write(b"\0" * _pad(len(pre) + len(hbytes)))
            for arr, pad in blobs:
                f.write(memoryview(arr).cast("B"))
                f.write(b"\0" * pad)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EngineFileError(f"cannot write engine file {path}: {exc.strerror}") from None


def load_engine(path: str | Path, backend: str | None = None, tensors: bool = True) -> Engine:
    """Read and verify an engine file; backend, if given, must match the file's.

    tensors=False reads and checks only the preamble and header (for a backend
    whose native runtime reads and verifies the weights itself).
    """
    path = Path(path)
    try:
        if tensors:
            data = path.read_bytes()
        else:
            with open(path, "rb") as f:
                data = f.read(PREAMBLE.size)
                if len(data) == PREAMBLE.size and data[:8] == MAGIC:
                    data += f.read(PREAMBLE.unpack_from(data)[3])
            size = path.stat().st_size
    except FileNotFoundError:
        raise EngineFileError(f"no engine file at {path}; build one with builder.py -o {path}") from None
    except IsADirectoryError:
        raise EngineFileError(f"{path} is a directory, not an engine file") from None
    except OSError as exc:
        raise EngineFileError(f"cannot read engine file {path}: {exc.strerror}") from None
    where = f"{path} is not a usable engine file"
    if len(data) < PREAMBLE.size or data[:8] != MAGIC:
        raise EngineFileError(f"{where}: it does not start with the engine magic (a foreign file?)")
    magic, version, _, hsize, dsize, hcrc, dcrc = PREAMBLE.unpack_from(data)
    if version != FORMAT_VERSION:
        raise EngineFileError(f"{where}: it has format version {version}, this program reads "
                              f"version {FORMAT_VERSION}; rebuild it with this builder.py")
    hstart = PREAMBLE.size
    dstart = hstart + hsize + _pad(hstart + hsize)
    if (len(data) if tensors else size) != dstart + dsize:
        raise EngineFileError(f"{where}: it is {len(data)} bytes but its preamble says "
                              f"{dstart + dsize} (truncated or appended to)")
    hbytes = bytes(data[hstart:hstart + hsize])
    if zlib.crc32(hbytes) != hcrc:
        raise EngineFileError(f"{where}: its header checksum does not match (corrupt file)")
    view = memoryview(data)[dstart:]
    if tensors and zlib.crc32(view) != dcrc:
        raise EngineFileError(f"{where}: its weights checksum does not match (corrupt file)")
    try:
        h = json.loads(hbytes.decode("utf-8"))
        if h["backend"] not in BACKENDS:
            raise EngineFileError(f"{where}: unknown backend {h['backend']!r}")
        cfg = BertConfig.from_dict(h["config"])
        arrays = {}
        for t in h["tensors"] if tensors else ():
            dt = np.dtype(DTYPES[t["dtype"]])
            count = int(np.prod(t["shape"], dtype=np.int64))
            if count * dt.itemsize != t["nbytes"] or t["offset"] + t["nbytes"] > dsize:
                raise EngineFileError(f"{where}: tensor {t['name']} lies outside the data")
            arrays[t["name"]] = np.frombuffer(view, dt, count, t["offset"]).reshape(t["shape"])
        engine = Engine(
            backend=h["backend"], precision=h["precision"], config=cfg,
            network=Network.from_dict(cfg, h["network"]),
            profiles=tuple(Profile(int(p["batch"]), int(p["seq"])) for p in h["profiles"]),
            vocab=tuple(h["vocab"]), do_lower_case=bool(h["do_lower_case"]),
            tensors=arrays, backend_info=dict(h.get("backend_info", {})),
            producer=h.get("producer", ""), sequence_mode=h.get("sequence_mode", "padded"),
            token_capacity=int(h.get("token_capacity", 0)))
        check_sequence_mode(engine, where)
    except EngineFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineFileError(f"{where}: its header is malformed ({exc!s})") from None
    missing = [n for n in engine.network.weight_names() if n not in arrays]
    if missing and tensors:
        raise EngineFileError(f"{where}: it lacks the weights {', '.join(missing[:4])}")
    if backend is not None and engine.backend != backend:
        raise EngineFileError(f"{path} was built for the {engine.backend} backend, not {backend}; "
                              f"rebuild it with builder.py --backend {backend}")
    return engine
