"""The CUDA engine against Hugging Face transformers on the same random weights (GPU only).

Run on a GPU machine after building the native parts: pytest -m gpu tests/test_cuda_engine_gpu.py
The reference is BertForQuestionAnswering in float64 on the GPU. fp32 engines must match within
1e-3 absolute, fp16 engines within 1e-2 relative (||out - ref|| / ||ref||), over the valid
(unpadded) positions, for several batch sizes and padding patterns.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.config import BertConfig
from helpers.engine_file import load_engine, save_engine
from helpers.errors import EngineFileError, UserError
from helpers.weights import random_weights
from model_fixtures import cuda_backend_or_skip

pytestmark = pytest.mark.gpu

CONFIGS = {  # vocab, hidden, layers, heads, intermediate, max_position
    "small": BertConfig(1000, 128, 2, 2, 512, max_position_embeddings=128),
    "base": BertConfig(8000, 768, 12, 12, 3072),
    "large": BertConfig(8000, 1024, 24, 16, 4096),
}
PROFILES = {
    "small": [(1, 64), (8, 64), (4, 128)],
    "base": [(8, 128), (2, 384)],
    "large": [(4, 128), (2, 384)],
}
BATCHES = {"small": [(1, 64), (3, 64), (8, 64), (4, 128)], "base": [(1, 128), (5, 128), (2, 384)],
           "large": [(3, 128), (2, 384)]}


@pytest.fixture(scope="module")
def cuda():
    cuda_backend = cuda_backend_or_skip()
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the reference needs torch and transformers: {exc}")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no GPU for the reference")
    return cuda_backend


# ------------------------------------------------------------------------------------------------
# Reference
# ------------------------------------------------------------------------------------------------
def hf_state_dict(cfg: BertConfig, w: dict) -> dict:
    out = {"bert.embeddings.word_embeddings.weight": w["embeddings.word"],
           "bert.embeddings.position_embeddings.weight": w["embeddings.position"],
           "bert.embeddings.token_type_embeddings.weight": w["embeddings.token_type"],
           "bert.embeddings.LayerNorm.weight": w["embeddings.ln.gamma"],
           "bert.embeddings.LayerNorm.bias": w["embeddings.ln.beta"],
           "qa_outputs.weight": w["qa.weight"], "qa_outputs.bias": w["qa.bias"]}
    names = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
             "attn_out": "attention.output.dense", "ffn_in": "intermediate.dense", "ffn_out": "output.dense",
             "attn_ln": "attention.output.LayerNorm", "ffn_ln": "output.LayerNorm"}
    for i in range(cfg.num_layers):
        for ours, theirs in names.items():
            a, b = ("gamma", "beta") if ours.endswith("_ln") else ("weight", "bias")
            out[f"bert.encoder.layer.{i}.{theirs}.weight"] = w[f"layers.{i}.{ours}.{a}"]
            out[f"bert.encoder.layer.{i}.{theirs}.bias"] = w[f"layers.{i}.{ours}.{b}"]
    return out


class Reference:
    """BertForQuestionAnswering in float64 on the GPU with the canonical weights."""

    def __init__(self, cfg: BertConfig, w: dict):
        import torch
        from transformers import BertConfig as HFConfig, BertForQuestionAnswering

        hf = HFConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                      intermediate_size=cfg.intermediate_size,
                      max_position_embeddings=cfg.max_position_embeddings,
                      type_vocab_size=cfg.type_vocab_size, layer_norm_eps=cfg.layer_norm_eps,
                      hidden_act="gelu" if cfg.hidden_act == "gelu" else "gelu_new",
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                      attn_implementation="eager")
        model = BertForQuestionAnswering(hf).eval()
        sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in hf_state_dict(cfg, w).items()}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        assert not unexpected, unexpected
        assert all("position_ids" in m for m in missing), missing
        self.model = model.double().cuda()
        self.torch = torch

    def __call__(self, ids, seg, mask) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            out = self.model(input_ids=torch.as_tensor(ids, dtype=torch.long, device="cuda"),
                             token_type_ids=torch.as_tensor(seg, dtype=torch.long, device="cuda"),
                             attention_mask=torch.as_tensor(mask, dtype=torch.long, device="cuda"))
        return np.stack([out.start_logits.cpu().numpy(), out.end_logits.cpu().numpy()], axis=-1)


def random_inputs(rng, cfg: BertConfig, batch: int, seq: int, pattern: str):
    ids = rng.integers(1, cfg.vocab_size, size=(batch, seq), dtype=np.int32)
    if pattern == "full":
        lens = np.full(batch, seq)
    elif pattern == "one":
        lens = np.ones(batch, int)
        lens[-1] = seq
    else:  # random lengths, at least one token
        lens = rng.integers(1, seq + 1, size=batch)
        lens[0] = seq
    mask = (np.arange(seq)[None, :] < lens[:, None]).astype(np.int32)
    seg = np.zeros((batch, seq), np.int32)
    for b, n in enumerate(lens):
        seg[b, n // 3:n] = 1
    ids[mask == 0] = 0  # [PAD]
    return ids, seg, mask


def errors(out: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    valid = mask.astype(bool)
    o, r = out[valid].astype(np.float64), ref[valid]
    assert np.isfinite(o).all(), "non-finite logits at valid positions"
    return float(np.abs(o - r).max()), float(np.linalg.norm(o - r) / np.linalg.norm(r))


# ------------------------------------------------------------------------------------------------
# Engines (built once per module)
# ------------------------------------------------------------------------------------------------
_CACHE: dict = {}


def weights_of(name: str):
    if ("w", name) not in _CACHE:
        _CACHE[("w", name)] = random_weights(CONFIGS[name], seed=7)
    return _CACHE[("w", name)]


def reference_of(name: str) -> Reference:
    if ("ref", name) not in _CACHE:
        _CACHE.pop(("ref", "large"), None)  # keep one big fp64 model on the GPU at a time
        _CACHE[("ref", name)] = Reference(CONFIGS[name], weights_of(name))
    return _CACHE[("ref", name)]


def engine_path(cuda, tmp_path_factory, name: str, precision: str, gelu_epilogue=None):
    if gelu_epilogue is None:  # the builder's default, so that default and explicit builds are shared
        gelu_epilogue = precision == "fp16" and cuda.FP16_GELU_EPILOGUE
    key = ("engine", name, precision, gelu_epilogue)
    if key not in _CACHE:
        cfg = CONFIGS[name]
        vocab = [f"t{i}" for i in range(cfg.vocab_size)]
        eng = cuda.build_engine(cfg, weights_of(name), vocab, True, PROFILES[name], precision,
                                gelu_epilogue=gelu_epilogue, max_candidates=8)
        path = tmp_path_factory.mktemp("engines") / f"{name}_{precision}_{gelu_epilogue}.engine"
        save_engine(path, eng)
        _CACHE[key] = path
    return _CACHE[key]


# ------------------------------------------------------------------------------------------------
# Accuracy
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["small", "base", "large"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_matches_hugging_face(cuda, tmp_path_factory, name, precision):
    cfg = CONFIGS[name]
    runner = cuda.CudaRunner(engine_path(cuda, tmp_path_factory, name, precision))
    ref = reference_of(name)
    rng = np.random.default_rng(hash((name, precision)) % 2**32)
    worst = []
    for batch, seq in BATCHES[name]:
        for pattern in ("full", "random", "one"):
            ids, seg, mask = random_inputs(rng, cfg, batch, seq, pattern)
            out = runner.run(ids, seg, mask)
            assert out.shape == (batch, seq, 2) and out.dtype == np.float32
            max_abs, rel = errors(out, ref(ids, seg, mask), mask)
            worst.append((max_abs, rel, batch, seq, pattern))
            if precision == "fp32":
                assert max_abs <= 1e-3, (batch, seq, pattern, max_abs, rel)
            else:
                assert rel <= 1e-2, (batch, seq, pattern, max_abs, rel)
    w = max(worst)
    print(f"\n[accuracy] {name} {precision}: worst max|out-ref| {w[0]:.3g}, rel {max(x[1] for x in worst):.3g} "
          f"over {len(worst)} batches; gelu={runner.engine_info['backend_info'].get('gelu')}")


def test_hopper_attention_matches_hugging_face(cuda):
    """The engine with every attention launch forced onto the Hopper wgmma kernel
    (BERTQA_ATTENTION_KERNEL=wgmma, read once per process: a child pytest) meets the same fp16
    tolerances against Hugging Face, packed engines included; elsewhere than an H100 the kernel
    is not available and the forced runs fall back to mma.sync."""
    env = dict(os.environ, BERTQA_ATTENTION_KERNEL="wgmma")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                        str(Path(__file__)), str(Path(__file__).with_name("test_varseqlen_gpu.py")),
                        "-k", "(test_matches_hugging_face and fp16) or test_packed_matches"],
                       capture_output=True, text=True, env=env, timeout=1800)
    assert r.returncode == 0 and " passed" in r.stdout, r.stdout[-6000:] + r.stderr[-2000:]


@pytest.mark.parametrize("name,precision,split,residual", [
    ("small", "fp32", 2, False), ("base", "fp16", 3, False), ("base", "fp32", 4, False),
    ("small", "fp32", 1, True), ("base", "fp16", 1, True)])
def test_split_k_matches_hugging_face(cuda, tmp_path, name, precision, split, residual):
    """The attention-out and FFN-out linears forced to run split-K (fp32 partials over K slices, summed
    with the bias by the skip_layernorm after them), or to add the LayerNorm's residual in their
    epilogue (beta = 1; the LayerNorm reads one tensor): same tolerances; graph replay equals eager."""
    cfg = CONFIGS[name]
    vocab = [f"t{i}" for i in range(cfg.vocab_size)]
    eng = cuda.build_engine(cfg, weights_of(name), vocab, True, PROFILES[name], precision, max_candidates=4,
                            split_k=split, residual_epilogue=residual)
    fed = {(a["n"], a["k"], a["partials"], a["residual"]) for a in eng.backend_info["gemm_algos"]
           if a["epilogue"] == "bias" and a["n"] == cfg.hidden_size}
    assert fed == {(cfg.hidden_size, cfg.hidden_size, split, residual),
                   (cfg.hidden_size, cfg.intermediate_size, split, residual)}
    path = tmp_path / "split.engine"
    save_engine(path, eng)
    runner = cuda.CudaRunner(path)
    eager = cuda.CudaRunner(path, enable_graph=False)
    largest = max(p.batch * p.seq for p in runner.profiles)
    if split > 1:
        assert runner.stats["workspace_bytes"] >= eng.backend_info["workspace_bytes"] + split * largest * cfg.hidden_size * 4
    ref = reference_of(name)
    rng = np.random.default_rng(17)
    worst = []
    for batch, seq in BATCHES[name]:
        for pattern in ("full", "random", "one"):
            ids, seg, mask = random_inputs(rng, cfg, batch, seq, pattern)
            outs = [runner.run(ids, seg, mask) for _ in range(3)]  # eager, capture, replay
            for o in outs[1:]:
                np.testing.assert_allclose(o, outs[0], rtol=0, atol=1e-6)
            np.testing.assert_allclose(eager.run(ids, seg, mask), outs[0], rtol=0, atol=1e-6)
            max_abs, rel = errors(outs[0], ref(ids, seg, mask), mask)
            worst.append((max_abs, rel))
            if precision == "fp32":
                assert max_abs <= 1e-3, (batch, seq, pattern, max_abs, rel)
            else:
                assert rel <= 1e-2, (batch, seq, pattern, max_abs, rel)
    print(f"\n[split-k] {name} {precision} partials={split} residual={residual}: worst max|out-ref| {max(w[0] for w in worst):.3g}, "
          f"rel {max(w[1] for w in worst):.3g}")


@pytest.mark.parametrize("name", ["base", "large"])
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_gelu_epilogue_accuracy(cuda, tmp_path_factory, name, precision):
    """The measurement behind FP16_GELU_EPILOGUE: cuBLASLt's tanh-GELU epilogue vs exact erf GELU."""
    cfg = CONFIGS[name]
    ref = reference_of(name)
    rng = np.random.default_rng(3)
    ids, seg, mask = random_inputs(rng, cfg, *BATCHES[name][-1], "random")
    r = ref(ids, seg, mask)
    res = {}
    for epi in (True, False):
        runner = cuda.CudaRunner(engine_path(cuda, tmp_path_factory, name, precision, gelu_epilogue=epi))
        res[epi] = errors(runner.run(ids, seg, mask), r, mask)
    print(f"\n[gelu] {name} {precision}: epilogue (tanh) max {res[True][0]:.3g} rel {res[True][1]:.3g}; "
          f"plugin (erf) max {res[False][0]:.3g} rel {res[False][1]:.3g}")
    if precision == "fp16":
        assert res[True][1] <= 1e-2 and res[False][1] <= 1e-2
    else:
        assert res[False][0] <= 1e-3


