"""Read torch.save files (and plain pickles) without torch and without running pickled code.

A pickle can name any importable callable and make the loader call it
(``os.system`` included), so ``pickle.load`` on a downloaded checkpoint is
code execution. ``load(path)`` uses an Unpickler whose ``find_class`` hands out
only the few things a state dict needs, each replaced by our own function:

    collections.OrderedDict                 the real class (it only stores items)
    torch._utils._rebuild_tensor[_v2|_v3]    -> numpy array over the storage bytes
    torch._utils._rebuild_parameter[...]     -> the data array
    torch.<Float|Half|BFloat16|...>Storage   -> a dtype marker
    torch.<dtype> (torch.float16, ...)       -> the dtype name (str)
    torch.device / torch.Size                -> str / tuple
    numpy arrays, dtypes and scalars         -> rebuilt from bytes, never object arrays
    _codecs.encode (protocol-2 bytes)        -> only str.encode("latin1")
    argparse.Namespace                       the real class (Megatron's training args)
    megatron.*                               inert stand-ins (enums inside Megatron's args)

Anything else raises CheckpointError("refusing to unpickle <module.name>").

Formats: the zip format of torch >= 1.6 (``<root>/data.pkl`` plus one raw entry
``<root>/data/<key>`` per storage, ``<root>/byteorder``); the legacy format
(pickled magic number, protocol version and sys info, then the object, then the
list of storage keys, then for each storage an int64 element count and its raw
bytes); and a plain pickle (which may hold numpy arrays but no torch storages).
bfloat16 storages are widened to float32 (numpy has no bfloat16).
"""
from __future__ import annotations

import argparse
import collections
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from helpers.errors import CheckpointError
from helpers.weights import bf16_to_float32

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_BF16 = "bfloat16"  # marker: raw uint16 storage to widen to float32

# torch storage class name -> numpy dtype of its elements
_STORAGES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": _BF16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
# torch dtype attribute name -> numpy dtype (used by _rebuild_tensor_v3 and UntypedStorage)
_TORCH_DTYPES = {
    "float32": np.float32, "float": np.float32, "float64": np.float64, "double": np.float64,
    "float16": np.float16, "half": np.float16, "bfloat16": _BF16, "int64": np.int64,
    "long": np.int64, "int32": np.int32, "int": np.int32, "int16": np.int16, "short": np.int16,
    "int8": np.int8, "uint8": np.uint8, "bool": np.bool_,
}


class _StorageType:
    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype


class _Storage:
    """A storage's elements; `array` is filled when its bytes are known."""

    def __init__(self, dtype: Any, numel: int) -> None:
        self.dtype, self.numel = dtype, int(numel)
        self.array: np.ndarray | None = None


class _LazyTensor:
    """A tensor view (offset, size, stride in elements) over a storage, made concrete later."""

    def __init__(self, storage: Any, offset: int, size: Any, stride: Any) -> None:
        if not isinstance(storage, _Storage):
            raise CheckpointError("malformed tensor record in pickle (no storage)")
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

    def materialize(self) -> np.ndarray:
        base = self.storage.array
        if base is None:
            raise CheckpointError("a tensor's storage bytes are missing from the checkpoint")
        if 0 in self.size:
            out = np.zeros(self.size, dtype=base.dtype)
        else:
            last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if (len(self.size) != len(self.stride) or min(self.stride, default=0) < 0
                    or self.offset < 0 or last >= base.size):
                raise CheckpointError("a tensor reaches outside its storage: checkpoint is corrupt")
            view = np.lib.stride_tricks.as_strided(
                base[self.offset:], shape=self.size,
                strides=[s * base.itemsize for s in self.stride], writeable=False)
            out = np.array(view)
        if self.storage.dtype is _BF16:
            out = bf16_to_float32(out)
        return out


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    return _LazyTensor(storage, offset, size, stride)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *_ignored):
    """Tensors over an untyped (byte) storage: the dtype comes with the tensor."""
    if not (isinstance(storage, _Storage) and dtype in _TORCH_DTYPES):
        raise CheckpointError(f"unsupported tensor dtype {dtype!r} in pickle")
    new = _TORCH_DTYPES[dtype]
    if storage.dtype is not new:
        old_size = _np_dtype_of(storage.dtype).itemsize
        storage.numel = storage.numel * old_size // _np_dtype_of(new).itemsize
        if storage.array is not None:
            raw = storage.array.view(np.uint8)
            storage.array = raw[: raw.size - raw.size % _np_dtype_of(new).itemsize].view(
                _np_dtype_of(new))
        storage.dtype = new
    return _LazyTensor(storage, offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    return data


class _SafeArray(np.ndarray):
    """numpy's pickle path (_reconstruct + __setstate__) with object arrays refused."""

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], np.dtype)):
            raise CheckpointError("malformed numpy array in pickle")
        if state[2].hasobject or not isinstance(state[4], (bytes, bytearray)):
            raise CheckpointError("refusing to unpickle a numpy array of Python objects")
        np.ndarray.__setstate__(self, state)


def _np_reconstruct(cls, shape, typecode):
    return np.ndarray.__new__(_SafeArray, (0,), np.uint8)


