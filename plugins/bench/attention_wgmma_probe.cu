// attention_wgmma_probe: is a Hopper-native (wgmma + TMA) attention worth building beside
// plugins/attention.cu's mma.sync FlashAttention-2 kernel (272 TFLOP/s at BERT-large B=128 S=384,
// 42% of the mma.sync peak; ~14% of that forward pass, ~11% of the offline packed run)?
// Outcome: the serial variant below became the plugin's Hopper kernel, plugins/attention_hopper.cu
// (packed batches and any sequence end added there; ATTENTION_NOTES.md v8). This probe keeps the
// experiment as it ran (padded, seq a multiple of 64, the V descriptor search, the overlapped
// variant that was not kept); its "attention.cu" column is the mma.sync kernel, forced.
//
// Math (the float64 reference below): out[t, h] = softmax_j(scale * q_t . k_j) v_j over the
// first seqlens[b] keys of t's padded sequence; every query row is computed (as attention.cu).
// qkv [tokens, 3, heads, 64] fp16 -> out [tokens, heads, 64] fp16, fp32 accumulation and softmax.
//
// Kernel (sm_90a, head size 64, padded batches, seq a multiple of 64): one CTA per 128 query rows
// of one (sequence, head); warp 8 loads Q (two 64 x 64 tiles) and 64-key K and V blocks through a
// 3-stage ring by TMA (128-byte swizzle), each completing on an mbarrier; warpgroups 0 and 1 own
// 64 query rows each: S = Q K^T by wgmma m64n64k16 from shared memory (K-major, like a GEMM's
// weights), the online softmax in registers (exp2, per-thread partial row sums reduced once at
// the end), then O += P V by wgmma with P straight from the S accumulators as register operand A
// and V as a transposed (MN-major) shared-memory operand B. Two variants:
//   serial      (kOverlap false) S, softmax, PV one after the other in each warpgroup; the SM
//               interleaves the warpgroups of its CTAs (2 CTAs per SM: 90 registers x 288 threads)
//   overlapped  (kOverlap true) the next block's S = Q K^T is issued before this block's softmax
//               (FlashAttention-3's intra-warpgroup pipelining, two S accumulators). P goes to PV
//               through shared memory: as a register operand A, packed while the next S is in
//               flight, ptxas serialised the wgmma (C7513) and the kernel ran at 471 us.
//
// The MN-major descriptor's two byte offsets are kernel arguments: the check runs the candidate
// encodings and reports which one matches the reference, before anything is timed. Timing: both
// kernels' launches back to back in one CUDA graph (the tensor map is encoded at capture, not per
// launch), so the small batches measure the kernels rather than the launcher's host work.
//
// Build and run (on the GPU machine, after `bash scripts/gpu_session.sh build`):
//   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -Iplugins -Iplugins/bench \
//     plugins/bench/attention_wgmma_probe.cu build/plugins/libbertqa_plugins.a -o /tmp/attn_wgmma \
//     && /tmp/attn_wgmma
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "attention_dispatch.h"  // set_kernel_override: the mma.sync baseline
#include "bert_plugins.h"
#include "cuda_check.h"
#include "hopper_ptx.cuh"  // plugins/hopper_ptx.cuh (-Iplugins)
#include "probe_common.cuh"

namespace {

constexpr int kD = 64, kRowsPerWG = 64, kKeys = 64, kStages = 3;
constexpr int kConsumers = 256, kThreads = kConsumers + 32;
constexpr int kTileBytes = 64 * 64 * 2;  // one 64 x 64 fp16 tile, 128-byte rows
// Q (2 tiles), the K/V ring, P (2 tiles, the overlapped variant's operand A only), barriers, alignment.
constexpr int smem_bytes(bool overlap) {
    return 2 * kTileBytes + kStages * 2 * kTileBytes + (overlap ? 2 * kTileBytes : 0) + 2 * kStages * 8 + 8 + 1024;
}
// CTAs per SM the serial variant is compiled for (registers capped to fit them); an experiment knob.
#ifndef BERTQA_ATTN_SERIAL_MIN_CTAS
#define BERTQA_ATTN_SERIAL_MIN_CTAS 1
#endif

using namespace hopper;

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
}

