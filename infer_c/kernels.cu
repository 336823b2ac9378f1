#include "kernels.h"

#include <cuda_fp16.h>

#include <stdexcept>
#include <string>

namespace bertqa {
namespace {

__device__ __forceinline__ uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

template <typename T>
__global__ void fill_random_kernel(T* p, size_t count, uint64_t seed, float scale) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x) {
        const uint64_t h = mix64(seed * 0x9E3779B97F4A7C15ULL + i);
        const float u = float(h >> 40) * (1.0f / 16777216.0f);  // [0, 1)
        p[i] = T((2.0f * u - 1.0f) * scale);
    }
}

template <typename T>
__global__ void extract_logits_kernel(const T* __restrict__ y, int ld, float* __restrict__ out, int tokens) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;  // one (token, column) pair
    if (i < 2 * tokens) out[i] = float(y[size_t(i >> 1) * ld + (i & 1)]);
}

void check_launch(const char* what) {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": launch failed: " + cudaGetErrorString(e));
}

}  // namespace

void fill_random(void* p, size_t count, bool half, uint64_t seed, float scale, cudaStream_t stream) {
    if (count == 0) return;
    const int threads = 256;
    const size_t want = (count + threads - 1) / threads;
    const int blocks = int(want < 4096 ? want : 4096);
    if (half)
        fill_random_kernel<__half><<<blocks, threads, 0, stream>>>(static_cast<__half*>(p), count, seed, scale);
    else
        fill_random_kernel<float><<<blocks, threads, 0, stream>>>(static_cast<float*>(p), count, seed, scale);
    check_launch("fill_random");
}

void extract_logits(const void* y, int ld, bool half, float* out, int tokens, cudaStream_t stream) {
    if (ld < 2) throw std::invalid_argument("extract_logits: ld must be >= 2");
    if (tokens <= 0) return;
    const int threads = 256;
    const int blocks = int((2 * int64_t(tokens) + threads - 1) / threads);
    if (half)
        extract_logits_kernel<__half><<<blocks, threads, 0, stream>>>(static_cast<const __half*>(y), ld, out, tokens);
    else
        extract_logits_kernel<float><<<blocks, threads, 0, stream>>>(static_cast<const float*>(y), ld, out, tokens);
    check_launch("extract_logits");
}

}  // namespace bertqa
