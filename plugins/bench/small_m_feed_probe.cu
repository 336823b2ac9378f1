// small_m_feed_probe.cu: what does a batch-1 product of our own pay before and around its bytes,
// and how long does the data movement alone take, against cuBLASLt's whole tuned product?
//
// Every product of our own measured at batch 1 (linear_wgmma at a09b9e1, pdl_gemm_probe.cu,
// gemm_layernorm_probe.cu, CUTLASS 4.2, the persistent encoder) lost to cuBLASLt by 1-4 us per
// product, and linear_wgmma's ablations left ~2.5 us per launch unexplained by launch, loads, math or
// epilogue (infer_c/NOTES.md). This probe builds the data path of such a product one step at a time
// and times each step as the engine's tuner times cuBLASLt (a CUDA graph of back-to-back launches,
// each reading its own copy of W, the copies overflowing the L2 as the network's weights do):
//   L0 empty   a kernel of the feed kernel's launch shape (grid, 288 threads, dynamic shared memory)
//              that returns at once
//   L1 setup   + mbarrier init, fence, __syncthreads, tensor-map prefetch
//   L2 first   + the first stage (a BM x 64 box of X and a BN x 64 box of W by TMA), waited for
//   L3 feed    + every stage of the CTA's K slice through a ring of `kStages` (one producer thread,
//              mbarrier-paced, the 8 consumer warps XOR every 16-byte word of each stage out of
//              shared memory, as many bytes as the MMAs would read, then release it): no math
//   L4 store   + the output tile written (fp16 for one K slice; fp32 partials for split K)
// Tiles: BM x BN outputs per CTA (BM 64 or 128, BN 32, 64 or 128), the K range in `split` slices (the
// grid is n / BN x m / BM x split), 128-byte-swizzled boxes as the real kernels load them.
// What it answers: if the best L4 is well under cuBLASLt's tuned time, a product of our own has room
// (its math fits under the loads); if L4 alone is at cuBLASLt's time, it has none at these shapes, and
// the ladder says which step costs what.
//
// Checked before it is timed: every L3/L4 configuration's per-CTA XOR of the bytes it read against the
// host's XOR of the same X and W regions (fresh random inputs; XOR does not depend on the swizzle's
// order), and the L4 output against the values the kernel derives from that XOR (poisoned first).
//
// Result (eighteenth session, H100; BENCHMARKS.md "A batch-1 product's data path alone"): the best L4
// is at or over cuBLASLt's whole product in six of the eight BERT B=1 shapes, with 0.3-1.9 us of
// room in the other two (before split-K's reduction): no room for a batch-1 product of our own.
//
// Build and run (on the GPU machine; the tuner's gemm.cpp and what it calls are compiled in, no
// engine build needed): bash scripts/small_m_feed_probe.sh
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cuda_check.h"
#include "gemm.h"
#include "hopper_ptx.cuh"
#include "probe_common.cuh"

