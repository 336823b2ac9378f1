// pdl_gemm_probe: can a split-K GEMM of our own, launched as a programmatic dependent (PDL) that
// fetches its weights before it waits for the kernel in front of it, beat cuBLASLt's best product
// *in the chain it runs in* at batch 1? (infer_c/NOTES.md "Left to do": at B=1 each short kernel's
// fixed start-up dominates, and cuBLASLt's kernels cannot be programmatic dependents.)
//
// Math (the reference below is this, in float64): P[q] = X[:, q K/p .. (q+1) K/p] · W[:, same]^T,
// q = 0..p-1, fp32 partials [p, m, n] that the LayerNorm after the linear sums (as the runtime's
// split-K into the LayerNorm does).
//
// Kernel linear_partials (sm_90a): one CTA per (128-row, 64-column) tile and K slice; warp 8 streams
// X (128 x 64) and W (64 x 64) tiles by TMA (128-byte swizzle) into one shared-memory stage per
// 64-wide K block of the slice (at most 8, so a CTA needs only what its slice holds: 24 KB a block);
// warps 0-7 (two warpgroups of 64 rows) run m64n64k16 wgmma from shared memory and store the fp32
// accumulators straight to the partials. With PDL the producer issues every W load first, then
// `griddepcontrol.wait` (returns once the kernel in front has finished and its writes are visible),
// then the X loads; every thread calls `griddepcontrol.launch_dependents` at entry so the kernel
// after it may launch early too.
//
// Variants timed, each in a CUDA graph of `layers` links "producer -> product -> consumer"
// (producer: a kernel that writes X, as attention does; consumer: sums the partials into the next
// link's input, as the LayerNorm does; every link reads its own copy of W, 24+ copies overflowing
// the L2 as the network's weights do), minus the same chain without the product:
//   cublaslt   the builder's way: tune_gemms' fastest cuBLASLt algorithm for the split shape
//   ours       linear_partials launched plainly
//   ours+pdl   linear_partials, producer and consumer all launched with programmatic stream
//              serialisation (programmatic edges in the graph); each kernel lets its dependents
//              launch at entry, or with `--bench-only --trigger-late` after its main work (the
//              product: once its loads are issued / its last wgmma retired), or with
//              `--trigger-mixed` the producer at entry and the product and consumer late
//   --rank-in-context: every cuBLASLt candidate of the builder's tuner for the B=1 shapes, timed
//   alone (the tuner's ranking) and inside the chain: does the tuner's pick stay the fastest there?
// Checks before any timing: every configuration against the float64 reference on fresh random
// inputs with NaN-poisoned partials, and a hazard check for PDL (a one-CTA writer that lets
// dependents launch at once and writes X only ~20 us later; the product must still see the new X).
//
// Build (on the GPU machine, after `bash scripts/gpu_session.sh build`):
//   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -Iinfer_c -Iplugins \
//     plugins/bench/pdl_gemm_probe.cu build/libbertqa_runtime.a build/plugins/libbertqa_plugins.a \
//     -lcublasLt -o /tmp/pdl_gemm_probe && /tmp/pdl_gemm_probe
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda_check.h"
#include "gemm.h"
#include "hopper_ptx.cuh"
#include "probe_common.cuh"

