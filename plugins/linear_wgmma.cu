// linear_wgmma: Y[m, n] = X[m, k] · W[n, k]^T + bias[n] (then GELU, erf form), fp16 in and out,
// fp32 accumulation: the BERT linears at small m (batch 1..8), where cuBLASLt's best kernels
// keep most of the 132 SMs idle (1-2 waves of large tiles walking all of K; ~1/3 of peak).
//
// Math (the reference in bench/linear_check.cu is this, a float64 loop):
//   y[i, j] = act( sum_c x[i, c] * w[j, c] + bias[j] ),  act = identity or x * Phi(x) (erf GELU)
//
// Kernel (sm_90a: wgmma + TMA + thread-block clusters), one CTA per (128-row, block_n-column)
// output tile and K slice:
//   * warp 8 is the producer: one thread streams X (128 x 64) and W (block_n x 64) tiles with
//     the bulk tensor copy engine (128-byte swizzle) into a ring of shared-memory stages, each
//     completing on an mbarrier;
//   * warps 0-7 (two warpgroups, 64 rows each) wait for a stage, issue four m64n{block_n}k16
//     wgmma from shared memory, keep one group in flight and free the previous stage (one
//     mbarrier arrival per warp: 256 arrivals on one barrier serialise for microseconds);
//   * split_k 1: the consumers add the bias (fetched before the main loop, parked in shared
//     memory), apply GELU and store fp16 straight from the accumulator registers;
//   * split-K: the split_k CTAs of one output tile form a cluster (1, 1, split_k), each walks
//     k / split_k; every CTA parks its fp32 partial tile in its own shared memory, and after a
//     cluster barrier each sums a 1/split_k slice of the rows over all the cluster's partials
//     through distributed shared memory (all loads of an item in flight at once), adds the bias,
//     applies GELU and writes fp16 with 16-byte stores. No workspace, no second kernel, no
//     atomics: deterministic.
//
// Variants (template block_n, run-time split_k; the builder times them against cuBLASLt's and
// keeps the fastest per shape):
//   block_n   64 (8 stages), 128 (6 stages), 256 (4 stages); 192 KB of stages in every case
//   split_k   1..8 CTAs per tile (at least one 64-wide K block each)
// Requirements (linear_wgmma_unsupported says which one fails): an sm_90 GPU and a build with
// sm_90a code (the 90 architecture in CMAKE_CUDA_ARCHITECTURES), n % block_n == 0, k % 64 == 0,
// 16-byte aligned pointers, y not overlapping x. Any m >= 1 (rows past m are read as zeros by
// the copy engine and never written).
#include <cuda.h>          // CUtensorMap and its enums (types only: the encoder comes from the driver)
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled
#include <cuda_fp16.h>
#include <cooperative_groups.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "bert_plugins.h"

