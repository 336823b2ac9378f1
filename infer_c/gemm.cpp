#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>

#include "bert_plugins.h"
#include "cuda_utils.h"
#include "kernels.h"

namespace bertqa {

// ---------------------------------------------------------------------------------------------
// Names and small helpers
// ---------------------------------------------------------------------------------------------
const char* to_string(GemmDType t) { return t == GemmDType::kFloat16 ? "fp16" : "fp32"; }

const char* to_string(GemmEpilogue e) {
    switch (e) {
        case GemmEpilogue::kNone: return "none";
        case GemmEpilogue::kBias: return "bias";
        case GemmEpilogue::kGeluBias: return "gelu_bias";
    }
    return "?";
}

GemmDType gemm_dtype_from_string(const std::string& s) {
    if (s == "fp16" || s == "float16") return GemmDType::kFloat16;
    if (s == "fp32" || s == "float32") return GemmDType::kFloat32;
    throw std::invalid_argument("GEMM dtype must be 'fp16' or 'fp32', got '" + s + "'");
}

GemmEpilogue gemm_epilogue_from_string(const std::string& s) {
    if (s == "none") return GemmEpilogue::kNone;
    if (s == "bias") return GemmEpilogue::kBias;
    if (s == "gelu_bias") return GemmEpilogue::kGeluBias;
    throw std::invalid_argument("GEMM epilogue must be 'none', 'bias' or 'gelu_bias', got '" + s + "'");
}

std::string GemmShape::str() const {  // no iostreams in the library (see engine_file.cpp)
    return "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) + " " +
           to_string(dtype) + " " + to_string(epilogue) + (partials > 1 ? " partials=" + std::to_string(partials) : "") +
           (residual ? " +residual" : "") + (layernorm_after ? " +layernorm" : "");
}

size_t cublaslt_version() { return cublasLtGetVersion(); }

void check_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    if (s == CUBLAS_STATUS_ALLOC_FAILED)
        throw DeviceError(std::string("out of GPU memory in cuBLASLt (") + call +
                          "); free GPU memory or build the engine with smaller profiles");
    if (s == CUBLAS_STATUS_NOT_INITIALIZED)
        throw DeviceError(std::string("cuBLASLt could not initialise (") + call +
                          "): is a CUDA GPU visible and the driver recent enough?");
    throw std::runtime_error(std::string("cuBLASLt error: ") + call + " returned status " + std::to_string(int(s)) +
                             " at " + file + ":" + std::to_string(line));
}

namespace {

cudaDataType_t cuda_type(GemmDType t) { return t == GemmDType::kFloat16 ? CUDA_R_16F : CUDA_R_32F; }
size_t elem_size(GemmDType t) { return t == GemmDType::kFloat16 ? 2 : 4; }
// D's type: the activations' dtype, or fp32 for split-K partials.
cudaDataType_t output_type(const GemmShape& s) { return s.partials > 1 ? CUDA_R_32F : cuda_type(s.dtype); }
size_t output_bytes(const GemmShape& s) {
    return size_t(s.partials) * size_t(s.m) * size_t(s.n) * (s.partials > 1 ? 4 : elem_size(s.dtype));
}

void set_batch(cublasLtMatrixLayout_t layout, int count, int64_t stride) {
    BERTQA_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
    BERTQA_CUBLAS_CHECK(
        cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
}

cublasLtEpilogue_t lt_epilogue(GemmEpilogue e) {
    switch (e) {
        case GemmEpilogue::kNone: return CUBLASLT_EPILOGUE_DEFAULT;
        case GemmEpilogue::kBias: return CUBLASLT_EPILOGUE_BIAS;
        case GemmEpilogue::kGeluBias: return CUBLASLT_EPILOGUE_GELU_BIAS;
    }
    return CUBLASLT_EPILOGUE_DEFAULT;
}

// The algorithm configuration attributes kept in GemmAlgoConfig, in to_ints() order.
constexpr cublasLtMatmulAlgoConfigAttributes_t kAlgoAttrs[] = {
    CUBLASLT_ALGO_CONFIG_TILE_ID,        CUBLASLT_ALGO_CONFIG_STAGES_ID,        CUBLASLT_ALGO_CONFIG_SPLITK_NUM,
    CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION,
    CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID,
};

// Reads an attribute of whatever width this cuBLASLt stores it in (2 or 4 bytes).
int64_t get_algo_attr(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attr) {
    size_t need = 0;
    if (cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, nullptr, 0, &need) != CUBLAS_STATUS_SUCCESS || need == 0 ||
        need > 8)
        return 0;
    uint8_t buf[8] = {};
    size_t written = 0;
    BERTQA_CUBLAS_CHECK(cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, buf, need, &written));
    if (need == 2) { uint16_t v; std::memcpy(&v, buf, 2); return v; }
    if (need == 4) { int32_t v; std::memcpy(&v, buf, 4); return attr == CUBLASLT_ALGO_CONFIG_SPLITK_NUM || attr == CUBLASLT_ALGO_CONFIG_ID ? int64_t(v) : int64_t(uint32_t(v)); }
    int64_t v; std::memcpy(&v, buf, 8); return v;
}

