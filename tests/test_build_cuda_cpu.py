"""The native parts build and behave without a GPU (CI).

* CMake configures the project and builds the C++-only parts: helpers/_timing_stats and
  engine_file_check (the C++ engine-file reader the runtime uses), checked here against the
  Python writer (helpers/engine_file.py) and numpy.
* Where nvcc is present (and cuBLASLt: the toolkit's or `pip install nvidia-cublas`), the CUDA
  parts build too (plugins, runtime, helpers/_bertqa_cuda, perf), import, and fail cleanly
  without a GPU.
* helpers/cuda_backend.build_engine lays out an engine correctly (through a stand-in for the
  GPU module).
Builds go to a temporary folder; nothing is written into the checkout. Where scripts/setup.sh
has already built the checkout (build/, modules in helpers/: CI's case), the tests check that
build instead of compiling everything a second time.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from helpers.config import BertConfig
from helpers.engine_file import Engine, Profile, load_engine, save_engine
from helpers.errors import UserError
from helpers.network import build_network, network_weights
from helpers.weights import random_weights

REPO = Path(__file__).resolve().parents[1]
CPU_TARGETS = ["_timing_stats", "engine_file_check"]


def _cmake_or_skip():
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    if importlib.util.find_spec("pybind11") is None:
        pytest.skip("pybind11 is not installed (pip install pybind11)")


def _configure(build: Path, arch: str = "90") -> subprocess.CompletedProcess:
    cmd = ["cmake", "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
           f"-DPython_EXECUTABLE={sys.executable}", f"-DBERTQA_PYTHON_OUTPUT_DIR={build / 'py'}",
           f"-DCMAKE_CUDA_ARCHITECTURES={arch}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _build(build: Path, targets: list[str]) -> subprocess.CompletedProcess:
    jobs = str(max(1, min(4, os.cpu_count() or 1)))
    return subprocess.run(["cmake", "--build", str(build), "-j", jobs, "--target", *targets],
                          capture_output=True, text=True, timeout=2400)


def _setup_build(targets: list[str], modules: list[str]) -> Path | None:
    """The checkout's own build by scripts/setup.sh, if it holds these targets and modules."""
    build = REPO / "build"
    if all((build / t).is_file() for t in targets) and \
            all(list((REPO / "helpers").glob(f"{m}*.so")) for m in modules):
        return build
    return None


def _py_dir(build: Path) -> Path:
    return REPO / "helpers" if build == REPO / "build" else build / "py"


@pytest.fixture(scope="module")
def cpu_build(tmp_path_factory):
    existing = _setup_build(["engine_file_check"], ["_timing_stats"])
    if existing:
        return existing
    _cmake_or_skip()
    build = tmp_path_factory.mktemp("cpu_build")
    r = _configure(build)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = _build(build, CPU_TARGETS)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return build


def _load_module(build: Path, name: str):
    (so,) = list(_py_dir(build).glob(f"{name}*.so")) or [None]
    assert so is not None, f"{name} was not built"
    spec = importlib.util.spec_from_file_location(name, so)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------------------------------------
# _timing_stats
# ------------------------------------------------------------------------------------------------
def test_timing_stats_match_numpy(cpu_build):
    ts = _load_module(cpu_build, "_timing_stats")
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 100, 1001):
        lat = list(rng.gamma(2.0, 0.5, size=n) + 0.1)
        s = ts.compute(lat, 8)
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        assert s["count"] == n and s["batch"] == 8
        assert s["mean_ms"] == pytest.approx(np.mean(lat), rel=1e-12)
        assert (s["p50_ms"], s["p95_ms"], s["p99_ms"]) == pytest.approx((p50, p95, p99), rel=1e-12)
        assert s["min_ms"] == min(lat) and s["max_ms"] == max(lat)
        assert s["sequences_per_s"] == pytest.approx(8 * 1000 / np.mean(lat), rel=1e-12)
    assert ts.percentile([3, 1, 2], 50) == 2
    with pytest.raises(ValueError, match="no latencies"):
        ts.compute([], 1)
    with pytest.raises(ValueError, match="batch"):
        ts.compute([1.0], 0)
    with pytest.raises(ValueError, match="finite"):
        ts.compute([1.0, float("nan")], 1)


