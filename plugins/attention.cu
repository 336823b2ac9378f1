// attention.cu: fused multi-head attention from the packed QKV projection (QKV-to-context).
//
//   qkv [tokens, 3, heads, D]  ->  out [tokens, heads, D],  D = head_size in {32, 64, 128}
//   out[t, h] = softmax_j(scale * q_t . k_j) v_j over the valid keys j of t's sequence.
//
// Padded batches (cu_seqlens == nullptr): sequence b is tokens [b*seq, (b+1)*seq); its valid
// keys are the first seqlens[b]; ALL seq query rows are computed (padding queries attend to the
// valid keys too), which makes every position equal to Hugging Face BERT's output.
// The runtime guarantees 1 <= seqlens[b] <= seq (seqlens live on the device, so the launcher
// cannot check them); the kernels clamp out-of-range values into [1, seq] for memory safety only.
// Packed batches: sequence b is tokens [cu_seqlens[b], cu_seqlens[b+1]), all keys valid; `seq`
// is the longest sequence (the bound for the grid). Empty packed sequences write nothing.
//
// FP16: FlashAttention-2 forward. One CTA = 4 warps on the query rows of one (sequence, head);
// each warp owns 1 or 2 m16 tiles (16 or 32 rows: 64- or 128-row CTAs, picked per launch from
// the grid size). Q is staged once through shared memory into registers (ldmatrix); K/V blocks
// of 64 keys stream through shared memory with cp.async (3 stages, 2 at head size 128;
// zero-filled past the valid length); S = Q K^T and O += P V run on mma.sync
// m16n8k16 (fp16 in, fp32 accumulate), K fragments by ldmatrix, V fragments by ldmatrix.trans,
// each fragment feeding all of the warp's m-tiles; the softmax is online in fp32 registers
// (running max / sum per row, exp2 with scale*log2(e) folded into one FFMA); key blocks past the
// valid length are never visited. The output tile is staged through shared memory for 16-byte
// coalesced stores. Runs on sm_80 and later (no Hopper-only instructions). On an H100 (compute
// capability 9.0, a build with sm_90a code) fp16 head size 64 runs the wgmma + TMA kernel of
// attention_hopper.cu instead for large grids (pick_kernel below; ATTENTION_NOTES.md v8).
// FP32: plain FMA (no TF32), same online softmax with expf, 32 query rows x 32 keys per step.
// Correctness over speed: the FP32 engine must match a float64 reference within 1e-5.
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "attention_dispatch.h"
#include "bert_plugins.h"
#include "mma_ptx.cuh"