namespace {

constexpr int kBlockM = 128, kBlockN = 64, kBlockK = 64;
constexpr int kConsumers = 256, kThreads = kConsumers + 32;
constexpr int kABytes = kBlockM * kBlockK * 2, kBBytes = kBlockN * kBlockK * 2, kStageBytes = kABytes + kBBytes;
constexpr int kMaxStages = 8;

using namespace hopper;

using probe::allow_dependents;
using probe::grid_dependency_wait;
using probe::launch_plain_or_pdl;

// grid (n / 64, ceil(m / 128), p); dynamic shared memory: stages * 24 KB + barriers + 1 KB alignment.
template <bool kPdl>
__global__ void __launch_bounds__(kThreads, 1)
    linear_partials_kernel(const __grid_constant__ CUtensorMap map_x, const __grid_constant__ CUtensorMap map_w,
                           float* __restrict__ partials, int m, int n, int k, int stages, int late) {
    if (kPdl && !late) allow_dependents();
    extern __shared__ uint8_t smem_raw[];
    uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
    uint64_t* full = reinterpret_cast<uint64_t*>(smem + stages * kStageBytes);
    uint64_t* empty = full + stages;
    const int warp = threadIdx.x / 32;
    const int n0 = blockIdx.x * kBlockN, m0 = blockIdx.y * kBlockM, q = blockIdx.z, p = gridDim.z;
    const int kblocks = k / kBlockK / p, kb0 = q * kblocks;
    if (threadIdx.x == kConsumers) {
        prefetch_tensormap(&map_x);
        prefetch_tensormap(&map_w);
    }
    init_stage_barriers(full, empty, stages, kConsumers / 32);
    __syncthreads();

    if (warp == kConsumers / 32) {
        if (threadIdx.x == kConsumers) {
            // Weights first: they do not depend on the kernel in front.
            const int pre = min(kblocks, stages);
            for (int i = 0; i < pre; ++i) {
                mbar_expect_tx(&full[i], kStageBytes);
                tma_load_2d(smem + i * kStageBytes + kABytes, &map_w, (kb0 + i) * kBlockK, n0, &full[i]);
            }
            if constexpr (kPdl) grid_dependency_wait();
            for (int i = 0; i < pre; ++i) tma_load_2d(smem + i * kStageBytes, &map_x, (kb0 + i) * kBlockK, m0, &full[i]);
            for (int i = pre; i < kblocks; ++i) {
                const int s = i % stages;
                mbar_wait(&empty[s], ((i / stages) & 1) ^ 1);
                mbar_expect_tx(&full[s], kStageBytes);
                tma_load_2d(smem + s * kStageBytes + kABytes, &map_w, (kb0 + i) * kBlockK, n0, &full[s]);
                tma_load_2d(smem + s * kStageBytes, &map_x, (kb0 + i) * kBlockK, m0, &full[s]);
            }
        }
        if (kPdl && late) allow_dependents();
        return;
    }

    const int wg = warp / 4;
    float acc[32];  // written first by a scale_d 0 product
    for (int i = 0; i < kblocks; ++i) {
        const int s = i % stages;
        mbar_wait(&full[s], (i / stages) & 1);
        const uint8_t* a = smem + s * kStageBytes + wg * 64 * 128;
        const uint8_t* b = smem + s * kStageBytes + kABytes;
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < kBlockK / 16; ++kk)
            wgmma_m64n64k16(acc, smem_desc(a + kk * 32), smem_desc(b + kk * 32), i > 0 || kk > 0);
        wgmma_commit();
        wgmma_wait<1>();
        if (i > 0 && threadIdx.x % 32 == 0) mbar_arrive(&empty[(i - 1) % stages]);
    }
    wgmma_wait<0>();
    fence_regs(acc);
    if (kPdl && late) allow_dependents();  // only the epilogue's stores are left
    // The partials may still be read by the kernel before the one in front (its consumer): with
    // PDL, write only once the kernel in front (which waited for it) has finished.
    if constexpr (kPdl) grid_dependency_wait();
    const int t = threadIdx.x % 128, lane = t % 32;
    const int row = wg * 64 + (t / 32) * 16 + lane / 4, col = (lane % 4) * 2;
    float* out = partials + size_t(q) * m * n;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int r = m0 + row + 8 * h;
        if (r >= m) continue;
#pragma unroll
        for (int j = 0; j < kBlockN / 8; ++j)
            *reinterpret_cast<float2*>(out + size_t(r) * n + n0 + j * 8 + col) =
                make_float2(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
    }
}

