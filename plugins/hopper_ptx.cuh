// hopper_ptx.cuh: the sm_90a building blocks (one home): mbarriers, TMA 2-D tile loads with the
// 128-byte swizzle, wgmma shared-memory descriptors and the m64n64k16 fp16 products, and the
// host-side tensor-map encoder. Used by the plugin attention_hopper.cu (compiled for sm_90a only,
// plugins/CMakeLists.txt) and by the Hopper probes in bench/ (pdl_gemm_probe.cu,
// gemm_layernorm_probe.cu; built by hand with -Iplugins).
// Include it only from code compiled for sm_90a (-gencode arch=compute_90a,code=sm_90a): the
// wgmma instructions exist nowhere else. Host-side errors throw std::runtime_error (plugin rules).
#pragma once

#include <cuda.h>           // CUtensorMap and its enums (types only: the encoder comes from the driver)
#include <cudaTypedefs.h>   // PFN_cuTensorMapEncodeTiled
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "mma_ptx.cuh"

namespace hopper {

using mma_ptx::smem_u32;

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count));
}
// Makes the initialised mbarriers visible to the copy engine (before the first TMA load).
__device__ __forceinline__ void fence_mbarrier_init() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
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
// Thread 0 initialises a pipeline's stage barriers (full[s]: one arrival, the producer's
// expect_tx; empty[s]: empty_arrivals consumer warps) and makes them visible to the copy engine.
// The caller synchronises the CTA before the first use.
__device__ __forceinline__ void init_stage_barriers(uint64_t* full, uint64_t* empty, int stages, uint32_t empty_arrivals) {
    if (threadIdx.x != 0) return;
    for (int s = 0; s < stages; ++s) {
        mbar_init(&full[s], 1);
        mbar_init(&empty[s], empty_arrivals);
    }
    fence_mbarrier_init();
}
// 2-D tile (inner coordinate c0 along the row, outer c1 across rows) into shared memory; completes on bar.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int c0, int c1, uint64_t* bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(
            smem_u32(dst)),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(smem_u32(bar))
        : "memory");
}
__device__ __forceinline__ void prefetch_tensormap(const CUtensorMap* map) {
    asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// wgmma shared-memory descriptor, 128-byte swizzle. K-major tiles of 128-byte rows: leading offset
// unused (16), 8-row core matrices 1024 bytes apart; stepping K by 16 fp16 adds 32 bytes to p. The
// transposed (MN-major) 64 x 64 tile of attention's V takes the same offsets (measured by
// the attention probe against a float64 reference, ATTENTION_NOTES.md v7), stepping K by 16 rows: 2048 bytes.
__device__ __forceinline__ uint64_t smem_desc(const void* p, uint32_t lbo = 16, uint32_t sbo = 1024) {
    const uint64_t addr = smem_u32(p);
    return ((addr & 0x3FFFF) >> 4) | (uint64_t((lbo >> 4) & 0x3FFF) << 16) | (uint64_t((sbo >> 4) & 0x3FFF) << 32) |
           (uint64_t(1) << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory"); }
// Keeps the compiler from moving accesses of d across the asm statements around it.
__device__ __forceinline__ void fence_regs(float (&d)[32]) {
#pragma unroll
    for (int i = 0; i < 32; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

#define HOPPER_ACC32                                                                                              \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),     \
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),      \
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),     \
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define HOPPER_D32                                                                                  \
    "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25," \
    "%26,%27,%28,%29,%30,%31"

// D (+)= A B on a warpgroup, m64n64k16, fp16 in, fp32 accumulators; A and B from shared memory
// (A K-major; B K-major, or MN-major with kTransB). scale_d 0: D = A B (no zeroing needed).
template <int kTransB = 0>
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[32], uint64_t a, uint64_t b, int scale_d) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {" HOPPER_D32 "}, %32, %33, p, 1, 1, 0, %35;\n}\n"
                 : HOPPER_ACC32
                 : "l"(a), "l"(b), "r"(scale_d), "n"(kTransB));
}
// The same with A from registers (four fp16x2 per thread, the m16n8k16 A layout per warp) and B
// transposed (MN-major).
__device__ __forceinline__ void wgmma_m64n64k16_rs_tb(float (&d)[32], const uint32_t (&a)[4], uint64_t b, int scale_d) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {" HOPPER_D32
                 "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
                 : HOPPER_ACC32
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale_d));
}

// The driver's tensor-map encoder, fetched once through the runtime (no link to libcuda).
// Throws std::runtime_error when the driver has none.
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
    static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void* p = nullptr;
        cudaDriverEntryPointQueryResult r{};
#if CUDART_VERSION >= 12050
        const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &r);
#else
        const cudaError_t e = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &p, cudaEnableDefault, &r);
#endif
        if (e != cudaSuccess || r != cudaDriverEntryPointSuccess || p == nullptr) {
            (void)cudaGetLastError();  // not sticky: leave no error behind for the caller's launch check
            throw std::runtime_error(std::string("the CUDA driver has no cuTensorMapEncodeTiled (") +
                                     (e != cudaSuccess ? cudaGetErrorString(e) : "symbol not found") +
                                     "): TMA needs a CUDA 12 driver");
        }
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
    }();
    return fn;
}

// Row-major fp16 [rows, cols] (row stride cols, 16-byte aligned base) as boxes of box_rows x 64
// with the 128-byte swizzle; boxes running past the last row (or starting before row 0) are
// zero-filled. Throws std::runtime_error when the driver rejects the description.
inline CUtensorMap tile_map(const void* base, int64_t rows, int64_t cols, int box_rows) {
    CUtensorMap map{};
    const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
    const cuuint64_t strides[1] = {cuuint64_t(cols) * 2};
    const cuuint32_t box[2] = {64, cuuint32_t(box_rows)};
    const cuuint32_t elem[2] = {1, 1};
    const CUresult r = tensor_map_encoder()(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, const_cast<void*>(base), dims,
                                            strides, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        throw std::runtime_error("cuTensorMapEncodeTiled failed (CUresult " + std::to_string(int(r)) + ") for an fp16 [" +
                                 std::to_string(rows) + ", " + std::to_string(cols) + "] tensor, box " +
                                 std::to_string(box_rows) + " x 64");
    return map;
}

}  // namespace hopper