// One key block's online softmax for a thread's two rows (accumulator layout of m64n64): keys at
// or past len get no weight (last block only), S becomes P = exp2(S scale_log2 - m) in place, the
// running max and this thread's partial row sums advance; alpha = exp2(m_old - m_new) rescales O.
__device__ __forceinline__ void online_softmax(float (&s)[32], bool last, int key0, int len, float scale_log2,
                                               float (&m_run)[2], float (&l_run)[2], float (&alpha)[2]) {
    if (last) {
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e)
                if (key0 + 8 * j + e >= len) s[4 * j + e] = s[4 * j + 2 + e] = -INFINITY;
    }
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < 8; ++j) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * hr], s[4 * j + 2 * hr + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m_run[hr], mx * scale_log2);
        alpha[hr] = exp2f(m_run[hr] - m_new);  // 0 on the first block (m_run = -inf)
        m_run[hr] = m_new;
        float sum = 0.f;
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const float p = exp2f(fmaf(s[4 * j + 2 * hr + e], scale_log2, -m_new));
                s[4 * j + 2 * hr + e] = p;
                sum += p;
            }
        l_run[hr] = l_run[hr] * alpha[hr] + sum;  // this thread's columns only; reduced at the end
    }
}
__device__ __forceinline__ void rescale(float (&o)[32], const float (&alpha)[2]) {
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        o[4 * j] *= alpha[0];
        o[4 * j + 1] *= alpha[0];
        o[4 * j + 2] *= alpha[1];
        o[4 * j + 3] *= alpha[1];
    }
}

