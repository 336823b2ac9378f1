"""The engine file: round trip, and every kind of damage gives a clear EngineFileError."""
from __future__ import annotations

import dataclasses
import json
import resource
import signal
import struct
import zlib

import numpy as np
import pytest

from helpers.config import BertConfig
from helpers.engine_file import ALIGN, PREAMBLE, Engine, Profile, load_engine, save_engine
from helpers.errors import EngineFileError, UserError, replacing
from helpers.network import build_network, network_weights
from helpers.weights import random_weights

CFG = BertConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                 max_position_embeddings=40)


def make_engine(backend="onnxruntime") -> Engine:
    net = build_network(CFG)
    tensors = network_weights(CFG, random_weights(CFG, seed=3))
    tensors["layers.0.qkv.weight"] = tensors["layers.0.qkv.weight"].astype(np.float16)
    return Engine(backend=backend, precision="fp32", config=CFG, network=net,
                  profiles=(Profile(4, 16), Profile(8, 32)), vocab=tuple(f"w{i}" for i in range(50)),
                  do_lower_case=True, tensors=tensors, backend_info={"note": "test"}, producer="t")


@pytest.fixture()
def engine_path(tmp_path):
    path = tmp_path / "m.engine"
    save_engine(path, make_engine())
    return path


def test_round_trip(engine_path):
    src, back = make_engine(), load_engine(engine_path)
    assert back.config == CFG and back.profiles == src.profiles and back.vocab == src.vocab
    assert back.network == src.network and back.backend_info == {"note": "test"}
    assert set(back.tensors) == set(src.tensors)
    for name, arr in src.tensors.items():
        assert back.tensors[name].dtype == arr.dtype
        np.testing.assert_array_equal(back.tensors[name], arr)


def test_header_only_read(engine_path):
    header = load_engine(engine_path, tensors=False)
    assert header.tensors == {} and header.config == CFG


def test_profile_selection():
    e = make_engine()
    assert e.profile_for(3, 16) == Profile(4, 16)
    assert e.profile_for(5, 32) == Profile(8, 32)
    with pytest.raises(EngineFileError, match="outside this engine's profiles"):
        e.profile_for(5, 16)
    with pytest.raises(EngineFileError, match="outside"):
        e.profile_for(1, 20)


def damage(path, offset, value=None):
    data = bytearray(path.read_bytes())
    data[offset] = (data[offset] ^ 0x5A) if value is None else value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where,match", [
    (lambda n: 70, "header checksum"),            # inside the JSON header
    (lambda n: n - 5, "weights checksum"),        # inside the last tensor's bytes
    (lambda n: 0, "magic"),
])
def test_corruption_is_detected(engine_path, where, match):
    damage(engine_path, where(engine_path.stat().st_size))
    with pytest.raises(EngineFileError, match=match):
        load_engine(engine_path)


def test_truncated_and_appended(engine_path):
    data = engine_path.read_bytes()
    for bad in (data[:-100], data[:40], data + b"junk", b""):
        engine_path.write_bytes(bad)
        with pytest.raises(EngineFileError):
            load_engine(engine_path)
        with pytest.raises(EngineFileError):
            load_engine(engine_path, tensors=False)