def _np_dtype(spec, align=False, copy=False):
    if not isinstance(spec, str):
        raise CheckpointError("refusing to unpickle a structured numpy dtype")
    dt = np.dtype(spec)
    if dt.hasobject:
        raise CheckpointError("refusing to unpickle a numpy object dtype")
    return dt


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise CheckpointError("refusing to unpickle a numpy object scalar")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _latin1(text, encoding="latin1"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError("refusing to unpickle _codecs.encode with unusual arguments")
    return text.encode("latin1")


class _Inert:
    """Stand-in for a foreign class we only need to skip over (stores its arguments)."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state) -> None:
        self.state = state


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "device"): lambda *a: ":".join(str(x) for x in a),
    ("torch", "Size"): tuple,
    ("torch.storage", "UntypedStorage"): _StorageType(np.uint8),
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _np_dtype,
    ("_codecs", "encode"): _latin1,
    ("argparse", "Namespace"): argparse.Namespace,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storage_loader=None) -> None:
        super().__init__(file)
        self._storage_loader = storage_loader
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGES:
            return _StorageType(_STORAGES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return name
        if module == "megatron" or module.startswith("megatron."):
            return type(name, (_Inert,), {"__module__": "inert." + module})
        raise CheckpointError(f"refusing to unpickle {module}.{name}: not part of a plain "
                              "state dict (the file may be malicious, or not a weights file)")

    def persistent_load(self, pid: Any) -> Any:
        if self._storage_loader is None:
            raise CheckpointError("pickle refers to torch storages but is not a torch.save file")
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise CheckpointError(f"unsupported persistent id in pickle: {str(pid)[:60]}")
        key = str(pid[2])
        if key not in self.storages:
            self.storages[key] = _Storage(pid[1].dtype, pid[4])
            self._storage_loader(key, self.storages[key])
        storage = self.storages[key]
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # legacy storage views: (view_key, offset, size)
            return _ViewStorage(storage, int(view[1]), int(view[2]))
        return storage


class _ViewStorage(_Storage):
    def __init__(self, root: _Storage, offset: int, numel: int) -> None:
        super().__init__(root.dtype, numel)
        self.root, self.view_offset = root, offset

    @property  # type: ignore[override]
    def array(self):
        base = self.root.array
        return None if base is None else base[self.view_offset:self.view_offset + self.numel]

    @array.setter
    def array(self, value):
        pass


def _np_dtype_of(dtype: Any) -> np.dtype:
    return np.dtype(np.uint16) if dtype is _BF16 else np.dtype(dtype)


def _from_bytes(raw: bytes, storage: _Storage, big_endian: bool, what: str) -> np.ndarray:
    dt = _np_dtype_of(storage.dtype)
    if big_endian:
        dt = dt.newbyteorder(">")
    if len(raw) < storage.numel * dt.itemsize:
        raise CheckpointError(f"{what}: storage data is truncated")
    arr = np.frombuffer(raw, dtype=dt, count=storage.numel)
    return arr.astype(dt.newbyteorder("=")) if big_endian else arr


def _materialize(obj: Any) -> Any:
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _materialize(obj[k])
        return obj
    if isinstance(obj, list):
        return [_materialize(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v) for v in obj)
    if isinstance(obj, _SafeArray):
        return np.asarray(obj).view(np.ndarray)
    return obj


def _load_zip(path: Path) -> Any:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable torch.save zip file ({exc})") from None
    with zf:
        pkl = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
        if not pkl:
            raise CheckpointError(f"{path} is a zip file but not a torch.save file (no data.pkl)")
        root = pkl[0][: -len("data.pkl")]
        names = set(zf.namelist())
        big = root + "byteorder" in names and zf.read(root + "byteorder").strip() == b"big"

        def load_storage(key: str, storage: _Storage) -> None:
            entry = f"{root}data/{key}"
            if entry not in names:
                raise CheckpointError(f"{path}: storage {key} is missing from the archive")
            storage.array = _from_bytes(zf.read(entry), storage, big, str(path))

        with zf.open(pkl[0]) as f:
            try:
                obj = _Unpickler(f, load_storage).load()
            except CheckpointError:
                raise
            except Exception as exc:  # noqa: BLE001 - any decoding failure means a bad file
                raise CheckpointError(f"{path}: cannot decode data.pkl ({exc})") from None
    return _materialize(obj)


def _load_pickle_stream(path: Path) -> Any:
    with open(path, "rb") as f:
        first = _Unpickler(f).load()
        if not (isinstance(first, int) and first == _LEGACY_MAGIC):
            return _materialize(first)  # a plain pickle
        version = _Unpickler(f).load()
        if version != 1001:
            raise CheckpointError(f"{path}: unsupported legacy torch.save protocol {version}")
        info = _Unpickler(f).load()
        little = not isinstance(info, dict) or info.get("little_endian", True)
        unpickler = _Unpickler(f, lambda key, storage: None)
        obj = unpickler.load()
        keys = _Unpickler(f).load()
        if not isinstance(keys, list):
            raise CheckpointError(f"{path}: malformed legacy torch.save file (no storage list)")
        for key in keys:
            header = f.read(8)
            if len(header) != 8:
                raise CheckpointError(f"{path}: legacy torch.save file is truncated")
            numel = struct.unpack("<q" if little else ">q", header)[0]
            storage = unpickler.storages.get(str(key))
            if storage is None:
                raise CheckpointError(f"{path}: storage {key} is listed but never used")
            dt = _np_dtype_of(storage.dtype)
            storage.numel = numel
            storage.array = _from_bytes(f.read(numel * dt.itemsize), storage, not little, str(path))
    return _materialize(obj)


def load(path: str | Path) -> Any:
    """Unpickle a torch.save file (zip or legacy) or a plain pickle; tensors become numpy arrays."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a torch.save file")
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    try:
        return _load_pickle_stream(path)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - pickle raises many types on garbage
        raise CheckpointError(f"{path} is not a PyTorch checkpoint or pickle "
                              f"({type(exc).__name__}: {exc})") from None
