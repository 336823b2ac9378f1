// persistent_phase_probe: what a phase boundary costs inside one persistent kernel, against a
// kernel boundary inside a CUDA graph, on this GPU. The question behind it (infer_c/NOTES.md,
// "Left to do"): at batch 1 every op is a short kernel whose fixed start-up and drain dominate;
// a persistent whole-layer kernel replaces each kernel boundary by a grid-wide barrier (or by
// per-producer flags), and only pays if that is clearly cheaper.
//
// The work of one phase, identical in every variant: CTA c reads the `words` 16-byte words that
// CTA (c + 1) % grid wrote in the previous phase (from L2: written by another SM), adds its own
// previous words and writes the result. Reference: the same recurrence on the host.
//
// Variants (each over `phases` phases, timed with CUDA events, median of 21 runs after warm-up):
//   graph    one kernel launch per phase, all captured in one CUDA graph (what the runtime does)
//   barrier  one persistent kernel (one CTA per SM), a grid barrier between phases: one counter,
//            red.release.gpu by each CTA, ld.acquire.gpu spin by thread 0
//   flags    one persistent kernel, each CTA waits only for the two CTAs it shares words with
//            (a per-CTA phase flag, st.release / ld.acquire): the dataflow form
//   *-relaxed-poll  the same, polling with ld.relaxed and one fence.acq_rel.gpu after the wait
// Build and run (on the GPU machine):
//   nvcc -O3 -std=c++17 -arch=sm_90 plugins/bench/persistent_phase_probe.cu -o /tmp/phase_probe
//   /tmp/phase_probe [phases=84] [words=256]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CK(x)                                                                                     \
    do {                                                                                          \
        cudaError_t e_ = (x);                                                                     \
        if (e_ != cudaSuccess) {                                                                  \
            std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            std::exit(1);                                                                         \
        }                                                                                         \
    } while (0)

constexpr int kThreads = 256;

// One phase of work for CTA c: dst[c] = src[c] + src[(c + 1) % grid] (uint4 lanes, wrapping adds).
__device__ __forceinline__ void phase_work(const uint4* src, uint4* dst, int words, int grid) {
    const int c = blockIdx.x, nb = (c + 1) % grid;
    for (int i = threadIdx.x; i < words; i += blockDim.x) {
        const uint4 a = __ldcg(src + size_t(c) * words + i), b = __ldcg(src + size_t(nb) * words + i);
        __stcg(dst + size_t(c) * words + i, make_uint4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w));
    }
}

__global__ void step_kernel(const uint4* src, uint4* dst, int words) { phase_work(src, dst, words, gridDim.x); }