bool set_algo_attr(cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attr, int64_t value) {
    size_t need = 0;
    if (cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, nullptr, 0, &need) != CUBLAS_STATUS_SUCCESS || need == 0 ||
        need > 8)
        return value == 0;  // an attribute this cuBLASLt lacks is fine only at its default
    uint8_t buf[8] = {};
    if (need == 2) { const uint16_t v = uint16_t(value); std::memcpy(buf, &v, 2); }
    else if (need == 4) { const uint32_t v = uint32_t(value); std::memcpy(buf, &v, 4); }
    else std::memcpy(buf, &value, 8);
    return cublasLtMatmulAlgoConfigSetAttribute(&algo, attr, buf, need) == CUBLAS_STATUS_SUCCESS;
}

}  // namespace

std::vector<int64_t> GemmAlgoConfig::to_ints() const {
    return {algo_id, tile, stages, splitk, reduction, swizzle, custom, inner_shape, cluster_shape};
}

GemmAlgoConfig GemmAlgoConfig::from_ints(const std::vector<int64_t>& v) {
    if (v.size() != 9) throw std::invalid_argument("a GEMM algorithm is 9 integers, got " + std::to_string(v.size()));
    GemmAlgoConfig c;
    c.algo_id = int32_t(v[0]);
    c.tile = uint32_t(v[1]);
    c.stages = uint32_t(v[2]);
    c.splitk = int32_t(v[3]);
    c.reduction = uint32_t(v[4]);
    c.swizzle = uint32_t(v[5]);
    c.custom = uint32_t(v[6]);
    c.inner_shape = uint32_t(v[7]);
    c.cluster_shape = uint32_t(v[8]);
    return c;
}

GemmAlgoConfig algo_config_of(const cublasLtMatmulAlgo_t& algo) {
    GemmAlgoConfig c;
    c.algo_id = int32_t(get_algo_attr(algo, CUBLASLT_ALGO_CONFIG_ID));
    c.tile = uint32_t(get_algo_attr(algo, CUBLASLT_ALGO_CONFIG_TILE_ID));
    c.stages = uint32_t(get_algo_attr(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID));
    c.splitk = int32_t(get_algo_attr(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM));
    c.reduction = uint32_t(get_algo_attr(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME));
    c.swizzle = uint32_t(get_algo_attr(algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING));
    c.custom = uint32_t(get_algo_attr(algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION));
    c.inner_shape = uint32_t(get_algo_attr(algo, CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID));
    c.cluster_shape = uint32_t(get_algo_attr(algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID));
    return c;
}

// ---------------------------------------------------------------------------------------------
// Handle and plan
// ---------------------------------------------------------------------------------------------
LtHandle::LtHandle() { BERTQA_CUBLAS_CHECK(cublasLtCreate(&h_)); }
LtHandle::~LtHandle() {
    if (h_) cublasLtDestroy(h_);
}

