// attention_check.cu: correctness check + timing of bertqa::attention (plugins/attention.cu and
// the Hopper kernel of plugins/attention_hopper.cu), llm.c dev/cuda style. Built by
// plugins/CMakeLists.txt (build/plugins/bench/attention_check), or by hand with the plugin's own
// translation units (one home per kernel):
//
//   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -DBERTQA_ATTENTION_SM90A=1 -Iplugins \
//        plugins/bench/attention_check.cu plugins/attention.cu plugins/attention_hopper.cu -o /tmp/attn
//   /tmp/attn [SEED] [fp16|mt2] [--no-bench] [--dispatch]
//   SEED 0 (or none) draws a fresh seed; the seed is printed so that any failure can be replayed.
//   fp16: fp16 checks and timings only;  mt2: fp16 checks, and timings of the mma.sync 2-m-tile
//   shape only (for the -DBERTQA_ATTN_MT2_{STAGES,BN,MINB}=... knobs).
//   --no-bench skips the timings; --dispatch adds the sweep that set the kernel rule: both fp16
//   kernels (mma.sync, wgmma) timed in CUDA graphs at BERT-large / BERT-base shapes, padded
//   S 128..512 x B 1..128 and packed SQuAD-like batches, beside the rule's pick
//   (--dispatch --no-check: the sweep alone, for timing experiments).
//   BERTQA_ATTENTION_KERNEL=auto|mma|wgmma (read by the plugin) sets what the "auto" rows run.
//
// Variants checked, every one against the float64 CPU reference below, fresh random inputs
// (never zeros), output poisoned with NaN bytes before each launch, plus a poisoned guard region
// past the last token that must stay untouched:
//   dtype      fp32 (plain FMA kernel), fp16 (tensor-core FlashAttention-2 kernel)
//   head_size  32, 64, 128
//   mode       padded (seqlens random per sequence, always including 1 and seq)
//              packed (cu_seqlens, lengths random, always including 1 and seq)
//   seq        1, 7, 64, 128, 129, 384, 512
//   fp16 kernels: mma.sync with 1 and 2 m16 tiles per warp (64- / 128-row CTAs), each forced;
//              the Hopper wgmma kernel forced (head size 64, compute capability 9.0 only; checked
//              that it is the kernel that ran), on more lengths: seq 1, 7, 63, 64, 65, 127..129,
//              191, 200, 255, 256, 320, 383, 384, 448, 511, 512, and packed buffers whose last
//              sequence ends anywhere in a tile (total tokens 1, 8, under 64, empty sequences
//              first, between and last); plus the launcher's own choice (auto)
//   + a sharp-softmax case (scale 1 for fp16, 0.35 for fp32) per dtype/head size/tile shape
//   + a BERT-large shaped launch (batch 128, seq 384, heads 16, D 64, random seqlens), checked
//     on a sample of (sequence, head) pairs
//   + argument checks: bad head_size / dtype / null pointers / aliasing throw std::invalid_argument
// The input carries 64 rows of NaN past its last token: a kernel that read them (as V) would
// put NaN in the output (the wgmma kernel's TMA boxes must never cross the buffer's end).
// Tolerances (error = max|out-ref| / max|ref| and ||out-ref||/||ref|| over the launch):
//   fp32 1e-5 (both), fp16 2e-3 (norm) and 1e-2 (max). Any NaN/Inf or guard write fails.
// Exits non-zero on any mismatch. Then times the fp16 (and fp32) kernel with CUDA events after an
// L2 flush (median of many launches), and prints TFLOP/s against the measured mma.sync ceiling
// and the bandwidth floor measured by a device-to-device copy; shapes: BERT's padded ones at full
// length, plus a packed SQuAD-like batch (256 sequences of 100-260 tokens, grid bound 384, as the
// offline benchmark's packed engine runs them).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "attention_dispatch.h"  // bertqa::attention_detail::set_mtile_override (bench hook)
#include "bert_plugins.h"

#include "cuda_check.h"
#include "probe_common.cuh"

static std::mt19937_64 g_rng;
static int g_failures = 0;

// Bulk uniform draws (the big tensors): a PCG-style generator seeded from g_rng, much faster than
// std::uniform_real_distribution over hundreds of millions of elements.
struct FastUniform {
    uint64_t state;
    explicit FastUniform(uint64_t seed) : state(seed | 1) {}
    float operator()(float lo, float hi) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        const uint32_t x = (uint32_t)((state ^ (state >> 22)) >> 32) >> 8;  // 24 random bits
        return lo + (hi - lo) * (x * (1.0f / 16777216.0f));
    }
};

// ---------------------------------------------------------------------------------------------
// CPU reference: the same math in float64.
// ---------------------------------------------------------------------------------------------
struct Problem {
    int batch, heads, D, seq;
    bool packed;
    std::vector<int> seqlens;  // padded
    std::vector<int> cu;       // packed
    int tokens() const { return packed ? cu[batch] : batch * seq; }
    int tok0(int b) const { return packed ? cu[b] : b * seq; }
    int nq(int b) const { return packed ? cu[b + 1] - cu[b] : seq; }
    int nk(int b) const { return packed ? cu[b + 1] - cu[b] : seqlens[b]; }
};

