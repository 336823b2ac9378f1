// skip_layernorm: out = LayerNorm(x [+ residual] [+ bias]) * gamma + beta, FP32 statistics.
//
// Math (the reference in bench/layernorm_check.cu, double accumulation):
//   v = x (+ residual) (+ bias), x = sum_q partials[q] when given as split-K partial products
// Without a residual it is a plain LayerNorm of x: the engine runs it so where the GEMM before it
// has already added the residual in its epilogue (beta = 1, the builder's "residual" tactic).
//   out = (v - mean(v)) / sqrt(var(v) + eps) * gamma + beta
//
// One row per group of tpr threads (see layernorm_common.cuh): the row is read once with
// 16-byte loads into registers, mean and variance are exact two-pass sums over the registers,
// then the normalised row is written. out may alias x or residual: each thread reads all of its
// elements before the reductions and writes the same elements after them.
// Output head (the QA linear folded in): each thread also dots its normalised elements, rounded
// as stored, with the two head rows; two more row reductions give the token's two logits
//   head_out[t, j] = sum_i rounded(out[t, i]) * head_weight[j, i] + head_bias[j]   (fp32)
// and the row itself is stored only when out is given.
//
// Variants: PARTIALS false (x in the activation dtype) or true (x as partial_count fp32 slices,
// summed in fp32 while the row is loaded); HEAD false or true (the output head);
// vectors per thread 1..8; rows per warp or per block.
#include <type_traits>

#include "layernorm_common.cuh"

