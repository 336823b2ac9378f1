// probe_common.cuh: what the probes and checks under bench/ (pdl_gemm_probe.cu,
// gemm_layernorm_probe.cu, attention_check.cu, cutlass_gemm_probe.cu) share: fresh random fp16 / fp32
// inputs, PDL launches and the PDL hazard writer, the timing of a captured chain of kernels, and the
// comparison of two chains' results.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "cuda_check.h"

namespace probe {

// ptr[i] = offset + scale * u, u uniform in [-1, 1) from a hash of (i, seed): fresh values, never zeros.
template <typename T>  // __half or float
__global__ void fill_kernel(T* ptr, size_t count, uint64_t seed, float scale, float offset) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x) {
        uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        ptr[i] = T(offset + scale * (float(z >> 40) * (2.0f / 16777216.0f) - 1.0f));
    }
}
template <typename T>
inline void fill(T* ptr, size_t count, uint64_t seed, float scale, float offset = 0.f) {
    fill_kernel<<<1024, 256>>>(ptr, count, seed, scale, offset);
    CUDA_CHECK(cudaGetLastError());
}

// Programmatic dependent launch (PDL) from inside a kernel: wait until the kernel in front has
// finished and its writes are visible / let the kernel behind launch early.
// (Hopper and later; no-ops where a check is also built for older GPUs, which have no PDL.)
__device__ __forceinline__ void grid_dependency_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void allow_dependents() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// A launch with or without programmatic stream serialisation (PDL) on stream st.
template <typename K, typename... Args>
void launch_plain_or_pdl(bool pdl, K kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t st, Args... args) {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, args...));
}

// The PDL hazard checks' writer (one CTA): lets its dependents launch at once, spins ~delay_ns,
// then writes x = src; a dependent that read x before its griddepcontrol.wait sees the old x.
__global__ void slow_writer_kernel(const __half* src, __half* x, int count, long long delay_ns) {
    allow_dependents();
    const long long t0 = clock64();
    while (clock64() - t0 < 2 * delay_ns) {  // clock64 counts SM cycles: ~2 per ns at the H100's clocks
    }
    for (int i = threadIdx.x; i < count; i += blockDim.x) x[i] = src[i];
}

// Captures enqueue(st) once as a CUDA graph, replays it 23 times and returns the median of the last
// 20 replays in microseconds, divided by `per` (e.g. the chain's links).
inline float graph_median_us(const std::function<void(cudaStream_t)>& enqueue, cudaStream_t st, int per) {
    cudaGraph_t g;
    CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    enqueue(st);
    CUDA_CHECK(cudaStreamEndCapture(st, &g));
    cudaGraphExec_t ge;
    CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    std::vector<float> ms;
    for (int r = 0; r < 23; ++r) {
        CUDA_CHECK(cudaEventRecord(e0, st));
        CUDA_CHECK(cudaGraphLaunch(ge, st));
        CUDA_CHECK(cudaEventRecord(e1, st));
        CUDA_CHECK(cudaStreamSynchronize(st));
        float t;
        CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
        if (r >= 3) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    return ms[ms.size() / 2] * 1000.f / float(per);
}

// Relative L2 difference of two fp16 results (a against the reference b); infinite when a is not
// finite or b has collapsed towards zero (the comparison would say nothing then).
inline double rel_diff(const std::vector<__half>& a, const std::vector<__half>& b) {
    double d2 = 0, r2 = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        const double x = __half2float(a[i]), y = __half2float(b[i]);
        if (!std::isfinite(x)) return INFINITY;
        d2 += (x - y) * (x - y);
        r2 += y * y;
    }
    if (r2 < 1e-6 * double(a.size())) return INFINITY;
    return std::sqrt(d2 / r2);
}

}  // namespace probe