// Where the PDL kernels allow their dependents to launch: 0 all at entry, 1 all after their main
// work, 2 the producer at entry (so the product fetches its weights under it), the product and the
// consumer after their main work (the kernels after them have nothing to fetch early).
int g_trigger_mode = 0;
int late_for(bool producer) { return g_trigger_mode == 1 || (g_trigger_mode == 2 && !producer); }

int stages_for(int k, int p) { return std::min(k / kBlockK / p, kMaxStages); }
size_t smem_for(int stages) { return size_t(stages) * kStageBytes + 2 * stages * 8 + 1024; }

void launch_ours(bool pdl, const void* x, const void* w, float* partials, int m, int n, int k, int p, cudaStream_t st) {
    const int stages = stages_for(k, p);
    const size_t smem = smem_for(stages);
    auto kernel = pdl ? linear_partials_kernel<true> : linear_partials_kernel<false>;
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    const CUtensorMap mx = tile_map(x, m, k, kBlockM), mw = tile_map(w, n, k, kBlockN);
    launch_plain_or_pdl(pdl, kernel, dim3(unsigned(n / kBlockN), unsigned((m + kBlockM - 1) / kBlockM), unsigned(p)),
                        dim3(kThreads), smem, st, mx, mw, partials, m, n, k, stages, late_for(false));
}

// --- the chain's stand-ins for attention (writes X) and the LayerNorm (sums the partials) -------
template <bool kPdl>
__global__ void producer_kernel(const __half* __restrict__ src, __half* __restrict__ x, int count, float scale,
                                int late) {
    if constexpr (kPdl) {
        if (!late) allow_dependents();
        grid_dependency_wait();
    }
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < count / 8; i += gridDim.x * blockDim.x) {
        uint4 v = reinterpret_cast<const uint4*>(src)[i];
        __half2* h = reinterpret_cast<__half2*>(&v);
#pragma unroll
        for (int e = 0; e < 4; ++e) h[e] = __hmul2(h[e], __float2half2_rn(scale));
        reinterpret_cast<uint4*>(x)[i] = v;
    }
    if (kPdl && late) allow_dependents();
}

// out[r, c] = sum_q partials[q, r, c] for c < k_next (the next link's X is m x k: the first k columns).
template <bool kPdl>
__global__ void consumer_kernel(const float* __restrict__ partials, int p, int m, int n, __half* __restrict__ out,
                                int k_next, int late) {
    if constexpr (kPdl) {
        if (!late) allow_dependents();
        grid_dependency_wait();
    }
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < m * k_next; i += gridDim.x * blockDim.x) {
        const int r = i / k_next, c = i % k_next % n;
        float s = 0.f;
        for (int q = 0; q < p; ++q) s += partials[(size_t(q) * m + r) * n + c];
        out[i] = __float2half(s);
    }
    if (kPdl && late) allow_dependents();
}

// --- reference and checks --------------------------------------------------------------------
__global__ void reference_kernel(const __half* x, const __half* w, double* ref, int m, int n, int k, int p) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y, q = blockIdx.z;
    if (j >= n) return;
    const int ks = k / p;
    double s = 0.0;
    for (int c = q * ks; c < (q + 1) * ks; ++c)
        s += double(__half2float(x[size_t(i) * k + c])) * double(__half2float(w[size_t(j) * k + c]));
    ref[(size_t(q) * m + i) * n + j] = s;
}

using probe::fill;

using probe::slow_writer_kernel;

int g_failures = 0;

