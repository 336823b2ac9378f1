// bias_gelu: x = gelu(x + bias) in place, [tokens, width] with bias [width].
//   erf form  (BERT):    gelu(v) = 0.5 v (1 + erf(v / sqrt(2)))            -- erff, full precision
//   tanh form:           gelu(v) = 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3)))
//                                = v / (1 + exp(-2 sqrt(2/pi) (v + 0.044715 v^3)))
//                        (the same function written as v * sigmoid(2u): no cancellation of
//                        1 + tanh(u) for negative v, one exp and one division; fp16 uses the
//                        hardware approximations __expf/__fdividef, fp32 the accurate expf)
// FP32 arithmetic for both dtypes.
//
// Layout: a 2-D block of (bx, by) threads, bx <= 256 consecutive 16-byte vectors of a row, by row
// groups; each thread keeps its bias vector in registers and handles ROWS rows (all loads issued
// before any math), striding over the rows with the grid.
#include "layernorm_common.cuh"

namespace bertqa {
namespace detail {
namespace {

constexpr int kGeluThreads = 256;

__device__ __forceinline__ float gelu_erf(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }

// FAST (fp16 output): the hardware exp2 and reciprocal approximations, whose error is far under
// half an fp16 ulp; fp32 output uses the accurate expf.
template <bool FAST>
__device__ __forceinline__ float gelu_tanh(float v) {
    const float u = 0.79788456080286536f * fmaf(0.044715f * v, v * v, v);
    return FAST ? __fdividef(v, 1.0f + __expf(-2.0f * u)) : v / (1.0f + expf(-2.0f * u));
}

template <typename T, int V, int ROWS, bool TANH>
__global__ void __launch_bounds__(kGeluThreads) bias_gelu_kernel(T* x, const T* __restrict__ bias, int tokens,
                                                                  int width, int nvw) {
    using IO = Io<T, V>;
    const int c = blockIdx.x * blockDim.x + threadIdx.x;  // vector column
    if (c >= nvw) return;
    float bf[V];
    IO::to_f(IO::ldg(bias + (size_t)c * V), bf);
    const int step = gridDim.y * blockDim.y * ROWS;
    for (int r0 = (blockIdx.y * blockDim.y + threadIdx.y) * ROWS; r0 < tokens; r0 += step) {
        typename IO::Raw raw[ROWS];
#pragma unroll
        for (int k = 0; k < ROWS; ++k)
            if (r0 + k < tokens) raw[k] = IO::ld(x + (size_t)(r0 + k) * width + (size_t)c * V);
#pragma unroll
        for (int k = 0; k < ROWS; ++k) {
            if (r0 + k < tokens) {
                float f[V];
                IO::to_f(raw[k], f);
#pragma unroll
                for (int i = 0; i < V; ++i) {
                    const float v = f[i] + bf[i];
                    f[i] = TANH ? gelu_tanh<sizeof(T) == 2>(v) : gelu_erf(v);
                }
                IO::st(x + (size_t)(r0 + k) * width + (size_t)c * V, f);
            }
        }
    }
}

template <typename T, int V, int ROWS>
void launch_gelu_rows(const BiasGeluParams& p, cudaStream_t stream) {
    const int nvw = p.width / V;
    int bx = (nvw + 31) / 32 * 32;
    if (bx > kGeluThreads) bx = kGeluThreads;
    const int by = kGeluThreads / bx;
    const dim3 block(bx, by);
    const long long row_groups = (static_cast<long long>(p.tokens) + (long long)by * ROWS - 1) / ((long long)by * ROWS);
    const dim3 grid((nvw + bx - 1) / bx, static_cast<unsigned>(row_groups < 65535 ? row_groups : 65535));
    T* x = static_cast<T*>(p.x);
    const T* bias = static_cast<const T*>(p.bias);
    if (p.tanh_approximation)
        bias_gelu_kernel<T, V, ROWS, true><<<grid, block, 0, stream>>>(x, bias, p.tokens, p.width, nvw);
    else
        bias_gelu_kernel<T, V, ROWS, false><<<grid, block, 0, stream>>>(x, bias, p.tokens, p.width, nvw);
}

template <typename T, int V>
void launch_gelu(const BiasGeluParams& p, int rows, cudaStream_t stream) {
    switch (rows) {
        case 1: launch_gelu_rows<T, V, 1>(p, stream); break;
        case 2: launch_gelu_rows<T, V, 2>(p, stream); break;
        case 4: launch_gelu_rows<T, V, 4>(p, stream); break;
        case 8: launch_gelu_rows<T, V, 8>(p, stream); break;
        default: throw std::invalid_argument("bias_gelu: rows per thread must be 1, 2, 4 or 8");
    }
}

}  // namespace

void bias_gelu_tuned(const BiasGeluParams& p, cudaStream_t stream, int rows_per_thread) {
    static const char* fn = "bias_gelu";
    const size_t es = dtype_size(p.dtype);
    require(p.tokens >= 0, fn, "tokens must be >= 0, got " + std::to_string(p.tokens));
    require(p.width > 0, fn, "width must be > 0, got " + std::to_string(p.width));
    if (p.tokens == 0) return;
    require(p.x && p.bias, fn, "x and bias must not be null");
    const bool vec_ok = p.width % static_cast<int>(16 / es) == 0 && aligned16(p.x) && aligned16(p.bias);
    // Default (H100 sweep, width 4096): one row per thread while the whole tensor is a wave or two
    // of threads (384 tokens: 3.2 us vs 4.2 in a graph, fp16), four rows per thread beyond 4M
    // vectors (49152 tokens fp16: 276 us vs 298).
    if (rows_per_thread <= 0) {
        const int vec = vec_ok ? static_cast<int>(16 / es) : 1;
        const long long vectors = static_cast<long long>(p.tokens) * (p.width / vec);
        rows_per_thread = vectors >= (1ll << 22) ? 4 : 1;
    }
    dispatch_dtype_vec(p.dtype, vec_ok, [&](auto* t, auto v) {
        launch_gelu<std::remove_pointer_t<decltype(t)>, decltype(v)::value>(p, rows_per_thread, stream);
    });
    check_launch(fn);
}

}  // namespace detail

void bias_gelu(const BiasGeluParams& p, cudaStream_t stream) { detail::bias_gelu_tuned(p, stream, 0); }

}  // namespace bertqa
