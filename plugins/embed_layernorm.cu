// embed_layernorm: out[t] = LayerNorm(word[input_ids[t]] + position[pos(t)] + token_type[segment_ids[t]])
//                           * gamma + beta
// pos(t) = t % seq for padded batches, t - cu_seqlens[b] for packed ones, where b is the sequence
// holding t: the number of b in [1, batch) with cu_seqlens[b] <= t, counted by the row's threads
// together (one round of independent loads and one reduction instead of a dependent binary search;
// empty sequences, repeated cu_seqlens values, are handled).
//
// Same row layout as skip_layernorm (layernorm_common.cuh): the three gathered rows are summed in
// registers, two-pass FP32 statistics, one write. Ids are validated by the host (the runtime checks
// them against the table sizes, which this struct does not carry), so the kernel does not clamp.
#include <climits>

#include "layernorm_common.cuh"

namespace bertqa {
namespace detail {
namespace {

template <typename T>
struct EmbedArgs {
    const int32_t* input_ids;
    const int32_t* segment_ids;
    const T* word;
    const T* position;
    const T* token_type;
    const T* gamma;
    const T* beta;
    T* out;
    const int32_t* cu_seqlens;  // null: padded
    int tokens;
    int seq;
    int batch;
    int hidden;
    int nv;
    int tpr;
    int tpr_shift;
    float inv_h;
    float eps;
};

template <typename T, int V, int VPT, bool MULTI>
__global__ void __launch_bounds__(MULTI ? (V == 1 ? 1024 : 256) : kWarpPathThreads) embed_layernorm_kernel(const EmbedArgs<T> a) {
    using IO = Io<T, V>;
    __shared__ float red[96];
    const RowPos rp = row_pos<MULTI>(a.tpr, a.tpr_shift);
    const bool row_ok = rp.row < a.tokens;
    const int t = row_ok ? rp.row : 0;

    // Gamma and beta do not depend on the ids: start them first.
    typename IO::Raw g[VPT], b[VPT];
    bool have[VPT];
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
        const int j = rp.lane + k * a.tpr;
        have[k] = row_ok && j < a.nv;
        if (have[k]) {
            g[k] = IO::ldg(a.gamma + (size_t)j * V);
            b[k] = IO::ldg(a.beta + (size_t)j * V);
        }
    }
    const int id = __ldg(a.input_ids + t);
    const int seg = __ldg(a.segment_ids + t);
    int pos;
    if (a.cu_seqlens == nullptr) {
        pos = t % a.seq;
    } else if (a.batch <= 1) {
        pos = t - __ldg(a.cu_seqlens);
    } else {
        // Four independent loads per lane per round (a plain loop would wait on each one).
        float cnt = 0.f;
        if (row_ok) {
            for (int i0 = 1 + rp.lane; i0 < a.batch; i0 += 4 * a.tpr) {
                int c[4];
#pragma unroll
                for (int u = 0; u < 4; ++u) {
                    const int i = i0 + u * a.tpr;
                    c[u] = i < a.batch ? __ldg(a.cu_seqlens + i) : INT_MAX;
                }
#pragma unroll
                for (int u = 0; u < 4; ++u) cnt += c[u] <= t ? 1.f : 0.f;
            }
        }
        const int seq_idx = static_cast<int>(group_sum<MULTI>(cnt, a.tpr, red + 64));
        pos = t - __ldg(a.cu_seqlens + seq_idx);
    }
    const T* wrow = a.word + (size_t)id * a.hidden;
    const T* prow = a.position + (size_t)pos * a.hidden;
    const T* trow = a.token_type + (size_t)seg * a.hidden;

    typename IO::Raw rw[VPT], rpo[VPT], rt[VPT];
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
        if (have[k]) {
            const size_t off = (size_t)(rp.lane + k * a.tpr) * V;
            rw[k] = IO::ldg(wrow + off);
            rpo[k] = IO::ldg(prow + off);
            rt[k] = IO::ldg(trow + off);
        }
    }
    float v[VPT][V];
    float sum = 0.f;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
        if (have[k]) {
            float fw[V], fp[V], ft[V];
            IO::to_f(rw[k], fw);
            IO::to_f(rpo[k], fp);
            IO::to_f(rt[k], ft);
#pragma unroll
            for (int i = 0; i < V; ++i) {
                v[k][i] = fw[i] + fp[i] + ft[i];
                sum += v[k][i];
            }
        } else {
#pragma unroll
            for (int i = 0; i < V; ++i) v[k][i] = 0.f;
        }
    }
    layernorm_finish<T, V, VPT, MULTI>(v, sum, have, g, b, a.out + (size_t)t * a.hidden, rp.lane, a.tpr, a.inv_h,
                                a.eps, red);
}