namespace bertqa {
namespace {

using namespace mma_ptx;

// The token range, query count and valid-key count of sequence b.
struct SeqInfo {
    int tok0, nq, nk;
};
__device__ __forceinline__ SeqInfo seq_info(const int32_t* seqlens, const int32_t* cu_seqlens,
                                            int b, int seq) {
    SeqInfo s;
    if (cu_seqlens != nullptr) {
        s.tok0 = cu_seqlens[b];
        s.nq = cu_seqlens[b + 1] - s.tok0;
        s.nk = s.nq;
    } else {
        s.tok0 = b * seq;
        s.nq = seq;
        s.nk = min(max(seqlens[b], 1), seq);  // runtime guarantees 1..seq; clamp = memory safety
    }
    return s;
}

// ---------------------------------------------------------------------------------------------
// FP16 tensor-core kernel (FlashAttention-2 forward)
// ---------------------------------------------------------------------------------------------
// Tile shapes. A warp owns MT m16 tiles (16 * MT query rows); 4 warps per CTA; 64 keys per block.
// MT = 2 halves the shared-memory bytes per MMA (each K/V fragment feeds two m-tiles; with
// MT = 1 they alone would ask ~150 B/clk/SM at the full HMMA rate, against 128) and the L2
// re-reads of K/V per query row: ~15% faster per row on the H100 at BERT-large sizes.
// MT = 1 gives twice the CTAs for small grids and is the only shape whose registers fit at D = 128.
// Knobs of the 2-m-tile shape (compile-time; defaults = the measured best, ATTENTION_NOTES.md).
#ifndef BERTQA_ATTN_MT2_STAGES
#define BERTQA_ATTN_MT2_STAGES 3  // K/V shared-memory stages (cp.async pipeline depth)
#endif
#ifndef BERTQA_ATTN_MT2_BN
#define BERTQA_ATTN_MT2_BN 64     // keys per block
#endif
#ifndef BERTQA_ATTN_MT2_MINB
#define BERTQA_ATTN_MT2_MINB 2    // __launch_bounds__ min CTAs per SM (register cap)
#endif
// Knobs of the 1-m-tile shape at head sizes <= 64 (the small grids: BERT-large S = 384 below
// batch 6, BERT-base S = 128 below batch 22). 3 stages: 64.5 KB per CTA, still 3 CTAs per SM;
// head size 128 keeps 2 (3 would leave one 122 KB CTA per SM: 26% slower, ATTENTION_NOTES.md).
#ifndef BERTQA_ATTN_MT1_STAGES
#define BERTQA_ATTN_MT1_STAGES 3
#endif
#ifndef BERTQA_ATTN_MT1_BN
#define BERTQA_ATTN_MT1_BN 64
#endif

template <int D, int MT>
struct Fp16Cfg {
    static constexpr int kWarps = 4;
    static constexpr int kBM = 16 * MT * kWarps;  // query rows per CTA: 64 or 128
    static constexpr int kBN = MT == 2 ? BERTQA_ATTN_MT2_BN : BERTQA_ATTN_MT1_BN;              // keys per block
    static constexpr int kStages =  // K/V buffers
        MT == 2 ? BERTQA_ATTN_MT2_STAGES : (D <= 64 ? BERTQA_ATTN_MT1_STAGES : 2);
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kStride = D + 8;  // smem row stride in halves: +16 B kills ldmatrix conflicts
    static constexpr int kSmemBytes = (kBM + 2 * kStages * kBN) * kStride * 2;  // Q + K, V stages
    static constexpr int kMinBlocks = MT == 2 ? BERTQA_ATTN_MT2_MINB : (D <= 64 ? 3 : 2);
    static_assert(kStages >= 2 && kBN % 16 == 0, "pipeline shape");
    static_assert(MT == 1 || MT == 2, "1 or 2 m-tiles per warp");
    static_assert(kThreads % (D / 8) == 0 && kBN % (kThreads / (D / 8)) == 0 &&
                      kBM % (kThreads / (D / 8)) == 0,
                  "tile loads must divide evenly");
};

template <int D, int MT>
__global__ void __launch_bounds__(Fp16Cfg<D, MT>::kThreads, Fp16Cfg<D, MT>::kMinBlocks)
    attention_fp16_kernel(const __half* __restrict__ qkv, __half* __restrict__ out,
                          const int32_t* __restrict__ seqlens,
                          const int32_t* __restrict__ cu_seqlens, int heads, int seq,
                          float scale_log2) {
    using Cfg = Fp16Cfg<D, MT>;
    constexpr int BM = Cfg::kBM, BN = Cfg::kBN, S = Cfg::kStride;
    constexpr int CPR = D / 8;     // 16-byte chunks per row
    constexpr int WR = 16 * MT;    // query rows per warp

    extern __shared__ uint4 smem_u4[];
    __half* sQ = reinterpret_cast<__half*>(smem_u4);
    constexpr int NS = Cfg::kStages;
    __half* sK = sQ + BM * S;       // [NS][BN][S]
    __half* sV = sK + NS * BN * S;  // [NS][BN][S]

    const SeqInfo si = seq_info(seqlens, cu_seqlens, blockIdx.z, seq);
    const int q0 = blockIdx.x * BM;
    if (q0 >= si.nq) return;  // whole CTA leaves together (packed: shorter sequence)

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    // The epilogue re-reads the token range from shared memory instead of keeping it live in
    // registers across the main loop (fewer registers there).
    __shared__ int s_range[2];
    if (tid == 0) {
        s_range[0] = si.tok0;
        s_range[1] = si.nq;
    }
    const int64_t ld = 3LL * heads * D;  // elements per token row of qkv
    const __half* gQ = qkv + (int64_t)si.tok0 * ld + (int64_t)blockIdx.y * D;
    const __half* gK = gQ + (int64_t)heads * D;
    const __half* gV = gQ + 2LL * heads * D;
    const int nk = si.nk;
    const int nblocks = (nk + BN - 1) / BN;

    // Tile loads: each thread copies 16-byte chunk column `lc` of rows lr, lr + kRowsPerPass, ...
    constexpr int kRowsPerPass = Cfg::kThreads / CPR;
    const int lr = tid / CPR, lc = (tid % CPR) * 8;
    auto load_kv = [&](int blk, int buf) {
        const int k0 = blk * BN;
        __half* dK = sK + buf * BN * S + lr * S + lc;  // buf < NS
        __half* dV = sV + buf * BN * S + lr * S + lc;
#pragma unroll
        for (int i = 0; i < BN / kRowsPerPass; ++i) {
            const int key = k0 + lr + i * kRowsPerPass;
            const bool ok = key < nk;
            const int64_t off = ok ? (int64_t)key * ld + lc : 0;
            cp_async16(dK + i * kRowsPerPass * S, gK + off, ok);
            cp_async16(dV + i * kRowsPerPass * S, gV + off, ok);
        }
    };

    // Prologue: Q tile and K/V block 0 in one group, then blocks 1 .. NS-2 one group each
    // (a group is committed even when empty, so that group counts stay uniform).
#pragma unroll
    for (int i = 0; i < BM / kRowsPerPass; ++i) {
        const int q = q0 + lr + i * kRowsPerPass;
        const bool ok = q < si.nq;
        const int64_t off = ok ? (int64_t)q * ld + lc : 0;
        cp_async16(sQ + (lr + i * kRowsPerPass) * S + lc, gQ + off, ok);
    }
    load_kv(0, 0);
    cp_async_commit();
#pragma unroll
    for (int st = 1; st < NS - 1; ++st) {
        if (st < nblocks) load_kv(st, st);
        cp_async_commit();
    }
    cp_async_wait<NS - 2>();
    __syncthreads();

    // Q fragments of this warp's WR rows, all of D, kept in registers.
    uint32_t qf[MT][D / 16][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        const __half* base = sQ + (warp * WR + mt * 16 + (lane & 15)) * S + (lane >> 4) * 8;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) ldmatrix_x4(qf[mt][kk], base + kk * 16);
    }

