// The runtime's own small kernels (the model's fused kernels live in plugins/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

namespace bertqa {

// p[i] = uniform in [-scale, scale) from a hash of (seed, i); fp16 when half, else fp32.
// For GEMM timing: never on zeros.
void fill_random(void* p, size_t count, bool half, uint64_t seed, float scale, cudaStream_t stream);

// fill_random after a delay, for testing programmatic dependent launch. Every CTA first executes
// griddepcontrol.launch_dependents (sm_90+), then spins for delay_ns, then sets *changed to 1 if
// any byte of watch (watch_bytes) is not 0xFF, then writes p. A kernel that follows through a
// programmatic edge and reads p before waiting for this grid sees the old data; one that writes
// watch before this grid has finished shows in *changed. The grid is one block, so that the
// dependent kernel finds free SMs to start early on.
void delayed_fill_random(void* p, size_t count, bool half, uint64_t seed, float scale, unsigned delay_ns,
                         const void* watch, size_t watch_bytes, unsigned* changed, cudaStream_t stream);

// out[t, 0:2] = float(y[t, 0:2]) for t < tokens, y [tokens, ld] (ld >= 2) in fp16 or fp32.
void extract_logits(const void* y, int ld, bool half, float* out, int tokens, cudaStream_t stream);

}  // namespace bertqa