# ------------------------------------------------------------------------------------------------
# The C++ engine-file reader against the Python writer
# ------------------------------------------------------------------------------------------------
SMALL = BertConfig(vocab_size=99, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                   max_position_embeddings=64)


def _engine(backend="cuda", precision="fp16", **info) -> Engine:
    net = build_network(SMALL)
    w = network_weights(SMALL, random_weights(SMALL, seed=1))
    dt = np.float16 if precision == "fp16" else np.float32
    vocab = tuple(["[PAD]", "ünïcödé", "日本", "emoji😀", 'q"uote\\'] + [f"t{i}" for i in range(94)])
    return Engine(backend=backend, precision=precision, config=SMALL, network=net,
                  profiles=(Profile(4, 32), Profile(1, 64)), vocab=vocab, do_lower_case=False,
                  tensors={n: w[n].astype(dt) for n in net.weight_names()},
                  backend_info={"sm": 90, "gpu_name": "Test GPU", **info})


def _check(build: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(build / "engine_file_check"), *map(str, args)], capture_output=True,
                          text=True, timeout=60)


def test_engine_reader_reads_python_files(cpu_build, tmp_path):
    eng = _engine()
    path = tmp_path / "a.engine"
    save_engine(path, eng)
    r = _check(cpu_build, path)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ok backend=cuda precision=fp16 layers=2 hidden=64")
    assert "profiles=B<=4 S=32, B<=1 S=64 vocab=99 lower=0" in lines[0]
    got = {ln.split()[1]: ln.split()[2:] for ln in lines[1:]}
    assert set(got) == set(eng.tensors)
    for name, arr in eng.tensors.items():
        dtype, shape, crc = got[name]
        assert dtype == "float16" and shape == "x".join(map(str, arr.shape))
        assert int(crc) == zlib.crc32(np.ascontiguousarray(arr).tobytes())


def test_engine_reader_rejects_bad_files(cpu_build, tmp_path):
    path = tmp_path / "good.engine"
    save_engine(path, _engine())
    good = path.read_bytes()

    def expect(data: bytes, what: str, *extra):
        p = tmp_path / "bad.engine"
        p.write_bytes(data)
        r = _check(cpu_build, p, *extra)
        assert r.returncode == 2 and what in r.stdout, r.stdout

    data = bytearray(good)
    data[-100] ^= 1
    expect(bytes(data), "weights checksum does not match")
    data = bytearray(good)
    data[70] ^= 1
    expect(bytes(data), "header checksum does not match")
    expect(good[:-1], "truncated or appended to")
    expect(good + b"\0", "truncated or appended to")
    expect(b"GGUF" + good[4:], "engine magic")
    expect(good[:8] + (2).to_bytes(4, "little") + good[12:], "format version 2")
    expect(good[:40], "engine magic")
    r = _check(cpu_build, tmp_path / "missing.engine")
    assert r.returncode == 2 and "no engine file at" in r.stdout
    r = _check(cpu_build, tmp_path)
    assert r.returncode == 2 and "engine file" in r.stdout

    save_engine(path, _engine(backend="onnxruntime", precision="fp32"))
    r = _check(cpu_build, path)
    assert r.returncode == 2 and "built for the onnxruntime backend, not cuda" in r.stdout
    assert _check(cpu_build, path, "").returncode == 0  # any backend

    save_engine(path, _engine())
    assert _check(cpu_build, "--arch", path, 90).returncode == 0
    r = _check(cpu_build, "--arch", path, 80)
    assert r.returncode == 2 and "built for GPU architecture sm_90 (Test GPU)" in r.stdout
    assert "this GPU is sm_80" in r.stdout and "rebuild" in r.stdout


