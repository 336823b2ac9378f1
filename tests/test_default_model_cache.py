"""The default model's engine cache: named by the weights' content (a fresh clone, i.e. a new
modification time, reuses the engine), renamed by a content change, and stale engines pruned."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import default_model
from helpers.errors import UserError
from model_fixtures import REPO
from test_cli import assert_user_error


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    weights = tmp_path / "minilm-l6-squad" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(os.urandom(3 << 20))
    return weights


def test_name_follows_content_not_time_stamp(cache):
    first = default_model.engine_path_for("onnxruntime", cache)
    st = cache.stat()
    os.utime(cache, ns=(st.st_atime_ns, st.st_mtime_ns + 10**12))  # what a fresh clone does
    assert default_model.engine_path_for("onnxruntime", cache) == first
    assert default_model.engine_path_for("cuda", cache) != first
    data = bytearray(cache.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte in the middle
    cache.write_bytes(bytes(data))
    os.utime(cache, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old time stamp back
    assert default_model.engine_path_for("onnxruntime", cache) != first


def test_digest_is_the_content_hash_and_is_remembered(cache, monkeypatch):
    import hashlib

    want = hashlib.sha256(cache.read_bytes()).hexdigest()
    assert default_model.weights_digest(cache) == want
    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    assert default_model.weights_digest(cache) == want  # from the memo: no rehash
    assert not calls


def test_stale_engines_of_the_same_model_and_backend_are_pruned(cache):
    keep = default_model.engine_path_for("onnxruntime", cache)
    keep.parent.mkdir(parents=True, exist_ok=True)
    names = ["minilm-l6-squad-onnxruntime-00de88440e2b1a23.engine", "minilm-l6-squad-onnxruntime-08c34358e17c3d26.engine",
             "minilm-l6-squad-cuda-08c34358e17c3d26.engine", "other-model-onnxruntime-08c34358e17c3d26.engine"]
    for n in names + [keep.name]:
        (keep.parent / n).write_bytes(b"x")
    removed = default_model.prune_stale_engines(keep)
    assert sorted(p.name for p in removed) == sorted(names[:2])
    left = sorted(p.name for p in keep.parent.glob("*.engine"))
    assert left == sorted([keep.name, names[2], names[3]])


def test_unwritable_cache_is_one_line_before_any_build(tmp_path, monkeypatch, capsys):
    """XDG_CACHE_HOME naming a regular file: the cache directory cannot exist (ENOTDIR), the same
    refusal a read-only cache gets, and root cannot bypass it."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(os.urandom(16))
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.raises(UserError, match=rf"cannot write the default engine cache in {blocker}/bertqa "
                                        r"\(Not a directory\): set XDG_CACHE_HOME to a writable directory, "
                                        r"or build an engine with builder.py and pass -e"):
        default_model.default_engine_path("onnxruntime", verbose=True)
    assert capsys.readouterr().out == ""  # nothing announced, nothing built


def test_unwritable_cache_through_inference_py(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(os.urandom(16))
    proc = subprocess.run([sys.executable, "inference.py", "-p", "Paris is big.", "-q", "What is big?"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "XDG_CACHE_HOME": str(blocker)})
    assert_user_error(proc, "cannot write the default engine cache")
    assert proc.stdout == ""


def test_cuda_without_a_gpu_is_refused_before_announcing_a_build(tmp_path, monkeypatch, capsys):
    from helpers import cuda_backend

    ok, why = cuda_backend.available()
    if ok:
        pytest.skip(f"a GPU is usable here ({why})")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(UserError, match=r"cannot build the default model's cuda engine here: "):
        default_model.default_engine_path("cuda", verbose=True)
    assert capsys.readouterr().out == ""