    float o[MT][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int i = 0; i < D / 8; ++i) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
    // Per m-tile, rows g and g+8: running max (raw scores) and this thread's partial row sums.
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.f;
    }

    // ldmatrix lane offsets (in halves) within a K / V block.
    const int k_lane_off = ((lane & 7) + (lane >> 4) * 8) * S + ((lane >> 3) & 1) * 8;
    const int v_lane_off = ((lane & 7) + ((lane >> 3) & 1) * 8) * S + (lane >> 4) * 8;

    for (int j = 0; j < nblocks; ++j) {
        // Block j has landed (and is visible to all warps); every warp is done with block j-1,
        // whose buffer now takes block j + NS - 1.
        cp_async_wait<NS - 2>();
        __syncthreads();
        if (j + NS - 1 < nblocks) load_kv(j + NS - 1, (j + NS - 1) % NS);
        cp_async_commit();
        const __half* cK = sK + (j % NS) * BN * S;
        const __half* cV = sV + (j % NS) * BN * S;

        // S = Q K^T for this warp's rows x BN keys; each K fragment feeds MT m-tiles.
        float s[MT][BN / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int i = 0; i < BN / 8; ++i) s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
            for (int np = 0; np < BN / 16; ++np) {
                uint32_t b[4];
                ldmatrix_x4(b, cK + np * 16 * S + kk * 16 + k_lane_off);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma_16816(s[mt][2 * np], qf[mt][kk], b[0], b[1]);
                    mma_16816(s[mt][2 * np + 1], qf[mt][kk], b[2], b[3]);
                }
            }
        }
        // Mask keys past the valid length (only the last block can hold any).
        if ((j + 1) * BN > nk) {
            const int kbase = j * BN + 2 * (lane & 3);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < BN / 8; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        if (kbase + nt * 8 + (e & 1) >= nk) s[mt][nt][e] = -INFINITY;
        }
        // Online softmax (fp32). Every visited block holds >= 1 valid key, so maxima are finite.
        uint32_t p[MT][BN / 8][2];  // P in fp16, C-fragment order
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            float bm0 = -INFINITY, bm1 = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < BN / 8; ++nt) {
                bm0 = fmaxf(bm0, fmaxf(s[mt][nt][0], s[mt][nt][1]));
                bm1 = fmaxf(bm1, fmaxf(s[mt][nt][2], s[mt][nt][3]));
            }
            bm0 = fmaxf(bm0, __shfl_xor_sync(0xffffffffu, bm0, 1));
            bm0 = fmaxf(bm0, __shfl_xor_sync(0xffffffffu, bm0, 2));
            bm1 = fmaxf(bm1, __shfl_xor_sync(0xffffffffu, bm1, 1));
            bm1 = fmaxf(bm1, __shfl_xor_sync(0xffffffffu, bm1, 2));
            const float mn0 = fmaxf(m[mt][0], bm0), mn1 = fmaxf(m[mt][1], bm1);
            const float corr0 = fast_exp2((m[mt][0] - mn0) * scale_log2);  // 0 on the first block
            const float corr1 = fast_exp2((m[mt][1] - mn1) * scale_log2);
            m[mt][0] = mn0;
            m[mt][1] = mn1;
            const float ms0 = mn0 * scale_log2, ms1 = mn1 * scale_log2;
            float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
            for (int nt = 0; nt < BN / 8; ++nt) {
                const float p0 = fast_exp2(fmaf(s[mt][nt][0], scale_log2, -ms0));
                const float p1 = fast_exp2(fmaf(s[mt][nt][1], scale_log2, -ms0));
                const float p2 = fast_exp2(fmaf(s[mt][nt][2], scale_log2, -ms1));
                const float p3 = fast_exp2(fmaf(s[mt][nt][3], scale_log2, -ms1));
                rs0 += p0 + p1;
                rs1 += p2 + p3;
                p[mt][nt][0] = pack_half2(p0, p1);
                p[mt][nt][1] = pack_half2(p2, p3);
            }
            l[mt][0] = l[mt][0] * corr0 + rs0;
            l[mt][1] = l[mt][1] * corr1 + rs1;
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt) {
                o[mt][dt][0] *= corr0;
                o[mt][dt][1] *= corr0;
                o[mt][dt][2] *= corr1;
                o[mt][dt][3] *= corr1;
            }
        }
        // O += P V: the C fragments of two key n-tiles are one A fragment; each V fragment
        // feeds MT m-tiles.