def test_engine_reader_rejects_bad_headers(cpu_build, tmp_path):
    """Hand-made headers: the reader checks fields, tensor bounds and missing weights."""
    from helpers.engine_file import ALIGN, FORMAT_VERSION, MAGIC, PREAMBLE

    def write(header: dict, data: bytes = b"") -> Path:
        h = json.dumps(header).encode()
        pad = (-(PREAMBLE.size + len(h))) % ALIGN
        p = tmp_path / "h.engine"
        p.write_bytes(PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, len(h), len(data), zlib.crc32(h), zlib.crc32(data))
                      + h + b"\0" * pad + data)
        return p

    eng = _engine()
    save_engine(tmp_path / "ref.engine", eng)
    raw = (tmp_path / "ref.engine").read_bytes()
    _, _, _, hsize, _, _, _ = PREAMBLE.unpack_from(raw)
    header = json.loads(raw[64:64 + hsize])
    data = raw[len(raw) - PREAMBLE.unpack_from(raw)[4]:]

    bad = dict(header, tensors=[dict(t, offset=t["offset"] + 10**9) if i == 0 else t
                                for i, t in enumerate(header["tensors"])])
    r = _check(cpu_build, write(bad, data))
    assert r.returncode == 2 and "lies outside the data" in r.stdout
    bad = dict(header, tensors=header["tensors"][1:])
    r = _check(cpu_build, write(bad, data))
    assert r.returncode == 2 and "lacks the weights" in r.stdout
    bad = {k: v for k, v in header.items() if k != "config"}
    r = _check(cpu_build, write(bad, data))
    assert r.returncode == 2 and "missing field 'config'" in r.stdout
    r = _check(cpu_build, write(dict(header, profiles=[]), data))
    assert r.returncode == 2 and "no profiles" in r.stdout


@pytest.mark.parametrize("text,ok", [
    ('{"a": [1, 2.5, -3e-2, true, false, null, "x\\u00e9\\ud83d\\ude00"]}', True),
    ('[NaN, Infinity, -Infinity]', True),
    ('{"a": 1,}', False), ('[1 2]', False), ('{"a": 1} x', False), ('"\\ud83d"', False),
    ('{"a": 1, "a": 2}', False), ('01', False), ('"tab\there"', False), ("{'a': 1}", False),
    ('[' * 100 + ']' * 100, False), ('', False),
])
def test_json_parser(cpu_build, text, ok):
    r = _check(cpu_build, "--json", text)
    assert (r.returncode == 0) == ok, r.stdout


# ------------------------------------------------------------------------------------------------
# cuda_backend.build_engine's layout, through a stand-in for the GPU module
# ------------------------------------------------------------------------------------------------
class _FakeNative:
    class UserError(ValueError):
        pass

    class EngineFileError(UserError):
        pass

    def __init__(self):
        self.tuned = []
        self.cold = []

    def device_info(self):
        return {"name": "Fake GPU", "sm": 90, "cublaslt_version": 131000, "cuda_runtime_version": 13000}

    def timing(self, i, shape):
        """(algorithm id, time) the stand-in reports for the i-th shape of a call."""
        return i, 1.0 + i

    def tune_gemms(self, shapes, workspace, max_candidates, iterations, extended_search=True,
                   cold_weights=True):
        self.tuned.append(list(shapes))
        self.cold.append(cold_weights)
        out = []
        for i, shape in enumerate(shapes):
            algo, t = self.timing(i, shape)
            out.append({"algo": [algo, 1, 2, 1, 0, 0, 0, 0, 0], "time_us": t, "heuristic_time_us": t + 1,
                        "candidates": 3})
        return out


def _tiny_model(monkeypatch, fake, hidden: int, intermediate: int):
    """A 2-layer config, its random weights and a vocabulary; the builder's GEMM tuning goes to `fake`."""
    from helpers import cuda_backend

    monkeypatch.setattr(cuda_backend, "_module", lambda: fake)
    cfg = BertConfig(vocab_size=50, hidden_size=hidden, num_layers=2, num_heads=2, intermediate_size=intermediate,
                     max_position_embeddings=64)
    return cfg, random_weights(cfg, seed=3), [f"t{i}" for i in range(50)]


