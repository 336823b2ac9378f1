// The micro-benchmarks' CUDA error check: print the failing call and where, then exit(2).
// Only these stand-alone programs exit; the plugins and the runtime throw exceptions instead.
#pragma once

#include <cstdio>
#include <cstdlib>

#include <cuda_runtime.h>

#define CUDA_CHECK(call)                                                                         \
    do {                                                                                         \
        cudaError_t e_ = (call);                                                                 \
        if (e_ != cudaSuccess) {                                                                 \
            fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, \
                    __LINE__, #call);                                                            \
            exit(2);                                                                             \
        }                                                                                        \
    } while (0)