bool compare(const char* what, const float* got_d, const double* ref_d, size_t count) {
    std::vector<float> got(count);
    std::vector<double> ref(count);
    CUDA_CHECK(cudaMemcpy(got.data(), got_d, count * 4, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(ref.data(), ref_d, count * 8, cudaMemcpyDeviceToHost));
    double d2 = 0, r2 = 0, maxd = 0;
    bool finite = true;
    for (size_t i = 0; i < count; ++i) {
        if (!std::isfinite(got[i])) finite = false;
        const double d = got[i] - ref[i];
        d2 += d * d;
        r2 += ref[i] * ref[i];
        maxd = std::max(maxd, std::fabs(d));
    }
    const double rel = std::sqrt(d2 / std::max(r2, 1e-300));
    const bool ok = finite && rel <= 1e-5;  // fp32 accumulation of exact fp16 products
    if (!ok) {
        ++g_failures;
        std::printf("FAIL %s: rel %.3g max %.3g%s\n", what, rel, maxd, finite ? "" : " non-finite");
    }
    return ok;
}

void check(int m, int n, int k, int p, bool pdl, uint64_t seed) {
    __half *x, *w;
    float* part;
    double* ref;
    CUDA_CHECK(cudaMalloc(&x, size_t(m) * k * 2));
    CUDA_CHECK(cudaMalloc(&w, size_t(n) * k * 2));
    CUDA_CHECK(cudaMalloc(&part, size_t(p) * m * n * 4));
    CUDA_CHECK(cudaMalloc(&ref, size_t(p) * m * n * 8));
    fill(x, size_t(m) * k, seed, 1.0f);
    fill(w, size_t(n) * k, seed ^ 0x5555, 1.0f / std::sqrt(float(k)));
    CUDA_CHECK(cudaMemset(part, 0xFF, size_t(p) * m * n * 4));  // NaN
    launch_ours(pdl, x, w, part, m, n, k, p, nullptr);
    CUDA_CHECK(cudaGetLastError());
    reference_kernel<<<dim3((n + 127) / 128, m, p), 128>>>(x, w, ref, m, n, k, p);
    CUDA_CHECK(cudaDeviceSynchronize());
    char what[128];
    std::snprintf(what, sizeof what, "m=%d n=%d k=%d p=%d pdl=%d", m, n, k, p, int(pdl));
    compare(what, part, ref, size_t(p) * m * n);
    cudaFree(x); cudaFree(w); cudaFree(part); cudaFree(ref);
}

// The PDL hazard: the writer lets the product launch at once and writes X ~20 us later, on one SM
// (the other SMs stay free, so the product can really start early). A product that read X before
// its wait would see the old (poisoned-by-value) X.
void hazard_check(int m, int n, int k, int p) {
    __half *x, *src, *w;
    float* part;
    double* ref;
    CUDA_CHECK(cudaMalloc(&x, size_t(m) * k * 2));
    CUDA_CHECK(cudaMalloc(&src, size_t(m) * k * 2));
    CUDA_CHECK(cudaMalloc(&w, size_t(n) * k * 2));
    CUDA_CHECK(cudaMalloc(&part, size_t(p) * m * n * 4));
    CUDA_CHECK(cudaMalloc(&ref, size_t(p) * m * n * 8));
    fill(x, size_t(m) * k, 1, 1.0f);
    fill(src, size_t(m) * k, 2, 1.0f);
    fill(w, size_t(n) * k, 3, 1.0f / std::sqrt(float(k)));
    CUDA_CHECK(cudaMemset(part, 0xFF, size_t(p) * m * n * 4));
    reference_kernel<<<dim3((n + 127) / 128, m, p), 128>>>(src, w, ref, m, n, k, p);
    CUDA_CHECK(cudaDeviceSynchronize());
    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreate(&st));
    slow_writer_kernel<<<1, 256, 0, st>>>(src, x, m * k, 20000);
    launch_ours(true, x, w, part, m, n, k, p, st);
    CUDA_CHECK(cudaStreamSynchronize(st));
    char what[128];
    std::snprintf(what, sizeof what, "PDL hazard m=%d n=%d k=%d p=%d", m, n, k, p);
    compare(what, part, ref, size_t(p) * m * n);
    cudaStreamDestroy(st);
    cudaFree(x); cudaFree(src); cudaFree(w); cudaFree(part); cudaFree(ref);
}

// --- the chain timing -----------------------------------------------------------------------
// W ~ U(-1, 1) / sqrt(k) has variance 1 / (3k): the producer scales X by sqrt(3) so that each link
// keeps its activations at unit scale (neither overflowing nor vanishing over the chain).
constexpr float kUnitScale = 1.7320508f;