def test_build_engine_layout(monkeypatch, tmp_path):
    from helpers import cuda_backend

    fake = _FakeNative()
    cfg, w, vocab = _tiny_model(monkeypatch, fake, hidden=64, intermediate=128)
    tcf = tmp_path / "tc.json"
    eng = cuda_backend.build_engine(cfg, w, vocab, True, [Profile(4, 32), (1, 64)], "fp16", timing_cache=tcf)
    assert eng.backend == "cuda" and eng.precision == "fp16"
    assert all(a.dtype == np.float16 for a in eng.tensors.values())
    assert eng.tensors["qa.weight"].shape == (8, 64) and eng.tensors["qa.bias"].shape == (8,)
    np.testing.assert_array_equal(eng.tensors["qa.weight"][:2], w["qa.weight"].astype(np.float16))
    assert not eng.tensors["qa.weight"][2:].any()
    qkv = eng.tensors["layers.1.qkv.weight"]
    np.testing.assert_array_equal(qkv[64:128], w["layers.1.key.weight"].astype(np.float16))
    info = eng.backend_info
    assert info["sm"] == 90 and info["gpu_name"] == "Fake GPU" and info["gelu"] == "epilogue"
    assert info["workspace_bytes"] == 32 << 20
    # 4 distinct linears (qkv, attn_out, ffn_in with GELU, ffn_out) + the output one, per profile
    assert len(info["gemm_algos"]) == 2 * 5
    assert {(a["n"], a["k"], a["epilogue"]) for a in info["gemm_algos"]} == {
        (192, 64, "bias"), (64, 64, "bias"), (128, 64, "gelu_bias"), (64, 128, "bias"), (8, 64, "bias")}
    assert {a["m"] for a in info["gemm_algos"]} == {128, 64}
    # the timing cache: a second build tunes nothing
    assert len(fake.tuned) == 1 and tcf.is_file()
    eng2 = cuda_backend.build_engine(cfg, w, vocab, True, [Profile(4, 32), (1, 64)], "fp16", timing_cache=tcf)
    assert len(fake.tuned) == 1 and eng2.backend_info["gemm_algos"] == info["gemm_algos"]
    # timings taken with the weights in L2 are kept apart from the default (streamed weights) ones
    cuda_backend.build_engine(cfg, w, vocab, True, [Profile(4, 32), (1, 64)], "fp16", timing_cache=tcf,
                              cold_weights=False)
    assert fake.cold == [True, False]
    # fp32: exact GELU through the plugin, GEMM without epilogue
    eng3 = cuda_backend.build_engine(cfg, w, vocab, True, [(1, 64)], "fp32")
    assert eng3.backend_info["gelu"] == "plugin"
    assert (128, 64, "none") in {(a["n"], a["k"], a["epilogue"]) for a in eng3.backend_info["gemm_algos"]}
    # the file round-trips through the Python reader
    save_engine(tmp_path / "x.engine", eng)
    assert load_engine(tmp_path / "x.engine", backend="cuda").backend_info == info
    # user mistakes
    with pytest.raises(UserError, match="head size"):
        cuda_backend.build_engine(BertConfig(50, 96, 1, 2, 64), random_weights(BertConfig(50, 96, 1, 2, 64)),
                                  vocab, True, [(1, 8)], "fp16")
    with pytest.raises(UserError, match="fp32 or fp16"):
        cuda_backend.build_engine(cfg, w, vocab, True, [(1, 8)], "int8")
    with pytest.raises(UserError, match="sequence length 65"):
        cuda_backend.build_engine(cfg, w, vocab, True, [(1, 65)], "fp16")
    with pytest.raises(UserError, match="vocabulary has 3 tokens"):
        cuda_backend.build_engine(cfg, w, vocab[:3], True, [(1, 8)], "fp16")


class _SplitFriendlyNative(_FakeNative):
    """Times every split-K shape faster the more partials it has (and unsplit ones slowest)."""

    def timing(self, i, shape):
        partials = shape[5]
        return partials, 10.0 / partials