// grid (seq / 128 rounded up, heads, batch), kThreads threads, smem_bytes(kOverlap) of dynamic shared memory.
// kOverlap: the next block's S = Q K^T runs on the tensor cores during this block's softmax.
template <bool kOverlap>
__global__ void __launch_bounds__(kThreads, kOverlap ? 1 : BERTQA_ATTN_SERIAL_MIN_CTAS)
    attention_wgmma_kernel(const __grid_constant__ CUtensorMap map_qkv, __half* __restrict__ out,
                           const int32_t* __restrict__ seqlens, int heads, int seq, float scale_log2, uint32_t v_lbo,
                           uint32_t v_sbo) {
    extern __shared__ uint8_t smem_raw[];
    uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
    uint8_t* q_s = smem;                   // 2 tiles
    uint8_t* kv_s = smem + 2 * kTileBytes;  // stage s: K at 2s, V at 2s + 1
    uint8_t* p_s = kv_s + kStages * 2 * kTileBytes;  // P of warpgroup w at tile w (overlapped variant)
    uint64_t* full = reinterpret_cast<uint64_t*>(p_s + (kOverlap ? 2 * kTileBytes : 0));
    uint64_t* empty = full + kStages;
    uint64_t* q_full = empty + kStages;
    const int warp = threadIdx.x / 32, h = blockIdx.y, b = blockIdx.z;
    const int q0 = blockIdx.x * 2 * kRowsPerWG, row0 = b * seq;
    const int len = min(max(seqlens[b], 1), seq);
    const int nkb = (len + kKeys - 1) / kKeys;
    if (threadIdx.x == kConsumers) prefetch_tensormap(&map_qkv);
    if (threadIdx.x == 0) {
        for (int s = 0; s < kStages; ++s) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], kConsumers / 32);
        }
        mbar_init(q_full, 1);
        fence_mbarrier_init();
    }
    __syncthreads();

    if (warp == kConsumers / 32) {
        if (threadIdx.x == kConsumers) {
            mbar_expect_tx(q_full, 2 * kTileBytes);
            tma_load_2d(q_s, &map_qkv, h * kD, row0 + q0, q_full);
            tma_load_2d(q_s + kTileBytes, &map_qkv, h * kD, row0 + q0 + kRowsPerWG, q_full);
            for (int kb = 0; kb < nkb; ++kb) {
                const int s = kb % kStages;
                if (kb >= kStages) mbar_wait(&empty[s], ((kb / kStages) & 1) ^ 1);
                mbar_expect_tx(&full[s], 2 * kTileBytes);
                tma_load_2d(kv_s + (2 * s) * kTileBytes, &map_qkv, (heads + h) * kD, row0 + kb * kKeys, &full[s]);
                tma_load_2d(kv_s + (2 * s + 1) * kTileBytes, &map_qkv, (2 * heads + h) * kD, row0 + kb * kKeys,
                            &full[s]);
            }
        }
        return;
    }

    const int wg = warp / 4, t = threadIdx.x % 128, lane = t % 32;
    // Accumulator layout (m64nNk16): thread t holds, for 8-column block j, columns 8j + 2(t%4) + {0,1}
    // of row r0 = 16(t/32) + (t%32)/4 (registers 4j, 4j+1) and of row r0 + 8 (4j+2, 4j+3).
    const int r_local = 16 * (t / 32) + lane / 4, c_local = 2 * (lane % 4);
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
    float o[32];
    if constexpr (!kOverlap) {
        float s_acc[32];
        mbar_wait(q_full, 0);
        const uint8_t* q_tile = q_s + wg * kTileBytes;
        for (int kb = 0; kb < nkb; ++kb) {
            const int s = kb % kStages;
            mbar_wait(&full[s], (kb / kStages) & 1);
            const uint8_t* k_tile = kv_s + (2 * s) * kTileBytes;
            const uint8_t* v_tile = kv_s + (2 * s + 1) * kTileBytes;
            wgmma_fence();
    #pragma unroll
            for (int kk = 0; kk < kD / 16; ++kk)
                wgmma_m64n64k16(s_acc, smem_desc(q_tile + kk * 32, 16, 1024), smem_desc(k_tile + kk * 32, 16, 1024), kk > 0);
            wgmma_commit();
            wgmma_wait<0>();
            fence_regs(s_acc);
            float alpha[2];
            online_softmax(s_acc, kb == nkb - 1, kb * kKeys + c_local, len, scale_log2, m_run, l_run, alpha);
            if (kb > 0) rescale(o, alpha);
            // P as operand A, 16 keys at a time: the S accumulator layout is the A register layout.
            uint32_t a[4][4];
    #pragma unroll
            for (int c = 0; c < 4; ++c) {
                a[c][0] = pack_half2(s_acc[8 * c + 0], s_acc[8 * c + 1]);
                a[c][1] = pack_half2(s_acc[8 * c + 2], s_acc[8 * c + 3]);
                a[c][2] = pack_half2(s_acc[8 * c + 4], s_acc[8 * c + 5]);
                a[c][3] = pack_half2(s_acc[8 * c + 6], s_acc[8 * c + 7]);
            }
            wgmma_fence();
    #pragma unroll
            for (int c = 0; c < 4; ++c)
                wgmma_m64n64k16_rs_tb(o, a[c], smem_desc(v_tile + c * 16 * 128, v_lbo, v_sbo), kb > 0 || c > 0);
            wgmma_commit();
            wgmma_wait<0>();
            fence_regs(o);
            if (lane == 0) mbar_arrive(&empty[s]);
        }
    }
    if constexpr (kOverlap) {
        float s_a[32], s_b[32];
        mbar_wait(q_full, 0);
        const uint8_t* q_tile = q_s + wg * kTileBytes;
        auto issue_s = [&](int kb, float (&acc)[32]) {  // S(kb) = Q K(kb)^T, committed as one group
            const int s = kb % kStages;
            mbar_wait(&full[s], (kb / kStages) & 1);
            const uint8_t* k_tile = kv_s + (2 * s) * kTileBytes;
            wgmma_fence();
    #pragma unroll
            for (int kk = 0; kk < kD / 16; ++kk)
                wgmma_m64n64k16(acc, smem_desc(q_tile + kk * 32, 16, 1024), smem_desc(k_tile + kk * 32, 16, 1024), kk > 0);
            wgmma_commit();
        };
        // Block kb, its S already issued into cur. With kOverlap, S(kb + 1) is issued before the softmax
        // of block kb (the tensor cores work under it) and PV(kb - 1) is waited for only after it.
        // Groups complete in commit order: ... S(kb), PV(kb - 1), [S(kb + 1)], PV(kb).
        auto step = [&](int kb, float (&cur)[32], float (&nxt)[32]) {
            const bool more = kOverlap && kb + 1 < nkb;
            if (kOverlap && kb > 0) wgmma_wait<1>();  // S(kb) done (PV(kb - 1) may still run)
            else wgmma_wait<0>();
            fence_regs(cur);
            if (more) issue_s(kb + 1, nxt);
            float alpha[2];
            online_softmax(cur, kb == nkb - 1, kb * kKeys + c_local, len, scale_log2, m_run, l_run, alpha);
            if (kb > 0) {
                if (more) wgmma_wait<1>();  // PV(kb - 1) done; S(kb + 1) may still run
                else wgmma_wait<0>();
                fence_regs(o);
                if (lane == 0) mbar_arrive(&empty[(kb - 1) % kStages]);  // block kb - 1's K and V are consumed
                rescale(o, alpha);
            }
            // P as operand A through shared memory (a register operand A written while the next S
            // is in flight makes ptxas serialise the wgmma, C7513): the warpgroup's 64 x 64 tile in
            // the 128-byte swizzle (16-byte chunk j of row r at chunk j ^ (r % 8)), like Q's.
            uint8_t* p_tile = p_s + wg * kTileBytes;
    #pragma unroll
            for (int hr = 0; hr < 2; ++hr) {
                const int r = r_local + 8 * hr;
    #pragma unroll
                for (int j = 0; j < 8; ++j)
                    *reinterpret_cast<uint32_t*>(p_tile + r * 128 + ((j ^ (r & 7)) << 4) + 4 * (lane % 4)) =
                        pack_half2(cur[4 * j + 2 * hr], cur[4 * j + 2 * hr + 1]);
            }
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");  // visible to the tensor cores
            asm volatile("bar.sync %0, 128;" ::"r"(1 + wg) : "memory");   // the whole warpgroup's P
            const uint8_t* v_tile = kv_s + (2 * (kb % kStages) + 1) * kTileBytes;
            wgmma_fence();
    #pragma unroll
            for (int c = 0; c < 4; ++c)
                wgmma_m64n64k16<1>(o, smem_desc(p_tile + c * 32, 16, 1024), smem_desc(v_tile + c * 16 * 128, v_lbo, v_sbo),
                            kb > 0 || c > 0);
            wgmma_commit();
            if (!kOverlap && kb + 1 < nkb) {
                wgmma_wait<0>();
                issue_s(kb + 1, nxt);
            }
        };
        issue_s(0, s_a);
        for (int kb = 0; kb < nkb; kb += 2) {
            step(kb, s_a, s_b);
            if (kb + 1 < nkb) step(kb + 1, s_b, s_a);
        }
        wgmma_wait<0>();
        fence_regs(o);
    }
    float inv[2];
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
        float l = l_run[hr];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        inv[hr] = 1.f / l;
    }
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
        const int q = q0 + wg * kRowsPerWG + r_local + 8 * hr;
        if (q >= seq) continue;
        __half* dst = out + (size_t(row0 + q) * heads + h) * kD + c_local;