namespace bertqa {
namespace {

constexpr int kBlockM = 128;       // rows per CTA: two consumer warpgroups of 64
constexpr int kBlockK = 64;        // K per stage: one 128-byte swizzle row of fp16
constexpr int kConsumers = 256;    // warps 0-7
constexpr int kThreads = kConsumers + 32;  // + the producer warp
constexpr int kStageBudget = 192 * 1024;
constexpr int kMaxSplit = 8;       // the portable cluster size

template <int BN>
struct Tile {
    static constexpr int kABytes = kBlockM * kBlockK * 2;
    static constexpr int kBBytes = BN * kBlockK * 2;
    static constexpr int kStageBytes = kABytes + kBBytes;
    static constexpr int kStages = kStageBudget / kStageBytes > 8 ? 8 : kStageBudget / kStageBytes;
    static constexpr int kPartialStride = BN + 8;  // floats per partial row: conflict-free float2 stores
    static constexpr int kPartialBytes = kBlockM * kPartialStride * 4;
    static constexpr int kDataBytes = kStages * kStageBytes > kPartialBytes ? kStages * kStageBytes : kPartialBytes;
    // + 1024 to align the dynamic shared memory to the 128-byte swizzle's 1024-byte pattern
    static constexpr int kSmemBytes = kDataBytes + 2 * kStages * 8 + BN * 2 + 1024;  // + bias slice
};

// Ablations for bench/linear_check.cu's timing breakdown only (wrong results; never in the library):
// 1 no wgmma, 2 no TMA loads, 3 no epilogue reduction, 4 return at once.
#ifndef BERTQA_LINEAR_ABLATE
#define BERTQA_LINEAR_ABLATE 0
#endif

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define BERTQA_LINEAR_DEVICE_CODE 1
#endif

#ifdef BERTQA_LINEAR_DEVICE_CODE
__device__ __forceinline__ uint32_t smem_u32(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(bar)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
    uint32_t done = 0;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(smem_u32(bar)), "r"(parity)
            : "memory");
    } while (!done);
}
// 2-D tile (inner coordinate c0 along K, outer c1 along rows) into shared memory; completes on bar.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int c0, int c1, uint64_t* bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
        ::"r"(smem_u32(dst)), "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(smem_u32(bar))
        : "memory");
}
// wgmma shared-memory matrix descriptor: K-major tile of 128-byte rows, 128-byte swizzle; core
// matrices of 8 rows are 1024 bytes apart (stride byte offset); the leading byte offset is unused
// for swizzled K-major tiles. Stepping K by 16 elements adds 32 bytes to the start address.
__device__ __forceinline__ uint64_t smem_desc(const void* p) {
    const uint64_t addr = smem_u32(p);
    return ((addr & 0x3FFFF) >> 4) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 62);
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory"); }
template <int R>
__device__ __forceinline__ void fence_accumulators(float (&d)[R]) {
#pragma unroll
    for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[32], uint64_t a, uint64_t b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {"
          "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
          "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
        "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(a), "l"(b), "r"(1));
}

__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], uint64_t a, uint64_t b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
          "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
          "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
          "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
          "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63"
        "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(a), "l"(b), "r"(1));
}

__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[128], uint64_t a, uint64_t b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {"
          "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
          "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
          "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
          "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,"
          "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"
          "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,"
          "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,"
          "%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127"
        "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
          "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
          "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
          "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
          "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
          "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
          "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
          "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
          "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "l"(a), "l"(b), "r"(1));
}

template <int BN>
__device__ __forceinline__ void wgmma_tile(float (&d)[BN / 2], uint64_t a, uint64_t b) {
    if constexpr (BN == 64) wgmma_m64n64k16(d, a, b);
    else if constexpr (BN == 128) wgmma_m64n128k16(d, a, b);
    else wgmma_m64n256k16(d, a, b);
}

__device__ __forceinline__ float gelu_erf(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }
#endif  // BERTQA_LINEAR_DEVICE_CODE

