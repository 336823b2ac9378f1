// The runtime's own small kernels (the model's fused kernels live in plugins/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

namespace bertqa {

// p[i] = uniform in [-scale, scale) from a hash of (seed, i); fp16 when half, else fp32.
// For GEMM timing: never on zeros.
void fill_random(void* p, size_t count, bool half, uint64_t seed, float scale, cudaStream_t stream);

// out[t, 0:2] = float(y[t, 0:2]) for t < tokens, y [tokens, ld] (ld >= 2) in fp16 or fp32.
void extract_logits(const void* y, int ld, bool half, float* out, int tokens, cudaStream_t stream);

}  // namespace bertqa
