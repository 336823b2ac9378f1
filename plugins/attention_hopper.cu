// attention_hopper.cu: the Hopper (sm_90a: wgmma + TMA) fp16 attention kernel, head size 64, behind
// bertqa::attention (attention.cu picks it by the rule in pick_kernel; ATTENTION_NOTES.md v8).
//
//   qkv [tokens, 3, heads, 64] fp16  ->  out [tokens, heads, 64] fp16, fp32 accumulation and softmax
//   out[t, h] = softmax_j(scale * q_t . k_j) v_j over the valid keys j of t's sequence,
// padded (cu_seqlens == nullptr: sequence b = tokens [b*seq, (b+1)*seq), keys = the first
// seqlens[b], all seq query rows computed and written) or packed (cu_seqlens [batch + 1], all keys
// valid, empty sequences write nothing), the same contract as attention.cu's kernels.
//
// Kernel (the serial variant of the probe plugins/bench/attention_wgmma_probe.cu, ATTENTION_NOTES.md v7,
// removed once integrated; in git history at 2bf9d87): one
// CTA per 128 query rows of one (sequence, head): two consumer warpgroups of 64 rows each and a
// producer warp. The producer loads Q (one 64 x 64 box per warpgroup) and 64-key K and V blocks
// through a 3-stage ring by TMA (128-byte swizzle) from a 2-D tensor map over qkv
// [rows, 3 * heads * 64], each completing on an mbarrier. Each warpgroup: S = Q K^T by wgmma
// m64n64k16 from shared memory, the online softmax in registers (exp2, per-thread partial row sums
// reduced once at the end), O += P V by wgmma with P as register operand A and V as a transposed
// (MN-major) shared-memory operand B; S, softmax and PV one after another (2 CTAs per SM
// interleave). A warpgroup whose 64 rows all lie past its sequence does nothing.
//
// Tiles that run past a sequence: a 64-row box starting inside the sequence may run into the next
// sequence's rows (masked as keys, never stored as queries) or past the last token of the
// buffer. TMA zero-fills only outside the tensor map, and in packed mode the host does not know the
// buffer's length (cu_seqlens[batch] lives on the device): the map spans batch * seq rows, an
// upper bound. So every box that would cross the buffer's end (`total` = cu_seqlens[batch], or
// batch * seq padded) is moved back to end exactly there (start total - 64; a negative start, for
// buffers under 64 tokens, is zero-filled by TMA): no row at or past `total` is ever read. The
// moved box's rows below the block's nominal start (already seen in the block before, or owned by
// the other warpgroup) are masked as keys and not stored as queries.
//
// Built only for sm_90a (plugins/CMakeLists.txt compiles this file with
// -gencode arch=compute_90a,code=sm_90a and BERTQA_ATTENTION_SM90A=1 when 90 is among the CUDA
// architectures; otherwise it compiles to the "not available" functions at the end).
#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "attention_dispatch.h"
#include "bert_plugins.h"

#if defined(BERTQA_ATTENTION_SM90A)
#include "hopper_ptx.cuh"

namespace bertqa {
namespace {

using namespace hopper;
using mma_ptx::pack_half2;

constexpr int kD = 64, kRowsPerWG = 64, kKeys = 64, kStages = 3;
constexpr int kConsumers = 256, kThreads = kConsumers + 32;  // 2 consumer warpgroups + 1 producer warp
constexpr int kTileBytes = 64 * 64 * 2;                      // one 64 x 64 fp16 tile, 128-byte rows
// Q (2 tiles), the K/V ring, the barriers, 1024 bytes to align the tiles (128-byte swizzle atoms).
constexpr int kSmemBytes = 2 * kTileBytes + kStages * 2 * kTileBytes + (2 * kStages + 1) * 8 + 1024;

// The first row of the 64-row box that holds rows [start, start + 64) of the buffer, moved back to
// end at the buffer's last row when it would run past it (see the header).
__device__ __forceinline__ int box_row(int start, int total) { return start + 64 > total ? total - 64 : start; }

// One key block's online softmax for a thread's two rows (accumulator layout of m64n64): columns
// whose key index (key0 + column) lies outside [lo, hi) get no weight (the last block only), S
// becomes P = exp2(S scale_log2 - m) in place, the running max and this thread's partial row sums
// advance; alpha = exp2(m_old - m_new) rescales O.
__device__ __forceinline__ void online_softmax(float (&s)[32], bool last, int key0, int lo, int hi, float scale_log2,
                                               float (&m_run)[2], float (&l_run)[2], float (&alpha)[2]) {
    if (last) {
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int k = key0 + 8 * j + e;
                if (k < lo || k >= hi) s[4 * j + e] = s[4 * j + 2 + e] = -INFINITY;
            }
    }
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < 8; ++j) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * hr], s[4 * j + 2 * hr + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m_run[hr], mx * scale_log2);  // finite: every block has a valid key
        alpha[hr] = exp2f(m_run[hr] - m_new);                    // 0 on the first block (m_run = -inf)
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