enum class Product { kNone, kNonePdl, kCublasLt, kOurs, kOursPdl };

struct Chain {
    int m, n, k, p, layers;
    __half *w = nullptr, *a = nullptr, *x = nullptr;
    float* part = nullptr;
    void* ws = nullptr;
    size_t ws_bytes = 32u << 20;
};

// Enqueues the chain once: every link's producer, product (none for the kNone* baselines) and consumer.
void enqueue_chain(const Chain& c, Product prod, bertqa::GemmPlan* plan, cudaStream_t st) {
    const bool pdl = prod == Product::kOursPdl || prod == Product::kNonePdl;
    for (int l = 0; l < c.layers; ++l) {
        const __half* wl = c.w + size_t(l) * c.n * c.k;
        launch_plain_or_pdl(pdl, producer_kernel<true>, dim3(48), dim3(256), 0, st, (const __half*)c.a, c.x, c.m * c.k,
                            kUnitScale, late_for(true));
        if (prod == Product::kCublasLt) plan->run(wl, c.x, c.part, c.ws, c.ws_bytes, st);
        else if (prod == Product::kOurs || prod == Product::kOursPdl)
            launch_ours(pdl, c.x, wl, c.part, c.m, c.n, c.k, c.p, st);
        launch_plain_or_pdl(pdl, consumer_kernel<true>, dim3(96), dim3(256), 0, st, (const float*)c.part, c.p, c.m, c.n,
                            c.a, c.k, late_for(false));
    }
}

float time_chain(const Chain& c, Product prod, bertqa::GemmPlan* plan, cudaStream_t st) {
    return probe::graph_median_us([&](cudaStream_t s) { enqueue_chain(c, prod, plan, s); }, st, c.layers);  // us per link
}

// The chain's final activations with each product, against cuBLASLt's (the links feed each other).
std::vector<__half> chain_result(const Chain& c, Product prod, bertqa::GemmPlan* plan, cudaStream_t st) {
    fill(c.a, size_t(c.m) * c.k, 77, 1.0f);
    CUDA_CHECK(cudaDeviceSynchronize());
    time_chain(c, prod, plan, st);  // 23 replays of the chain: any race has had its chances
    fill(c.a, size_t(c.m) * c.k, 77, 1.0f);
    CUDA_CHECK(cudaDeviceSynchronize());
    enqueue_chain(c, prod, plan, st);  // one more pass from a known start
    CUDA_CHECK(cudaStreamSynchronize(st));
    std::vector<__half> out(size_t(c.m) * c.k);
    CUDA_CHECK(cudaMemcpy(out.data(), c.a, out.size() * 2, cudaMemcpyDeviceToHost));
    return out;
}

using probe::rel_diff;