// qkv as float (already rounded to fp16 for fp16 runs); out [tokens, heads, D] in double.
static void ref_one(const Problem& P, const std::vector<float>& qkv, double scale, int b, int h,
                    std::vector<double>& out) {
    const int D = P.D, H = P.heads;
    const size_t ld = 3ull * H * D;
    const int t0 = P.tok0(b), nq = P.nq(b), nk = P.nk(b);
    std::vector<double> s(nk);
    for (int i = 0; i < nq; ++i) {
        const float* q = &qkv[(t0 + i) * ld + (size_t)h * D];
        double mx = -INFINITY;
        for (int j = 0; j < nk; ++j) {
            const float* k = &qkv[(t0 + j) * ld + (size_t)(H + h) * D];
            double acc = 0;
            for (int d = 0; d < D; ++d) acc += (double)q[d] * (double)k[d];
            s[j] = acc * scale;
            mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int j = 0; j < nk; ++j) sum += (s[j] = std::exp(s[j] - mx));
        double* o = &out[((size_t)(t0 + i) * H + h) * D];
        for (int d = 0; d < D; ++d) o[d] = 0;
        for (int j = 0; j < nk; ++j) {
            const float* v = &qkv[(t0 + j) * ld + (size_t)(2 * H + h) * D];
            const double w = s[j] / sum;
            for (int d = 0; d < D; ++d) o[d] += w * (double)v[d];
        }
    }
}

static void ref_attention(const Problem& P, const std::vector<float>& qkv, double scale,
                          const std::vector<std::pair<int, int>>& pairs, std::vector<double>& out) {
    unsigned nt = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    std::vector<std::thread> th;
    for (unsigned w = 0; w < nt; ++w)
        th.emplace_back([&, w] {
            for (size_t i = w; i < pairs.size(); i += nt)
                ref_one(P, qkv, scale, pairs[i].first, pairs[i].second, out);
        });
    for (auto& t : th) t.join();
}

// ---------------------------------------------------------------------------------------------
// One checked launch
// ---------------------------------------------------------------------------------------------
static Problem make_problem(int batch, int heads, int D, int seq, bool packed) {
    Problem P{batch, heads, D, seq, packed, {}, {}};
    std::uniform_int_distribution<int> len(1, seq);
    std::vector<int> lens(batch);
    for (int b = 0; b < batch; ++b) lens[b] = len(g_rng);
    lens[0] = 1;  // always the extremes
    if (batch > 1) lens[batch - 1] = seq;
    if (batch > 2) std::swap(lens[1], lens[batch - 1]);  // mix the order
    if (packed) {
        P.cu.assign(batch + 1, 0);
        for (int b = 0; b < batch; ++b) P.cu[b + 1] = P.cu[b] + lens[b];
    } else {
        P.seqlens = lens;
    }
    return P;
}

// A batch of the given sequence lengths (packed: 0 allowed) with seq = the longest (or seq_bound).
static Problem lengths_problem(const std::vector<int>& lens, int heads, int D, bool packed, int seq_bound = 0) {
    Problem P{(int)lens.size(), heads, D, 0, packed, {}, {}};
    P.seq = seq_bound;
    for (int n : lens) P.seq = std::max(P.seq, n);
    if (packed) {
        P.cu.assign(P.batch + 1, 0);
        for (int b = 0; b < P.batch; ++b) P.cu[b + 1] = P.cu[b] + lens[b];
    } else {
        P.seqlens = lens;
    }
    return P;
}

struct Result {
    double max_err, norm_err;
    long bad;
    bertqa::attention_detail::Kernel kernel;  // the one that ran
};

static const int kGuardRows = 64;