namespace {

constexpr int kConsumers = 256, kThreads = kConsumers + 32, kBlockK = 64, kStages = 4;

template <int BM, int BN>
struct Tile {
    static constexpr int kStageBytes = (BM + BN) * kBlockK * 2;
    static constexpr int kSmemBytes = kStages * kStageBytes + 2 * kStages * 8 + 1024;  // + barriers, alignment
};

// L3/L4's tail: the CTA's XOR to out, and (kStore) the output tile.
template <int BM, int BN, bool kStore>
__device__ __forceinline__ void finish(uint8_t* smem, uint4 x, int m0, int n0, int m, int n, int split, int part,
                                       uint4* out, void* y) {
    // The CTA's XOR: warp shuffles, then the 8 warps' words through shared memory (the stages are free).
    for (int off = 16; off > 0; off /= 2) {
        x.x ^= __shfl_xor_sync(0xffffffffu, x.x, off), x.y ^= __shfl_xor_sync(0xffffffffu, x.y, off);
        x.z ^= __shfl_xor_sync(0xffffffffu, x.z, off), x.w ^= __shfl_xor_sync(0xffffffffu, x.w, off);
    }
    asm volatile("bar.sync 1, %0;" ::"n"(kConsumers) : "memory");  // every consumer is past the stages
    uint4* red = reinterpret_cast<uint4*>(smem);
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = x;
    asm volatile("bar.sync 1, %0;" ::"n"(kConsumers) : "memory");
    x = red[0];
    for (int w = 1; w < kConsumers / 32; ++w) x.x ^= red[w].x, x.y ^= red[w].y, x.z ^= red[w].z, x.w ^= red[w].w;
    const int cta = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    if (threadIdx.x == 0) out[cta] = x;
    if constexpr (kStore) {
        // As an epilogue stores accumulators: every consumer thread BM * BN / 256 values, 16 bytes at a time.
        const float base = float(x.x & 0xFFFF);
        if (split == 1) {
            __half* yh = static_cast<__half*>(y);
            for (int e = threadIdx.x * 8; e < BM * BN; e += kConsumers * 8) {
                const int r = e / BN, c = e % BN;
                __align__(16) __half v[8];
#pragma unroll
                for (int t = 0; t < 8; ++t) v[t] = __float2half(base + float(c + t));
                *reinterpret_cast<uint4*>(yh + size_t(m0 + r) * n + n0 + c) = *reinterpret_cast<const uint4*>(v);
            }
        } else {
            float* yf = static_cast<float*>(y) + size_t(part) * m * n;
            for (int e = threadIdx.x * 4; e < BM * BN; e += kConsumers * 4) {
                const int r = e / BN, c = e % BN;
                *reinterpret_cast<float4*>(yf + size_t(m0 + r) * n + n0 + c) =
                    make_float4(base + c, base + c + 1, base + c + 2, base + c + 3);
            }
        }
    }
}

// out: per CTA the XOR of every 16-byte word it read (uint4), then (L4) y: fp16 [m, n] for split 1,
// fp32 [split, m, n] partials otherwise, each element the CTA's XOR word x plus its column (a value
// the check can recompute; the stores are what is timed).
template <int BM, int BN, int kLevel>
__global__ void __launch_bounds__(kThreads, 1)
    feed_kernel(const __grid_constant__ CUtensorMap map_x, const __grid_constant__ CUtensorMap map_w, int m, int n,
                int k, uint4* out, void* y) {
    if constexpr (kLevel == 0) return;
    using T = Tile<BM, BN>;
    extern __shared__ uint8_t smem_raw[];
    uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
    uint64_t* full = reinterpret_cast<uint64_t*>(smem + kStages * T::kStageBytes);
    uint64_t* empty = full + kStages;
    const int n0 = blockIdx.x * BN, m0 = blockIdx.y * BM, split = gridDim.z, part = blockIdx.z;
    const int kblocks = k / kBlockK, kb0 = part * kblocks / split, kbs = (part + 1) * kblocks / split - kb0;
    if (threadIdx.x == kConsumers) {
        hopper::prefetch_tensormap(&map_x);
        hopper::prefetch_tensormap(&map_w);
    }
    hopper::init_stage_barriers(full, empty, kStages, kConsumers / 32);
    __syncthreads();
    if constexpr (kLevel == 1) return;
    const int count = kLevel == 2 ? 1 : kbs;  // stages this CTA brings in
    if (threadIdx.x == kConsumers) {  // the producer
        for (int i = 0; i < count; ++i) {
            const int s = i % kStages;
            if (i >= kStages) hopper::mbar_wait(&empty[s], ((i / kStages) & 1) ^ 1);
            uint8_t* st = smem + s * T::kStageBytes;
            hopper::mbar_expect_tx(&full[s], T::kStageBytes);
            hopper::tma_load_2d(st, &map_x, (kb0 + i) * kBlockK, m0, &full[s]);
            hopper::tma_load_2d(st + BM * kBlockK * 2, &map_w, (kb0 + i) * kBlockK, n0, &full[s]);
        }
        return;
    }
    if (threadIdx.x > kConsumers) return;
    uint4 x = make_uint4(0, 0, 0, 0);
    constexpr int kWords = T::kStageBytes / 16;
    for (int i = 0; i < count; ++i) {
        const int s = i % kStages;
        hopper::mbar_wait(&full[s], (i / kStages) & 1);
        const uint4* w = reinterpret_cast<const uint4*>(smem + s * T::kStageBytes);
#pragma unroll
        for (int j = threadIdx.x; j < kWords; j += kConsumers) {
            const uint4 v = w[j];
            x.x ^= v.x, x.y ^= v.y, x.z ^= v.z, x.w ^= v.w;
        }
        __syncwarp();
        if (threadIdx.x % 32 == 0) hopper::mbar_arrive(&empty[s]);
    }
    if constexpr (kLevel >= 3) finish<BM, BN, kLevel == 4>(smem, x, m0, n0, m, n, split, part, out, y);
}

struct Config {
    int bm, bn, split;
};
using Kernel = void (*)(CUtensorMap, CUtensorMap, int, int, int, uint4*, void*);

template <int BM, int BN>
Kernel kernel_at(int level) {
    switch (level) {
        case 0: return feed_kernel<BM, BN, 0>;
        case 1: return feed_kernel<BM, BN, 1>;
        case 2: return feed_kernel<BM, BN, 2>;
        case 3: return feed_kernel<BM, BN, 3>;
        default: return feed_kernel<BM, BN, 4>;
    }
}
Kernel kernel_of(const Config& c, int level, int* smem) {
#define FEED_TILE(BM, BN)                          \
    if (c.bm == BM && c.bn == BN) {                \
        *smem = Tile<BM, BN>::kSmemBytes;          \
        return kernel_at<BM, BN>(level);           \
    }
    FEED_TILE(64, 32) FEED_TILE(64, 64) FEED_TILE(64, 128) FEED_TILE(128, 32) FEED_TILE(128, 64) FEED_TILE(128, 128)
#undef FEED_TILE
    return nullptr;
}

// XOR of every 16-byte word of each row's 64-wide K block: [rows, cols / 64] (the check's table).
std::vector<uint4> block_xor(const std::vector<__half>& a, int rows, int cols) {
    std::vector<uint4> t(size_t(rows) * (cols / kBlockK), make_uint4(0, 0, 0, 0));
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; c += 8) {
            uint4 v;
            std::memcpy(&v, &a[size_t(r) * cols + c], 16);
            uint4& x = t[size_t(r) * (cols / kBlockK) + c / kBlockK];
            x.x ^= v.x, x.y ^= v.y, x.z ^= v.z, x.w ^= v.w;
        }
    return t;
}
// XOR over rows [r0, r0 + rows) and K blocks [kb0, kb0 + kbs) of such a table.
void xor_into(uint4& x, const std::vector<uint4>& t, int kblocks, int r0, int rows, int kb0, int kbs) {
    for (int r = r0; r < r0 + rows; ++r)
        for (int kb = kb0; kb < kb0 + kbs; ++kb) {
            const uint4& v = t[size_t(r) * kblocks + kb];
            x.x ^= v.x, x.y ^= v.y, x.z ^= v.z, x.w ^= v.w;
        }
}