namespace bertqa {
namespace detail {
namespace {

template <typename T>
struct SkipArgs {
    const T* x;
    const T* residual;  // may be null
    const T* bias;      // may be null
    const T* gamma;
    const T* beta;
    T* out;
    int tokens;
    int hidden;
    int nv;  // vectors per row
    int tpr;
    int tpr_shift;
    float inv_h;
    float eps;
    const float* partials;  // PARTIALS: [count, tokens, hidden] fp32
    int partial_count;
    size_t partial_stride;  // tokens * hidden
    const T* head_weight;   // HEAD: [2, hidden]
    const T* head_bias;     // HEAD: [2]
    float* head_out;        // HEAD: [tokens, 2]
};

// V consecutive fp32 values (V = 8 or 4: 16-byte loads; 1: one float), added to f.
template <int V>
__device__ __forceinline__ void add_f32(const float* p, float (&f)[V]) {
    if constexpr (V % 4 == 0) {
#pragma unroll
        for (int i = 0; i < V; i += 4) {
            const float4 q = *reinterpret_cast<const float4*>(p + i);
            f[i] += q.x; f[i + 1] += q.y; f[i + 2] += q.z; f[i + 3] += q.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < V; ++i) f[i] += p[i];
    }
}

template <typename T, int V, int VPT, bool MULTI, bool PARTIALS, bool HEAD>
__global__ void __launch_bounds__(MULTI ? (V == 1 ? 1024 : 256) : kWarpPathThreads) skip_layernorm_kernel(const SkipArgs<T> a) {
    using IO = Io<T, V>;
    __shared__ float red[HEAD ? 128 : 64];
    const RowPos rp = row_pos<MULTI>(a.tpr, a.tpr_shift);
    const bool row_ok = rp.row < a.tokens;
    const size_t base = (size_t)(row_ok ? rp.row : 0) * a.hidden;

    typename IO::Raw rx[VPT], rr[VPT], rb[VPT], g[VPT], b[VPT], w0[HEAD ? VPT : 1], w1[HEAD ? VPT : 1];
    bool have[VPT];
    const bool has_bias = a.bias != nullptr;
    const bool has_residual = a.residual != nullptr;
    // Issue every load of the row before using any of them.
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
        const int j = rp.lane + k * a.tpr;
        have[k] = row_ok && j < a.nv;
        if (have[k]) {
            if constexpr (!PARTIALS) rx[k] = IO::ld(a.x + base + (size_t)j * V);
            if (has_residual) rr[k] = IO::ld(a.residual + base + (size_t)j * V);
            if (has_bias) rb[k] = IO::ldg(a.bias + (size_t)j * V);
            g[k] = IO::ldg(a.gamma + (size_t)j * V);
            b[k] = IO::ldg(a.beta + (size_t)j * V);
            if constexpr (HEAD) {
                w0[k] = IO::ldg(a.head_weight + (size_t)j * V);
                w1[k] = IO::ldg(a.head_weight + a.hidden + (size_t)j * V);
            }
        }
    }
    float v[VPT][V];
    float sum = 0.f;
    float px[PARTIALS ? VPT : 1][V];  // the partials' sum (fp32), two slices' loads in flight per step
    if constexpr (PARTIALS) {
#pragma unroll
        for (int k = 0; k < VPT; ++k)
#pragma unroll
            for (int i = 0; i < V; ++i) px[k][i] = 0.f;
#pragma unroll 2
        for (int q = 0; q < a.partial_count; ++q) {
            const float* src = a.partials + q * a.partial_stride + base;
#pragma unroll
            for (int k = 0; k < VPT; ++k)
                if (have[k]) add_f32<V>(src + (size_t)(rp.lane + k * a.tpr) * V, px[k]);
        }
    }
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
        if (have[k]) {
            float fx[V], fr[V] = {};
            if constexpr (PARTIALS) {
#pragma unroll
                for (int i = 0; i < V; ++i) fx[i] = px[k][i];
            } else {
                IO::to_f(rx[k], fx);
            }
            if (has_residual) IO::to_f(rr[k], fr);
            if (has_bias) {
                float fb[V];
                IO::to_f(rb[k], fb);
#pragma unroll
                for (int i = 0; i < V; ++i) fx[i] += fb[i];
            }
#pragma unroll
            for (int i = 0; i < V; ++i) {
                v[k][i] = fx[i] + fr[i];
                sum += v[k][i];
            }
        } else {
#pragma unroll
            for (int i = 0; i < V; ++i) v[k][i] = 0.f;
        }
    }
    if constexpr (!HEAD) {
        layernorm_finish<T, V, VPT, MULTI>(v, sum, have, g, b, a.out + base, rp.lane, a.tpr, a.inv_h, a.eps, red);
    } else {
        float d0 = 0.f, d1 = 0.f;
        layernorm_finish<T, V, VPT, MULTI>(
            v, sum, have, g, b,
            [&](int k, const float (&o)[V]) {
                float f0[V], f1[V];
                IO::to_f(w0[k], f0);
                IO::to_f(w1[k], f1);
#pragma unroll
                for (int i = 0; i < V; ++i) {
                    const float r = IO::rounded(o[i]);
                    d0 = fmaf(r, f0[i], d0);
                    d1 = fmaf(r, f1[i], d1);
                }
                if (a.out) IO::st(a.out + base + (size_t)(rp.lane + k * a.tpr) * V, o);
            },
            a.tpr, a.inv_h, a.eps, red);
        d0 = group_sum<MULTI>(d0, a.tpr, red + 64);
        d1 = group_sum<MULTI>(d1, a.tpr, red + 96);
        if (row_ok && rp.lane == 0) {
            float2 lg;
            lg.x = d0 + float(a.head_bias[0]);
            lg.y = d1 + float(a.head_bias[1]);
            *reinterpret_cast<float2*>(a.head_out + 2 * (size_t)rp.row) = lg;
        }
    }
}

template <typename T, int V>
void launch_skip(const SkipLayerNormParams& p, const RowConfig& c, cudaStream_t stream) {
    SkipArgs<T> a;
    a.x = static_cast<const T*>(p.x);
    a.residual = static_cast<const T*>(p.residual);
    a.bias = static_cast<const T*>(p.bias);
    a.gamma = static_cast<const T*>(p.gamma);
    a.beta = static_cast<const T*>(p.beta);
    a.out = static_cast<T*>(p.out);
    a.tokens = p.tokens;
    a.hidden = p.hidden;
    a.nv = p.hidden / V;
    a.tpr = c.tpr;
    a.tpr_shift = c.tpr_shift;
    a.inv_h = 1.0f / static_cast<float>(p.hidden);
    a.eps = p.eps;
    a.partials = p.partials;
    a.partial_count = p.partial_count;
    a.partial_stride = size_t(p.tokens) * size_t(p.hidden);
    a.head_weight = static_cast<const T*>(p.head_weight);
    a.head_bias = static_cast<const T*>(p.head_bias);
    a.head_out = p.head_out;
    const bool partials = p.partials != nullptr;
    const unsigned grid = (unsigned)((p.tokens + c.rows_per_block - 1) / c.rows_per_block);
    // The four variants; MULTI (rows per block or per warp group) and VPT from c.
    dispatch_row_shape(c, [&](auto multi, auto vpt) {
        constexpr bool M = decltype(multi)::value;
        constexpr int N = decltype(vpt)::value;
        if (p.head_weight && partials) skip_layernorm_kernel<T, V, N, M, true, true><<<grid, c.threads, 0, stream>>>(a);
        else if (p.head_weight) skip_layernorm_kernel<T, V, N, M, false, true><<<grid, c.threads, 0, stream>>>(a);
        else if (partials) skip_layernorm_kernel<T, V, N, M, true, false><<<grid, c.threads, 0, stream>>>(a);
        else skip_layernorm_kernel<T, V, N, M, false, false><<<grid, c.threads, 0, stream>>>(a);
    });
}

}  // namespace