def test_graph_and_eager_agree(cuda, tmp_path_factory):
    path = engine_path(cuda, tmp_path_factory, "small", "fp32")
    cfg = CONFIGS["small"]
    graph = cuda.CudaRunner(path, enable_graph=True)
    eager = cuda.CudaRunner(path, enable_graph=False)
    rng = np.random.default_rng(11)
    for batch, seq in [(3, 64), (8, 64), (3, 64), (4, 128)]:
        ids, seg, mask = random_inputs(rng, cfg, batch, seq, "random")
        a = [graph.run(ids, seg, mask) for _ in range(3)]  # eager first pass, capture, replay
        b = eager.run(ids, seg, mask)
        for x in a:
            np.testing.assert_allclose(x, b, rtol=0, atol=1e-6)
    assert graph.stats["graphs"] == 3 and eager.stats["graphs"] == 0
    # New inputs of a cached shape reach the replayed graph.
    ids, seg, mask = random_inputs(rng, cfg, 3, 64, "full")
    np.testing.assert_allclose(graph.run(ids, seg, mask), eager.run(ids, seg, mask), rtol=0, atol=1e-6)


def test_timing_cache_reused(cuda, tmp_path):
    cfg = CONFIGS["small"]
    w = weights_of("small")
    vocab = [f"t{i}" for i in range(cfg.vocab_size)]
    tcf = tmp_path / "timing.cache"
    e1 = cuda.build_engine(cfg, w, vocab, True, [(2, 32)], "fp16", timing_cache=tcf, max_candidates=4)
    assert tcf.is_file()
    before = tcf.read_text()
    e2 = cuda.build_engine(cfg, w, vocab, True, [(2, 32)], "fp16", timing_cache=tcf, max_candidates=4)
    assert tcf.read_text() == before
    assert e1.backend_info["gemm_algos"] == e2.backend_info["gemm_algos"]