GemmPlan::GemmPlan(const LtHandle& handle, const GemmShape& shape) : handle_(handle.get()), shape_(shape) {
    if (shape.m < 1 || shape.n < 1 || shape.k < 1)
        throw std::invalid_argument("GEMM dimensions must be positive: " + shape.str());
    const int p = shape.partials;
    if (p < 1 || p > 16) throw std::invalid_argument("GEMM partials must be 1..16: " + shape.str());
    if (p > 1 && (shape.epilogue != GemmEpilogue::kNone || shape.k % p != 0 || (shape.k / p) % 8 != 0))
        throw std::invalid_argument("a split-K GEMM needs no epilogue and K slices that are multiples of 8: " +
                                    shape.str());
    if (shape.residual && (p > 1 || shape.epilogue == GemmEpilogue::kGeluBias))
        throw std::invalid_argument("a residual in the epilogue needs an unsplit product and no GELU: " + shape.str());
    const cudaDataType_t t = cuda_type(shape.dtype);
    const int kslice = shape.k / p;
    try {
        BERTQA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        BERTQA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
        BERTQA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
        const cublasLtEpilogue_t epi = lt_epilogue(shape.epilogue);
        BERTQA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
        // Slice q of K: W[:, q kslice ...] and X[:, q kslice ...] are kslice elements further along
        // their rows (same leading dimension k); partial q is one m x n matrix further on.
        BERTQA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_, t, kslice, shape.n, shape.k));
        BERTQA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b_, t, kslice, shape.m, shape.k));
        BERTQA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c_, output_type(shape), shape.n, shape.m, shape.n));
        if (p > 1) {
            set_batch(a_, p, kslice);
            set_batch(b_, p, kslice);
            set_batch(c_, p, int64_t(shape.m) * shape.n);
        }
    } catch (...) {
        destroy();
        throw;
    }
}

GemmPlan::~GemmPlan() { destroy(); }

void GemmPlan::destroy() noexcept {
    if (c_) cublasLtMatrixLayoutDestroy(c_);
    if (b_) cublasLtMatrixLayoutDestroy(b_);
    if (a_) cublasLtMatrixLayoutDestroy(a_);
    if (desc_) cublasLtMatmulDescDestroy(desc_);
    c_ = b_ = a_ = nullptr;
    desc_ = nullptr;
}

GemmPlan::GemmPlan(GemmPlan&& o) noexcept
    : handle_(o.handle_), shape_(o.shape_), desc_(std::exchange(o.desc_, nullptr)), a_(std::exchange(o.a_, nullptr)),
      b_(std::exchange(o.b_, nullptr)), c_(std::exchange(o.c_, nullptr)), algo_(o.algo_), has_algo_(o.has_algo_) {}

std::vector<cublasLtMatmulHeuristicResult_t> GemmPlan::candidates(size_t workspace_bytes, int max_results) const {
    cublasLtMatmulPreference_t pref = nullptr;
    BERTQA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    std::vector<cublasLtMatmulHeuristicResult_t> results(std::max(1, max_results));
    int returned = 0;
    const uint64_t ws = workspace_bytes;
    cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(handle_, desc_, a_, b_, c_, c_, pref, int(results.size()), results.data(),
                                           &returned);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s == CUBLAS_STATUS_NOT_SUPPORTED) returned = 0;
    else BERTQA_CUBLAS_CHECK(s);
    std::vector<cublasLtMatmulHeuristicResult_t> ok;
    for (int i = 0; i < returned; ++i)
        if (results[i].state == CUBLAS_STATUS_SUCCESS && results[i].workspaceSize <= workspace_bytes)
            ok.push_back(results[i]);
    return ok;
}

bool GemmPlan::set_algo(const GemmAlgoConfig& cfg, size_t workspace_bytes) {
    if (!cfg.valid()) return false;
    const cudaDataType_t t = cuda_type(shape_.dtype), ot = output_type(shape_);
    // Only ids this cuBLASLt lists for the types (an unknown id is a stale engine, not an error).
    int ids[256];
    int count = 0;
    if (cublasLtMatmulAlgoGetIds(handle_, CUBLAS_COMPUTE_32F, CUDA_R_32F, t, t, ot, ot, 256, ids, &count) !=
            CUBLAS_STATUS_SUCCESS ||
        std::find(ids, ids + count, cfg.algo_id) == ids + count)
        return false;
    cublasLtMatmulAlgo_t algo{};
    if (cublasLtMatmulAlgoInit(handle_, CUBLAS_COMPUTE_32F, CUDA_R_32F, t, t, ot, ot, cfg.algo_id, &algo) !=
        CUBLAS_STATUS_SUCCESS)
        return false;
    const int64_t values[] = {cfg.tile,   cfg.stages, cfg.splitk,      cfg.reduction,
                              cfg.swizzle, cfg.custom, cfg.inner_shape, cfg.cluster_shape};
    for (size_t i = 0; i < sizeof(kAlgoAttrs) / sizeof(kAlgoAttrs[0]); ++i)
        if (!set_algo_attr(algo, kAlgoAttrs[i], values[i])) return false;
    cublasLtMatmulHeuristicResult_t check{};
    if (cublasLtMatmulAlgoCheck(handle_, desc_, a_, b_, c_, c_, &algo, &check) != CUBLAS_STATUS_SUCCESS ||
        check.state != CUBLAS_STATUS_SUCCESS || check.workspaceSize > workspace_bytes)
        return false;
    set_algo(algo);
    return true;
}