void skip_layernorm_tuned(const SkipLayerNormParams& p, cudaStream_t stream, int max_vpt) {
    static const char* fn = "skip_layernorm";
    const size_t es = dtype_size(p.dtype);
    require(p.tokens >= 0, fn, "tokens must be >= 0, got " + std::to_string(p.tokens));
    require(p.hidden > 0, fn, "hidden must be > 0, got " + std::to_string(p.hidden));
    require(p.eps >= 0.f && p.eps < 1.f, fn, "eps must be in [0, 1)");
    if (p.tokens == 0) return;
    const bool partials = p.partials != nullptr;
    require(partials ? p.x == nullptr : p.partial_count == 0, fn,
            "give x or partials (with partial_count), not both");
    require(!partials || (p.partial_count >= 2 && p.partial_count <= 16), fn,
            "partial_count must be 2..16 with partials, got " + std::to_string(p.partial_count));
    require((partials || p.x) && p.gamma && p.beta, fn, "x (or partials), gamma and beta must not be null");
    require(!partials || (p.out != static_cast<const void*>(p.partials)), fn, "out must not alias partials");
    const bool head = p.head_weight != nullptr;
    require(head ? p.head_bias && p.head_out : !p.head_bias && !p.head_out, fn,
            "give head_weight, head_bias and head_out together, or none of them");
    require(head || p.out, fn, "out must not be null without an output head");
    require(!head || (reinterpret_cast<uintptr_t>(p.head_out) & 7u) == 0, fn, "head_out must be 8-byte aligned");
    const bool vec_ok = p.hidden % static_cast<int>(16 / es) == 0 && aligned16(partials ? p.partials : p.x) &&
                        (p.residual == nullptr || aligned16(p.residual)) &&
                        aligned16(p.gamma) && aligned16(p.beta) && (p.out == nullptr || aligned16(p.out)) &&
                        (p.bias == nullptr || aligned16(p.bias)) && (!head || aligned16(p.head_weight));
    const int vec = vec_ok ? static_cast<int>(16 / es) : 1;
    // Default: at most 2 vectors per thread (H100 sweep, hidden 1024: the fastest or within 1% of
    // it at 384 and 49152 tokens, fp16 and fp32; 4 and 8 were slower at 384 tokens).
    if (max_vpt <= 0) max_vpt = 2;
    const RowConfig c = choose_row_config(p.hidden, vec, max_vpt);
    dispatch_dtype_vec(p.dtype, vec_ok, [&](auto* t, auto v) {
        launch_skip<std::remove_pointer_t<decltype(t)>, decltype(v)::value>(p, c, stream);
    });
    check_launch(fn);
}

}  // namespace detail

void skip_layernorm(const SkipLayerNormParams& p, cudaStream_t stream) {
    detail::skip_layernorm_tuned(p, stream, 0);
}

}  // namespace bertqa
