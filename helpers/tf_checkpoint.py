"""Read TensorFlow checkpoints without tensorflow: PREFIX.index and PREFIX.data-NNNNN-of-MMMMM.

TensorFlow (V2 checkpoints, TF >= 0.12: Google's BERT, NVIDIA NGC) saves a "tensor bundle":
  * PREFIX.index, a LevelDB-format table, sorted by key. The empty key holds a BundleHeaderProto
    (num_shards, endianness); every other key is a tensor name whose value is a BundleEntryProto
    (dtype, shape, shard_id, offset, size, crc32c, slices).
    Table layout: data blocks, a meta-index block, an index block, then a 48-byte footer (two
    BlockHandles as varints, padding, the magic 0xdb4775248b80fb57). A BlockHandle is
    (varint offset, varint size); each block is followed by 1 byte of compression type and 4 of
    checksum. A block is a run of prefix-compressed entries (varint shared key bytes, varint
    unshared key bytes, varint value length, the unshared key bytes, the value), then a uint32
    restart array and its uint32 count. The index block maps a key to the handle of each data block.
  * PREFIX.data-SSSSS-of-NNNNN, one file per shard: each tensor's raw bytes at its offset,
    little-endian, row-major.

tensorflow would do this too, but it is a large install for reading a few files, and its import
prints log lines that TF_CPP_MIN_LOG_LEVEL no longer silences. Only numeric tensors are read;
string tensors (TF2's object graph) and partitioned variables are listed but refused if asked
for. Checksums are not verified (as with safetensors); sizes and bounds are.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers.errors import CheckpointError
from helpers.weights import bf16_to_float32

_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
_BLOCK_TRAILER = 5
_BF16 = "bfloat16"  # widened to float32 exactly (numpy has no bfloat16)
# tensorflow/core/framework/types.proto
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
           9: np.int64, 10: np.bool_, 14: _BF16, 17: np.uint16, 19: np.float16, 22: np.uint32,
           23: np.uint64}
_DTYPE_NAMES = {7: "string", 8: "complex64", 11: "qint8", 12: "quint8", 13: "qint32", 18: "complex128",
                20: "resource", 21: "variant"}


@dataclass(frozen=True)
class Entry:
    """One tensor of the bundle, as its index describes it."""
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    sliced: bool  # a partitioned variable, stored as slices under other keys


def _varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError(f"a varint of {what} runs past its end")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def _fields(buf: bytes, what: str):
    """(field number, value) of a protobuf message: ints for varints and fixed ints, bytes otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, what)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, what)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos, what)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"{what} has a field of wire type {wire}")
        if pos > len(buf):
            raise ValueError(f"{what} runs past its end")
        yield field, value


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _entry(buf: bytes, name: str) -> Entry:
    what = f"the index entry of {name!r}"
    dtype = shard = offset = size = 0
    shape: list[int] = []
    sliced = False
    for field, value in _fields(buf, what):
        if field == 1:
            dtype = value
        elif field == 2:  # TensorShapeProto: repeated dim (2) {size (1)}, unknown_rank (3)
            for f, dim in _fields(value, what):
                if f == 2:
                    shape.append(next((_int64(s) for g, s in _fields(dim, what) if g == 1), 0))
                elif f == 3 and dim:
                    raise ValueError(f"{what} has an unknown rank")
        elif field == 3:
            shard = value
        elif field == 4:
            offset = value
        elif field == 5:
            size = value
        elif field == 7:
            sliced = True
    if any(d < 0 for d in shape):
        raise ValueError(f"{what} has a negative dimension {tuple(shape)}")
    return Entry(dtype, tuple(shape), shard, offset, size, sliced)


def _block(data: bytes, offset: int, size: int, what: str) -> bytes:
    end = offset + size
    if end + _BLOCK_TRAILER > len(data):
        raise ValueError(f"{what} (bytes {offset}-{end}) runs past the end of the file")
    if data[end] != 0:  # TensorFlow writes bundle indexes uncompressed; 1 would be snappy
        raise ValueError(f"{what} is compressed (type {data[end]}), which TensorFlow's bundles never are")
    return data[offset:end]