def test_runner_info_and_memory(cuda, tmp_path_factory):
    path = engine_path(cuda, tmp_path_factory, "base", "fp16")
    runner = cuda.CudaRunner(path)
    info = runner.engine_info
    assert info["backend"] == "cuda" and info["precision"] == "fp16"
    assert info["device"]["sm"] == info["backend_info"]["sm"]
    stats = runner.stats
    assert stats["activation_buffers"] <= 6, stats
    assert stats["workspace_bytes"] >= 32 << 20
    assert runner.engine_info["device_memory_bytes"] == stats["total_bytes"]
    assert [(p.batch, p.seq) for p in runner.profiles] == PROFILES["base"]
    assert stats["gemm_fallbacks"] == 0
    print(f"\n[memory] base fp16: {stats}")


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------
def _rewrite(src, dst, **changes):
    eng = load_engine(src)
    save_engine(dst, dataclasses.replace(eng, **changes))
    return dst


def test_corrupt_engine(cuda, tmp_path_factory, tmp_path):
    src = engine_path(cuda, tmp_path_factory, "small", "fp16")
    data = bytearray(src.read_bytes())
    bad = tmp_path / "corrupt.engine"
    data[-300] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(EngineFileError, match="checksum"):
        cuda.CudaRunner(bad)
    bad.write_bytes(src.read_bytes()[:-1000])
    with pytest.raises(EngineFileError, match="truncated"):
        cuda.CudaRunner(bad)
    bad.write_bytes(b"not an engine at all, just text" * 10)
    with pytest.raises(EngineFileError, match="magic"):
        cuda.CudaRunner(bad)
    with pytest.raises(EngineFileError, match="no engine file"):
        cuda.CudaRunner(tmp_path / "missing.engine")