template <int BN>
__global__ void __launch_bounds__(kThreads, 1)
    linear_wgmma_kernel(const __grid_constant__ CUtensorMap map_x, const __grid_constant__ CUtensorMap map_w,
                        const __half* __restrict__ bias, __half* __restrict__ y, int m, int n, int k, int gelu) {
#ifdef BERTQA_LINEAR_DEVICE_CODE
    if (BERTQA_LINEAR_ABLATE == 4) return;
    using T = Tile<BN>;
    namespace cg = cooperative_groups;
    extern __shared__ uint8_t smem_raw[];
    uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
    uint64_t* full = reinterpret_cast<uint64_t*>(smem + T::kDataBytes);
    uint64_t* empty = full + T::kStages;
    __half* bias_s = reinterpret_cast<__half*>(empty + T::kStages);  // [BN]
    float* partial = reinterpret_cast<float*>(smem);  // split-K: reuses the stages after the main loop

    const int warp = threadIdx.x / 32;
    const int n0 = blockIdx.x * BN, m0 = blockIdx.y * kBlockM;
    const int split = gridDim.z, part = blockIdx.z;
    const int kblocks = k / kBlockK;
    const int kb_begin = part * kblocks / split, kb_count = (part + 1) * kblocks / split - kb_begin;

    if (threadIdx.x == kConsumers) {
        asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&map_x)) : "memory");
        asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&map_w)) : "memory");
    }
    if (threadIdx.x == 0) {
        for (int s = 0; s < T::kStages; ++s) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], kConsumers / 32);  // one arrival per consumer warp
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();

    if (warp == kConsumers / 32) {
        if (threadIdx.x == kConsumers) {  // producer
            for (int i = 0; i < kb_count; ++i) {
                const int s = i % T::kStages;
                if (i >= T::kStages) mbar_wait(&empty[s], ((i / T::kStages) & 1) ^ 1);
                uint8_t* a = smem + s * T::kStageBytes;
                if (BERTQA_LINEAR_ABLATE == 2) {
                    mbar_arrive(&full[s]);
                    continue;
                }
                mbar_expect_tx(&full[s], T::kStageBytes);
                tma_load_2d(a, &map_x, (kb_begin + i) * kBlockK, m0, &full[s]);
                tma_load_2d(a + T::kABytes, &map_w, (kb_begin + i) * kBlockK, n0, &full[s]);
            }
        }
        if (split > 1) {  // the split-K reduction below needs every CTA of the cluster
            cg::this_cluster().sync();
            cg::this_cluster().sync();
        }
        return;
    }

    // Consumers. The bias slice is fetched now (its latency hides under the main loop) and parked
    // in shared memory for the epilogue.
    uint4 bias_v = make_uint4(0, 0, 0, 0);
    const bool bias_loader = bias && threadIdx.x < BN / 8;
    if (bias_loader) bias_v = __ldg(reinterpret_cast<const uint4*>(bias + n0) + threadIdx.x);
    const int wg = warp / 4;  // 64-row half of the tile
    float acc[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.f;
    for (int i = 0; i < kb_count; ++i) {
        const int s = i % T::kStages;
        mbar_wait(&full[s], (i / T::kStages) & 1);
        const uint8_t* a = smem + s * T::kStageBytes + wg * 64 * 128;
        const uint8_t* b = smem + s * T::kStageBytes + T::kABytes;
        wgmma_fence();
        fence_accumulators(acc);
#pragma unroll
        for (int kk = 0; kk < kBlockK / 16; ++kk)
            if (BERTQA_LINEAR_ABLATE != 1) wgmma_tile<BN>(acc, smem_desc(a + kk * 32), smem_desc(b + kk * 32));
        wgmma_commit();
        fence_accumulators(acc);
        wgmma_wait<1>();  // warp-synchronous: the whole warp is past stage i - 1
        if (i > 0 && threadIdx.x % 32 == 0) mbar_arrive(&empty[(i - 1) % T::kStages]);
    }
    wgmma_wait<0>();
    fence_accumulators(acc);
    if (bias_loader) reinterpret_cast<uint4*>(bias_s)[threadIdx.x] = bias_v;
    else if (!bias && threadIdx.x < BN / 8) reinterpret_cast<uint4*>(bias_s)[threadIdx.x] = make_uint4(0, 0, 0, 0);
    // Every consumer is past its last wgmma (so every stage has been read) before a partial tile
    // overwrites the stages, and the bias slice is in place; the producer has nothing in flight.
    asm volatile("bar.sync 1, %0;" ::"n"(kConsumers) : "memory");

    // Accumulator layout of m64nNk16: thread t of the warpgroup holds, for each 8-column block j,
    // columns 8j + 2(t % 4) + {0, 1} of rows 16 (t / 32) + (t % 32) / 4 (registers 4j, 4j + 1) and
    // 8 rows further down (4j + 2, 4j + 3).
    const int t = threadIdx.x % 128, lane = t % 32;
    const int row = wg * 64 + (t / 32) * 16 + lane / 4, col = (lane % 4) * 2;
    if (split == 1) {  // straight from the registers: bias, GELU, fp16
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = m0 + row + 8 * h;
            if (r >= m) continue;
            __half* out = y + size_t(r) * n + n0 + col;
#pragma unroll
            for (int j = 0; j < BN / 8; ++j) {
                const float2 bf = __half22float2(*reinterpret_cast<const __half2*>(bias_s + j * 8 + col));
                float v0 = acc[4 * j + 2 * h] + bf.x, v1 = acc[4 * j + 2 * h + 1] + bf.y;
                if (gelu) { v0 = gelu_erf(v0); v1 = gelu_erf(v1); }
                *reinterpret_cast<__half2*>(out + j * 8) = __floats2half2_rn(v0, v1);
            }
        }
        return;
    }
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
        *reinterpret_cast<float2*>(&partial[row * T::kPartialStride + j * 8 + col]) = make_float2(acc[4 * j], acc[4 * j + 1]);
        *reinterpret_cast<float2*>(&partial[(row + 8) * T::kPartialStride + j * 8 + col]) =
            make_float2(acc[4 * j + 2], acc[4 * j + 3]);
    }

    // Sum the cluster's partial tiles: CTA `part` finishes rows [r0, r1) of the tile, every load
    // of an item issued before the first add.
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync();
    const int rows = min(kBlockM, m - m0);
    const int r0 = part * rows / split, r1 = (part + 1) * rows / split;
    constexpr int kVecs = BN / 8;  // 8 outputs (one 16-byte store) per item
    const float* peer[kMaxSplit];