struct Shape {
    const char* name;
    int m, n, k;
    bertqa::GemmEpilogue epi;
};

// One shape: cuBLASLt's tuned time, then every configuration checked and its ladder timed.
void run_shape(const Shape& sh, cudaStream_t st) {
    using bertqa::GemmShape;
    const size_t xbytes = size_t(sh.m) * sh.k * 2, wbytes = size_t(sh.n) * sh.k * 2;
    const int copies = int(std::min<size_t>(64, (size_t(160) << 20) / wbytes + 1));  // > 3x the 50 MB L2
    __half *x, *w;
    CUDA_CHECK(cudaMalloc(&x, xbytes));
    CUDA_CHECK(cudaMalloc(&w, wbytes * copies));
    probe::fill(x, size_t(sh.m) * sh.k, 11, 1.f);
    probe::fill(w, size_t(sh.n) * sh.k * copies, 12, 0.05f);
    std::vector<__half> hx(size_t(sh.m) * sh.k), hw(size_t(sh.n) * sh.k);
    CUDA_CHECK(cudaMemcpy(hx.data(), x, xbytes, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(hw.data(), w, wbytes, cudaMemcpyDeviceToHost));  // copy 0, the one checked
    const int kblocks = sh.k / kBlockK;
    const std::vector<uint4> tx = block_xor(hx, sh.m, sh.k), tw = block_xor(hw, sh.n, sh.k);

    const GemmShape gs{sh.m, sh.n, sh.k, bertqa::GemmDType::kFloat16, sh.epi};
    const auto tuned = bertqa::tune_gemms({gs}, size_t(32) << 20, 8, 50, true, true);
    std::printf("\n%s (m %d, n %d, k %d): cuBLASLt tuned %.2f us per product (%d candidates)\n", sh.name, sh.m, sh.n,
                sh.k, tuned[0].time_us, tuned[0].candidates);

    uint4* out;
    void* y;
    const int max_ctas = (sh.n / 32) * (sh.m / 64) * 8;
    CUDA_CHECK(cudaMalloc(&out, size_t(max_ctas) * sizeof(uint4)));
    CUDA_CHECK(cudaMalloc(&y, size_t(8) * sh.m * sh.n * sizeof(float)));
    float best = 1e30f;
    Config best_c{};
    for (int bm : {64, 128})
        for (int bn : {32, 64, 128})
            for (int split : {1, 2, 3, 4, 6, 8}) {
                const Config c{bm, bn, split};
                if (sh.m % bm || sh.n % bn || (sh.k / kBlockK) < split) continue;
                const dim3 grid(sh.n / bn, sh.m / bm, split);
                if (grid.x * grid.y * grid.z > 4 * 132u || grid.x * grid.y * grid.z < 16u) continue;
                int smem = 0;
                std::vector<CUtensorMap> wmaps;
                const CUtensorMap xmap = hopper::tile_map(x, sh.m, sh.k, bm);
                for (int i = 0; i < copies; ++i) wmaps.push_back(hopper::tile_map(w + size_t(i) * sh.n * sh.k, sh.n, sh.k, bn));
                for (int level = 0; level <= 4; ++level) {
                    const Kernel kf = kernel_of(c, level, &smem);
                    CUDA_CHECK(cudaFuncSetAttribute(kf, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
                }
                // Check L3 and L4 on copy 0.
                bool ok = true;
                for (int level : {3, 4}) {
                    CUDA_CHECK(cudaMemset(out, 0xFF, size_t(max_ctas) * sizeof(uint4)));
                    CUDA_CHECK(cudaMemset(y, 0xFF, size_t(8) * sh.m * sh.n * sizeof(float)));
                    kernel_of(c, level, &smem)<<<grid, kThreads, smem, st>>>(xmap, wmaps[0], sh.m, sh.n, sh.k, out, y);
                    CUDA_CHECK(cudaGetLastError());
                    CUDA_CHECK(cudaStreamSynchronize(st));
                    std::vector<uint4> got(grid.x * grid.y * grid.z);
                    CUDA_CHECK(cudaMemcpy(got.data(), out, got.size() * sizeof(uint4), cudaMemcpyDeviceToHost));
                    std::vector<float> yf;
                    std::vector<__half> yh;
                    if (level == 4) {
                        if (split == 1) {
                            yh.resize(size_t(sh.m) * sh.n);
                            CUDA_CHECK(cudaMemcpy(yh.data(), y, yh.size() * 2, cudaMemcpyDeviceToHost));
                        } else {
                            yf.resize(size_t(split) * sh.m * sh.n);
                            CUDA_CHECK(cudaMemcpy(yf.data(), y, yf.size() * 4, cudaMemcpyDeviceToHost));
                        }
                    }
                    for (int p = 0; p < split && ok; ++p)
                        for (int by = 0; by < int(grid.y) && ok; ++by)
                            for (int bx = 0; bx < int(grid.x) && ok; ++bx) {
                                const int kb0 = p * kblocks / split, kbs = (p + 1) * kblocks / split - kb0;
                                uint4 want = make_uint4(0, 0, 0, 0);
                                xor_into(want, tx, kblocks, by * bm, bm, kb0, kbs);
                                xor_into(want, tw, kblocks, bx * bn, bn, kb0, kbs);
                                const uint4 g = got[(p * grid.y + by) * grid.x + bx];
                                if (g.x != want.x || g.y != want.y || g.z != want.z || g.w != want.w) {
                                    std::printf("  CHECK FAILED L%d %dx%d split %d: CTA (%d, %d, %d) read other bytes\n",
                                                level, bm, bn, split, bx, by, p);
                                    ok = false;
                                }
                                if (level != 4 || !ok) continue;
                                const float base = float(want.x & 0xFFFF);
                                for (int r = by * bm; r < (by + 1) * bm && ok; ++r)
                                    for (int cc = bx * bn; cc < (bx + 1) * bn && ok; ++cc) {
                                        const int col = cc - bx * bn;
                                        const float v = split == 1 ? __half2float(yh[size_t(r) * sh.n + cc])
                                                                   : yf[(size_t(p) * sh.m + r) * sh.n + cc];
                                        const float e = split == 1 ? __half2float(__float2half(base + col)) : base + col;
                                        if (v != e) {
                                            std::printf("  CHECK FAILED L4 %dx%d split %d: y[%d, %d] = %g, want %g\n", bm,
                                                        bn, split, r, cc, v, e);
                                            ok = false;
                                        }
                                    }
                            }
                }
                if (!ok) continue;
                // The ladder, each level in a graph of `copies` launches (one per copy of W).
                float t[5];
                for (int level = 0; level <= 4; ++level) {
                    Kernel kf = kernel_of(c, level, &smem);
                    t[level] = probe::graph_median_us(
                        [&](cudaStream_t s) {
                            for (int i = 0; i < copies; ++i)
                                kf<<<grid, kThreads, smem, s>>>(xmap, wmaps[i], sh.m, sh.n, sh.k, out, y);
                        },
                        st, copies);
                }
                std::printf("  %3dx%-3d split %d (%3u CTAs, %2d KB in per CTA): empty %5.2f  setup %5.2f  first %5.2f  "
                            "feed %5.2f  store %5.2f us\n",
                            bm, bn, split, grid.x * grid.y * grid.z,
                            int((size_t(bm + bn) * (sh.k / split) * 2) >> 10), t[0], t[1], t[2], t[3], t[4]);
                if (t[4] < best) best = t[4], best_c = c;
            }
    std::printf("  => fastest whole data path: %dx%d split %d, %.2f us, against cuBLASLt's whole product %.2f us\n",
                best_c.bm, best_c.bn, best_c.split, best, tuned[0].time_us);
    cudaFree(x);
    cudaFree(w);
    cudaFree(out);
    cudaFree(y);
}

}  // namespace

int main() {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("%s, %d SMs; per-launch times as the tuner times cuBLASLt (graph of back-to-back launches, "
                "W copies overflowing the L2)\n", prop.name, prop.multiProcessorCount);
    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreate(&st));
    using E = bertqa::GemmEpilogue;
    const Shape shapes[] = {
        {"BERT-base B=1 QKV", 128, 2304, 768, E::kBias},         {"BERT-base B=1 attention-out", 128, 768, 768, E::kBias},
        {"BERT-base B=1 FFN-in", 128, 3072, 768, E::kGeluBias},  {"BERT-base B=1 FFN-out", 128, 768, 3072, E::kBias},
        {"BERT-large B=1 QKV", 384, 3072, 1024, E::kBias},       {"BERT-large B=1 attention-out", 384, 1024, 1024, E::kBias},
        {"BERT-large B=1 FFN-in", 384, 4096, 1024, E::kGeluBias}, {"BERT-large B=1 FFN-out", 384, 1024, 4096, E::kBias},
    };
    for (const Shape& s : shapes) run_shape(s, st);
    return 0;
}