void GemmPlan::set_heuristic_algo(size_t workspace_bytes) {
    const auto c = candidates(workspace_bytes, 1);
    if (c.empty())
        throw std::runtime_error("cuBLASLt has no algorithm for the product " + shape_.str() +
                                 " on this GPU (cuBLASLt version " + std::to_string(cublaslt_version()) + ")");
    set_algo(c.front().algo);
}

void GemmPlan::set_bias(const void* bias) {
    BERTQA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
}

void GemmPlan::run(const void* w, const void* x, void* y, void* workspace, size_t workspace_bytes,
                   cudaStream_t stream, const void* residual) const {
    if (!has_algo_) throw std::logic_error("GemmPlan::run before an algorithm was chosen: " + shape_.str());
    if ((residual != nullptr) != shape_.residual || (residual != nullptr && residual == y))
        throw std::logic_error("GemmPlan::run: a residual (its own tensor) is given exactly to residual shapes: " +
                               shape_.str());
    const float alpha = 1.0f, beta = residual != nullptr ? 1.0f : 0.0f;
    BERTQA_CUBLAS_CHECK(cublasLtMatmul(handle_, desc_, &alpha, w, a_, x, b_, &beta, residual != nullptr ? residual : y,
                                       c_, y, c_, &algo_, workspace, workspace_bytes, stream));
}

// ---------------------------------------------------------------------------------------------
// Tuning
// ---------------------------------------------------------------------------------------------
namespace {

// Time of one product with algo, from `iterations` products captured in one graph (no launch
// gaps), best of two replays after a warm-up replay. Negative when the algorithm fails to run.
// Product i reads weight copy i % w_copies (w_stride bytes apart): with enough copies to overflow
// the L2 cache the weights come from DRAM, as in the network, where each GEMM's weights are read
// once per pass and the whole model (0.67 GB for BERT-large fp16) never fits in L2.
// `after` (may be empty) is enqueued after every product: the LayerNorm that consumes it.
double time_candidate(GemmPlan& plan, const cublasLtMatmulAlgo_t& algo, const void* w, size_t w_stride,
                      int w_copies, const void* x, void* y, const void* residual, void* ws, size_t ws_bytes,
                      int iterations, const Stream& stream, const std::function<void()>& after) {
    plan.set_algo(algo);
    cudaGraph_t raw = nullptr;
    BERTQA_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
    bool ok = true;
    try {
        for (int i = 0; i < iterations; ++i) {
            plan.run(static_cast<const uint8_t*>(w) + size_t(i % w_copies) * w_stride, x, y, ws, ws_bytes, stream.get(),
                     residual);
            if (after) after();
        }
    } catch (const std::exception&) {
        ok = false;
    }
    const cudaError_t end = cudaStreamEndCapture(stream.get(), &raw);
    Graph graph(raw);
    if (!ok || end != cudaSuccess || raw == nullptr) {
        cudaGetLastError();
        return -1.0;
    }
    cudaGraphExec_t exec_raw = nullptr;
    if (cudaGraphInstantiate(&exec_raw, graph.get(), 0) != cudaSuccess) {
        cudaGetLastError();
        return -1.0;
    }
    struct ExecOwner {
        cudaGraphExec_t e;
        ~ExecOwner() { cudaGraphExecDestroy(e); }
    } exec{exec_raw};
    Event start, stop;
    BERTQA_CUDA_CHECK(cudaGraphLaunch(exec.e, stream.get()));
    double best = std::numeric_limits<double>::infinity();
    for (int rep = 0; rep < 2; ++rep) {
        start.record(stream.get());
        BERTQA_CUDA_CHECK(cudaGraphLaunch(exec.e, stream.get()));
        stop.record(stream.get());
        best = std::min(best, double(stop.since(start)) * 1000.0 / iterations);
    }
    return best;
}

}  // namespace