#pragma unroll
        for (int kc = 0; kc < BN / 16; ++kc) {
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t b[4];
                ldmatrix_x4_trans(b, cV + kc * 16 * S + dp * 16 + v_lane_off);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    const uint32_t a[4] = {p[mt][2 * kc][0], p[mt][2 * kc][1],
                                           p[mt][2 * kc + 1][0], p[mt][2 * kc + 1][1]};
                    mma_16816(o[mt][2 * dp], a, b[0], b[1]);
                    mma_16816(o[mt][2 * dp + 1], a, b[2], b[3]);
                }
            }
        }
    }

    // Epilogue: finish the row sums across the quad, normalise, stage through this warp's own
    // WR rows of sQ (only this warp ever read them), then 16-byte coalesced stores.
    __half* sO = sQ + warp * WR * S;
    {
        const int g = lane >> 2, t = lane & 3;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            float l0 = l[mt][0], l1 = l[mt][1];
            l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
            l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
            l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
            l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
            const float inv0 = 1.f / l0, inv1 = 1.f / l1;
            __half* r0 = sO + (mt * 16 + g) * S + 2 * t;
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt) {
                *reinterpret_cast<uint32_t*>(r0 + dt * 8) =
                    pack_half2(o[mt][dt][0] * inv0, o[mt][dt][1] * inv0);
                *reinterpret_cast<uint32_t*>(r0 + 8 * S + dt * 8) =
                    pack_half2(o[mt][dt][2] * inv1, o[mt][dt][3] * inv1);
            }
        }
    }
    __syncwarp();
    const int tok0 = s_range[0], nq = s_range[1];  // written before the prologue barrier
    const int64_t ldo = (int64_t)heads * D;
    __half* gO = out + (int64_t)tok0 * ldo + (int64_t)blockIdx.y * D;
#pragma unroll
    for (int i = 0; i < WR * CPR / 32; ++i) {
        const int c = lane + i * 32;
        const int r = c / CPR, cc = c % CPR;
        const int q = blockIdx.x * BM + warp * WR + r;
        if (q < nq)
            *reinterpret_cast<uint4*>(gO + (int64_t)q * ldo + cc * 8) =
                *reinterpret_cast<const uint4*>(sO + r * S + cc * 8);
    }
}

