// Plugin kernel launches with programmatic dependent launch (PDL, sm_90 and later).
//
// In the engine every plugin kernel follows a cuBLASLt GEMM on the same stream. A normal launch
// starts the plugin's blocks only after the GEMM has completed and the launch has been processed;
// launch_dependent() sets cudaLaunchAttributeProgrammaticStreamSerialization, so the plugin's
// launch is processed (and its blocks scheduled) while the GEMM drains, inside CUDA graphs too.
// Correctness rests on one rule: every kernel launched this way calls grid_dependency_wait()
// before it reads or writes any activation; the wait returns once the previous kernel has
// completed and its writes are visible. (Nothing here triggers early completion, so a kernel that
// follows a plugin kernel is launched as usual.)
//
// Opt-in until measured on the H100 (infer_c/NOTES.md, "Pending A/B"): PDL is used when the
// environment sets BERTQA_PDL=1, on GPUs of compute capability 9.0 and later; otherwise the launch
// is a plain one, and the wait, which returns at once in a kernel launched without the attribute,
// compiles to nothing below sm_90 (griddepcontrol needs sm_90).
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

namespace bertqa {
namespace detail {

__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Whether launches on the current device use PDL (cached per device; false when it cannot tell).
inline bool pdl_enabled() {
    static std::mutex mu;
    static std::map<int, bool> cache;
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(dev);
    if (it != cache.end()) return it->second;
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
        cudaGetLastError();
        major = 0;
    }
    const char* env = std::getenv("BERTQA_PDL");
    const bool on = major >= 9 && env != nullptr && std::strcmp(env, "1") == 0;
    cache[dev] = on;
    return on;
}

// kernel<<<grid, block, smem, stream>>>(args...) with the PDL attribute where pdl_enabled().
// Errors are left for the caller's cudaGetLastError() check, as with <<<>>>.
template <typename... Params, typename... Args>
void launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                      Args&&... args) {
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = pdl_enabled() ? 1 : 0;
    (void)cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace detail
}  // namespace bertqa