// Runs attention on P with fresh inputs; compares the (b, h) pairs given (all if empty).
static Result run_check(const Problem& P, bertqa::DType dt, double scale, double in_range,
                        std::vector<std::pair<int, int>> pairs = {}) {
    const bool f16 = dt == bertqa::DType::kFloat16;
    const size_t es = f16 ? 2 : 4;
    const int T = P.tokens(), H = P.heads, D = P.D;
    const size_t n_in = (size_t)T * 3 * H * D, n_out = (size_t)T * H * D;
    const size_t n_out_alloc = n_out + (size_t)kGuardRows * H * D;
    const size_t n_in_alloc = n_in + (size_t)kGuardRows * 3 * H * D;  // + NaN rows past the last token

    std::vector<float> qkv(n_in);
    FastUniform u(g_rng());
    const float qr = (float)in_range;
    for (size_t t = 0; t < (size_t)T; ++t)
        for (int s = 0; s < 3; ++s)
            for (int i = 0; i < H * D; ++i) {
                float x = s < 2 ? u(-qr, qr) : u(-1.f, 1.f);
                if (f16) x = __half2float(__float2half(x));
                qkv[(t * 3 + s) * H * D + i] = x;
            }
    std::vector<unsigned char> in_bytes(n_in * es);
    if (f16) {
        __half* h = reinterpret_cast<__half*>(in_bytes.data());
        for (size_t i = 0; i < n_in; ++i) h[i] = __float2half(qkv[i]);
    } else {
        memcpy(in_bytes.data(), qkv.data(), n_in * 4);
    }
    void *d_in, *d_out;
    int32_t *d_len = nullptr, *d_cu = nullptr;
    CUDA_CHECK(cudaMalloc(&d_in, n_in_alloc * es));
    CUDA_CHECK(cudaMalloc(&d_out, n_out_alloc * es));
    CUDA_CHECK(cudaMemset(d_in, 0xFF, n_in_alloc * es));  // the guard rows: NaN
    if (n_in) CUDA_CHECK(cudaMemcpy(d_in, in_bytes.data(), n_in * es, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemset(d_out, 0xFF, n_out_alloc * es));  // NaN in fp16 and fp32
    if (P.packed) {
        CUDA_CHECK(cudaMalloc(&d_cu, (P.batch + 1) * 4));
        CUDA_CHECK(cudaMemcpy(d_cu, P.cu.data(), (P.batch + 1) * 4, cudaMemcpyHostToDevice));
    } else {
        CUDA_CHECK(cudaMalloc(&d_len, P.batch * 4));
        CUDA_CHECK(cudaMemcpy(d_len, P.seqlens.data(), P.batch * 4, cudaMemcpyHostToDevice));
    }
    bertqa::AttentionParams p{};
    p.dtype = dt;
    p.qkv = d_in;
    p.out = d_out;
    p.batch = P.batch;
    p.heads = H;
    p.head_size = D;
    p.seq = P.seq;
    p.seqlens = d_len;
    p.cu_seqlens = d_cu;
    p.scale = (float)scale;
    const bertqa::attention_detail::Kernel ran = bertqa::attention_detail::selected_kernel(p);
    bertqa::attention(p, 0);
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaDeviceSynchronize());

    std::vector<unsigned char> out_bytes(n_out_alloc * es);
    CUDA_CHECK(cudaMemcpy(out_bytes.data(), d_out, n_out_alloc * es, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaFree(d_in));
    CUDA_CHECK(cudaFree(d_out));
    if (d_len) CUDA_CHECK(cudaFree(d_len));
    if (d_cu) CUDA_CHECK(cudaFree(d_cu));

    const bool all = pairs.empty();
    if (all)
        for (int b = 0; b < P.batch; ++b)
            for (int h = 0; h < H; ++h) pairs.push_back({b, h});
    std::vector<double> ref(n_out, 0.0);
    ref_attention(P, qkv, scale, pairs, ref);

    Result r{0, 0, 0, ran};
    double max_ref = 0, se = 0, sr = 0, max_abs = 0;
    auto get = [&](size_t i) -> double {
        if (f16) return __half2float(reinterpret_cast<const __half*>(out_bytes.data())[i]);
        return reinterpret_cast<const float*>(out_bytes.data())[i];
    };
    for (auto [b, h] : pairs)
        for (int i = 0; i < P.nq(b); ++i)
            for (int d = 0; d < D; ++d) {
                const size_t idx = ((size_t)(P.tok0(b) + i) * H + h) * D + d;
                const double o = get(idx), x = ref[idx];
                if (!std::isfinite(o)) {
                    ++r.bad;
                    continue;
                }
                max_abs = std::max(max_abs, std::fabs(o - x));
                max_ref = std::max(max_ref, std::fabs(x));
                se += (o - x) * (o - x);
                sr += x * x;
            }
    if (!all)  // sampled check: still every element must have been written (no NaN left)
        for (size_t i = 0; i < n_out; ++i)
            if (!std::isfinite(get(i))) ++r.bad;
    for (size_t i = n_out * es; i < n_out_alloc * es; ++i)
        if (out_bytes[i] != 0xFF) ++r.bad;  // guard region past the last token touched
    r.max_err = max_abs / std::max(max_ref, 1e-30);
    r.norm_err = std::sqrt(se / std::max(sr, 1e-300));
    return r;
}

static int g_mt = 0;  // forced fp16 m-tiles per warp for the current checks (0 = heuristic)
static int g_checks = 0;
// The kernel the current checks force (kAuto: the launcher's choice), and whether the Hopper
// kernel can run here (then a forced wgmma must be the kernel that ran).
static bertqa::attention_detail::Kernel g_kernel = bertqa::attention_detail::Kernel::kAuto;
static bool g_hopper = false;

static void force_kernel(bertqa::attention_detail::Kernel k) {
    g_kernel = k;
    bertqa::attention_detail::set_kernel_override(k);
}

static void report(const char* what, bertqa::DType dt, const Problem& P, double scale,
                   const Result& r) {
    using bertqa::attention_detail::Kernel;
    const bool f16 = dt == bertqa::DType::kFloat16;
    const double tol_max = f16 ? 1e-2 : 1e-5, tol_norm = f16 ? 2e-3 : 1e-5;
    const bool wrong_kernel = g_kernel == Kernel::kWgmma && g_hopper && r.kernel != Kernel::kWgmma;
    const bool ok = r.bad == 0 && r.max_err <= tol_max && r.norm_err <= tol_norm && !wrong_kernel;
    ++g_checks;
    if (!ok) ++g_failures;
    char kern[16];
    if (r.kernel == Kernel::kWgmma) snprintf(kern, sizeof kern, "wgmma");
    else snprintf(kern, sizeof kern, "mma mt=%d", !f16 ? 0 : P.D > 64 ? 1 : g_mt);
    printf("%-6s %s %-9s D=%-3d %-6s batch=%-3d heads=%-2d seq=%-3d scale=%.4f  max_err=%.2e  "
           "norm_err=%.2e  bad=%ld  %s%s\n",
           what, f16 ? "fp16" : "fp32", kern, P.D, P.packed ? "packed" : "padded", P.batch,
           P.heads, P.seq, scale, r.max_err, r.norm_err, r.bad, ok ? "ok" : "FAIL",
           wrong_kernel ? " (forced wgmma did not run)" : "");
}

template <typename F>
static void expect_invalid(const char* what, F f) {
    try {
        f();
        printf("argcheck %-40s did NOT throw  FAIL\n", what);
        ++g_failures;
    } catch (const std::invalid_argument&) {
        printf("argcheck %-40s throws invalid_argument  ok\n", what);
    } catch (...) {
        printf("argcheck %-40s threw the wrong type  FAIL\n", what);
        ++g_failures;
    }
}

// ---------------------------------------------------------------------------------------------
// Ceilings: mma.sync f16->f32 peak, device-to-device copy bandwidth
// ---------------------------------------------------------------------------------------------
__global__ void mma_peak_kernel(const uint32_t* __restrict__ seed, float* sink, int iters) {
    const int lane = threadIdx.x & 31;
    uint32_t a[4] = {seed[lane], seed[lane + 32], seed[lane + 64], seed[lane + 96]};
    uint32_t b0 = seed[lane + 128], b1 = seed[lane + 160];
    float c[8][4];
#pragma unroll
    for (int k = 0; k < 8; ++k) c[k][0] = c[k][1] = c[k][2] = c[k][3] = 0.f;
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int k = 0; k < 8; ++k)
            asm volatile(
                "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                : "+f"(c[k][0]), "+f"(c[k][1]), "+f"(c[k][2]), "+f"(c[k][3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    float s = 0;
#pragma unroll
    for (int k = 0; k < 8; ++k) s += c[k][0] + c[k][1] + c[k][2] + c[k][3];
    if (s == 1234.5678f) sink[0] = s;
}

static double measure_mma_tflops(int sms) {
    std::vector<uint32_t> h(192);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (auto& x : h) {
        __half2 v = __floats2half2_rn(u(g_rng), u(g_rng));
        memcpy(&x, &v, 4);
    }
    uint32_t* d;
    float* sink;
    CUDA_CHECK(cudaMalloc(&d, 192 * 4));
    CUDA_CHECK(cudaMalloc(&sink, 4));
    CUDA_CHECK(cudaMemcpy(d, h.data(), 192 * 4, cudaMemcpyHostToDevice));
    const int blocks = sms * 4, threads = 256, iters = 4096;
    mma_peak_kernel<<<blocks, threads>>>(d, sink, 64);
    CUDA_CHECK(cudaGetLastError());
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    float best = 1e30f;
    for (int r = 0; r < 5; ++r) {
        CUDA_CHECK(cudaEventRecord(e0));
        mma_peak_kernel<<<blocks, threads>>>(d, sink, iters);
        CUDA_CHECK(cudaEventRecord(e1));
        CUDA_CHECK(cudaEventSynchronize(e1));
        float ms;
        CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        best = std::min(best, ms);
    }
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaFree(d));
    CUDA_CHECK(cudaFree(sink));
    const double flops = (double)blocks * (threads / 32) * iters * 8 * (2.0 * 16 * 8 * 16);
    return flops / (best * 1e-3) / 1e12;
}