def test_split_k_candidates():
    from helpers.cuda_backend import split_k_candidates

    # whole 64-wide K slices only: 768 -> 2, 3, 4, 6; 1024 -> 2, 4, 8; 4096 -> 2, 4, 8
    assert split_k_candidates(384, 1024, 1024) == [2, 4, 8]
    assert split_k_candidates(128, 768, 768) == [2, 3, 4, 6]
    assert split_k_candidates(384, 1024, 4096) == [2, 4, 8]
    assert split_k_candidates(384, 1024, 96) == []
    # large outputs fill the GPU unsplit; partials must fit SPLIT_K_MAX_BYTES
    assert split_k_candidates(49152, 1024, 4096) == []
    assert split_k_candidates(2048, 1024, 4096) == [2, 4]


def test_build_engine_chooses_split_k(monkeypatch):
    """The linears feeding a skip_layernorm (attention out, FFN out) are timed split and unsplit, each
    with the LayerNorm, and the fastest is stored; the others are timed as before."""
    from helpers import cuda_backend

    fake = _SplitFriendlyNative()
    cfg, w, vocab = _tiny_model(monkeypatch, fake, hidden=128, intermediate=512)
    eng = cuda_backend.build_engine(cfg, w, vocab, True, [(1, 64)], "fp16")
    algos = {(a["n"], a["k"], a["epilogue"]): a for a in eng.backend_info["gemm_algos"]}
    assert algos[(128, 128, "bias")]["partials"] == 2    # attention out: K = 128 -> 2 slices of 64
    assert algos[(128, 512, "bias")]["partials"] == 8    # FFN out: K = 512 -> 8 slices of 64
    assert algos[(128, 512, "bias")]["algo"][0] == 8 and algos[(128, 512, "bias")]["time_us"] == 10.0 / 8
    for key in ((384, 128, "bias"), (512, 128, "gelu_bias"), (8, 128, "bias")):  # QKV, FFN in, QA
        assert algos[key]["partials"] == 1
    shapes = {s[:3] + s[4:]: s for s in fake.tuned[0]}
    assert shapes[(64, 128, 512, "bias", 1, True, False)]   # unsplit, timed with its LayerNorm
    assert shapes[(64, 128, 512, "none", 4, True, False)]   # split: no epilogue (the LayerNorm adds the bias)
    assert shapes[(64, 384, 128, "bias", 1, False, False)]  # QKV: as before
    assert not any(a["residual"] for a in eng.backend_info["gemm_algos"])
    # forced: every splittable linear with 8-aligned slices; 1 never splits
    eng = cuda_backend.build_engine(cfg, w, vocab, True, [(1, 64)], "fp16", split_k=4)
    assert {a["partials"] for a in eng.backend_info["gemm_algos"] if a["epilogue"] == "bias" and a["n"] == 128} == {4}
    eng = cuda_backend.build_engine(cfg, w, vocab, True, [(1, 64)], "fp16", split_k=1, residual_epilogue=False)
    assert {a["partials"] for a in eng.backend_info["gemm_algos"]} == {1}
    assert all(not s[6] and not s[7] for s in fake.tuned[-1])
    with pytest.raises(UserError, match="split_k"):
        cuda_backend.build_engine(cfg, w, vocab, True, [(1, 64)], "fp16", split_k=17)