// ---------------------------------------------------------------------------------------------
// FP32 kernel: plain FMA, exact expf, 32 queries x 32 keys per step, 4 warps x 8 query rows.
// ---------------------------------------------------------------------------------------------
template <int D>
struct Fp32Cfg {
    static constexpr int kBM = 32, kBN = 32, kThreads = 128, kRows = 8;  // rows per warp
    static constexpr int kKStride = D + 1;                                 // conflict-free K reads
    static constexpr int kSmemBytes = (kBM * D + kBN * kKStride + kBN * D) * 4;
};

template <int D>
__global__ void __launch_bounds__(128, 1)
    attention_fp32_kernel(const float* __restrict__ qkv, float* __restrict__ out,
                          const int32_t* __restrict__ seqlens,
                          const int32_t* __restrict__ cu_seqlens, int heads, int seq, float scale) {
    using Cfg = Fp32Cfg<D>;
    constexpr int BM = Cfg::kBM, BN = Cfg::kBN, R = Cfg::kRows, KS = Cfg::kKStride;
    constexpr int C4 = D / 4;  // float4 per row
    extern __shared__ float4 smem_f4[];
    float* sQ = reinterpret_cast<float*>(smem_f4);  // [BM][D]
    float* sV = sQ + BM * D;                        // [BN][D]
    float* sK = sV + BN * D;                        // [BN][D+1]

    const SeqInfo si = seq_info(seqlens, cu_seqlens, blockIdx.z, seq);
    const int q0 = blockIdx.x * BM;
    if (q0 >= si.nq) return;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    __shared__ int s_range[2];  // token range for the epilogue (keeps it out of registers)
    if (tid == 0) {
        s_range[0] = si.tok0;
        s_range[1] = si.nq;
    }
    const int64_t ld = 3LL * heads * D;
    const float* gQ = qkv + (int64_t)si.tok0 * ld + (int64_t)blockIdx.y * D;
    const float* gK = gQ + (int64_t)heads * D;
    const float* gV = gQ + 2LL * heads * D;
    const int nk = si.nk;

    for (int c = tid; c < BM * C4; c += Cfg::kThreads) {
        const int r = c / C4, cc = c % C4;
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (q0 + r < si.nq) v = *reinterpret_cast<const float4*>(gQ + (int64_t)(q0 + r) * ld + cc * 4);
        reinterpret_cast<float4*>(sQ)[c] = v;
    }

    float o[R][D / 32], m[R], l[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        m[r] = -INFINITY;
        l[r] = 0.f;
#pragma unroll
        for (int c = 0; c < D / 32; ++c) o[r][c] = 0.f;
    }
    const float* myQ = sQ + warp * R * D;

    for (int k0 = 0; k0 < nk; k0 += BN) {
        __syncthreads();  // previous block fully consumed (and sQ written, first time)
        for (int c = tid; c < BN * C4; c += Cfg::kThreads) {
            const int r = c / C4, cc = c % C4;
            float4 kv = make_float4(0.f, 0.f, 0.f, 0.f), vv = kv;
            if (k0 + r < nk) {
                const int64_t off = (int64_t)(k0 + r) * ld + cc * 4;
                kv = *reinterpret_cast<const float4*>(gK + off);
                vv = *reinterpret_cast<const float4*>(gV + off);
            }
            float* dk = sK + r * KS + cc * 4;
            dk[0] = kv.x; dk[1] = kv.y; dk[2] = kv.z; dk[3] = kv.w;
            reinterpret_cast<float4*>(sV)[c] = vv;
        }
        __syncthreads();

        // Lane = key k0 + lane; scores of this warp's R rows.
        float s[R];
#pragma unroll
        for (int r = 0; r < R; ++r) s[r] = 0.f;
        const float* myK = sK + lane * KS;
#pragma unroll 8
        for (int d = 0; d < D; ++d) {
            const float kd = myK[d];
#pragma unroll
            for (int r = 0; r < R; ++r) s[r] = fmaf(myQ[r * D + d], kd, s[r]);
        }
        const bool valid = k0 + lane < nk;
        float p[R];
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const float x = valid ? s[r] * scale : -INFINITY;
            float bm = x;
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) bm = fmaxf(bm, __shfl_xor_sync(0xffffffffu, bm, off));
            const float mn = fmaxf(m[r], bm);  // finite: key k0 is always valid
            const float corr = expf(m[r] - mn);
            m[r] = mn;
            p[r] = expf(x - mn);
            l[r] = l[r] * corr + p[r];
#pragma unroll
            for (int c = 0; c < D / 32; ++c) o[r][c] *= corr;
        }
        const int kmax = min(BN, nk - k0);
        for (int jj = 0; jj < kmax; ++jj) {
            float v[D / 32];
#pragma unroll
            for (int c = 0; c < D / 32; ++c) v[c] = sV[jj * D + c * 32 + lane];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const float pj = __shfl_sync(0xffffffffu, p[r], jj);
#pragma unroll
                for (int c = 0; c < D / 32; ++c) o[r][c] = fmaf(pj, v[c], o[r][c]);
            }
        }
    }

    const int tok0 = s_range[0], nq = s_range[1];  // written before the first barrier
    const int64_t ldo = (int64_t)heads * D;
    float* gO = out + (int64_t)tok0 * ldo + (int64_t)blockIdx.y * D;