void bench(const char* name, int m, int n, int k, const std::vector<int>& splits) {
    // Enough weight copies to overflow the 50 MB L2 (at least 24 links).
    const size_t w_bytes = size_t(n) * k * 2;
    const int layers = std::max(24, int((160u << 20) / w_bytes) + 1);
    Chain c{m, n, k, 1, layers};
    CUDA_CHECK(cudaMalloc(&c.w, w_bytes * layers));
    CUDA_CHECK(cudaMalloc(&c.a, size_t(m) * k * 2));
    CUDA_CHECK(cudaMalloc(&c.x, size_t(m) * k * 2));
    CUDA_CHECK(cudaMalloc(&c.part, size_t(16) * m * n * 4));
    CUDA_CHECK(cudaMalloc(&c.ws, c.ws_bytes));
    fill(c.w, size_t(n) * k * layers, 5, 1.0f / std::sqrt(float(k)));
    fill(c.a, size_t(m) * k, 6, 1.0f);
    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreate(&st));
    bertqa::LtHandle lt;
    for (int p : splits) {
        c.p = p;
        bertqa::GemmShape shape{m, n, k, bertqa::GemmDType::kFloat16, bertqa::GemmEpilogue::kNone, p};
        const auto tuned = bertqa::tune_gemms({shape}, c.ws_bytes, 8, 50, true, true);
        bertqa::GemmPlan plan(lt, shape);
        if (!plan.set_algo(tuned[0].algo, c.ws_bytes)) {
            std::printf("%s p=%d: cuBLASLt's tuned algorithm does not load\n", name, p);
            continue;
        }
        // At p = 1 cuBLASLt's plan stores fp16 (as the runtime's unsplit product does), which the
        // consumer does not read as partials: the chains are compared for p > 1 only.
        double d_ours = 0, d_pdl = 0;
        if (p > 1) {
            const auto ref = chain_result(c, Product::kCublasLt, &plan, st);
            d_ours = rel_diff(chain_result(c, Product::kOurs, &plan, st), ref);
            d_pdl = rel_diff(chain_result(c, Product::kOursPdl, &plan, st), ref);
        }
        const bool same = d_ours <= 1e-2 && d_pdl <= 1e-2;
        if (!same) ++g_failures;
        const float base = time_chain(c, Product::kNone, &plan, st);
        const float base_pdl = time_chain(c, Product::kNonePdl, &plan, st);
        const float t_lt = time_chain(c, Product::kCublasLt, &plan, st);
        const float t_ours = time_chain(c, Product::kOurs, &plan, st);
        const float t_pdl = time_chain(c, Product::kOursPdl, &plan, st);
        std::printf("%-24s m=%4d n=%4d k=%4d p=%d (%3d CTAs, %d stages, %3d links): link w/o product %5.2f us "
                    "(pdl %5.2f) | product in the chain: cublaslt %5.2f (tuner alone %5.2f)  ours %5.2f  "
                    "ours+pdl %5.2f us (link %5.2f vs cublaslt's %5.2f) [chains agree: %.1e / %.1e%s]\n",
                    name, m, n, k, p, n / kBlockN * ((m + kBlockM - 1) / kBlockM) * p, stages_for(k, p), layers, base,
                    base_pdl, t_lt - base, tuned[0].time_us, t_ours - base, t_pdl - base_pdl, t_pdl, t_lt, d_ours,
                    d_pdl, same ? "" : " MISMATCH");
    }
    cudaStreamDestroy(st);
    cudaFree(c.w); cudaFree(c.a); cudaFree(c.x); cudaFree(c.part); cudaFree(c.ws);
}