#pragma unroll
    for (int q = 0; q < kMaxSplit; ++q) peer[q] = q < split ? cluster.map_shared_rank(partial, q) : partial;
    for (int item = threadIdx.x; item < (BERTQA_LINEAR_ABLATE == 3 ? 0 : (r1 - r0) * kVecs); item += kConsumers) {
        const int r = r0 + item / kVecs, c = (item % kVecs) * 8;
        float4 lo[kMaxSplit], hi[kMaxSplit];
#pragma unroll
        for (int q = 0; q < kMaxSplit; ++q) {
            if (q < split) {
                const float* src = peer[q] + r * T::kPartialStride + c;
                lo[q] = *reinterpret_cast<const float4*>(src);
                hi[q] = *reinterpret_cast<const float4*>(src + 4);
            }
        }
        float v[8];
        const __half2* b2 = reinterpret_cast<const __half2*>(bias_s + c);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const float2 bf = __half22float2(b2[e]);
            v[2 * e] = bf.x;
            v[2 * e + 1] = bf.y;
        }
#pragma unroll
        for (int q = 0; q < kMaxSplit; ++q) {
            if (q < split) {
                v[0] += lo[q].x; v[1] += lo[q].y; v[2] += lo[q].z; v[3] += lo[q].w;
                v[4] += hi[q].x; v[5] += hi[q].y; v[6] += hi[q].z; v[7] += hi[q].w;
            }
        }
        uint4 out;
        __half2* o2 = reinterpret_cast<__half2*>(&out);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            float a = v[2 * e], b = v[2 * e + 1];
            if (gelu) { a = gelu_erf(a); b = gelu_erf(b); }
            o2[e] = __floats2half2_rn(a, b);
        }
        *reinterpret_cast<uint4*>(y + size_t(m0 + r) * n + n0 + c) = out;
    }
    cluster.sync();  // no CTA leaves while another still reads its partial tile
#else
    __trap();  // never launched: linear_wgmma_unsupported() refuses builds without sm_90a code
#endif
}

// The driver's tensor-map encoder, fetched once through the runtime (no link to libcuda).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void* p = nullptr;
        cudaDriverEntryPointQueryResult q{};
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
            q != cudaDriverEntryPointSuccess)
            p = nullptr;
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
    }();
    return fn;
}

