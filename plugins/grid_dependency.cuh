// Programmatic dependent launch, the plugins' side (sm_90 and later).
//
// In the engine's CUDA graphs the edge from a plugin kernel to the cuBLASLt GEMM after it is a
// programmatic one (infer_c/bert_runtime.cpp): the GEMM's CTAs may be scheduled, and run their
// prologue (shared-memory carve-out, barrier set-up, descriptor fetches), once every CTA of the
// plugin kernel has called allow_dependent_launch(); cuBLASLt's Hopper kernels then wait in
// griddepcontrol.wait until the plugin kernel has completed and its writes are visible before
// they read their inputs. Calling it first thing is therefore safe: it only lets the next grid be
// scheduled early, it publishes nothing. Below sm_90, and for a kernel with no programmatic
// dependent, it does nothing.
#pragma once

namespace bertqa {
namespace detail {

__device__ __forceinline__ void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

}  // namespace detail
}  // namespace bertqa