#pragma unroll
    for (int r = 0; r < R; ++r) {
        float sum = l[r];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
        const int q = blockIdx.x * BM + warp * R + r;
        if (q < nq) {
            const float inv = 1.f / sum;
#pragma unroll
            for (int c = 0; c < D / 32; ++c) gO[(int64_t)q * ldo + c * 32 + lane] = o[r][c] * inv;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Launch
// ---------------------------------------------------------------------------------------------
// Raise a kernel's dynamic shared-memory limit once per (kernel, device) (cudaFuncSetAttribute
// is a host-side setting, legal while a stream is being captured).
void ensure_smem(const void* kernel, int bytes) {
    if (bytes <= 48 * 1024) return;
    static std::mutex mu;
    static std::set<std::pair<int, const void*>> done;
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) throw std::runtime_error("attention: cudaGetDevice failed");
    std::lock_guard<std::mutex> lock(mu);
    if (done.count({dev, kernel})) return;
    const cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (e != cudaSuccess)
        throw std::runtime_error(std::string("attention: cannot raise shared memory to ") +
                                 std::to_string(bytes) + " B: " + cudaGetErrorString(e));
    done.insert({dev, kernel});
}

int sm_count() {
    static std::mutex mu;
    static std::map<int, int> cache;
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) throw std::runtime_error("attention: cudaGetDevice failed");
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(dev);
    if (it != cache.end()) return it->second;
    int n = 0;
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n < 1)
        throw std::runtime_error("attention: cannot read the multiprocessor count");
    cache[dev] = n;
    return n;
}

int g_mtile_override = 0;  // benchmarks only: 1 or 2 forces the m-tiles per warp; 0 = heuristic

// m-tiles per warp for the fp16 kernel: 1 (64-row CTAs) or 2 (128-row CTAs, ~15% faster per row on
// the H100: each K/V fragment feeds two m-tiles). The choice is the shape whose busiest SM carries
// fewer rows, 128-row CTAs counted 15% cheaper:
//   rows(R) = ceil(ctas_R / SMs) * R,   ctas_R = batch * heads * ceil(seq / R),
//   2 m-tiles when rows(128) <= 1.15 * rows(64).
// It captures both effects the sweep shows (ATTENTION_NOTES.md v9, `attention_check 0 --no-check
// --dispatch`, three variants timed on every shape): small grids want 64-row CTAs (twice the CTAs
// over the SMs: BERT-large B1 S384, 96 CTAs of 64 rows, 6.7-7.2 us against 8.7-8.8), and a
// sequence of 64 mod 128 rows wastes half of its last 128-row tile (S 192: 64-row CTAs win at every
// batch, BERT-large B128 101-107 us against 129-139). It picks the faster mma.sync shape in 87 of
// the sweep's 96 padded shapes and is within 1.04x on the others; the grid-size switch it replaces
// (128 rows from 2 x SMs CTAs of 128) missed BERT-large B8 S256 by 1.31x, BERT-base B128 S192 by
// 1.28x and BERT-large B16 S128 by 1.18x. fp32 and D = 128 always 1 (registers). Packed batches
// count the grid's CTAs (seq = the longest sequence), an upper bound, as the kernel rule below does.
int pick_mtiles(const AttentionParams& p) {
    if (p.dtype != DType::kFloat16 || p.head_size > 64) return 1;
    if (g_mtile_override == 1 || g_mtile_override == 2) return g_mtile_override;
    const int64_t sms = sm_count(), seqs = (int64_t)p.batch * p.heads;
    const int64_t ctas64 = seqs * ((p.seq + 63) / 64), ctas128 = seqs * ((p.seq + 127) / 128);
    const int64_t rows64 = (ctas64 + sms - 1) / sms * 64, rows128 = (ctas128 + sms - 1) / sms * 128;
    return 100 * rows128 <= 115 * rows64 ? 2 : 1;
}