template <typename T, int V>
void launch_embed(const EmbedLayerNormParams& p, const RowConfig& c, cudaStream_t stream) {
    EmbedArgs<T> a;
    a.input_ids = p.input_ids;
    a.segment_ids = p.segment_ids;
    a.word = static_cast<const T*>(p.word);
    a.position = static_cast<const T*>(p.position);
    a.token_type = static_cast<const T*>(p.token_type);
    a.gamma = static_cast<const T*>(p.gamma);
    a.beta = static_cast<const T*>(p.beta);
    a.out = static_cast<T*>(p.out);
    a.cu_seqlens = p.cu_seqlens;
    a.tokens = p.tokens;
    a.seq = p.seq;
    a.batch = p.batch;
    a.hidden = p.hidden;
    a.nv = p.hidden / V;
    a.tpr = c.tpr;
    a.tpr_shift = c.tpr_shift;
    a.inv_h = 1.0f / static_cast<float>(p.hidden);
    a.eps = p.eps;
    const unsigned grid = (unsigned)((p.tokens + c.rows_per_block - 1) / c.rows_per_block);
    dispatch_row_shape(c, [&](auto multi, auto vpt) {
        embed_layernorm_kernel<T, V, decltype(vpt)::value, decltype(multi)::value><<<grid, c.threads, 0, stream>>>(a);
    });
}

}  // namespace

void embed_layernorm_tuned(const EmbedLayerNormParams& p, cudaStream_t stream, int max_vpt) {
    static const char* fn = "embed_layernorm";
    const size_t es = dtype_size(p.dtype);
    require(p.tokens >= 0, fn, "tokens must be >= 0, got " + std::to_string(p.tokens));
    require(p.hidden > 0, fn, "hidden must be > 0, got " + std::to_string(p.hidden));
    require(p.eps >= 0.f && p.eps < 1.f, fn, "eps must be in [0, 1)");
    if (p.cu_seqlens == nullptr) {
        require(p.seq > 0 && p.batch >= 0, fn,
                "padded mode needs seq > 0 and batch >= 0, got seq " + std::to_string(p.seq) + ", batch " +
                    std::to_string(p.batch));
        require(static_cast<long long>(p.batch) * p.seq == p.tokens, fn,
                "padded mode needs tokens == batch * seq, got " + std::to_string(p.tokens) + " != " +
                    std::to_string(p.batch) + " * " + std::to_string(p.seq));
    } else {
        require(p.batch >= 1, fn, "packed mode needs batch >= 1, got " + std::to_string(p.batch));
    }
    if (p.tokens == 0) return;
    require(p.input_ids && p.segment_ids && p.word && p.position && p.token_type && p.gamma && p.beta && p.out,
            fn, "input_ids, segment_ids, word, position, token_type, gamma, beta and out must not be null");
    const bool vec_ok = p.hidden % static_cast<int>(16 / es) == 0 && aligned16(p.word) &&
                        aligned16(p.position) && aligned16(p.token_type) && aligned16(p.gamma) &&
                        aligned16(p.beta) && aligned16(p.out);
    const int vec = vec_ok ? static_cast<int>(16 / es) : 1;
    // Default (H100 sweep, hidden 1024): at most 2 vectors per thread for few tokens (more threads
    // per row shorten the id -> row gather chain), 4 for many (fp32 at 49152 tokens: 149 us vs 164).
    if (max_vpt <= 0) max_vpt = p.tokens < 4096 ? 2 : 4;
    const RowConfig c = choose_row_config(p.hidden, vec, max_vpt);
    dispatch_dtype_vec(p.dtype, vec_ok, [&](auto* t, auto v) {
        launch_embed<std::remove_pointer_t<decltype(t)>, decltype(v)::value>(p, c, stream);
    });
    check_launch(fn);
}

}  // namespace detail

void embed_layernorm(const EmbedLayerNormParams& p, cudaStream_t stream) {
    detail::embed_layernorm_tuned(p, stream, 0);
}

}  // namespace bertqa