std::vector<GemmTuneResult> tune_gemms(const std::vector<GemmShape>& shapes, size_t workspace_bytes,
                                       int max_candidates, int iterations, bool extended_search, bool cold_weights) {
    if (max_candidates < 1) throw std::invalid_argument("max_candidates must be >= 1");
    if (iterations < 1) throw std::invalid_argument("iterations must be >= 1");
    current_device_info();  // DeviceError when there is no GPU
    int device = 0, l2_bytes = 0;
    BERTQA_CUDA_CHECK(cudaGetDevice(&device));
    BERTQA_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
    // Weight copies per shape: enough to stream twice the L2 size through the timed products (which
    // are at least as many as the copies), for the products whose weights are at least the bytes
    // of their activations (m (n + k) <= n k: the small batches, where the weight traffic decides
    // between algorithms; measured on the H100, BERT-base S=128 B=1 0.377 -> 0.371 ms). Larger
    // products are compute-bound and keep one copy: the copies would only lengthen the tuning.
    auto copies_of = [&](const GemmShape& s) {
        const size_t one = size_t(s.n) * s.k * elem_size(s.dtype);
        if (!cold_weights || int64_t(s.m) * (int64_t(s.n) + s.k) > int64_t(s.n) * s.k) return 1;
        return int(std::min<size_t>(256, (2 * size_t(l2_bytes) + one - 1) / one));
    };
    size_t w_bytes = 0, x_bytes = 0, y_bytes = 0, b_bytes = 0, ln_bytes = 0;
    for (const auto& s : shapes) {
        if (s.m < 1 || s.n < 1 || s.k < 1) throw std::invalid_argument("GEMM dimensions must be positive: " + s.str());
        const size_t e = elem_size(s.dtype);
        w_bytes = std::max(w_bytes, size_t(s.n) * s.k * e * size_t(copies_of(s)));
        x_bytes = std::max(x_bytes, size_t(s.m) * s.k * e);
        y_bytes = std::max(y_bytes, output_bytes(s));
        b_bytes = std::max(b_bytes, size_t(s.n) * e);
        if (s.layernorm_after || s.residual) ln_bytes = std::max(ln_bytes, size_t(s.m) * s.n * e);
    }
    std::vector<GemmTuneResult> out;
    if (shapes.empty()) return out;
    LtHandle handle;
    Stream stream;
    DeviceBuffer w(w_bytes, "GEMM tuning weights"), x(x_bytes, "GEMM tuning inputs"), y(y_bytes, "GEMM tuning outputs"),
        bias(b_bytes, "GEMM tuning bias"), ws(workspace_bytes, "the GEMM workspace"),
        ln_residual(ln_bytes, "LayerNorm tuning residual"), ln_out(ln_bytes, "LayerNorm tuning output"),
        ln_gamma(b_bytes, "LayerNorm tuning gamma"), ln_beta(b_bytes, "LayerNorm tuning beta");
    uint64_t seed = 1;
    for (const auto& s : shapes) {
        const bool half = s.dtype == GemmDType::kFloat16;
        const int w_copies = copies_of(s);
        const size_t w_stride = size_t(s.n) * s.k * elem_size(s.dtype);
        fill_random(w.get(), size_t(s.n) * s.k * size_t(w_copies), half, seed++, 0.05f, stream.get());
        fill_random(x.get(), size_t(s.m) * s.k, half, seed++, 1.0f, stream.get());
        fill_random(bias.get(), size_t(s.n), half, seed++, 0.1f, stream.get());
        std::function<void()> after;  // the skip_layernorm consuming the product, as in the network
        if (s.layernorm_after || s.residual) fill_random(ln_residual.get(), size_t(s.m) * s.n, half, seed++, 1.0f, stream.get());
        if (s.layernorm_after) {
            fill_random(ln_gamma.get(), size_t(s.n), half, seed++, 1.0f, stream.get());
            fill_random(ln_beta.get(), size_t(s.n), half, seed++, 0.1f, stream.get());
            SkipLayerNormParams p{};
            p.dtype = half ? DType::kFloat16 : DType::kFloat32;
            p.x = s.partials > 1 ? nullptr : y.get();
            p.partials = s.partials > 1 ? static_cast<const float*>(y.get()) : nullptr;
            p.partial_count = s.partials > 1 ? s.partials : 0;
            p.residual = s.residual ? nullptr : ln_residual.get();  // residual shapes: the GEMM added it
            p.bias = s.epilogue == GemmEpilogue::kNone ? bias.get() : nullptr;
            p.gamma = ln_gamma.get();
            p.beta = ln_beta.get();
            p.out = ln_out.get();
            p.tokens = s.m;
            p.hidden = s.n;
            p.eps = 1e-12f;
            after = [p, &stream] { skip_layernorm(p, stream.get()); };
        }
        GemmPlan plan(handle, s);
        if (s.epilogue != GemmEpilogue::kNone) plan.set_bias(bias.get());
        const auto cands = plan.candidates(workspace_bytes, max_candidates);
        if (cands.empty())
            throw std::runtime_error("cuBLASLt has no algorithm for the product " + s.str() + " on this GPU");
        // Candidates: the heuristic's, then (extended search) variants of each with other CTA
        // swizzling and, for outputs too small to fill the GPU, split-K with an fp32 reduction.
        // Every variant is one cuBLASLt accepts (AlgoCheck) and rebuilds from its stored integers.
        std::vector<GemmAlgoConfig> configs;
        auto add = [&](const GemmAlgoConfig& c) {
            for (const auto& o : configs)
                if (o.to_ints() == c.to_ints()) return;
            GemmPlan check(handle, s);
            if (check.set_algo(c, workspace_bytes)) configs.push_back(c);
        };
        for (const auto& c : cands) add(algo_config_of(c.algo));
        const size_t heuristic_count = configs.size();
        if (extended_search) {
            const bool small_output = int64_t(s.m) * s.n <= (int64_t(4) << 20);
            for (size_t i = 0; i < heuristic_count; ++i) {
                const GemmAlgoConfig base = configs[i];
                for (int splitk : {1, 2, 3, 4, 6, 8}) {
                    if (splitk > 1 && (!small_output || s.k / splitk < 256 || s.partials > 1)) continue;
                    for (uint32_t swizzle : {0u, 1u}) {
                        GemmAlgoConfig c = base;
                        c.splitk = splitk;
                        c.reduction = splitk > 1 ? uint32_t(CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE) : 0u;
                        c.swizzle = swizzle;
                        if (splitk == base.splitk && swizzle == base.swizzle) continue;
                        add(c);
                    }
                }
            }
        }
        if (configs.empty())
            throw std::runtime_error("none of cuBLASLt's algorithms can be stored for the product " + s.str());
        GemmTuneResult r;
        double best = std::numeric_limits<double>::infinity();
        for (size_t i = 0; i < configs.size(); ++i) {
            GemmPlan cand(handle, s);
            cand.set_algo(configs[i], workspace_bytes);
            if (s.epilogue != GemmEpilogue::kNone) cand.set_bias(bias.get());
            const double t = time_candidate(cand, cand.algo(), w.get(), w_stride, w_copies, x.get(), y.get(),
                                            s.residual ? ln_residual.get() : nullptr, ws.get(), workspace_bytes,
                                            std::max(iterations, w_copies), stream, after);
            if (t < 0) continue;
            ++r.candidates;
            r.timings.emplace_back(configs[i], t);
            if (i == 0) r.heuristic_time_us = t;
            if (t < best) {
                best = t;
                r.algo = configs[i];
            }
        }
        if (!r.algo.valid())
            throw std::runtime_error("none of cuBLASLt's algorithms ran for the product " + s.str());
        r.time_us = best;
        r.heuristic_candidates = int(heuristic_count);
        out.push_back(r);
    }
    stream.synchronize();
    return out;
}

}  // namespace bertqa