template <typename T, int D, int MT>
void launch(const AttentionParams& p, cudaStream_t stream) {
    if constexpr (std::is_same<T, __half>::value) {
        using Cfg = Fp16Cfg<D, MT>;
        auto kernel = attention_fp16_kernel<D, MT>;
        ensure_smem(reinterpret_cast<const void*>(kernel), Cfg::kSmemBytes);
        const dim3 grid((p.seq + Cfg::kBM - 1) / Cfg::kBM, p.heads, p.batch);
        const float scale_log2 = p.scale * 1.4426950408889634f;
        kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(
            static_cast<const __half*>(p.qkv), static_cast<__half*>(p.out), p.seqlens,
            p.cu_seqlens, p.heads, p.seq, scale_log2);
    } else {
        using Cfg = Fp32Cfg<D>;
        auto kernel = attention_fp32_kernel<D>;
        ensure_smem(reinterpret_cast<const void*>(kernel), Cfg::kSmemBytes);
        const dim3 grid((p.seq + Cfg::kBM - 1) / Cfg::kBM, p.heads, p.batch);
        kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(
            static_cast<const float*>(p.qkv), static_cast<float*>(p.out), p.seqlens,
            p.cu_seqlens, p.heads, p.seq, p.scale);
    }
}

void check_params(const AttentionParams& p) {
    auto bad = [](const std::string& what) { throw std::invalid_argument("attention: " + what); };
    if (p.dtype != DType::kFloat16 && p.dtype != DType::kFloat32) bad("dtype must be fp32 or fp16");
    if (p.head_size != 32 && p.head_size != 64 && p.head_size != 128)
        bad("head_size must be 32, 64 or 128, got " + std::to_string(p.head_size));
    if (p.qkv == nullptr || p.out == nullptr) bad("qkv and out must be non-null");
    if (p.batch < 1 || p.batch > 65535) bad("batch must be in [1, 65535], got " + std::to_string(p.batch));
    if (p.heads < 1 || p.heads > 65535) bad("heads must be in [1, 65535], got " + std::to_string(p.heads));
    if (p.seq < 1) bad("seq must be >= 1, got " + std::to_string(p.seq));
    if (p.cu_seqlens == nullptr && p.seqlens == nullptr)
        bad("padded mode (cu_seqlens == nullptr) needs seqlens");
    if (!(p.scale > 0.f) || !(p.scale < INFINITY)) bad("scale must be finite and > 0");
    if ((reinterpret_cast<uintptr_t>(p.qkv) | reinterpret_cast<uintptr_t>(p.out)) % 16 != 0)
        bad("qkv and out must be 16-byte aligned");
    const int64_t elem = p.dtype == DType::kFloat16 ? 2 : 4;
    if (p.cu_seqlens == nullptr) {
        // Padded: tokens = batch*seq, known here, so overlap between qkv and out is checkable.
        const int64_t tokens = (int64_t)p.batch * p.seq;
        if (tokens > INT32_MAX) bad("batch * seq must fit in int32");
        const char* q = static_cast<const char*>(p.qkv);
        const char* o = static_cast<const char*>(p.out);
        const int64_t qb = tokens * 3 * p.heads * p.head_size * elem;
        const int64_t ob = tokens * p.heads * p.head_size * elem;
        if (q < o + ob && o < q + qb) bad("out must not overlap qkv");
    } else if (p.out == p.qkv) {
        bad("out must not overlap qkv");
    }
}

