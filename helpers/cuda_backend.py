"""The GPU backend: our own CUDA engine (plugins' fused kernels, cuBLASLt GEMMs, CUDA graphs).

build_engine() lays the canonical weights out for the runtime (Q, K, V fused; fp16 or fp32; the
2-logit output linear padded to 8 rows so its product stays on the tensor-core path), times
cuBLASLt's candidate algorithms for every GEMM shape of every profile on this GPU, and records
the choices with the GPU architecture in backend_info. CudaRunner runs an engine file through
the C++ runtime (helpers/_bertqa_cuda, built by CMake from infer_c/).

backend_info of a cuda engine:
    sm, gpu_name, cublaslt_version, cuda_runtime_version   what it was built on (sm must match to run)
    workspace_bytes                                          cuBLASLt workspace
    gelu            "epilogue" (cuBLASLt's tanh GELU fused into the GEMM) | "plugin" (exact erf GELU,
                    plugins' bias_gelu after the GEMM), for hidden_act "gelu"
    output_rows     rows of the padded output linear (the first 2 are the start/end logits)
    gemm_algos      [{profile, m, n, k, dtype, epilogue, algo: [9 ints], time_us, partials, residual}]
                    partials > 1: the linear runs split-K into fp32 partials that the skip_layernorm
                    after it sums; absent means 1. residual: the skip_layernorm's residual is added
                    in the GEMM's epilogue (beta = 1) and the LayerNorm reads one tensor; absent
                    means false. Either way the math is the same (a tactic). time_us includes the
                    LayerNorm wherever split and unsplit forms were compared.
    token_granularity, tuned_tokens   packed engines: token buckets are multiples of the granularity;
                    GEMMs are tuned at tuned_tokens (m) and a bucket uses the next tuned m up

Packed engines (sequence_mode "packed", builder_varseqlen.py) run variable-length sequences back to
back (helpers/packing.py): CudaRunner.run_packed(ids [T], segs [T], cu_seqlens [B+1]) -> [T, 2], and
CudaRunner.run(padded [B, S] arrays) packs them and returns padded logits.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from helpers import packing
from helpers.config import BertConfig
from helpers.engine_file import Engine, Profile, load_engine
from helpers.errors import EngineFileError, UserError
from helpers.network import build_network, network_weights
from helpers.weights import Weights, check_weights

BACKEND = "cuda"
HEAD_SIZES = (32, 64, 128)
OUTPUT_ROWS = 8            # the QA linear's 2 rows padded to 8 (16-byte aligned fp16 rows)
DEFAULT_WORKSPACE_MB = 32
TIMING_CACHE_VERSION = 2  # 2: GEMMs timed with DRAM-resident weights (cold_weights)
# hidden_act "gelu" (erf) in fp16 engines: cuBLASLt's fused tanh-GELU epilogue, whose difference
# from erf-GELU (at most 4.7e-4 absolute, near x = -2.7) is of the order of fp16 rounding of the
# activations (measured: tests/test_cuda_engine_gpu.py::test_gelu_epilogue_accuracy); fp32 engines
# always run the exact erf form (plugins' bias_gelu) to stay within 1e-3 of the reference.
FP16_GELU_EPILOGUE = True


def _module():
    """The native module, or a UserError saying how to build it."""
    try:
        return importlib.import_module("helpers._bertqa_cuda")
    except ImportError as exc:
        raise UserError("the CUDA runtime module helpers/_bertqa_cuda is not built "
                        f"({exc}); build it with scripts/setup.sh (needs nvcc and "
                        "pip install nvidia-cublas)") from None


@contextlib.contextmanager
def _native_errors():
    """C++ exceptions for user mistakes -> helpers.errors (one line, no traceback)."""
    mod = _module()
    try:
        yield mod
    except mod.EngineFileError as exc:
        raise EngineFileError(str(exc)) from None
    except mod.UserError as exc:  # DeviceError too: no GPU, out of memory
        raise UserError(str(exc)) from None


def available() -> tuple[bool, str]:
    """(True, 'GPU name (sm_XX)') when the module is built and a GPU is usable, else (False, why)."""
    try:
        mod = importlib.import_module("helpers._bertqa_cuda")
    except ImportError as exc:
        return False, (f"the CUDA runtime module is not built ({exc}); "
                       "build it with scripts/setup.sh on a machine with nvcc")
    try:
        info = mod.device_info()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available", with its reason
        return False, str(exc)
    return True, f"{info['name']} (sm_{info['sm']})"


def device_info() -> dict:
    with _native_errors() as mod:
        return dict(mod.device_info())


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------
def _profiles(profiles, cfg: BertConfig) -> list[Profile]:
    out = []
    for p in profiles:
        if isinstance(p, Profile):
            b, s = p.batch, p.seq
        elif isinstance(p, dict):
            b, s = p["batch"], p["seq"]
        else:
            b, s = p
        b, s = int(b), int(s)
        if b < 1:
            raise UserError(f"batch size must be at least 1, got {b}")
        if not 1 <= s <= cfg.max_position_embeddings:
            raise UserError(f"sequence length {s} is outside 1..{cfg.max_position_embeddings} "
                            "(the model's max_position_embeddings)")
        if Profile(b, s) not in out:
            out.append(Profile(b, s))
    if not out:
        raise UserError("no profiles: give at least one batch size (-b) and sequence length (-s)")
    return out


def token_granularity(max_seq: int) -> int:
    """Token-bucket granularity of a packed engine (the C++ runtime's rule: min(128, max seq))."""
    return min(128, int(max_seq))


def packed_tuning_sizes(max_batch: int, max_seq: int) -> list[int]:
    """GEMM m values tuned for a packed engine: g x {1, 2, 3, 4, 6, 8, 12, ...} up to the largest bucket."""
    g = token_granularity(max_seq)
    top = -(-max_batch * max_seq // g) * g
    sizes, k = set(), 1
    while k * g < top:
        sizes.add(k * g)
        if k * 3 // 2 * g < top and k >= 2:
            sizes.add(k * 3 // 2 * g)
        k *= 2
    sizes.add(top)
    return sorted(sizes)


SPLIT_K_PARTIALS = (2, 3, 4, 6, 8)   # split-K counts timed for the linears feeding a skip_layernorm
SPLIT_K_MAX_OUTPUT = 1 << 21          # ... whose output (m x n) is this small: too few tiles to fill the GPU
SPLIT_K_MAX_BYTES = 32 << 20          # fp32 partials of one product, at most


def split_k_candidates(m: int, n: int, k: int) -> list[int]:
    """Split-K counts worth timing for a linear of m x n output over k that feeds a skip_layernorm:
    K slices that are whole 64-wide tiles, partials within SPLIT_K_MAX_BYTES, small outputs only."""
    if m * n > SPLIT_K_MAX_OUTPUT:
        return []
    return [p for p in SPLIT_K_PARTIALS
            if k % p == 0 and (k // p) % 64 == 0 and p * m * n * 4 <= SPLIT_K_MAX_BYTES]


RESIDUAL_EPILOGUE_MIN_OUTPUT = 1 << 25  # m x n elements from which the residual goes into the epilogue


def residual_epilogue_wanted(m: int, n: int, packed: bool = False) -> bool:
    """Whether a linear of m x n output that feeds a skip_layernorm adds the LayerNorm's residual in
    its GEMM epilogue (beta = 1; the LayerNorm then reads one tensor instead of two). A rule, not a
    timing: the tuner's isolated GEMM + LayerNorm timings do not rank the two forms as the network
    does. Measured end to end on the H100 (BENCHMARKS.md, "Residual in the GEMM epilogue"): padded
    BERT-large S=384 B=128 (m x n = 50M) 1.5-2.5% faster with it; BERT-base S=128 B=128 (12.6M) and
    every smaller batch 1-2% slower; the packed offline run (-b 1024) 0.3-0.7% slower, so packed
    engines never use it."""
    return not packed and m * n >= RESIDUAL_EPILOGUE_MIN_OUTPUT


def _layernorm_fed_linears(network) -> set[str]:
    """Outputs of the linears (activation none) read only by a skip_layernorm, as its x: these may
    run split-K (the C++ runtime applies the same rule)."""
    readers: dict[str, list[tuple[str, int]]] = {}
    for op in network.ops:
        for i, name in enumerate(op.inputs):
            readers.setdefault(name, []).append((op.kind, i))
    return {op.output for op in network.ops
            if op.kind == "linear" and op.attrs.get("activation") == "none" and op.output != network.output
            and readers.get(op.output) == [("skip_layernorm", 0)]}


def _epilogue(activation: str, gelu_mode: str) -> str:
    if activation == "none":
        return "bias"
    if activation == "gelu_tanh" or (activation == "gelu" and gelu_mode == "epilogue"):
        return "gelu_bias"
    return "none"  # erf GELU: plain product, then plugins' bias_gelu adds the bias and applies it


def _cache_key(dev: dict, m: int, n: int, k: int, dtype: str, epi: str, workspace: int) -> str:
    return (f"{dev['name']}|sm_{dev['sm']}|cublasLt {dev['cublaslt_version']}|"
            f"m={m} n={n} k={k} {dtype} {epi} ws={workspace}")


def _read_timing_cache(path: Path | None, verbose: bool) -> dict:
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != TIMING_CACHE_VERSION:
            raise ValueError(f"its timings are of format {data.get('version')!r}, this version times "
                             f"format {TIMING_CACHE_VERSION}")
        if not isinstance(data.get("entries"), dict):
            raise ValueError("unknown layout")
        return dict(data["entries"])
    except (OSError, ValueError, UnicodeDecodeError, AttributeError) as exc:
        print(f"warning: ignoring the timing cache {path} ({exc}); it will be rewritten", file=sys.stderr)
        return {}


def _write_timing_cache(path: Path, entries: dict) -> None:
    text = json.dumps({"version": TIMING_CACHE_VERSION, "entries": entries}, indent=0, sort_keys=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"cannot write the timing cache {path}: {exc.strerror or exc}") from None


def build_engine(cfg: BertConfig, weights: Weights, vocab: list[str], do_lower_case: bool,
                 profiles, precision: str = "fp16", timing_cache: str | Path | None = None,
                 verbose: bool = False, *, workspace_mb: int | None = None,
                 gelu_epilogue: bool | None = None, max_candidates: int = 16,
                 tune_iterations: int = 20, extended_search: bool = True, cold_weights: bool = True,
                 producer: str = "bertqa cuda_backend", packed: bool = False,
                 split_k: int | None = None, residual_epilogue: bool | None = None) -> Engine:
    """An Engine for the cuda backend, tuned on this GPU (save it with helpers.engine_file.save_engine).

    weights are the canonical float32 weights of helpers/weights.py. gelu_epilogue chooses how an
    erf-GELU model's FFN activation runs (None: the default for the precision, see FP16_GELU_EPILOGUE).
    extended_search also times variants of cuBLASLt's candidates (CTA swizzling, split-K for small
    outputs); max_candidates bounds the heuristic's list. cold_weights times each GEMM with its
    weights coming from DRAM, as in the network (False: L2-resident weights, the old way).
    packed=True builds a variable sequence length engine: profiles must be one (max batch, max
    seq); GEMMs are tuned at packed_tuning_sizes. split_k: None times split-K variants
    (split_k_candidates) of the linears feeding a skip_layernorm, each with that LayerNorm, and keeps
    the fastest; an integer forces that count wherever K divides into 8-aligned slices (1: never).
    residual_epilogue: those linears' unsplit form adds the LayerNorm's residual in the GEMM's
    epilogue (beta = 1; the LayerNorm then reads one tensor): None where residual_epilogue_wanted
    says so, True everywhere, False nowhere.
    """
    if precision not in ("fp32", "fp16"):
        raise UserError(f"the cuda backend builds fp32 or fp16 engines, not {precision}")
    if cfg.head_size not in HEAD_SIZES:
        raise UserError(f"attention head size {cfg.head_size} (hidden {cfg.hidden_size} / "
                        f"{cfg.num_heads} heads) is not supported by the CUDA engine (head sizes "
                        f"{', '.join(map(str, HEAD_SIZES))}); use --backend onnxruntime")
    if len(vocab) != cfg.vocab_size:
        raise UserError(f"the vocabulary has {len(vocab)} tokens but the model's vocab_size is "
                        f"{cfg.vocab_size}; pass the checkpoint's own vocab.txt")
    profs = _profiles(profiles, cfg)
    if packed and len(profs) != 1:
        raise UserError("a packed (variable sequence length) engine takes one maximum batch (-b) and one "
                        f"maximum sequence length (-s), got {len(profs)} profiles")
    workspace = int(workspace_mb if workspace_mb is not None else DEFAULT_WORKSPACE_MB) << 20
    if workspace < 1 << 20:
        raise UserError("the GEMM workspace must be at least 1 MiB (-w)")
    weights = check_weights(cfg, weights)
    with _native_errors() as mod:
        dev = dict(mod.device_info())

    network = build_network(cfg)
    nw = network_weights(cfg, weights)
    dtype = np.float16 if precision == "fp16" else np.float32
    if gelu_epilogue is None:
        gelu_epilogue = precision == "fp16" and FP16_GELU_EPILOGUE
    gelu_mode = "epilogue" if gelu_epilogue else "plugin"

    tensors: dict[str, np.ndarray] = {}
    out_op = next(op for op in network.ops if op.output == network.output)
    for name in network.weight_names():
        w = nw[name]
        if name in out_op.weights and w.shape[0] < OUTPUT_ROWS:  # pad [2, H] / [2] to 8 rows
            pad = np.zeros((OUTPUT_ROWS - w.shape[0],) + w.shape[1:], np.float32)
            w = np.concatenate([w, pad], axis=0)
        a = np.ascontiguousarray(w, dtype=dtype)
        if not np.isfinite(a).all():
            raise UserError(f"weight {name} does not fit in {precision} (values up to "
                            f"{float(np.abs(w).max()):.3g}); build an fp32 engine")
        tensors[name] = a

    # GEMM shapes: every linear of every profile (m = batch * seq tokens).
    fed = _layernorm_fed_linears(network)
    linears = {}  # (n, k, epilogue) per distinct linear kind -> may it split (all its ops feed a LayerNorm)
    for op in network.ops:
        if op.kind == "linear":
            n, k = tensors[op.weights[0]].shape
            key = (int(n), int(k), _epilogue(op.attrs["activation"], gelu_mode))
            linears[key] = linears.get(key, True) and op.output in fed
    if split_k is not None and not 1 <= int(split_k) <= 16:
        raise UserError(f"split_k must be 1..16, got {split_k}")
    cache_path = Path(timing_cache) if timing_cache else None
    cache = _read_timing_cache(cache_path, verbose)
    if residual_epilogue and split_k is not None and int(split_k) > 1:
        raise UserError("the residual in the GEMM epilogue needs unsplit products: not with split_k > 1")
    wanted = []   # (profile index, m, n, k, epilogue, [(partials, epilogue, with_ln, residual, cache key)])
    for pi, p in enumerate(profs):
        sizes = packed_tuning_sizes(p.batch, p.seq) if packed else [p.batch * p.seq]
        for ((n, k, epi), splittable), m in ((lin, m) for lin in linears.items() for m in sizes):
            if not splittable:
                splits = []
            elif split_k is None:
                splits = split_k_candidates(m, n, k)
            else:
                forced = int(split_k)
                splits = [forced] if forced > 1 and k % forced == 0 and (k // forced) % 8 == 0 else []
            # The unsplit form, for a linear feeding a skip_layernorm with the LayerNorm's residual
            # added in the epilogue where residual_epilogue_wanted says so (or as forced).
            residual = splittable and (residual_epilogue_wanted(m, n, packed) if residual_epilogue is None
                                       else bool(residual_epilogue))
            options = [(1, epi, residual)] * (split_k is None or not splits) + [(q, "none", False) for q in splits]
            with_ln = bool(splits)  # split and unsplit are timed with the LayerNorm, so they compare whole
            choices = []
            for q, e, r in options:
                key = (_cache_key(dev, m, n, k, precision, e, workspace) + ("" if extended_search else " heuristic")
                       + ("" if cold_weights else " l2-resident weights")
                       + (f" partials={q}" if q > 1 else "") + (" +residual" if r else "")
                       + (" +layernorm" if with_ln else ""))
                choices.append((q, e, with_ln, r, key))
            wanted.append((pi, m, n, k, epi, choices))
    todo = {c[4]: (m, n, k, c) for _, m, n, k, _, cs in wanted for c in cs if c[4] not in cache}
    todo = [todo[key] for key in sorted(todo)]
    if todo:
        if verbose:
            print(f"tuning {len(todo)} GEMM shapes on {dev['name']} (the rest from the timing cache)",
                  file=sys.stderr)
        with _native_errors() as mod:
            results = mod.tune_gemms([(m, n, k, precision, e, q, ln, r) for m, n, k, (q, e, ln, r, _) in todo],
                                     workspace, max_candidates, tune_iterations, extended_search,
                                     cold_weights)
        for (m, n, k, (q, e, ln, r, key)), res in zip(todo, results):
            cache[key] = {"algo": list(res["algo"]), "time_us": res["time_us"],
                          "heuristic_time_us": res["heuristic_time_us"], "candidates": res["candidates"]}
            if verbose:
                what = (f"{e}" + (f" partials={q}" if q > 1 else "") + (" +residual" if r else "")
                        + (" +layernorm" if ln else ""))
                print(f"  m={m:6d} n={n:5d} k={k:5d} {precision} {what:33s} {res['time_us']:9.1f} us "
                      f"(heuristic's first {res['heuristic_time_us']:.1f} us; {res['candidates']} timed, "
                      f"{res.get('heuristic_candidates', '?')} from the heuristic) algo {list(res['algo'])}",
                      file=sys.stderr)
        if cache_path is not None:
            _write_timing_cache(cache_path, cache)
    gemm_algos = []
    for pi, m, n, k, epi, choices in wanted:
        q, _, _, r, key = min(choices, key=lambda c: cache[c[4]]["time_us"])
        gemm_algos.append({"profile": pi, "m": m, "n": n, "k": k, "dtype": precision, "epilogue": epi,
                           "algo": cache[key]["algo"], "time_us": cache[key]["time_us"], "partials": q,
                           "residual": r})

    backend_info = {
        "sm": int(dev["sm"]), "gpu_name": dev["name"], "cublaslt_version": int(dev["cublaslt_version"]),
        "cuda_runtime_version": int(dev["cuda_runtime_version"]), "workspace_bytes": workspace,
        "gelu": gelu_mode, "output_rows": OUTPUT_ROWS, "gemm_algos": gemm_algos,
    }
    if packed:
        backend_info["token_granularity"] = token_granularity(profs[0].seq)
        backend_info["tuned_tokens"] = packed_tuning_sizes(profs[0].batch, profs[0].seq)
    return Engine(backend=BACKEND, precision=precision, config=cfg, network=network,
                  profiles=tuple(profs), vocab=tuple(vocab), do_lower_case=bool(do_lower_case),
                  tensors=tensors, backend_info=backend_info, producer=producer,
                  sequence_mode="packed" if packed else "padded",
                  token_capacity=profs[0].batch * profs[0].seq if packed else 0)


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
def _int32_array(name: str, a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.int32 and a.flags.c_contiguous:
        return a  # no copy
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        raise UserError(f"{name} must be an integer array [batch, seq], got {a.dtype}")
    if a.size and a.dtype != np.bool_ and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
        raise UserError(f"{name} holds values outside int32")
    return np.ascontiguousarray(a, dtype=np.int32)


class CudaRunner:
    """Runs a cuda engine file: run(input_ids, segment_ids, input_mask) -> float32 logits [B, S, 2].

    .engine is the engine's header (helpers.engine_file.Engine without tensors), .profiles its
    profiles, .engine_info a dict of what it was built with and what it uses on this GPU.
    """

    def __init__(self, path: str | Path, enable_graph: bool = True):
        ok, why = available()
        if not ok:  # say what to do with this engine file, not just what the machine lacks
            raise UserError(f"cannot run the cuda engine {path} here: {why}; to answer on the CPU, "
                            "build an onnxruntime engine (builder.py --backend onnxruntime)")
        with _native_errors() as mod:
            self._rt = mod.Runner(str(path), bool(enable_graph))
        self.engine = load_engine(path, backend=BACKEND, tensors=False)
        self.profiles = tuple(Profile(b, s) for b, s in self._rt.profiles)
        self.packed = bool(self._rt.packed)
        self.max_batch, self.max_seq = int(self._rt.max_batch), max(p.seq for p in self.profiles)
        self.token_capacity = int(self._rt.token_capacity)
        header = json.loads(bytes(self._rt.header_json).decode("utf-8"))
        self.engine_info = {
            "path": str(path), "backend": header["backend"], "precision": header["precision"],
            "config": header["config"], "producer": header.get("producer", ""),
            "profiles": [{"batch": p.batch, "seq": p.seq} for p in self.profiles],
            "backend_info": {k: v for k, v in header.get("backend_info", {}).items() if k != "gemm_algos"},
            "gemm_algos": len(header.get("backend_info", {}).get("gemm_algos", [])),
            "device": dict(self._rt.device), "enable_graph": self._rt.graph_enabled,
            "device_memory_bytes": self._rt.device_memory_bytes,
            "sequence_mode": header.get("sequence_mode", "padded"),
        }
        if self.packed:
            self.engine_info["token_capacity"] = self.token_capacity

    @property
    def stats(self) -> dict:
        return dict(self._rt.stats)

    def run(self, input_ids, segment_ids, input_mask) -> np.ndarray:
        """Padded [B, S] int arrays -> logits [B, S, 2]. Packed engines drop the padding (by the
        prefix mask), run the packed batch and return packing.PAD_LOGIT at the padding positions."""
        arrays = [_int32_array(n, a) for n, a in (("input_ids", input_ids), ("segment_ids", segment_ids),
                                                  ("input_mask", input_mask))]
        if self.packed:
            if arrays[0].ndim != 2:
                raise UserError(f"input_ids must be a 2-D [batch, seq] array, got shape {arrays[0].shape}")
            if arrays[0].shape[1] > self.max_seq:
                raise UserError(f"sequence length {arrays[0].shape[1]} is over this engine's maximum "
                                f"{self.max_seq}; rebuild with builder_varseqlen.py -s")
            pb = packing.pack(*arrays)
            out = self.run_packed(pb.input_ids, pb.segment_ids, pb.cu_seqlens)
            return packing.unpack_logits(out, pb.cu_seqlens, arrays[0].shape[1])
        with _native_errors():
            return self._rt.run(*arrays)

    def run_packed(self, input_ids, segment_ids, cu_seqlens, max_seqlen: int | None = None) -> np.ndarray:
        """Packed engines: token ids [T] and segment ids [T] of all sequences back to back, cu_seqlens
        [B+1] (sequence b = tokens cu_seqlens[b]..cu_seqlens[b+1]) -> float32 logits [T, 2].
        max_seqlen, if given, must be at least the longest sequence (the engine's maximum is used)."""
        arrays = [_int32_array(n, np.asarray(a).reshape(-1) if np.ndim(a) == 0 else a)
                  for n, a in (("input_ids", input_ids), ("segment_ids", segment_ids), ("cu_seqlens", cu_seqlens))]
        if max_seqlen is not None:
            lengths = np.diff(arrays[2].astype(np.int64)) if arrays[2].ndim == 1 else np.zeros(0)
            if max_seqlen > self.max_seq:
                raise UserError(f"max_seqlen {max_seqlen} is over this engine's maximum sequence length {self.max_seq}")
            if lengths.size and lengths.max() > max_seqlen:
                raise UserError(f"a sequence has {int(lengths.max())} tokens, more than max_seqlen {max_seqlen}")
        with _native_errors():
            return self._rt.run_packed(*arrays)

    def time_forward(self, input_ids, segment_ids, input_mask, iterations: int, warmup: int) -> list[float]:
        """Device latencies (ms, CUDA events) of forward passes on inputs uploaded once, as build/perf."""
        arrays = [_int32_array(n, a) for n, a in (("input_ids", input_ids), ("segment_ids", segment_ids),
                                                  ("input_mask", input_mask))]
        batch, seq = arrays[0].shape if arrays[0].ndim == 2 else (0, 0)
        with _native_errors():
            self._rt.set_inputs(*arrays)
            return list(self._rt.time_forward(int(batch), int(seq), int(iterations), int(warmup)))