// grid (ceil(seq / 128), heads, batch), kThreads threads, kSmemBytes of dynamic shared memory.
__global__ void __launch_bounds__(kThreads, 2)
    attention_wgmma_kernel(const __grid_constant__ CUtensorMap map_qkv, __half* __restrict__ out,
                           const int32_t* __restrict__ seqlens, const int32_t* __restrict__ cu_seqlens, int heads,
                           int seq, float scale_log2) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ uint8_t smem_raw[];
    uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
    uint8_t* q_s = smem;                    // tile w: warpgroup w's Q
    uint8_t* kv_s = smem + 2 * kTileBytes;  // stage s: K at tile 2s, V at 2s + 1
    uint64_t* full = reinterpret_cast<uint64_t*>(kv_s + kStages * 2 * kTileBytes);
    uint64_t* empty = full + kStages;
    uint64_t* q_full = empty + kStages;

    const int h = blockIdx.y, b = blockIdx.z;
    int row0, nq, nk, total;  // sequence b's first token, query rows, valid keys; the buffer's tokens
    if (cu_seqlens != nullptr) {
        row0 = cu_seqlens[b];
        nq = nk = cu_seqlens[b + 1] - row0;
        total = cu_seqlens[gridDim.z];
    } else {
        row0 = b * seq;
        nq = seq;
        nk = min(max(seqlens[b], 1), seq);  // the runtime guarantees 1..seq; clamp = memory safety
        total = gridDim.z * seq;
    }
    const int q0 = blockIdx.x * 2 * kRowsPerWG;
    if (q0 >= nq) return;  // the whole CTA (packed: a shorter sequence; empty ones too)
    const int nwg = q0 + kRowsPerWG < nq ? 2 : 1;  // consumer warpgroups with rows of this sequence
    const int nkb = (nk + kKeys - 1) / kKeys;
    const int warp = threadIdx.x / 32;

    if (threadIdx.x == kConsumers) prefetch_tensormap(&map_qkv);
    init_stage_barriers(full, empty, kStages, 4 * nwg);  // empty: the consuming warps
    if (threadIdx.x == 0) {
        mbar_init(q_full, 1);
        fence_mbarrier_init();
    }
    __syncthreads();

    if (warp == kConsumers / 32) {  // producer warp: one thread issues every load
        if (threadIdx.x == kConsumers) {
            mbar_expect_tx(q_full, nwg * kTileBytes);
            for (int w = 0; w < nwg; ++w)
                tma_load_2d(q_s + w * kTileBytes, &map_qkv, h * kD, box_row(row0 + q0 + w * kRowsPerWG, total),
                            q_full);
            for (int kb = 0; kb < nkb; ++kb) {
                const int s = kb % kStages;
                if (kb >= kStages) mbar_wait(&empty[s], ((kb / kStages) & 1) ^ 1);
                mbar_expect_tx(&full[s], 2 * kTileBytes);
                const int r = box_row(row0 + kb * kKeys, total);
                tma_load_2d(kv_s + (2 * s) * kTileBytes, &map_qkv, (heads + h) * kD, r, &full[s]);
                tma_load_2d(kv_s + (2 * s + 1) * kTileBytes, &map_qkv, (2 * heads + h) * kD, r, &full[s]);
            }
        }
        return;
    }
    const int wg = warp / 4;
    if (wg >= nwg) return;  // all 64 rows past the sequence: no loads, no arrivals expected

    const int t = threadIdx.x % 128, lane = t % 32;
    // Accumulator layout (m64nNk16): thread t holds, for 8-column block j, columns 8j + 2(t%4) + {0,1}
    // of row r0 = 16(t/32) + (t%32)/4 (registers 4j, 4j+1) and of row r0 + 8 (4j+2, 4j+3).
    const int r_local = 16 * (t / 32) + lane / 4, c_local = 2 * (lane % 4);
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
    float o[32], s_acc[32];
    const uint8_t* q_tile = q_s + wg * kTileBytes;
    mbar_wait(q_full, 0);
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
        const bool last = kb == nkb - 1;
        // The block's first key (its box may have been moved back: then keys below kb * 64 repeat).
        const int key_first = last ? box_row(row0 + kb * kKeys, total) - row0 : kb * kKeys;
        float alpha[2];
        online_softmax(s_acc, last, key_first + c_local, kb * kKeys, nk, scale_log2, m_run, l_run, alpha);
        if (kb > 0) {
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                o[4 * j] *= alpha[0];
                o[4 * j + 1] *= alpha[0];
                o[4 * j + 2] *= alpha[1];
                o[4 * j + 3] *= alpha[1];
            }
        }
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
        for (int c = 0; c < 4; ++c)  // V (MN-major, 128-byte swizzle): leading offset 16, stride 1024
            wgmma_m64n64k16_rs_tb(o, a[c], smem_desc(v_tile + c * 16 * 128, 16, 1024), kb > 0 || c > 0);
        wgmma_commit();
        wgmma_wait<0>();
        fence_regs(o);
        if (lane == 0) mbar_arrive(&empty[s]);
    }
    // Rows this warpgroup stores: [qbase, min(qbase + 64, nq)); its Q box began at qbox.
    const int qbase = q0 + wg * kRowsPerWG;
    const int qbox = box_row(row0 + qbase, total) - row0;
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
        float l = l_run[hr];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const float inv = 1.f / l;
        const int q = qbox + r_local + 8 * hr;
        if (q < qbase || q >= nq) continue;
        __half* dst = out + (int64_t(row0 + q) * heads + h) * kD + c_local;