// ---------------------------------------------------------------------------------------------
// Kernel choice: mma.sync (above) or the Hopper wgmma + TMA kernel (attention_hopper.cu)
// ---------------------------------------------------------------------------------------------
using attention_detail::Kernel;
Kernel g_kernel_override = Kernel::kAuto;  // benchmarks and tests only

// BERTQA_ATTENTION_KERNEL, read once: auto (or unset / empty), mma, wgmma.
Kernel env_kernel() {
    static const std::string raw = [] {
        const char* v = std::getenv("BERTQA_ATTENTION_KERNEL");
        return std::string(v ? v : "");
    }();
    if (raw.empty() || raw == "auto") return Kernel::kAuto;
    if (raw == "mma") return Kernel::kMma;
    if (raw == "wgmma") return Kernel::kWgmma;
    throw std::invalid_argument("attention: BERTQA_ATTENTION_KERNEL must be auto, mma or wgmma, got '" + raw + "'");
}

// The measured rule (ATTENTION_NOTES.md, v8: both kernels timed in CUDA graphs on the H100 at
// BERT-large / BERT-base shapes, `attention_check 0 --no-check --dispatch`). The wgmma kernel has
// 128-row CTAs only and a longer prologue (Q and the first K/V block through TMA before the first
// product), so it pays off once the sequences are long and its CTAs fill the GPU:
//   seq <= 128          never (0.68-0.96x at S 128, B 1..128);
//   seq >= 320          from 1.75 x SMs CTAs of 128 rows (1.02-1.49x there, except BERT-large
//                       B 8 S 320 0.96x and BERT-base B 8 S 384 1.00x; below it B 1 0.75-0.81x,
//                       B 2-4 0.74-1.06x);
//   129 <= seq < 320    from 6 x SMs CTAs (S 192/256: 1.00-1.14x there, 0.94-1.06x below).
// Packed batches count the grid's CTAs (batch * heads * ceil(seq / 128), seq = the longest
// sequence), an upper bound on those that work: SQuAD-like batches of 256 and 1024 windows of
// 100-384 tokens ran 1.09-1.17x.
bool wgmma_by_rule(const AttentionParams& p) {
    if (p.seq <= 128) return false;
    const int64_t ctas128 = (int64_t)p.batch * p.heads * ((p.seq + 127) / 128);
    if (p.seq >= 320) return 4 * ctas128 >= 7LL * sm_count();
    return ctas128 >= 6LL * sm_count();
}

Kernel pick_kernel(const AttentionParams& p) {
    const Kernel env = env_kernel();  // first: a bad value throws whatever the launch
    if (p.dtype != DType::kFloat16 || p.head_size != 64) return Kernel::kMma;
    if ((int64_t)p.batch * p.seq > INT32_MAX) return Kernel::kMma;  // the tensor map's rows are int32
    const Kernel k = g_kernel_override != Kernel::kAuto ? g_kernel_override : env;
    if (k == Kernel::kMma) return k;
    if (!attention_detail::hopper_kernel_available()) return Kernel::kMma;
    if (k == Kernel::kWgmma) return k;
    return wgmma_by_rule(p) ? Kernel::kWgmma : Kernel::kMma;
}

}  // namespace

namespace attention_detail {
void set_mtile_override(int mtiles) { g_mtile_override = mtiles; }
void set_kernel_override(Kernel k) { g_kernel_override = k; }
Kernel selected_kernel(const AttentionParams& p) { return pick_kernel(p); }
int selected_mtiles(const AttentionParams& p) { return pick_mtiles(p); }
}  // namespace attention_detail

void attention(const AttentionParams& p, cudaStream_t stream) {
    check_params(p);
    if (pick_kernel(p) == Kernel::kWgmma) {
        attention_detail::launch_hopper(p, stream);
    } else {
        const int mtiles = pick_mtiles(p);
        BERTQA_DTYPE_SWITCH(p.dtype, T, [&] {
            BERTQA_HEADDIM_SWITCH(p.head_size, kD, [&] {
                BERTQA_MTILE_SWITCH(T, kD, mtiles, kMT, [&] { launch<T, kD, kMT>(p, stream); });
            });
        });
    }
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        throw std::runtime_error(std::string("attention: launch failed: ") + cudaGetErrorString(e));
}

}  // namespace bertqa