#pragma unroll
        for (int j = 0; j < 8; ++j)
            *reinterpret_cast<uint32_t*>(dst + 8 * j) =
                pack_half2(o[4 * j + 2 * hr] * inv[hr], o[4 * j + 2 * hr + 1] * inv[hr]);
    }
}

void launch_wgmma(const void* qkv, void* out, const int32_t* seqlens, int batch, int heads, int seq, float scale,
                  uint32_t v_lbo, uint32_t v_sbo, cudaStream_t st, bool overlap = true) {
    auto kernel = overlap ? attention_wgmma_kernel<true> : attention_wgmma_kernel<false>;
    const int smem = smem_bytes(overlap);
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const CUtensorMap map = tile_map(qkv, batch * seq, 3 * heads * kD, 64);  // [tokens, 3 H 64] as 64 x 64 boxes
    kernel<<<dim3((seq + 127) / 128, heads, batch), kThreads, smem, st>>>(
        map, static_cast<__half*>(out), seqlens, heads, seq, scale * 1.4426950408889634f, v_lbo, v_sbo);
    CUDA_CHECK(cudaGetLastError());
}

void launch_ours_now(const void* qkv, void* out, const int32_t* seqlens, int batch, int heads, int seq, float scale,
                     cudaStream_t st) {
    // dtype, qkv, out, batch, heads, head_size, seq, seqlens, cu_seqlens (padded: none), scale
    bertqa::attention_detail::set_kernel_override(bertqa::attention_detail::Kernel::kMma);
    bertqa::attention(bertqa::AttentionParams{bertqa::DType::kFloat16, qkv, out, batch, heads, kD, seq, seqlens, nullptr,
                                              scale},
                      st);
}

