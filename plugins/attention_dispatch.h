// The one switch of the attention plugin: run-time (dtype, head size) -> compile-time template
// arguments, FlashAttention-style. Each switch is an immediately invoked lambda, so the body sees
// the chosen type / size as a constexpr name and may `return`:
//
//   BERTQA_DTYPE_SWITCH(p.dtype, T, [&] {
//       BERTQA_HEADDIM_SWITCH(p.head_size, kD, [&] { run_attention<T, kD>(p, stream); });
//   });
//
// Unsupported values throw std::invalid_argument (never exit()). Adding a head size is one line
// here plus nothing else: the kernels are templates on it. The third switch picks the fp16
// tile shape (m16 tiles per warp, 1 or 2: 64- or 128-row CTAs); it instantiates 2 only where it
// exists (fp16, head size <= 64), every other combination runs 1. Below the switches: the
// bench/test hooks of the launcher, and the Hopper kernel's entry points (attention_hopper.cu).
#pragma once

#include <stdexcept>
#include <string>
#include <type_traits>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "bert_plugins.h"

#define BERTQA_DTYPE_SWITCH(DTYPE, T, ...)                                                 \
    [&] {                                                                                  \
        if ((DTYPE) == ::bertqa::DType::kFloat16) {                                        \
            using T = __half;                                                              \
            return __VA_ARGS__();                                                          \
        } else if ((DTYPE) == ::bertqa::DType::kFloat32) {                                 \
            using T = float;                                                               \
            return __VA_ARGS__();                                                          \
        }                                                                                  \
        throw std::invalid_argument("attention: unsupported dtype " +                      \
                                    std::to_string(static_cast<int>(DTYPE)));              \
    }()

#define BERTQA_HEADDIM_SWITCH(HEADDIM, kHeadDim, ...)                                      \
    [&] {                                                                                  \
        if ((HEADDIM) == 32) {                                                             \
            constexpr static int kHeadDim = 32;                                            \
            return __VA_ARGS__();                                                          \
        } else if ((HEADDIM) == 64) {                                                      \
            constexpr static int kHeadDim = 64;                                            \
            return __VA_ARGS__();                                                          \
        } else if ((HEADDIM) == 128) {                                                     \
            constexpr static int kHeadDim = 128;                                           \
            return __VA_ARGS__();                                                          \
        }                                                                                  \
        throw std::invalid_argument("attention: head_size must be 32, 64 or 128, got " +   \
                                    std::to_string(HEADDIM));                              \
    }()

#define BERTQA_MTILE_SWITCH(T, kHeadDim, MTILES, kMTiles, ...)                             \
    [&] {                                                                                  \
        if ((MTILES) == 2) {                                                               \
            constexpr static int kMTiles =                                                 \
                std::is_same<T, __half>::value && (kHeadDim) <= 64 ? 2 : 1;                \
            return __VA_ARGS__();                                                          \
        }                                                                                  \
        constexpr static int kMTiles = 1;                                                  \
        return __VA_ARGS__();                                                              \
    }()

namespace bertqa {
namespace attention_detail {
// Benchmarks only (plugins/bench/attention_check.cu): force the fp16 m-tiles per warp (1 or 2;
// 0 restores the grid-size heuristic). Not thread-safe; not part of the plugin API.
void set_mtile_override(int mtiles);

// Which fp16 kernel runs: the mma.sync FlashAttention-2 kernel (attention.cu, sm_80+) or the
// Hopper wgmma + TMA kernel (attention_hopper.cu: fp16, head size 64, compute capability 9.0 with
// the sm_90a image loaded). kAuto: the environment variable BERTQA_ATTENTION_KERNEL (auto | mma |
// wgmma, read once at the first launch; anything else throws std::invalid_argument), and when that
// says auto or is unset, the measured rule (attention.cu, pick_kernel). Forcing wgmma where it
// cannot run (fp32, another head size, another GPU, a build without sm_90a) runs mma.sync.
enum class Kernel : int { kAuto = 0, kMma = 1, kWgmma = 2 };
// Benchmarks and tests: overrides the environment variable (kAuto restores it). Not thread-safe.
void set_kernel_override(Kernel k);
// The kernel attention(p) launches now (kMma or kWgmma; fp32 reports kMma). Throws like attention()
// on a bad BERTQA_ATTENTION_KERNEL.
Kernel selected_kernel(const AttentionParams& p);
// The m-tiles per warp the mma.sync kernel would run p with (1: 64-row CTAs, 2: 128-row CTAs).
int selected_mtiles(const AttentionParams& p);

// attention_hopper.cu. True when this build has sm_90a code, the current device is compute
// capability 9.0 and the kernel image loads (checked once per device).
bool hopper_kernel_available();
// Launches the Hopper kernel (parameters already checked by attention()); throws
// std::runtime_error where it is not available, std::invalid_argument for a dtype / head size it
// does not run.
void launch_hopper(const AttentionParams& p, cudaStream_t stream);
}  // namespace attention_detail
}  // namespace bertqa