static double measure_copy_gbs() {
    const size_t n = 1ull << 30;
    void *a, *b;
    CUDA_CHECK(cudaMalloc(&a, n));
    CUDA_CHECK(cudaMalloc(&b, n));
    CUDA_CHECK(cudaMemset(a, 0x3C, n));
    CUDA_CHECK(cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice));
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    float best = 1e30f;
    for (int r = 0; r < 5; ++r) {
        CUDA_CHECK(cudaEventRecord(e0));
        CUDA_CHECK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice));
        CUDA_CHECK(cudaEventRecord(e1));
        CUDA_CHECK(cudaEventSynchronize(e1));
        float ms;
        CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        best = std::min(best, ms);
    }
    CUDA_CHECK(cudaFree(a));
    CUDA_CHECK(cudaFree(b));
    return 2.0 * n / (best * 1e-3) / 1e9;
}

// ---------------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------------
struct Timing {
    double cold_us, cold_us2, graph_us;
    bertqa::attention_detail::Kernel kernel;  // the one timed
};

// Microseconds per launch: `per_graph` launches captured back to back in one CUDA graph (as the
// engine runs them; L2 warm), after three eager launches (first-launch setup outside the capture).
static double graph_us(const bertqa::AttentionParams& p, cudaStream_t st, int per_graph) {
    for (int i = 0; i < 3; ++i) bertqa::attention(p, st);
    CUDA_CHECK(cudaStreamSynchronize(st));
    return probe::graph_median_us(
        [&](cudaStream_t s) {
            for (int i = 0; i < per_graph; ++i) bertqa::attention(p, s);
        },
        st, per_graph);
}

// lengths (optional): a packed batch of these sequence lengths (cu_seqlens; seq = the grid bound
// as in the engine); otherwise batch full-length padded sequences.
static Timing time_shape(bertqa::DType dt, int batch, int heads, int D, int seq, void* flush,
                         size_t flush_bytes, const std::vector<int>* lengths = nullptr) {
    const size_t es = dt == bertqa::DType::kFloat16 ? 2 : 4;
    size_t tokens = (size_t)batch * seq;
    if (lengths) {
        batch = (int)lengths->size();
        tokens = 0;
        for (int n : *lengths) tokens += (size_t)n;
    }
    const size_t n_in = tokens * 3 * heads * D;
    const size_t n_out = tokens * heads * D;
    // Random (never zero) data in [-1.5, 1.5), made on the device (hundreds of MB per shape).
    void *d_in, *d_out;
    int32_t* d_len;
    CUDA_CHECK(cudaMalloc(&d_in, n_in * es));
    CUDA_CHECK(cudaMalloc(&d_out, n_out * es));
    CUDA_CHECK(cudaMalloc(&d_len, (batch + 1) * 4));
    // Timing data: uniform in [-1.5, 1.5) from a hash, fresh values, never zeros.
    if (es == 2) probe::fill(static_cast<__half*>(d_in), n_in, g_rng(), 1.5f);
    else probe::fill(static_cast<float*>(d_in), n_in, g_rng(), 1.5f);
    CUDA_CHECK(cudaGetLastError());
    std::vector<int> lens(batch, seq);  // full-length sequences: all S^2 work is real
    if (lengths) {  // cu_seqlens
        lens.assign(1, 0);
        for (int n : *lengths) lens.push_back(lens.back() + n);
    }
    CUDA_CHECK(cudaMemcpy(d_len, lens.data(), lens.size() * 4, cudaMemcpyHostToDevice));
    bertqa::AttentionParams p{};
    p.dtype = dt;
    p.qkv = d_in;
    p.out = d_out;
    p.batch = batch;
    p.heads = heads;
    p.head_size = D;
    p.seq = seq;
    p.seqlens = lengths ? nullptr : d_len;
    p.cu_seqlens = lengths ? d_len : nullptr;
    p.scale = 1.f / std::sqrt((float)D);

    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    for (int i = 0; i < 5; ++i) bertqa::attention(p, st);  // warm-up
    CUDA_CHECK(cudaStreamSynchronize(st));
    Timing t{};
    t.kernel = bertqa::attention_detail::selected_kernel(p);
    for (int pass = 0; pass < 2; ++pass) {
        const int reps = 60;
        std::vector<float> ms(reps);
        for (int r = 0; r < reps; ++r) {
            CUDA_CHECK(cudaMemsetAsync(flush, r & 0xFF, flush_bytes, st));  // evict L2
            CUDA_CHECK(cudaEventRecord(e0, st));
            bertqa::attention(p, st);
            CUDA_CHECK(cudaEventRecord(e1, st));
            CUDA_CHECK(cudaEventSynchronize(e1));
            CUDA_CHECK(cudaEventElapsedTime(&ms[r], e0, e1));
        }
        std::sort(ms.begin(), ms.end());
        (pass == 0 ? t.cold_us : t.cold_us2) = ms[reps / 2] * 1e3;
    }
    // Graph of 20 back-to-back launches, L2 warm: the per-layer time inside a CUDA graph.
    t.graph_us = graph_us(p, st, 20);
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaStreamDestroy(st));
    CUDA_CHECK(cudaFree(d_in));
    CUDA_CHECK(cudaFree(d_out));
    CUDA_CHECK(cudaFree(d_len));
    return t;
}

