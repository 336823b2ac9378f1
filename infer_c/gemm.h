// cuBLASLt matrix products of the BERT linears: Y[m, n] = X[m, k] · W[n, k]^T (+ bias[n]) (then GELU).
//
// Row-major activations and torch-orientation weights map onto cuBLASLt's column-major view as
// D(n x m, ld n) = op(A) · B with A = W stored k x n (ld k) and op(A) = A^T, B = X stored k x m
// (ld k): the "TN" layout that the tensor-core kernels prefer. The bias is a vector over D's rows.
//
//   fp16: A, B, C, D in CUDA_R_16F, CUBLAS_COMPUTE_32F (fp32 accumulation), fp32 alpha/beta
//   fp32: everything CUDA_R_32F, CUBLAS_COMPUTE_32F (true fp32: no TF32)
//
// Epilogues: kNone (plain product), kBias, kGeluBias (cuBLASLt's GELU is the tanh form).
// Split-K into the LayerNorm (partials > 1): the product runs as `partials` strided-batched
// products over consecutive slices of K, each writing its fp32 partial result
// ([partials, m, n], no epilogue); the skip_layernorm plugin after the linear sums them with the
// bias and the residual. At small m this fills the GPU with many short tiles and needs no
// reduction kernel (cuBLASLt's own split-K adds one, or serialises the tiles).
// Residual in the epilogue (residual): D = X W^T + bias + R with beta = 1 and C = R, an [m, n]
// tensor of the activations' dtype (not D itself), rounded once; the skip_layernorm after the
// linear then reads one tensor instead of two. Compute-bound products hide the read of R; the
// builder times both forms with their LayerNorm and stores the faster ("residual" tactic).
// Algorithms: heuristics give candidates; tune_gemms() times them on the GPU (each candidate's
// loop captured in a CUDA graph, on random data) and returns the fastest as a GemmAlgoConfig,
// a plain list of integers the builder stores in the engine and GemmPlan::set_algo() rebuilds.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace bertqa {

enum class GemmDType { kFloat32, kFloat16 };
enum class GemmEpilogue { kNone, kBias, kGeluBias };

const char* to_string(GemmDType t);           // "fp32" | "fp16"
const char* to_string(GemmEpilogue e);        // "none" | "bias" | "gelu_bias"
GemmDType gemm_dtype_from_string(const std::string& s);        // std::invalid_argument otherwise
GemmEpilogue gemm_epilogue_from_string(const std::string& s);  // std::invalid_argument otherwise

struct GemmShape {
    int m = 0;  // rows of X and Y (tokens)
    int n = 0;  // output features (rows of W)
    int k = 0;  // input features
    GemmDType dtype = GemmDType::kFloat16;
    GemmEpilogue epilogue = GemmEpilogue::kBias;
    int partials = 1;              // > 1: split-K into fp32 partials (epilogue kNone; see above)
    bool residual = false;         // D = X W^T + bias + R (beta = 1; kBias or kNone, unsplit; see above)
    bool layernorm_after = false;  // tuning only: time the product with the skip_layernorm that
                                   // consumes it, so that split, unsplit and residual forms compare whole
    std::string str() const;  // "m=384 n=3072 k=1024 fp16 bias" (+ " partials=4", " +residual", " +layernorm")
};

// A cuBLASLt algorithm as its configuration attributes (stable across processes).
struct GemmAlgoConfig {
    int32_t algo_id = -1;
    uint32_t tile = 0;
    uint32_t stages = 0;
    int32_t splitk = 1;
    uint32_t reduction = 0;
    uint32_t swizzle = 0;
    uint32_t custom = 0;
    uint32_t inner_shape = 0;
    uint32_t cluster_shape = 0;

    bool valid() const { return algo_id >= 0; }
    std::vector<int64_t> to_ints() const;
    static GemmAlgoConfig from_ints(const std::vector<int64_t>& v);  // std::invalid_argument on a bad list
};

size_t cublaslt_version();

void check_cublas(cublasStatus_t s, const char* call, const char* file, int line);
#define BERTQA_CUBLAS_CHECK(call) ::bertqa::check_cublas((call), #call, __FILE__, __LINE__)

class LtHandle {
public:
    LtHandle();
    ~LtHandle();
    LtHandle(const LtHandle&) = delete;
    LtHandle& operator=(const LtHandle&) = delete;
    cublasLtHandle_t get() const { return h_; }

private:
    cublasLtHandle_t h_ = nullptr;
};

// The descriptors of one product shape and the algorithm it runs with.
class GemmPlan {
public:
    GemmPlan(const LtHandle& handle, const GemmShape& shape);
    ~GemmPlan();
    GemmPlan(const GemmPlan&) = delete;
    GemmPlan& operator=(const GemmPlan&) = delete;
    GemmPlan(GemmPlan&& o) noexcept;
    GemmPlan& operator=(GemmPlan&&) = delete;

    const GemmShape& shape() const { return shape_; }

    // Up to max_results heuristic candidates that need at most workspace_bytes of workspace.
    std::vector<cublasLtMatmulHeuristicResult_t> candidates(size_t workspace_bytes, int max_results) const;
    // Uses cfg if cuBLASLt accepts it for this shape (cublasLtMatmulAlgoCheck); false otherwise.
    bool set_algo(const GemmAlgoConfig& cfg, size_t workspace_bytes);
    void set_algo(const cublasLtMatmulAlgo_t& algo) { algo_ = algo; has_algo_ = true; }
    // The heuristic's first choice; std::runtime_error when cuBLASLt has none.
    void set_heuristic_algo(size_t workspace_bytes);
    bool has_algo() const { return has_algo_; }
    const cublasLtMatmulAlgo_t& algo() const { return algo_; }

    // Binds the bias pointer (kBias / kGeluBias epilogues); read when run() enqueues.
    void set_bias(const void* bias);
    // Enqueues Y = X W^T (+ bias) (GELU) on stream; residual: Y = X W^T + bias + residual, given
    // exactly when the shape has residual set (std::logic_error otherwise).
    void run(const void* w, const void* x, void* y, void* workspace, size_t workspace_bytes,
             cudaStream_t stream, const void* residual = nullptr) const;

private:
    void destroy() noexcept;

    cublasLtHandle_t handle_ = nullptr;
    GemmShape shape_;
    cublasLtMatmulDesc_t desc_ = nullptr;
    cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, c_ = nullptr;
    cublasLtMatmulAlgo_t algo_{};
    bool has_algo_ = false;
};

GemmAlgoConfig algo_config_of(const cublasLtMatmulAlgo_t& algo);

struct GemmTuneResult {
    GemmAlgoConfig algo;
    double time_us = 0;            // the chosen algorithm's time per product
    double heuristic_time_us = 0;  // the heuristic's first choice, for comparison
    int candidates = 0;            // how many were timed
    int heuristic_candidates = 0;  // of which the heuristic's own
    size_t workspace_bytes = 0;    // unused (kept for the Python side)
    std::vector<std::pair<GemmAlgoConfig, double>> timings;  // every candidate that ran, time per product
};

// Times the heuristic candidates of every shape on the current GPU (with extended_search, also
// their variants in CTA swizzling and split-K) and returns the fastest of each. cold_weights: where
// the weights outweigh the activations, the timed products cycle through copies of the weights that
// overflow the L2 cache, as in the network (false: one copy, L2-resident after the first product).
std::vector<GemmTuneResult> tune_gemms(const std::vector<GemmShape>& shapes, size_t workspace_bytes,
                                       int max_candidates, int iterations, bool extended_search = true,
                                       bool cold_weights = true);

}  // namespace bertqa