def test_wrong_backend_and_arch(cuda, tmp_path_factory, tmp_path):
    src = engine_path(cuda, tmp_path_factory, "small", "fp16")
    eng = load_engine(src)
    other = _rewrite(src, tmp_path / "ort.engine", backend="onnxruntime")
    with pytest.raises(EngineFileError, match="onnxruntime backend"):
        cuda.CudaRunner(other)
    arch = _rewrite(src, tmp_path / "arch.engine", backend_info={**eng.backend_info, "sm": 12})
    with pytest.raises(EngineFileError, match=r"sm_12.*rebuild"):
        cuda.CudaRunner(arch)
    # a tactic stored for a linear it cannot apply to (the QKV linear feeds attention, not a LayerNorm)
    qkv_n = 3 * CONFIGS["small"].hidden_size
    for field, value in (("residual", True), ("partials", 2)):
        algos = [dict(a, **{field: value}) if a["n"] == qkv_n else a for a in eng.backend_info["gemm_algos"]]
        bad = _rewrite(src, tmp_path / f"{field}.engine", backend_info={**eng.backend_info, "gemm_algos": algos})
        with pytest.raises(EngineFileError, match="does not feed a skip_layernorm"):
            cuda.CudaRunner(bad)


def test_bad_inputs(cuda, tmp_path_factory):
    runner = cuda.CudaRunner(engine_path(cuda, tmp_path_factory, "small", "fp32"))
    cfg = CONFIGS["small"]
    ids, seg, mask = random_inputs(np.random.default_rng(9), cfg, 2, 64, "full")
    with pytest.raises(UserError, match="outside this engine's profiles"):
        runner.run(*random_inputs(np.random.default_rng(1), cfg, 9, 64, "full"))
    with pytest.raises(UserError, match="outside this engine's profiles"):
        runner.run(*random_inputs(np.random.default_rng(1), cfg, 1, 100, "full"))
    for value, what in ((cfg.vocab_size, "vocabulary"), (-1, "vocabulary")):
        bad = ids.copy()
        bad[1, 5] = value
        with pytest.raises(UserError, match=what):
            runner.run(bad, seg, mask)
    bad = seg.copy()
    bad[0, 3] = 2
    with pytest.raises(UserError, match="segment_ids"):
        runner.run(ids, bad, mask)
    bad = mask.copy()
    bad[0, 10] = 0
    with pytest.raises(UserError, match="pad at the end"):
        runner.run(ids, seg, bad)
    bad = mask.copy()
    bad[1, :] = 0
    with pytest.raises(UserError, match="CLS"):
        runner.run(ids, seg, bad)
    with pytest.raises(UserError, match="same shape"):
        runner.run(ids, seg[:, :32], mask)
    with pytest.raises(UserError, match="2-D"):
        runner.run(ids[0], seg[0], mask[0])
    with pytest.raises(UserError, match="integer"):
        runner.run(ids.astype(np.float32), seg, mask)
    # int64 and non-contiguous inputs are accepted (converted once)
    out = runner.run(ids.astype(np.int64), np.asfortranarray(seg), mask)
    np.testing.assert_allclose(out, runner.run(ids, seg, mask), rtol=0, atol=1e-6)