// Every cuBLASLt candidate the builder's tuner times for a shape, ranked by its time alone (the
// tuner's ranking: back-to-back products) and by its time in the chain; does the tuner's pick hold?
void rank_in_context(const char* name, int m, int n, int k, bertqa::GemmEpilogue epi, int p) {
    const size_t w_bytes = size_t(n) * k * 2;
    const int layers = std::max(24, int((160u << 20) / w_bytes) + 1);
    Chain c{m, n, k, p, layers};
    __half* bias = nullptr;
    CUDA_CHECK(cudaMalloc(&c.w, w_bytes * layers));
    CUDA_CHECK(cudaMalloc(&c.a, size_t(m) * k * 2));
    CUDA_CHECK(cudaMalloc(&c.x, size_t(m) * k * 2));
    CUDA_CHECK(cudaMalloc(&c.part, size_t(16) * m * n * 4));
    CUDA_CHECK(cudaMalloc(&c.ws, c.ws_bytes));
    CUDA_CHECK(cudaMalloc(&bias, size_t(n) * 2));
    fill(c.w, size_t(n) * k * layers, 5, 1.0f / std::sqrt(float(k)));
    fill(c.a, size_t(m) * k, 6, 1.0f);
    fill(bias, n, 7, 0.1f);
    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreate(&st));
    bertqa::LtHandle lt;
    bertqa::GemmShape shape{m, n, k, bertqa::GemmDType::kFloat16, epi, p};
    const auto tuned = bertqa::tune_gemms({shape}, c.ws_bytes, 8, 50, true, true);
    auto timings = tuned[0].timings;
    std::sort(timings.begin(), timings.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    const float base = time_chain(c, Product::kNone, nullptr, st);
    double best_chain = 1e30, pick_chain = 0;
    int best_rank = -1;
    std::printf("%s m=%d n=%d k=%d %s p=%d: %zu candidates; link w/o product %.2f us\n", name, m, n, k,
                bertqa::to_string(epi), p, timings.size(), base);
    for (size_t i = 0; i < timings.size(); ++i) {
        bertqa::GemmPlan plan(lt, shape);
        if (!plan.set_algo(timings[i].first, c.ws_bytes)) continue;
        if (epi != bertqa::GemmEpilogue::kNone) plan.set_bias(bias);
        const double t = time_chain(c, Product::kCublasLt, &plan, st) - base;
        if (i == 0) pick_chain = t;
        if (t < best_chain) {
            best_chain = t;
            best_rank = int(i);
        }
        const auto& a = timings[i].first;
        if (i < 12)
            std::printf("   alone #%-2zu %6.2f us   in the chain %6.2f us   (algo %d tile %u stages %u splitk %d swizzle %u "
                        "cluster %u)\n",
                        i, timings[i].second, t, a.algo_id, a.tile, a.stages, a.splitk, a.swizzle, a.cluster_shape);
    }
    std::printf("   => the tuner's pick: %.2f us in the chain; the chain's best: %.2f us (alone #%d, %.2f us alone)\n",
                pick_chain, best_chain, best_rank, best_rank >= 0 ? timings[best_rank].second : 0.0);
    cudaStreamDestroy(st);
    cudaFree(c.w); cudaFree(c.a); cudaFree(c.x); cudaFree(c.part); cudaFree(c.ws); cudaFree(bias);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "--rank-in-context") == 0) {
        using E = bertqa::GemmEpilogue;
        rank_in_context("base B=1 QKV", 128, 2304, 768, E::kBias, 1);
        rank_in_context("base B=1 attention-out", 128, 768, 768, E::kNone, 2);
        rank_in_context("base B=1 FFN-in", 128, 3072, 768, E::kGeluBias, 1);
        rank_in_context("base B=1 FFN-out", 128, 768, 3072, E::kNone, 4);
        rank_in_context("large B=1 QKV", 384, 3072, 1024, E::kBias, 1);
        rank_in_context("large B=1 FFN-in", 384, 4096, 1024, E::kGeluBias, 1);
        return 0;
    }
    const bool bench_only = argc > 1 && std::strcmp(argv[1], "--bench-only") == 0;
    if (argc > 2 && std::strcmp(argv[2], "--trigger-late") == 0) g_trigger_mode = 1;
    if (argc > 2 && std::strcmp(argv[2], "--trigger-mixed") == 0) g_trigger_mode = 2;
    if (!bench_only) {
        std::mt19937_64 rng(std::random_device{}());
        int checks = 0;
        for (int m : {1, 100, 128, 384})
            for (int n : {64, 768})
                for (int k : {64, 768, 1024})
                    for (int p : {1, 2, 4, 8})
                        for (bool pdl : {false, true}) {
                            if (k / kBlockK % p) continue;
                            check(m, n, k, p, pdl, rng());
                            ++checks;
                        }
        for (int p : {1, 4}) {
            hazard_check(128, 768, 768, p);
            ++checks;
        }
        std::printf("%d checks, %d failed\n", checks, g_failures);
        if (g_failures) return 1;
    }
    bench("base B=1 attention-out", 128, 768, 768, {1, 2, 3, 4});
    bench("base B=1 FFN-out", 128, 768, 3072, {1, 2, 4, 6, 8});
    bench("large B=1 attention-out", 384, 1024, 1024, {1, 2, 4});
    bench("large B=1 FFN-out", 384, 1024, 4096, {1, 2, 4, 8});
    std::printf("%s\n", g_failures ? "FAILURES" : "all chains agree");
    return g_failures ? 1 : 0;
}