#pragma unroll
        for (int j = 0; j < 8; ++j)
            *reinterpret_cast<uint32_t*>(dst + 8 * j) = pack_half2(o[4 * j + 2 * hr] * inv, o[4 * j + 2 * hr + 1] * inv);
    }
#else
    __trap();  // never launched: hopper_kernel_available() is false without an sm_90a image
#endif
}

// Per device: compute capability 9.0, the sm_90a image loads, and the shared-memory limit raised.
bool available_on(int dev) {
    static std::mutex mu;
    static std::map<int, bool> cache;
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(dev);
    if (it != cache.end()) return it->second;
    bool ok = false;
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess && major == 9 &&
        minor == 0) {
        cudaFuncAttributes attr{};
        ok = cudaFuncGetAttributes(&attr, attention_wgmma_kernel) == cudaSuccess &&
             cudaFuncSetAttribute(attention_wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes) ==
                 cudaSuccess;
    }
    (void)cudaGetLastError();  // a missing image is not an error of the caller's launch
    cache[dev] = ok;
    return ok;
}

}  // namespace

namespace attention_detail {

bool hopper_kernel_available() {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) throw std::runtime_error("attention: cudaGetDevice failed");
    return available_on(dev);
}

void launch_hopper(const AttentionParams& p, cudaStream_t stream) {
    if (p.dtype != DType::kFloat16 || p.head_size != kD)
        throw std::invalid_argument("attention: the Hopper kernel runs fp16 with head size 64 only");
    if (!hopper_kernel_available())
        throw std::runtime_error("attention: the Hopper (sm_90a) kernel is not available on this device");
    const int64_t rows = int64_t(p.batch) * p.seq;  // padded: the tokens; packed: a bound on them
    if (rows > INT32_MAX) throw std::invalid_argument("attention: batch * seq must fit in int32");
    // [rows, 3 * heads * 64] as 64 x 64 boxes; encoded per launch (a host call of ~1 us; a CUDA
    // graph captures the map by value as the kernel's __grid_constant__ parameter).
    const CUtensorMap map = hopper::tile_map(p.qkv, rows, int64_t(3) * p.heads * kD, 64);
    const dim3 grid((p.seq + 2 * kRowsPerWG - 1) / (2 * kRowsPerWG), p.heads, p.batch);
    attention_wgmma_kernel<<<grid, kThreads, kSmemBytes, stream>>>(map, static_cast<__half*>(p.out), p.seqlens,
                                                                   p.cu_seqlens, p.heads, p.seq,
                                                                   p.scale * 1.4426950408889634f);
}

}  // namespace attention_detail
}  // namespace bertqa

#else  // no sm_90a code in this build

namespace bertqa {
namespace attention_detail {
bool hopper_kernel_available() { return false; }
void launch_hopper(const AttentionParams&, cudaStream_t) {
    throw std::runtime_error(
        "attention: the Hopper (sm_90a) kernel is not available: this build's CUDA architectures do not include 90");
}
}  // namespace attention_detail
}  // namespace bertqa

#endif