def test_residual_epilogue_rule():
    from helpers.cuda_backend import RESIDUAL_EPILOGUE_MIN_OUTPUT, residual_epilogue_wanted

    assert residual_epilogue_wanted(128 * 384, 1024)          # BERT-large S=384 B=128: 50M outputs
    assert not residual_epilogue_wanted(128 * 128, 768)       # BERT-base S=128 B=128: 12.6M
    assert not residual_epilogue_wanted(8 * 384, 1024)
    assert residual_epilogue_wanted(RESIDUAL_EPILOGUE_MIN_OUTPUT // 1024, 1024)
    assert not residual_epilogue_wanted(1024 * 384, 1024, packed=True)  # measured slower offline


def test_build_engine_residual_epilogue(monkeypatch):
    """The linears feeding a skip_layernorm add its residual in their GEMM epilogue at the profiles
    whose outputs are large enough (residual_epilogue_wanted), tuned in that form (beta = 1); other
    linears and smaller profiles never; residual_epilogue=True / False forces it."""
    from helpers import cuda_backend

    fake = _FakeNative()
    cfg, w, vocab = _tiny_model(monkeypatch, fake, hidden=128, intermediate=512)
    big = cuda_backend.RESIDUAL_EPILOGUE_MIN_OUTPUT // 128 // 64   # batch whose m x 128 reaches the rule
    eng = cuda_backend.build_engine(cfg, w, vocab, True, [(1, 64), (big, 64)], "fp16")
    got = {(a["profile"], a["n"], a["k"], a["epilogue"]): (a["residual"], a["partials"])
           for a in eng.backend_info["gemm_algos"]}
    for k in (128, 512):  # attention out, FFN out
        assert got[(1, 128, k, "bias")] == (True, 1)
        assert got[(0, 128, k, "bias")][0] is False
    for key in ((384, 128, "bias"), (512, 128, "gelu_bias"), (8, 128, "bias")):  # QKV, FFN in, QA head
        assert got[(1,) + key] == (False, 1)
    tuned = {s[:3]: s for s in fake.tuned[0]}
    assert tuned[(big * 64, 128, 512)][7] is True and tuned[(big * 64, 128, 512)][6] is False  # tuned with beta = 1
    eng = cuda_backend.build_engine(cfg, w, vocab, True, [(1, 64)], "fp16", split_k=1, residual_epilogue=True)
    assert {a["residual"] for a in eng.backend_info["gemm_algos"] if a["n"] == 128 and a["epilogue"] == "bias"} == {True}
    eng = cuda_backend.build_engine(cfg, w, vocab, True, [(big, 64)], "fp16", residual_epilogue=False)
    assert not any(a["residual"] for a in eng.backend_info["gemm_algos"])
    with pytest.raises(UserError, match="unsplit"):
        cuda_backend.build_engine(cfg, w, vocab, True, [(1, 64)], "fp16", split_k=4, residual_epilogue=True)


def test_available_without_module(monkeypatch):
    from helpers import cuda_backend

    ok, why = cuda_backend.available()
    assert isinstance(ok, bool) and why
    if not ok:
        assert "not built" in why or "GPU" in why or "CUDA" in why or "driver" in why


# ------------------------------------------------------------------------------------------------
# The CUDA parts (where nvcc is present)
# ------------------------------------------------------------------------------------------------
def _cublaslt_or_skip():
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed: the CUDA parts are built only where it is")
    found = any(Path(p, "libcublasLt.so").exists() or list(Path(p).glob("libcublasLt.so.*"))
                for p in ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib") if Path(p).is_dir())
    for name in ("nvidia.cu13", "nvidia.cublas", "nvidia.cu12"):
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            spec = None
        if spec and spec.submodule_search_locations:
            found = found or any(Path(p, "include", "cublasLt.h").exists() for p in spec.submodule_search_locations)
    if not found:
        pytest.skip("cuBLASLt is not installed (pip install nvidia-cublas)")


@pytest.mark.slow
def test_cuda_parts_build(tmp_path_factory):
    build = _setup_build(["perf"], ["_bertqa_cuda"])
    if build is None:
        _cmake_or_skip()
        _cublaslt_or_skip()
        build = tmp_path_factory.mktemp("cuda_build")
        r = _configure(build)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "bertqa: cuBLASLt" in r.stdout, r.stdout[-3000:]
        r = _build(build, ["_bertqa_cuda", "perf"])
        assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-3000:]
    assert (build / "perf").is_file()
    # The module imports without a GPU; without one, device_info fails with a clear DeviceError.
    code = ("import importlib.util, sys\n"
            f"so = sorted(__import__('pathlib').Path({str(_py_dir(build))!r}).glob('_bertqa_cuda*.so'))[0]\n"
            "spec = importlib.util.spec_from_file_location('_bertqa_cuda', so)\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "assert m.cublaslt_version() > 0\n"
            "try:\n    print('GPU', m.device_info()['sm'])\n"
            "except m.DeviceError as e:\n    print('NOGPU', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(("GPU", "NOGPU no usable CUDA GPU")), r.stdout
    r = subprocess.run([str(build / "perf")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no engine given" in r.stderr
    r = subprocess.run([str(build / "perf"), "-e", str(build / "missing.engine")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "no engine file at" in r.stderr