def test_perf_binary(cuda, tmp_path_factory, tmp_path):
    perf = Path(__file__).resolve().parents[1] / "build" / "perf"
    if not perf.is_file():
        pytest.skip("build/perf is not built")
    path = engine_path(cuda, tmp_path_factory, "small", "fp16")
    out = tmp_path / "perf.json"
    r = subprocess.run([str(perf), "-e", str(path), "-b", "1", "-b", "8", "-s", "64", "-i", "20", "-w", "3",
                        "--enable_graph", "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "p99_ms" in r.stdout and out.is_file()
    r = subprocess.run([str(perf), "-e", str(path), "-b", "99", "-s", "64"], capture_output=True, text=True)
    assert r.returncode == 2 and "outside this engine's profiles" in r.stderr
    r = subprocess.run([str(perf), "-e", str(tmp_path / "none.engine")], capture_output=True, text=True)
    assert r.returncode == 2 and "no engine file" in r.stderr
    r = subprocess.run([str(perf), "-b", "x"], capture_output=True, text=True)
    assert r.returncode == 2 and "error:" in r.stderr


def test_stale_gemm_algorithms_fall_back(cuda, tmp_path_factory, tmp_path):
    """A stored algorithm this cuBLASLt rejects falls back to the heuristic, with the right answer."""
    src = engine_path(cuda, tmp_path_factory, "small", "fp16")
    eng = load_engine(src)
    algos = [dict(a, algo=[99999] + a["algo"][1:]) for a in eng.backend_info["gemm_algos"]]
    fb = _rewrite(src, tmp_path / "fb.engine", backend_info={**eng.backend_info, "gemm_algos": algos})
    good, fallback = cuda.CudaRunner(src), cuda.CudaRunner(fb)
    cfg = CONFIGS["small"]
    ids, seg, mask = random_inputs(np.random.default_rng(5), cfg, 2, 64, "random")
    np.testing.assert_allclose(fallback.run(ids, seg, mask), good.run(ids, seg, mask), atol=2e-2)
    assert fallback.stats["gemm_fallbacks"] > 0
    assert good.stats["gemm_fallbacks"] == 0


def test_tuner_reports_every_candidate(cuda):
    """tune_gemms keeps the fastest of the candidates it timed, and reports them all
    (scripts/gemm_sustained.py re-ranks them)."""
    mod = cuda._module()
    r = mod.tune_gemms([(384, 1024, 1024, "fp16", "bias", 1, False)], 32 << 20, 4, 10, True, True)[0]
    assert len(r["timings"]) == r["candidates"] >= 1
    times = [t for _, t in r["timings"]]
    assert all(t > 0 for t in times) and r["time_us"] == min(times)
    assert list(r["algo"]) == list(r["timings"][times.index(min(times))][0])