// Row-major fp16 [rows, cols] as tiles of box_rows x 64 with the 128-byte swizzle.
CUtensorMap tile_map(const void* base, int rows, int cols, int box_rows) {
    auto encode = tensor_map_encoder();
    if (!encode) throw std::runtime_error("linear_wgmma: the driver has no cuTensorMapEncodeTiled (driver too old?)");
    CUtensorMap map{};
    const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
    const cuuint64_t strides[1] = {cuuint64_t(cols) * 2};
    const cuuint32_t box[2] = {cuuint32_t(kBlockK), cuuint32_t(box_rows)};
    const cuuint32_t elem_strides[2] = {1, 1};
    const CUresult r = encode(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, const_cast<void*>(base), dims, strides, box,
                              elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        throw std::runtime_error("linear_wgmma: cuTensorMapEncodeTiled failed (error " + std::to_string(int(r)) + ")");
    return map;
}

template <int BN>
void launch(const LinearParams& p, cudaStream_t stream) {
    auto kernel = linear_wgmma_kernel<BN>;
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Tile<BN>::kSmemBytes);
    if (e != cudaSuccess)
        throw std::runtime_error(std::string("linear_wgmma: cannot raise shared memory: ") + cudaGetErrorString(e));
    const CUtensorMap mx = tile_map(p.x, p.m, p.k, kBlockM), mw = tile_map(p.w, p.n, p.k, BN);
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(unsigned(p.n / BN), unsigned((p.m + kBlockM - 1) / kBlockM), unsigned(p.split_k));
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = Tile<BN>::kSmemBytes;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 1;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = unsigned(p.split_k);
    cfg.attrs = attr;
    cfg.numAttrs = p.split_k > 1 ? 1 : 0;  // split_k 1 needs no cluster
    e = cudaLaunchKernelEx(&cfg, kernel, mx, mw, static_cast<const __half*>(p.bias), static_cast<__half*>(p.y), p.m,
                           p.n, p.k, int(p.gelu));
    if (e != cudaSuccess) throw std::runtime_error(std::string("linear_wgmma: launch failed: ") + cudaGetErrorString(e));
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

std::string linear_wgmma_unsupported(const LinearParams& p) {
#ifndef BERTQA_LINEAR_SM90A
    (void)p;
    return "this build has no sm_90a code (build with 90 in CMAKE_CUDA_ARCHITECTURES)";
#else
    if (p.m < 1 || p.n < 1 || p.k < 1) return "m, n and k must be positive";
    if (p.block_n != 64 && p.block_n != 128 && p.block_n != 256) return "block_n must be 64, 128 or 256";
    if (p.n % p.block_n) return "n must be a multiple of block_n";
    if (p.k % kBlockK) return "k must be a multiple of 64";
    if (p.split_k < 1 || p.split_k > kMaxSplit || p.split_k > p.k / kBlockK)
        return "split_k must be 1..8 and at most k / 64";
    if (!p.x || !p.w || !p.y) return "x, w and y must not be null";
    if (!aligned16(p.x) || !aligned16(p.w) || !aligned16(p.y) || (p.bias && !aligned16(p.bias)))
        return "x, w, y and bias must be 16-byte aligned";
    const char* x0 = static_cast<const char*>(p.x);
    const char* y0 = static_cast<const char*>(p.y);
    if (y0 < x0 + size_t(p.m) * p.k * 2 && x0 < y0 + size_t(p.m) * p.n * 2) return "y must not overlap x";
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
        return "no CUDA device";
    if (major != 9 || minor != 0) return "needs an sm_90 GPU (H100/H200)";
    if (!tensor_map_encoder()) return "the driver has no cuTensorMapEncodeTiled";
    return "";
#endif
}

void linear_wgmma(const LinearParams& p, cudaStream_t stream) {
    const std::string why = linear_wgmma_unsupported(p);
    if (!why.empty()) throw std::invalid_argument("linear_wgmma: " + why);
    switch (p.block_n) {
        case 64: launch<64>(p, stream); break;
        case 128: launch<128>(p, stream); break;
        default: launch<256>(p, stream); break;
    }
}

}  // namespace bertqa