// ---------------------------------------------------------------------------------------------
// The kernel-choice sweep (--dispatch): mma.sync against wgmma, CUDA-graph timing
// ---------------------------------------------------------------------------------------------

// BERT-large (16 heads) and BERT-base (12 heads), head size 64, fp16: padded full-length batches
// S 128/192/256/320/384/512 x B 1/2/4/8/16/32/64/128, and packed SQuAD-like batches of 256 and 1024 sequences of 100..384
// tokens (grid bound 384). Each kernel timed twice, alternating (mma, wgmma, mma, wgmma).
static void dispatch_sweep(int sms) {
    using bertqa::attention_detail::Kernel;
    if (!g_hopper) {
        printf("\n--dispatch: no wgmma kernel on this device, nothing to compare\n");
        return;
    }
    std::vector<int> squad256(256), squad1024(1024);
    {
        std::mt19937 r(2026);
        for (int& n : squad256) n = 100 + (int)(r() % 285);
        for (int& n : squad1024) n = 100 + (int)(r() % 285);
    }
    size_t max_tokens = 128 * 512;
    for (const auto* v : {&squad256, &squad1024}) {
        size_t t = 0;
        for (int n : *v) t += n;
        max_tokens = std::max(max_tokens, t);
    }
    const size_t n_in = max_tokens * 3 * 16 * 64, n_out = max_tokens * 16 * 64;
    __half *d_in, *d_out;
    int32_t* d_len;
    CUDA_CHECK(cudaMalloc(&d_in, n_in * 2));
    CUDA_CHECK(cudaMalloc(&d_out, n_out * 2));
    CUDA_CHECK(cudaMalloc(&d_len, (1024 + 1) * 4));
    probe::fill(d_in, n_in, g_rng(), 1.5f);
    CUDA_CHECK(cudaGetLastError());
    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    printf("\nkernel choice sweep (fp16, head size 64, per-launch us in a CUDA graph of back-to-back "
           "launches, median of 11 replays; each variant timed twice, alternating; mma64 / mma128: the "
           "mma.sync kernel with 64- / 128-row CTAs)\n");
    printf("%-6s %-20s %6s %8s %15s %15s %15s %8s %8s\n", "model", "shape", "heads", "ctas128", "mma64 us",
           "mma128 us", "wgmma us", "launcher", "best");
    struct Model {
        const char* name;
        int heads;
    };
    // The three variants: (kernel, m-tiles of the mma.sync kernel).
    const Kernel kind[3] = {Kernel::kMma, Kernel::kMma, Kernel::kWgmma};
    const int mtiles[3] = {1, 2, 0};
    const char* vname[3] = {"mma64", "mma128", "wgmma"};
    for (const Model m : {Model{"large", 16}, Model{"base", 12}}) {
        struct Row {
            int batch, seq;
            const std::vector<int>* lens;
        };
        std::vector<Row> rows;
        for (int S : {128, 192, 256, 320, 384, 512})
            for (int B : {1, 2, 4, 8, 16, 32, 64, 128}) rows.push_back({B, S, nullptr});
        rows.push_back({256, 384, &squad256});
        rows.push_back({1024, 384, &squad1024});
        for (const Row& row : rows) {
            std::vector<int32_t> lens(row.batch, row.seq);
            size_t tokens = (size_t)row.batch * row.seq;
            if (row.lens) {
                lens.assign(1, 0);
                for (int n : *row.lens) lens.push_back(lens.back() + n);
                tokens = lens.back();
            }
            CUDA_CHECK(cudaMemcpy(d_len, lens.data(), lens.size() * 4, cudaMemcpyHostToDevice));
            bertqa::AttentionParams p{};
            p.dtype = bertqa::DType::kFloat16;
            p.qkv = d_in;
            p.out = d_out;
            p.batch = row.batch;
            p.heads = m.heads;
            p.head_size = 64;
            p.seq = row.seq;
            p.seqlens = row.lens ? nullptr : d_len;
            p.cu_seqlens = row.lens ? d_len : nullptr;
            p.scale = 0.125f;
            const int per_graph = tokens * m.heads < 200000 ? 200 : 20;
            double t[3][2];
            for (int rep = 0; rep < 2; ++rep)
                for (int k = 0; k < 3; ++k) {
                    bertqa::attention_detail::set_mtile_override(mtiles[k]);
                    force_kernel(kind[k]);
                    t[k][rep] = graph_us(p, st, per_graph);
                }
            bertqa::attention_detail::set_mtile_override(0);
            force_kernel(Kernel::kAuto);
            const int picked = bertqa::attention_detail::selected_kernel(p) == Kernel::kWgmma ? 2
                               : bertqa::attention_detail::selected_mtiles(p) == 2 ? 1 : 0;
            double best_t[3];
            int best = 0;
            for (int k = 0; k < 3; ++k) {
                best_t[k] = std::min(t[k][0], t[k][1]);
                if (best_t[k] < best_t[best]) best = k;
            }
            char shape[32], c[3][32];
            if (row.lens) snprintf(shape, sizeof shape, "packed %d (100-384)", row.batch);
            else snprintf(shape, sizeof shape, "B%-4d S%d", row.batch, row.seq);
            for (int k = 0; k < 3; ++k) snprintf(c[k], sizeof c[k], "%.1f / %.1f", t[k][0], t[k][1]);
            const long long ctas = (long long)row.batch * m.heads * ((row.seq + 127) / 128);
            printf("%-6s %-20s %6d %8lld %15s %15s %15s %8s %8s", m.name, shape, m.heads, ctas, c[0], c[1], c[2],
                   vname[picked], vname[best]);
            if (picked != best) printf("  <- launcher %.2fx the best", best_t[picked] / best_t[best]);
            printf("\n");
        }
    }
    printf("(%d SMs)\n", sms);
    CUDA_CHECK(cudaStreamDestroy(st));
    CUDA_CHECK(cudaFree(d_in));
    CUDA_CHECK(cudaFree(d_out));
    CUDA_CHECK(cudaFree(d_len));
}

