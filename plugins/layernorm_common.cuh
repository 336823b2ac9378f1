// Shared device code of the memory-bound plugins (embed_layernorm.cu, skip_layernorm.cu,
// bias_gelu.cu): 16-byte vector loads/stores with FP32 conversion, row-group reductions,
// the LayerNorm finishing step, the launch-configuration chooser and argument checks.
//
// Row kernels (both LayerNorms) give each row to a group of `tpr` threads (threads per row):
//   tpr <= 32: a power of two; several rows per 128-thread block, reduced with warp shuffles;
//   tpr  > 32: a multiple of 32; one row per block, reduced through shared memory.
// Each thread holds VPT vectors of V elements in registers (V = 16 bytes / element size, or 1
// when the row or a pointer is not 16-byte aligned), so a row is read once from memory and the
// statistics are exact two-pass ones (mean, then sum of squared deviations) in FP32.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "bert_plugins.h"

namespace bertqa {
namespace detail {

// ---------------------------------------------------------------------------------------------
// Vector I/O: Io<T, V> moves V elements of T as one access and converts them to/from float.
// ld: plain (coherent) load, for data the same kernel may overwrite (out aliasing x);
// ldg: read-only path, for weights and tables.
template <typename T, int V>
struct Io;

template <>
struct Io<float, 4> {
    using Raw = float4;
    static __device__ __forceinline__ Raw ld(const float* p) { return *reinterpret_cast<const float4*>(p); }
    static __device__ __forceinline__ Raw ldg(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }
    static __device__ __forceinline__ void to_f(const Raw& r, float (&f)[4]) {
        f[0] = r.x; f[1] = r.y; f[2] = r.z; f[3] = r.w;
    }
    static __device__ __forceinline__ void st(float* p, const float (&f)[4]) {
        *reinterpret_cast<float4*>(p) = make_float4(f[0], f[1], f[2], f[3]);
    }
    static __device__ __forceinline__ float rounded(float x) { return x; }  // as stored
};

template <>
struct Io<__half, 8> {
    using Raw = uint4;
    static __device__ __forceinline__ Raw ld(const __half* p) { return *reinterpret_cast<const uint4*>(p); }
    static __device__ __forceinline__ Raw ldg(const __half* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }
    static __device__ __forceinline__ float2 h2f(uint32_t u) {
        __half2 h;
        *reinterpret_cast<uint32_t*>(&h) = u;
        return __half22float2(h);
    }
    static __device__ __forceinline__ uint32_t f2h(float a, float b) {
        __half2 h = __floats2half2_rn(a, b);
        return *reinterpret_cast<uint32_t*>(&h);
    }
    static __device__ __forceinline__ void to_f(const Raw& r, float (&f)[8]) {
        float2 t;
        t = h2f(r.x); f[0] = t.x; f[1] = t.y;
        t = h2f(r.y); f[2] = t.x; f[3] = t.y;
        t = h2f(r.z); f[4] = t.x; f[5] = t.y;
        t = h2f(r.w); f[6] = t.x; f[7] = t.y;
    }
    static __device__ __forceinline__ void st(__half* p, const float (&f)[8]) {
        uint4 r;
        r.x = f2h(f[0], f[1]); r.y = f2h(f[2], f[3]); r.z = f2h(f[4], f[5]); r.w = f2h(f[6], f[7]);
        *reinterpret_cast<uint4*>(p) = r;
    }
    static __device__ __forceinline__ float rounded(float x) { return __half2float(__float2half_rn(x)); }
};

template <>
struct Io<float, 1> {
    using Raw = float;
    static __device__ __forceinline__ Raw ld(const float* p) { return *p; }
    static __device__ __forceinline__ Raw ldg(const float* p) { return __ldg(p); }
    static __device__ __forceinline__ void to_f(const Raw& r, float (&f)[1]) { f[0] = r; }
    static __device__ __forceinline__ void st(float* p, const float (&f)[1]) { *p = f[0]; }
    static __device__ __forceinline__ float rounded(float x) { return x; }
};

template <>
struct Io<__half, 1> {
    using Raw = __half;
    static __device__ __forceinline__ Raw ld(const __half* p) { return *p; }
    static __device__ __forceinline__ Raw ldg(const __half* p) { return __ldg(p); }
    static __device__ __forceinline__ void to_f(const Raw& r, float (&f)[1]) { f[0] = __half2float(r); }
    static __device__ __forceinline__ void st(__half* p, const float (&f)[1]) { *p = __float2half_rn(f[0]); }
    static __device__ __forceinline__ float rounded(float x) { return __half2float(__float2half_rn(x)); }
};

template <typename T>
struct VecWidth { static constexpr int value = 16 / sizeof(T); };

// The one dtype x vector-width switch of the memory-bound plugins: calls
// f(static_cast<T*>(nullptr), std::integral_constant<int, V>{}) with T the element type of dtype and
// V its 16-byte vector (4 floats, 8 halves) when vec_ok, else 1 (the scalar path).
template <typename F>
void dispatch_dtype_vec(DType dtype, bool vec_ok, F&& f) {
    if (dtype == DType::kFloat32) {
        if (vec_ok) f(static_cast<float*>(nullptr), std::integral_constant<int, 4>{});
        else f(static_cast<float*>(nullptr), std::integral_constant<int, 1>{});
    } else {
        if (vec_ok) f(static_cast<__half*>(nullptr), std::integral_constant<int, 8>{});
        else f(static_cast<__half*>(nullptr), std::integral_constant<int, 1>{});
    }
}

// ---------------------------------------------------------------------------------------------
// Row-group reduction. Every thread of the block must call it (no early exits before it).
// MULTI false (tpr <= 32): butterfly over the aligned group of tpr lanes, result in every lane.
// MULTI true  (tpr  > 32): one row per block of tpr threads; `slot` is 32 floats of shared memory
// used by this call only (a later call must use another slot, so no barrier is needed between them).
template <bool MULTI>
__device__ __forceinline__ float group_sum(float s, int tpr, float* slot) {
    if constexpr (!MULTI) {
        for (int o = tpr >> 1; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        return s;
    } else {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        const int wl = threadIdx.x & 31;
        if (wl == 0) slot[threadIdx.x >> 5] = s;
        __syncthreads();
        float t = wl < (tpr >> 5) ? slot[wl] : 0.f;  // every warp sums the per-warp partials
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
        return t;
    }
}

// Where the thread's row and its place in the row are.
struct RowPos {
    int row;
    int lane;
};

template <bool MULTI>
__device__ __forceinline__ RowPos row_pos(int tpr, int tpr_shift) {
    RowPos r;
    if (!MULTI) {
        r.lane = threadIdx.x & (tpr - 1);
        r.row = blockIdx.x * (blockDim.x >> tpr_shift) + (threadIdx.x >> tpr_shift);
    } else {
        r.lane = threadIdx.x;
        r.row = blockIdx.x;
    }
    return r;
}

// LayerNorm of a row held in registers (v, VPT vectors of V elements; vector k is the row's
// vector lane + k * tpr, present when `have` is set), then the affine step and the store.
// g, b: gamma and beta vectors, already loaded (raw).
// emit(k, o) receives each present vector k's normalised values o (float[V]) and stores them
// (the overload below) or uses them otherwise (skip_layernorm's output head).
template <typename T, int V, int VPT, bool MULTI, typename Emit>
__device__ __forceinline__ void layernorm_finish(float (&v)[VPT][V], float sum, const bool (&have)[VPT],
                                                 const typename Io<T, V>::Raw (&g)[VPT],
                                                 const typename Io<T, V>::Raw (&b)[VPT], Emit&& emit,
                                                 int tpr, float inv_h, float eps,
                                                 float* red /* 64 floats of shared memory */) {
    using IO = Io<T, V>;
    const float mean = group_sum<MULTI>(sum, tpr, red) * inv_h;
    float sq = 0.f;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
        if (have[k]) {
#pragma unroll
            for (int i = 0; i < V; ++i) {
                const float d = v[k][i] - mean;
                sq = fmaf(d, d, sq);
            }
        }
    }
    const float var = group_sum<MULTI>(sq, tpr, red + 32) * inv_h;
    const float rstd = rsqrtf(var + eps);
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
        if (have[k]) {
            float gf[V], bf[V], o[V];
            IO::to_f(g[k], gf);
            IO::to_f(b[k], bf);
#pragma unroll
            for (int i = 0; i < V; ++i) o[i] = fmaf((v[k][i] - mean) * rstd, gf[i], bf[i]);
            emit(k, o);
        }
    }
}

template <typename T, int V, int VPT, bool MULTI>
__device__ __forceinline__ void layernorm_finish(float (&v)[VPT][V], float sum, const bool (&have)[VPT],
                                                 const typename Io<T, V>::Raw (&g)[VPT],
                                                 const typename Io<T, V>::Raw (&b)[VPT], T* out_row,
                                                 int lane, int tpr, float inv_h, float eps, float* red) {
    layernorm_finish<T, V, VPT, MULTI>(
        v, sum, have, g, b, [&](int k, const float (&o)[V]) { Io<T, V>::st(out_row + (size_t)(lane + k * tpr) * V, o); },
        tpr, inv_h, eps, red);
}

// ---------------------------------------------------------------------------------------------
// Host side.

constexpr int kMaxVpt = 8;            // vectors per thread instantiated: 1..kMaxVpt
constexpr int kWarpPathThreads = 128; // block size when several rows share a block

struct RowConfig {
    int vec;        // elements per vector (V)
    int vpt;        // vectors per thread (VPT)
    int tpr;        // threads per row
    int tpr_shift;  // log2(tpr) when tpr <= 32
    int threads;    // block size
    int rows_per_block;
};

// The launch configuration of a row kernel for `hidden` elements in vectors of `vec`.
// max_vpt (1..kMaxVpt) bounds the vectors each thread holds: small values spread a row over more
// threads (more parallelism, block-level reductions); large ones keep rows inside one warp.
// Each launcher picks its default max_vpt from the measured sweep (plugins/README.md).
inline RowConfig choose_row_config(int hidden, int vec, int max_vpt) {
    if (max_vpt < 1) max_vpt = 1;
    if (max_vpt > kMaxVpt) max_vpt = kMaxVpt;
    const int nv = hidden / vec;
    RowConfig c{};
    c.vec = vec;
    for (int s = 0; s <= 5; ++s) {
        if ((1 << s) * max_vpt >= nv) {
            c.tpr = 1 << s;
            c.tpr_shift = s;
            c.vpt = (nv + c.tpr - 1) / c.tpr;
            c.threads = kWarpPathThreads;
            c.rows_per_block = kWarpPathThreads / c.tpr;
            return c;
        }
    }
    const int max_threads = vec == 1 ? 1024 : 256;  // the kernels' __launch_bounds__
    int tpr = (nv + max_vpt - 1) / max_vpt;
    tpr = (tpr + 31) / 32 * 32;
    if (tpr > max_threads) tpr = max_threads;
    c.tpr = tpr;
    c.tpr_shift = 0;
    c.vpt = (nv + tpr - 1) / tpr;
    if (c.vpt > kMaxVpt)
        throw std::invalid_argument("hidden size " + std::to_string(hidden) +
                                    " is too large for the LayerNorm plugins (at most " +
                                    std::to_string(max_threads * kMaxVpt * vec) +
                                    " elements per row with this dtype/alignment)");
    c.threads = tpr;
    c.rows_per_block = 1;
    return c;
}

// The one switch from a RowConfig to a row kernel's compile-time shape: calls
// f(std::bool_constant<MULTI>{}, std::integral_constant<int, VPT>{}) with MULTI = (c.tpr > 32: one row
// per block) and VPT = c.vpt (1..kMaxVpt).
template <typename F>
void dispatch_row_shape(const RowConfig& c, F&& f) {
    auto by_vpt = [&](auto multi) {
        switch (c.vpt) {
            case 1: f(multi, std::integral_constant<int, 1>{}); break;
            case 2: f(multi, std::integral_constant<int, 2>{}); break;
            case 3: f(multi, std::integral_constant<int, 3>{}); break;
            case 4: f(multi, std::integral_constant<int, 4>{}); break;
            case 5: f(multi, std::integral_constant<int, 5>{}); break;
            case 6: f(multi, std::integral_constant<int, 6>{}); break;
            case 7: f(multi, std::integral_constant<int, 7>{}); break;
            case 8: f(multi, std::integral_constant<int, 8>{}); break;
            default: throw std::logic_error("row kernel: bad vectors per thread " + std::to_string(c.vpt));
        }
    };
    static_assert(kMaxVpt == 8, "dispatch_row_shape lists VPT 1..8");
    if (c.tpr > 32) by_vpt(std::true_type{});
    else by_vpt(std::false_type{});
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

inline size_t dtype_size(DType t) {
    switch (t) {
        case DType::kFloat32: return 4;
        case DType::kFloat16: return 2;
    }
    throw std::invalid_argument("unknown dtype " + std::to_string(static_cast<int>(t)));
}

inline void require(bool ok, const char* fn, const std::string& what) {
    if (!ok) throw std::invalid_argument(std::string(fn) + ": " + what);
}

inline void check_launch(const char* fn) {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        throw std::runtime_error(std::string(fn) + ": kernel launch failed: " + cudaGetErrorString(e));
}

// Tuning entry points (the public functions call them with 0 = the default heuristic; any
// other knob value overrides it);
// layernorm_check.cu uses them to check and time every configuration they can select.
void skip_layernorm_tuned(const SkipLayerNormParams& p, cudaStream_t stream, int max_vpt);
void embed_layernorm_tuned(const EmbedLayerNormParams& p, cudaStream_t stream, int max_vpt);
void bias_gelu_tuned(const BiasGeluParams& p, cudaStream_t stream, int rows_per_thread);

}  // namespace detail
}  // namespace bertqa