def _block_entries(block: bytes, what: str):
    """(key, value) of each entry of a table block."""
    if len(block) < 4:
        raise ValueError(f"{what} is shorter than its restart count")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 * (n_restarts + 1)
    if limit < 0:
        raise ValueError(f"{what} claims {n_restarts} restart points, more than it holds")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos, what)
        unshared, pos = _varint(block, pos, what)
        n_value, pos = _varint(block, pos, what)
        if shared > len(key) or pos + unshared + n_value > limit:
            raise ValueError(f"{what} has an entry that runs past its end")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + n_value]
        pos += n_value


def _handle(buf: bytes, pos: int, what: str) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos, what)
    size, pos = _varint(buf, pos, what)
    return offset, size, pos


class Bundle:
    """A checkpoint's index, read at once; tensors read from the data files when asked for."""

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = str(prefix)
        index = Path(self.prefix + ".index")
        try:
            data = index.read_bytes()
        except OSError as exc:
            raise CheckpointError(f"cannot read {index}: {exc.strerror or exc}") from None
        try:
            header, self.entries = self._parse(data)
        except ValueError as exc:
            raise CheckpointError(f"{index} is not a TensorFlow checkpoint index ({exc}): pass the prefix "
                                  "of a TensorFlow V2 checkpoint (model.ckpt for model.ckpt.index)") from None
        self.num_shards = header.get(1, 1)
        if header.get(2, 0) != 0:
            raise CheckpointError(f"{index} was written on a big-endian machine: re-save it on a "
                                  "little-endian one")

    @staticmethod
    def _parse(data: bytes) -> tuple[dict[int, int], dict[str, Entry]]:
        if len(data) < _FOOTER or int.from_bytes(data[-8:], "little") != _MAGIC:
            raise ValueError("no table footer")
        footer = data[-_FOOTER:]
        _, _, pos = _handle(footer, 0, "the footer")  # the meta-index block (empty in bundles)
        index_offset, index_size, _ = _handle(footer, pos, "the footer")
        index_block = _block(data, index_offset, index_size, "the index block")
        header: dict[int, int] | None = None
        entries: dict[str, Entry] = {}
        for _, handle in _block_entries(index_block, "the index block"):
            offset, size, _ = _handle(handle, 0, "a block handle")
            what = f"the data block at byte {offset}"
            for key, value in _block_entries(_block(data, offset, size, what), what):
                if key == b"":
                    header = {f: v for f, v in _fields(value, "the bundle header") if isinstance(v, int)}
                    continue
                if key.startswith(b"\x00"):  # a slice of a partitioned variable (an ordered-code key)
                    continue
                try:
                    name = key.decode("utf-8")
                except UnicodeDecodeError:
                    raise ValueError(f"the tensor name {key[:40]!r} is not UTF-8") from None
                entries[name] = _entry(value, name)
        if header is None:
            raise ValueError("no bundle header")
        return header, entries

    def shard_path(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")

    def tensor(self, name: str) -> np.ndarray:
        """The tensor as numpy, bfloat16 widened to float32."""
        e = self.entries[name]
        if e.sliced:
            raise CheckpointError(f"{self.prefix}: {name} is a partitioned variable, which this reader does "
                                  "not join: re-save the checkpoint unpartitioned")
        if e.dtype not in _DTYPES:
            kind = _DTYPE_NAMES.get(e.dtype, f"TensorFlow dtype {e.dtype}")
            raise CheckpointError(f"{self.prefix}: {name} holds {kind} values, not numbers")
        dtype = _DTYPES[e.dtype]
        itemsize = 2 if dtype is _BF16 else np.dtype(dtype).itemsize
        count = math.prod(e.shape)
        if e.size != count * itemsize or e.shard >= self.num_shards:
            raise CheckpointError(f"{self.prefix}.index is corrupt: {name} {e.shape} claims {e.size} bytes in "
                                  f"shard {e.shard} of {self.num_shards}")
        path = self.shard_path(e.shard)
        try:
            with open(path, "rb") as f:
                f.seek(e.offset)
                raw = f.read(e.size)
        except OSError as exc:
            raise CheckpointError(f"cannot read {path}, the data of {name}: {exc.strerror or exc} "
                                  "(a checkpoint is its .index and all its .data-* files)") from None
        if len(raw) != e.size:
            raise CheckpointError(f"{path} is truncated: {name} needs bytes {e.offset}-{e.offset + e.size}, "
                                  "the file ends before")
        if dtype is _BF16:
            return bf16_to_float32(np.frombuffer(raw, "<u2")).reshape(e.shape)
        return np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).reshape(e.shape)