__device__ __forceinline__ void red_release_add(unsigned* p, unsigned v) {
    asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ void st_release(unsigned* p, unsigned v) {
    asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ unsigned ld_acquire(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ unsigned ld_relaxed(const unsigned* p) {
    unsigned v;
    asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
// Poll with relaxed loads (no ordering cost per poll), then one acquire fence.
template <bool kRelaxed>
__device__ __forceinline__ void wait_at_least(const unsigned* p, unsigned v) {
    if constexpr (kRelaxed) {
        while (ld_relaxed(p) < v) {
        }
        asm volatile("fence.acq_rel.gpu;" ::: "memory");
    } else {
        while (ld_acquire(p) < v) {
        }
    }
}

// mode 0: grid barrier on one counter; mode 1: per-producer flags. `sync` is zeroed before launch.
template <bool kRelaxed>
__global__ void persistent_kernel(uint4* a, uint4* b, int words, int phases, unsigned* sync, int mode) {
    const int grid = gridDim.x, c = blockIdx.x;
    for (int p = 0; p < phases; ++p) {
        const uint4* src = (p & 1) ? b : a;
        uint4* dst = (p & 1) ? a : b;
        if (p > 0) {
            if (threadIdx.x == 0) {
                if (mode == 0) {
                    wait_at_least<kRelaxed>(sync, unsigned(p) * unsigned(grid));
                } else {
                    // Phase p reads what c + 1 wrote in phase p - 1, and overwrites the words that c - 1
                    // read in phase p - 1: wait for both neighbours to finish phase p - 1.
                    const unsigned* f1 = sync + 32 * ((c + 1) % grid);  // one 128-byte line per flag
                    const unsigned* f0 = sync + 32 * ((c + grid - 1) % grid);
                    wait_at_least<kRelaxed>(f1, unsigned(p));
                    wait_at_least<kRelaxed>(f0, unsigned(p));
                }
            }
            __syncthreads();
        }
        phase_work(src, dst, words, grid);
        __syncthreads();  // every thread's stores of this phase precede the release below
        if (threadIdx.x == 0) {
            if (mode == 0) red_release_add(sync, 1);
            else st_release(sync + 32 * c, unsigned(p + 1));
        }
    }
}

static std::vector<uint32_t> reference(const std::vector<uint32_t>& init, int grid, int words, int phases) {
    std::vector<uint32_t> cur = init, nxt(init.size());
    const size_t per = size_t(words) * 4;
    for (int p = 0; p < phases; ++p) {
        for (int c = 0; c < grid; ++c)
            for (size_t i = 0; i < per; ++i) nxt[c * per + i] = cur[c * per + i] + cur[((c + 1) % grid) * per + i];
        std::swap(cur, nxt);
    }
    return cur;
}

int main(int argc, char** argv) {
    const int phases = argc > 1 ? std::atoi(argv[1]) : 84;
    const int words = argc > 2 ? std::atoi(argv[2]) : 256;
    int dev = 0, sms = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    const int grid = sms;  // one CTA per SM: all resident at once (256 threads, no shared memory)
    const size_t n32 = size_t(grid) * words * 4;
    std::vector<uint32_t> init(n32);
    uint32_t s = 12345u;
    for (auto& v : init) v = (s = s * 1664525u + 1013904223u);
    const std::vector<uint32_t> want = reference(init, grid, words, phases);

    uint4 *a = nullptr, *b = nullptr;
    unsigned* sync = nullptr;
    CK(cudaMalloc(&a, n32 * 4));
    CK(cudaMalloc(&b, n32 * 4));
    CK(cudaMalloc(&sync, size_t(grid) * 32 * 4));
    cudaStream_t st;
    CK(cudaStreamCreate(&st));

    // The graph variant: `phases` launches, ping-pong buffers.
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    for (int p = 0; p < phases; ++p)
        step_kernel<<<grid, kThreads, 0, st>>>((p & 1) ? b : a, (p & 1) ? a : b, words);
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));

    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    const char* names[5] = {"graph", "barrier", "flags", "barrier-relaxed-poll", "flags-relaxed-poll"};
    for (int v = 0; v < 5; ++v) {
        std::vector<float> ms;
        bool ok = true;
        for (int r = 0; r < 24; ++r) {
            CK(cudaMemcpyAsync(a, init.data(), n32 * 4, cudaMemcpyHostToDevice, st));
            CK(cudaMemsetAsync(sync, 0, size_t(grid) * 32 * 4, st));
            CK(cudaEventRecord(e0, st));
            if (v == 0) CK(cudaGraphLaunch(ge, st));
            else if (v < 3) persistent_kernel<false><<<grid, kThreads, 0, st>>>(a, b, words, phases, sync, v - 1);
            else persistent_kernel<true><<<grid, kThreads, 0, st>>>(a, b, words, phases, sync, v - 3);
            CK(cudaGetLastError());
            CK(cudaEventRecord(e1, st));
            CK(cudaStreamSynchronize(st));
            float t = 0.f;
            CK(cudaEventElapsedTime(&t, e0, e1));
            if (r >= 3) ms.push_back(t);
            std::vector<uint32_t> got(n32);
            CK(cudaMemcpy(got.data(), (phases & 1) ? b : a, n32 * 4, cudaMemcpyDeviceToHost));
            ok = ok && std::memcmp(got.data(), want.data(), n32 * 4) == 0;
        }
        std::sort(ms.begin(), ms.end());
        const float med = ms[ms.size() / 2];
        std::printf("%-20s grid %d x %d threads, %d phases of %d B per CTA: %8.2f us total, %6.3f us per phase  %s\n",
                    names[v], grid, kThreads, phases, words * 16, med * 1e3f, med * 1e3f / phases,
                    ok ? "matches the reference" : "MISMATCH");
        if (!ok) return 1;
    }
    return 0;
}
