"""The engine file: round trip, and every kind of damage gives a clear EngineFileError."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from helpers.config import BertConfig
from helpers.engine_file import Engine, Profile, load_engine, save_engine
from helpers.errors import EngineFileError
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


def test_failed_write_leaves_old_file(tmp_path, engine_path):
    before = engine_path.read_bytes()
    bad = make_engine()
    bad.tensors["x"] = np.zeros(3, dtype=np.complex64)  # not storable
    with pytest.raises(ValueError):
        save_engine(engine_path, bad)
    assert engine_path.read_bytes() == before