@pytest.mark.parametrize("cut", [lambda d: d[:len(d) // 2], lambda d: d + b"ab"])
@pytest.mark.parametrize("tensors", [True, False])
def test_size_mismatch_names_the_file_size(engine_path, cut, tensors):
    """The message gives the file's size (not the header's) beside the size the preamble implies."""
    good = engine_path.stat().st_size
    bad = cut(engine_path.read_bytes())
    engine_path.write_bytes(bad)
    with pytest.raises(EngineFileError, match=rf"it is {len(bad)} bytes but its preamble says {good} "):
        load_engine(engine_path, tensors=tensors)


def test_wrong_version(engine_path):
    data = bytearray(engine_path.read_bytes())
    struct.pack_into("<I", data, 8, 99)
    engine_path.write_bytes(bytes(data))
    with pytest.raises(EngineFileError, match="format version 99.*rebuild"):
        load_engine(engine_path)


def test_foreign_files(tmp_path):
    onnx_like = tmp_path / "model.onnx"
    onnx_like.write_bytes(b"\x08\x07\x12\x04onnx" + bytes(range(256)) * 4)
    with pytest.raises(EngineFileError, match="foreign"):
        load_engine(onnx_like)
    with pytest.raises(EngineFileError, match="no engine file"):
        load_engine(tmp_path / "missing.engine")
    with pytest.raises(EngineFileError, match="directory"):
        load_engine(tmp_path)


def test_wrong_backend(engine_path):
    with pytest.raises(EngineFileError, match="built for the onnxruntime backend.*--backend cuda"):
        load_engine(engine_path, backend="cuda")


def rewrite_header(path, edit) -> None:
    """Hand-edit path's JSON header with edit(dict), then redo sizes and the header checksum, as a
    user with a hex editor and zlib would: only the loader's own checks can catch it."""
    data = path.read_bytes()
    magic, version, _, hsize, dsize, _, dcrc = PREAMBLE.unpack_from(data)
    header = json.loads(data[PREAMBLE.size:PREAMBLE.size + hsize])
    edit(header)
    hb = json.dumps(header).encode()
    body = data[len(data) - dsize:]
    pad = (-(PREAMBLE.size + len(hb))) % ALIGN
    path.write_bytes(PREAMBLE.pack(magic, version, 0, len(hb), dsize, zlib.crc32(hb), dcrc)
                     + hb + b"\0" * pad + body)


def _tensor(h, name):
    return next(t for t in h["tensors"] if t["name"] == name)


INCONSISTENT = [  # (hand edit, what the message names)
    (lambda h: h.update(profiles=[]), r"no profiles"),
    (lambda h: h.update(profiles=[{"batch": 0, "seq": 16}]), r"batch size 0, below 1"),
    (lambda h: h.update(profiles=[{"batch": 4, "seq": 100000}]),
     r"sequence length 100000, outside 1\.\.40 \(the config's max_position_embeddings\)"),
    (lambda h: _tensor(h, "layers.1.ffn_in.weight").update(shape=[32, 64]),
     r"tensor layers\.1\.ffn_in\.weight has shape \[32, 64\], its config implies \[64, 32\]"),
    (lambda h: h["config"].update(num_layers=3), r"its config says 3 layers, its network has 2"),
    (lambda h: h["config"].update(num_heads=0), r"config: num_heads must be a positive integer, got 0"),
    (lambda h: h["config"].update(hidden_size=32.5), r"config: hidden_size must be a positive integer"),
    (lambda h: h.update(precision="fp16"), r"precision 'fp16': the onnxruntime backend runs fp32"),
    (lambda h: h.update(tensors=[t for t in h["tensors"] if t["name"] != "qa.bias"]),
     r"it lacks the weights qa\.bias"),
    (lambda h: h.update(vocab=h["vocab"][:-1]), r"vocabulary has 49 entries, its config's vocab_size is 50"),
    (lambda h: h["network"]["ops"][2]["attrs"].update(num_heads=2, head_size=16),
     r"attention layers\.0\.context has 2 heads of size 16, its config says 4 of 8"),
]


@pytest.mark.parametrize("edit,what", INCONSISTENT)
@pytest.mark.parametrize("tensors", [True, False])
def test_inconsistent_header_is_refused(engine_path, edit, what, tensors):
    """Every check is on the header, so the cheap header-only load refuses the file too."""
    rewrite_header(engine_path, edit)
    with pytest.raises(EngineFileError, match=rf"engine file {engine_path} is inconsistent \(.*{what}.*\): "
                                              "rebuild it with builder.py"):
        load_engine(engine_path, tensors=tensors)


@pytest.mark.parametrize("edit", [lambda h: h["profiles"][0].update(batch=True),
                                  lambda h: h["profiles"][0].update(seq=16.5),
                                  lambda h: _tensor(h, "qa.bias").update(shape=[True, 2])])
def test_non_integer_header_numbers_are_refused(engine_path, edit):
    rewrite_header(engine_path, edit)
    with pytest.raises(EngineFileError, match="header is malformed.*not a whole number"):
        load_engine(engine_path, tensors=False)


def cuda_engine(precision="fp16", output_rows=8, info_rows=8) -> Engine:
    """A cuda engine as cuda_backend.build_engine lays it out: the output linear padded to 8 rows."""
    dt = np.float16 if precision == "fp16" else np.float32
    tensors = {n: a.astype(dt) for n, a in make_engine().tensors.items()}
    for name in ("qa.weight", "qa.bias"):
        a = tensors[name]
        tensors[name] = np.concatenate([a, np.zeros((output_rows - 2,) + a.shape[1:], dt)])
    info = {"sm": 90} if info_rows is None else {"sm": 90, "output_rows": info_rows}
    return dataclasses.replace(make_engine("cuda"), precision=precision, tensors=tensors, backend_info=info)


def test_cuda_layouts(tmp_path):
    path = tmp_path / "c.engine"
    for eng in (cuda_engine(), cuda_engine("fp32"), cuda_engine(output_rows=2, info_rows=None)):
        save_engine(path, eng)
        assert load_engine(path, backend="cuda", tensors=False).precision == eng.precision
    refused = [(cuda_engine(info_rows=None), r"qa\.weight has shape \[8, 32\], its config implies \[2, 32\]"),
               (dataclasses.replace(cuda_engine(), precision="int8"), "the cuda backend runs fp32 or fp16"),
               (dataclasses.replace(cuda_engine(), precision="fp32"), "is float16, a cuda fp32 engine holds float32")]
    for eng, what in refused:
        save_engine(path, eng)
        with pytest.raises(EngineFileError, match=what):
            load_engine(path, tensors=False)


def test_wrong_backend_is_named_before_inconsistencies(tmp_path):
    """A cuda fp16 file opened as onnxruntime: the backend is the problem to report."""
    path = tmp_path / "c.engine"
    save_engine(path, cuda_engine())
    with pytest.raises(EngineFileError, match="built for the cuda backend, not onnxruntime"):
        load_engine(path, backend="onnxruntime")


def leftovers(folder) -> list[str]:
    """Temporary files or folders of a write (helpers.errors.replacing names them .NAME.*.partial)."""
    return [p.name for p in folder.iterdir() if p.name.endswith(".partial")]


def test_interrupted_write_leaves_no_partial_file(engine_path):
    """Ctrl-C while the new content is being written: the old engine stays, nothing is left."""
    before = engine_path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with replacing(engine_path, "engine file") as tmp:
            tmp.write_bytes(b"half an engine")
            raise KeyboardInterrupt
    assert engine_path.read_bytes() == before and not leftovers(engine_path.parent)


def test_write_failure_midway_leaves_no_partial_file(engine_path):
    """The file size limit hit after 1 MiB of an 8 MiB engine (EFBIG mid-write, as a full disk):
    one-line error naming the engine path, the old file intact, nothing left behind."""
    before = engine_path.read_bytes()
    src = make_engine()
    filler = np.random.default_rng(8).standard_normal(1 << 21).astype(np.float32)  # 8 MiB
    big = dataclasses.replace(src, tensors={"filler": filler, **src.tensors})
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
    try:
        with pytest.raises(UserError, match=f"cannot write engine file {engine_path}: File too large"):
            save_engine(engine_path, big)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert engine_path.read_bytes() == before and not leftovers(engine_path.parent)


def test_failed_write_leaves_old_file(tmp_path, engine_path):
    before = engine_path.read_bytes()
    bad = make_engine()
    bad.tensors["x"] = np.zeros(3, dtype=np.complex64)  # not storable
    with pytest.raises(ValueError):
        save_engine(engine_path, bad)
    assert engine_path.read_bytes() == before


def test_unknown_backend_is_the_callers_mistake(engine_path):
    with pytest.raises(ValueError, match="unknown backend 'ort': choose one of onnxruntime, cuda"):
        load_engine(engine_path, backend="ort")