struct Case {
    int batch, heads, seq;
};

struct Data {
    int batch, heads, seq;
    std::vector<__half> qkv;
    std::vector<int32_t> lens;
    __half *d_qkv = nullptr, *d_out = nullptr;
    int32_t* d_lens = nullptr;
    Data(const Case& c, uint64_t seed, bool full_lengths) : batch(c.batch), heads(c.heads), seq(c.seq) {
        std::mt19937_64 rng(seed);
        std::uniform_real_distribution<float> u(-1.f, 1.f);
        qkv.resize(size_t(batch) * seq * 3 * heads * kD);
        for (auto& v : qkv) v = __float2half(u(rng));
        lens.resize(batch);
        for (int b = 0; b < batch; ++b)
            lens[b] = full_lengths ? seq : (b == 0 ? 1 : b == 1 ? seq : 1 + int(rng() % seq));
        CUDA_CHECK(cudaMalloc(&d_qkv, qkv.size() * 2));
        CUDA_CHECK(cudaMalloc(&d_out, size_t(batch) * seq * heads * kD * 2));
        CUDA_CHECK(cudaMalloc(&d_lens, batch * 4));
        CUDA_CHECK(cudaMemcpy(d_qkv, qkv.data(), qkv.size() * 2, cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMemcpy(d_lens, lens.data(), batch * 4, cudaMemcpyHostToDevice));
    }
    ~Data() { cudaFree(d_qkv); cudaFree(d_out); cudaFree(d_lens); }
};

// float64 reference for (b, h) pairs; returns max |err| / max |ref| and the normwise relative error.
std::pair<double, double> check_against_reference(const Data& d, float scale) {
    std::vector<__half> got(size_t(d.batch) * d.seq * d.heads * kD);
    CUDA_CHECK(cudaMemcpy(got.data(), d.d_out, got.size() * 2, cudaMemcpyDeviceToHost));
    const size_t ld = size_t(3) * d.heads * kD;
    double max_err = 0, max_ref = 0, e2 = 0, r2 = 0;
    bool finite = true;
    std::vector<double> s(d.seq);
    for (int b = 0; b < d.batch; ++b)
        for (int h = 0; h < d.heads; ++h)
            for (int i = 0; i < d.seq; ++i) {
                const size_t t = size_t(b) * d.seq + i;
                double mx = -INFINITY;
                for (int j = 0; j < d.lens[b]; ++j) {
                    double acc = 0;
                    for (int c = 0; c < kD; ++c)
                        acc += double(__half2float(d.qkv[t * ld + h * kD + c])) *
                               double(__half2float(d.qkv[(size_t(b) * d.seq + j) * ld + (d.heads + h) * kD + c]));
                    s[j] = acc * scale;
                    mx = std::max(mx, s[j]);
                }
                double sum = 0;
                for (int j = 0; j < d.lens[b]; ++j) sum += (s[j] = std::exp(s[j] - mx));
                for (int c = 0; c < kD; ++c) {
                    double o = 0;
                    for (int j = 0; j < d.lens[b]; ++j)
                        o += s[j] / sum * double(__half2float(d.qkv[(size_t(b) * d.seq + j) * ld + (2 * d.heads + h) * kD + c]));
                    const double g = __half2float(got[(t * d.heads + h) * kD + c]);
                    if (!std::isfinite(g)) finite = false;
                    max_err = std::max(max_err, std::fabs(g - o));
                    max_ref = std::max(max_ref, std::fabs(o));
                    e2 += (g - o) * (g - o);
                    r2 += o * o;
                }
            }
    if (!finite) return {INFINITY, INFINITY};
    return {max_err / max_ref, std::sqrt(e2 / r2)};
}

// Microseconds per launch: `iters` launches captured as one CUDA graph (host work, the tensor map
// and the kernel attribute, happens once at capture), median of 20 replays.
float time_us(const std::function<void(cudaStream_t)>& launch, int iters, cudaStream_t st) {
    for (int i = 0; i < 3; ++i) launch(st);
    CUDA_CHECK(cudaStreamSynchronize(st));
    return probe::graph_median_us([&](cudaStream_t s) { for (int i = 0; i < iters; ++i) launch(s); }, st, iters);
}

}  // namespace