static int run(int argc, char** argv);

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {  // e.g. a bad BERTQA_ATTENTION_KERNEL, a failed launch
        printf("error: %s\n", e.what());
        return 3;
    }
}

static int run(int argc, char** argv) {
    using bertqa::attention_detail::Kernel;
    // Flags anywhere: --no-bench (checks only), --dispatch (+ the kernel-choice sweep).
    bool bench = true, dispatch = false, check = true;
    std::vector<const char*> pos;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--no-bench") == 0) bench = false;
        else if (strcmp(argv[i], "--dispatch") == 0) dispatch = true;
        else if (strcmp(argv[i], "--no-check") == 0) check = false;
        else pos.push_back(argv[i]);
    }
    // pos[0]: seed (0 or absent: fresh from random_device); pos[1] == "fp16": skip the fp32
    // checks and timings (for comparing fp16 tile variants quickly).
    uint64_t seed = pos.size() > 0 ? strtoull(pos[0], nullptr, 10) : 0;
    if (seed == 0) seed = std::random_device{}();
    // pos[1] == "mt2": like fp16, and times only the 2-m-tile shape (tile-knob experiments).
    const bool mt2_only = pos.size() > 1 && strcmp(pos[1], "mt2") == 0;
    const bool fp16_only = mt2_only || (pos.size() > 1 && strcmp(pos[1], "fp16") == 0);
    g_rng.seed(seed);
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    g_hopper = bertqa::attention_detail::hopper_kernel_available();
    const char* env_kernel = std::getenv("BERTQA_ATTENTION_KERNEL");
    printf("device %s (compute capability %d.%d), %d SMs, L2 %d MB, seed %llu; Hopper wgmma kernel %s; "
           "BERTQA_ATTENTION_KERNEL=%s\n",
           prop.name, prop.major, prop.minor, prop.multiProcessorCount, prop.l2CacheSize >> 20,
           (unsigned long long)seed, g_hopper ? "available" : "not available (its checks are skipped)",
           env_kernel ? env_kernel : "(unset)");

    if (!check) {  // timing experiments only (--no-check): nothing below was checked in this run
        printf("--no-check: the checks are skipped\n");
        if (dispatch) dispatch_sweep(prop.multiProcessorCount);
        return 0;
    }
    // ---- argument checks ----
    {
        bertqa::AttentionParams p{};
        p.dtype = bertqa::DType::kFloat16;
        void* buf;
        int32_t* lens;
        CUDA_CHECK(cudaMalloc(&buf, 1 << 20));
        CUDA_CHECK(cudaMalloc(&lens, 64));
        p.qkv = buf;
        p.out = static_cast<char*>(buf) + (1 << 19);
        p.batch = 1;
        p.heads = 2;
        p.head_size = 64;
        p.seq = 8;
        p.seqlens = lens;
        p.scale = 0.125f;
        auto q = p;
        q.head_size = 48;
        expect_invalid("head_size 48", [&] { bertqa::attention(q, 0); });
        q = p;
        q.dtype = static_cast<bertqa::DType>(7);
        expect_invalid("dtype 7", [&] { bertqa::attention(q, 0); });
        q = p;
        q.qkv = nullptr;
        expect_invalid("null qkv", [&] { bertqa::attention(q, 0); });
        q = p;
        q.seqlens = nullptr;
        expect_invalid("padded without seqlens", [&] { bertqa::attention(q, 0); });
        q = p;
        q.out = static_cast<char*>(buf) + 256;
        expect_invalid("out overlapping qkv", [&] { bertqa::attention(q, 0); });
        q = p;
        q.seq = 0;
        expect_invalid("seq 0", [&] { bertqa::attention(q, 0); });
        q = p;
        q.scale = -1.f;
        expect_invalid("scale -1", [&] { bertqa::attention(q, 0); });
        q = p;
        q.out = static_cast<char*>(p.out) + 2;
        expect_invalid("misaligned out", [&] { bertqa::attention(q, 0); });
        CUDA_CHECK(cudaFree(buf));
        CUDA_CHECK(cudaFree(lens));
    }

    // ---- every variant against the reference ----
    // fp16 runs each configuration with both tile shapes forced (1 and 2 m16 tiles per warp:
    // 64- and 128-row CTAs; D = 128 has only the first), then once more through the heuristic.
    const std::vector<int> seqs = {1, 7, 64, 128, 129, 384, 512};
    // The wgmma kernel's tiles are 128 query rows and 64-key boxes: every way a sequence can end in them.
    const std::vector<int> wgmma_seqs = {1,   7,   63,  64,  65,  127, 128, 129, 191,
                                         200, 255, 256, 320, 383, 384, 448, 511, 512};
    const int Ds[] = {32, 64, 128};
    struct Variant {
        bertqa::DType dt;
        int mt;
        Kernel kernel;
    };
    std::vector<Variant> variants;
    if (!fp16_only) variants.push_back({bertqa::DType::kFloat32, 0, Kernel::kMma});
    for (int mt : {1, 2}) variants.push_back({bertqa::DType::kFloat16, mt, Kernel::kMma});
    if (g_hopper) variants.push_back({bertqa::DType::kFloat16, 0, Kernel::kWgmma});
    for (const Variant& v : variants)
        for (int D : Ds) {
            if (v.mt == 2 && D > 64) continue;
            if (v.kernel == Kernel::kWgmma && D != 64) continue;
            g_mt = v.mt;
            bertqa::attention_detail::set_mtile_override(v.mt);
            force_kernel(v.kernel);
            for (int seq : v.kernel == Kernel::kWgmma ? wgmma_seqs : seqs)
                for (bool packed : {false, true}) {
                    Problem P = make_problem(5, 3, D, seq, packed);
                    const double scale = 1.0 / std::sqrt((double)D);
                    report("check", v.dt, P, scale, run_check(P, v.dt, scale, 1.5));
                }
            // Sharp softmax: logits of tens, exercising the running-max rescale. (fp32 gets a
            // smaller scale: at logits ~ +-40 float32 rounding of the logits alone moves the
            // output by ~1e-5 against the float64 reference, whatever the kernel.)
            const double sharp = v.dt == bertqa::DType::kFloat16 ? 1.0 : 0.35;
            Problem P = make_problem(4, 2, D, 384, false);
            report("sharp", v.dt, P, sharp, run_check(P, v.dt, sharp, 1.5));
            if (v.kernel == Kernel::kWgmma) {
                // Buffers whose last sequence ends anywhere in a tile (the boxes moved back to the
                // buffer's end; under 64 tokens they start before row 0), empty packed sequences.
                const std::vector<std::vector<int>> packed_lens = {
                    {1}, {3, 5}, {512, 1}, {1, 512}, {200, 0, 77, 0}, {0, 0, 40}, {129, 64, 63},
                    {65, 0}, {384, 383, 100, 128}, {63, 64, 65, 127, 128, 129, 1}};
                for (const auto& lens : packed_lens) {
                    Problem Q = lengths_problem(lens, 3, D, true);
                    report("tail", v.dt, Q, 0.125, run_check(Q, v.dt, 0.125, 1.5));
                }
                Problem Q = lengths_problem({100, 37, 1}, 2, D, true, 384);  // seq bound above every length
                report("tail", v.dt, Q, 0.125, run_check(Q, v.dt, 0.125, 1.5));
                const std::vector<std::vector<int>> padded_lens = {{1}, {37, 1, 20}, {65, 1}, {1, 1, 1, 127}};
                for (const auto& lens : padded_lens) {
                    Problem R = lengths_problem(lens, 3, D, false);
                    report("tail", v.dt, R, 0.125, run_check(R, v.dt, 0.125, 1.5));
                }
            }
        }
    force_kernel(Kernel::kMma);
    {   // BERT-large shape, sampled pairs (full-grid indexing at scale), through the heuristic
        // and each forced fp16 tile shape.
        Problem P = make_problem(128, 16, 64, 384, false);
        Problem Q = make_problem(128, 16, 64, 384, true);
        std::vector<std::pair<int, int>> pairs;
        for (int b : {0, 1, 37, 64, 126, 127})
            for (int h : {0, 5, 15}) pairs.push_back({b, h});
        for (int mt : {0, 1, 2, -1}) {  // -1: the wgmma kernel
            if (mt < 0 && !g_hopper) continue;
            g_mt = std::max(mt, 0);
            bertqa::attention_detail::set_mtile_override(g_mt);
            force_kernel(mt < 0 ? Kernel::kWgmma : Kernel::kMma);
            report("large", bertqa::DType::kFloat16, P, 0.125,
                   run_check(P, bertqa::DType::kFloat16, 0.125, 1.5, pairs));
            report("large", bertqa::DType::kFloat16, Q, 0.125,
                   run_check(Q, bertqa::DType::kFloat16, 0.125, 1.5, pairs));
        }
        force_kernel(Kernel::kMma);
        if (!fp16_only)
            report("large", bertqa::DType::kFloat32, P, 0.125,
                   run_check(P, bertqa::DType::kFloat32, 0.125, 1.5, pairs));
        // The launcher's own choice (kernel, tile shape; BERTQA_ATTENTION_KERNEL if set): small
        // batches, and a large packed one (sampled pairs) where the rule may pick wgmma.
        g_mt = 0;
        bertqa::attention_detail::set_mtile_override(0);
        force_kernel(Kernel::kAuto);
        for (int seq : {128, 384}) {
            Problem R = make_problem(2, 16, 64, seq, false);
            report("auto", bertqa::DType::kFloat16, R, 0.125,
                   run_check(R, bertqa::DType::kFloat16, 0.125, 1.5));
        }
        report("auto", bertqa::DType::kFloat16, P, 0.125, run_check(P, bertqa::DType::kFloat16, 0.125, 1.5, pairs));
        report("auto", bertqa::DType::kFloat16, Q, 0.125, run_check(Q, bertqa::DType::kFloat16, 0.125, 1.5, pairs));
    }
    if (g_failures) {
        printf("FAILED: %d of %d checked configurations mismatch\n", g_failures, g_checks);
        return 1;
    }
    printf("all %d checked configurations match the reference%s\n", g_checks,
           g_hopper ? " (wgmma kernel included)" : " (no wgmma kernel on this device)");
    if (dispatch) dispatch_sweep(prop.multiProcessorCount);
    if (!bench) return 0;

    // ---- ceilings and timing ----
    const double mma_tf = measure_mma_tflops(prop.multiProcessorCount);
    const double bw = measure_copy_gbs();
    printf("measured ceilings: mma.sync f16->f32 %.0f TFLOP/s, device copy %.0f GB/s\n", mma_tf, bw);
    const size_t flush_bytes = 256ull << 20;
    void* flush;
    CUDA_CHECK(cudaMalloc(&flush, flush_bytes));
    // Packed SQuAD-like batch: 256 sequences of 100..260 tokens (SQuAD dev windows at 384/128
    // average ~180), grid bound 384 as in a packed engine with -s 384.
    std::vector<int> squad_lengths(256);
    {
        std::mt19937 r(12345);
        for (int& n : squad_lengths) n = 100 + (int)(r() % 161);
    }
    struct Shape {
        const char* name;
        bertqa::DType dt;
        int batch, heads, D, seq;
        const std::vector<int>* lengths = nullptr;
    } shapes[] = {
        {"packed SQuAD-like 256", bertqa::DType::kFloat16, 256, 16, 64, 384, &squad_lengths},
        {"BERT-large B128 S384", bertqa::DType::kFloat16, 128, 16, 64, 384},
        {"BERT-large B1   S384", bertqa::DType::kFloat16, 1, 16, 64, 384},
        {"BERT-large B8   S384", bertqa::DType::kFloat16, 8, 16, 64, 384},
        {"BERT-base  B128 S128", bertqa::DType::kFloat16, 128, 12, 64, 128},
        {"BERT-base  B1   S128", bertqa::DType::kFloat16, 1, 12, 64, 128},
        {"D32  B128 S384 H32  ", bertqa::DType::kFloat16, 128, 32, 32, 384},
        {"D128 B128 S384 H8   ", bertqa::DType::kFloat16, 128, 8, 128, 384},
        {"BERT-large B128 S512", bertqa::DType::kFloat16, 128, 16, 64, 512},
        {"fp32 large B128 S384", bertqa::DType::kFloat32, 128, 16, 64, 384},
        {"fp32 large B1   S384", bertqa::DType::kFloat32, 1, 16, 64, 384},
    };
    printf("\n%-22s %5s %9s %10s %10s %10s %9s %7s %10s\n", "shape", "dtype", "mt", "cold_us",
           "cold_us#2", "graph_us", "TFLOP/s", "%mma", "floor_us");
    for (const auto& s : shapes) {
        if (fp16_only && s.dt == bertqa::DType::kFloat32) continue;
        const bool f16 = s.dt == bertqa::DType::kFloat16;
        for (int mt : {1, 2, -1, 0}) {  // -1: the wgmma kernel; 0: the launcher's choice
            if ((!f16 || s.D > 64) && mt != 0) continue;
            if (mt2_only && (mt != 2 || s.D > 64)) continue;
            if (mt < 0 && (!g_hopper || s.D != 64)) continue;
            bertqa::attention_detail::set_mtile_override(std::max(mt, 0));
            force_kernel(mt < 0 ? Kernel::kWgmma : mt == 0 ? Kernel::kAuto : Kernel::kMma);
            const Timing t = time_shape(s.dt, s.batch, s.heads, s.D, s.seq, flush, flush_bytes, s.lengths);
            double sq = (double)s.batch * s.seq * s.seq, tok = (double)s.batch * s.seq;  // sum len^2, sum len
            if (s.lengths) {
                sq = tok = 0;
                for (int n : *s.lengths) sq += (double)n * n, tok += n;
            }
            const double flops = 4.0 * s.heads * sq * s.D;
            const size_t es = f16 ? 2 : 4;
            const double bytes = tok * s.heads * s.D * 4 * es;  // qkv + out
            const double floor_us = std::max(flops / (mma_tf * 1e12), bytes / (bw * 1e9)) * 1e6;
            const double best = std::min(t.cold_us, t.cold_us2);
            char mts[16];
            if (mt > 0) snprintf(mts, sizeof mts, "%d", mt);
            else if (mt < 0) snprintf(mts, sizeof mts, "wgmma");
            else snprintf(mts, sizeof mts, "auto:%s", t.kernel == Kernel::kWgmma ? "wg" : "mma");
            printf("%-22s %5s %9s %10.1f %10.1f %10.1f %9.1f %6.1f%% %10.1f\n", s.name,
                   f16 ? "fp16" : "fp32", mts, t.cold_us, t.cold_us2, t.graph_us,
                   flops / (best * 1e-6) / 1e12,
                   100.0 * flops / (best * 1e-6) / 1e12 / mma_tf, floor_us);
        }
    }
    bertqa::attention_detail::set_mtile_override(0);
    force_kernel(Kernel::kAuto);
    CUDA_CHECK(cudaFree(flush));
    return 0;
}