int main() {
    const float scale = 0.125f;  // 1 / sqrt(64)
    // 1. Which MN-major descriptor encoding of V is right (and the whole kernel against float64).
    struct Enc {
        uint32_t lbo, sbo;
    };
    // Tried in order until one matches (a wrong one may read past the tile: stop at the first good one).
    const Enc encs[] = {{16, 1024}, {1024, 16}, {8192, 1024}, {2048, 1024}};
    Enc good{0, 0};
    {
        Data d(Case{3, 2, 192}, 1, false);
        for (const Enc& e : encs) {
            CUDA_CHECK(cudaMemset(d.d_out, 0xFF, size_t(d.batch) * d.seq * d.heads * kD * 2));
            launch_wgmma(d.d_qkv, d.d_out, d.d_lens, d.batch, d.heads, d.seq, scale, e.lbo, e.sbo, nullptr, false);
            CUDA_CHECK(cudaDeviceSynchronize());
            const auto [mx, rel] = check_against_reference(d, scale);
            std::printf("V descriptor lbo %5u sbo %5u: max err / max ref %.3g, rel %.3g\n", e.lbo, e.sbo, mx, rel);
            if (mx <= 1e-2 && rel <= 2e-3) {
                good = e;
                break;
            }
        }
    }
    if (good.sbo == 0) {
        std::printf("no descriptor encoding matches the reference\n");
        return 1;
    }
    // 2. More shapes with the right one (padded lengths from 1 to seq).
    int failures = 0;
    for (bool overlap : {false, true})
        for (const Case& c : {Case{4, 3, 128}, Case{2, 2, 384}, Case{3, 1, 512}, Case{5, 2, 64}, Case{2, 2, 192}}) {
            Data d(c, 7 + c.seq, false);
            CUDA_CHECK(cudaMemset(d.d_out, 0xFF, size_t(d.batch) * d.seq * d.heads * kD * 2));
            launch_wgmma(d.d_qkv, d.d_out, d.d_lens, d.batch, d.heads, d.seq, scale, good.lbo, good.sbo, nullptr,
                         overlap);
            CUDA_CHECK(cudaDeviceSynchronize());
            const auto [mx, rel] = check_against_reference(d, scale);
            const bool ok = mx <= 1e-2 && rel <= 2e-3;
            failures += !ok;
            std::printf("check overlap=%d B=%d H=%d S=%d: max err / max ref %.3g, rel %.3g %s\n", int(overlap), c.batch,
                        c.heads, c.seq, mx, rel, ok ? "ok" : "FAIL");
        }
    if (failures) return 1;
    // 3. Timing against plugins/attention.cu on full-length sequences (back-to-back launches in a CUDA graph).
    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreate(&st));
    for (const Case& c : {Case{128, 16, 384}, Case{128, 12, 128}, Case{8, 16, 384}, Case{1, 16, 384}, Case{1, 12, 128},
                          Case{64, 16, 512}}) {
        Data d(c, 99, true);
        const double flop = 4.0 * c.batch * double(c.seq) * c.seq * c.heads * kD;
        const int iters = c.batch >= 64 ? 20 : 200;
        const float t_serial = time_us([&](cudaStream_t s) {
            launch_wgmma(d.d_qkv, d.d_out, d.d_lens, d.batch, d.heads, d.seq, scale, good.lbo, good.sbo, s, false);
        }, iters, st);
        const float t_new = time_us([&](cudaStream_t s) {
            launch_wgmma(d.d_qkv, d.d_out, d.d_lens, d.batch, d.heads, d.seq, scale, good.lbo, good.sbo, s, true);
        }, iters, st);
        const float t_old = time_us([&](cudaStream_t s) {
            launch_ours_now(d.d_qkv, d.d_out, d.d_lens, d.batch, d.heads, d.seq, scale, s);
        }, iters, st);
        std::printf("B=%3d H=%2d S=%3d: wgmma serial %7.1f us, overlapped %7.1f us (%4.0f TFLOP/s)   attention.cu %7.1f us "
                    "(%4.0f TFLOP/s)   %.2fx\n",
                    c.batch, c.heads, c.seq, t_serial, t_new, flop / t_new * 1e-6, t_old, flop / t_old * 1e-6,
                    t_old / t_new);
    }
    return 0;
}
