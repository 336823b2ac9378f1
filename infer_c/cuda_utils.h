// RAII owners of CUDA objects and the checks every CUDA call goes through.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "errors.h"

namespace bertqa {

[[noreturn]] inline void throw_cuda(cudaError_t e, const char* call, const char* file, int line) {
    throw std::runtime_error(std::string("CUDA error: ") + call + " failed with " + cudaGetErrorName(e) + " (" +
                             cudaGetErrorString(e) + ") at " + file + ":" + std::to_string(line));
}

#define BERTQA_CUDA_CHECK(call)                                                          \
    do {                                                                                 \
        const cudaError_t bertqa_err_ = (call);                                          \
        if (bertqa_err_ != cudaSuccess) ::bertqa::throw_cuda(bertqa_err_, #call, __FILE__, __LINE__); \
    } while (0)

// A debugging switch of the runtime (BERTQA_POISON_ACTIVATIONS): true when the environment sets NAME=1.
inline bool env_flag(const char* name) {
    const char* v = std::getenv(name);
    return v != nullptr && std::strcmp(v, "1") == 0;
}

inline std::string mib(size_t bytes) {
    return std::to_string((bytes + (1u << 20) - 1) >> 20) + " MiB";
}

// Device memory, freed on destruction. Out of memory is a DeviceError that says how much.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    DeviceBuffer(size_t bytes, const std::string& what) { reset(bytes, what); }
    ~DeviceBuffer() { release(); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        if (this != &o) {
            release();
            ptr_ = std::exchange(o.ptr_, nullptr);
            bytes_ = std::exchange(o.bytes_, 0);
        }
        return *this;
    }

    void reset(size_t bytes, const std::string& what) {
        release();
        if (bytes == 0) return;
        const cudaError_t e = cudaMalloc(&ptr_, bytes);
        if (e == cudaErrorMemoryAllocation) {
            cudaGetLastError();  // clear the sticky-free error state
            ptr_ = nullptr;
            size_t free_b = 0, total_b = 0;
            cudaMemGetInfo(&free_b, &total_b);
            throw DeviceError("out of GPU memory allocating " + mib(bytes) + " for " + what + " (" + mib(free_b) +
                              " free of " + mib(total_b) +
                              "); free GPU memory (other processes?) or build the engine with smaller profiles (-b/-s)");
        }
        if (e != cudaSuccess) throw_cuda(e, "cudaMalloc", __FILE__, __LINE__);
        bytes_ = bytes;
    }
    void* get() const { return ptr_; }
    template <typename T>
    T* as() const { return static_cast<T*>(ptr_); }
    size_t bytes() const { return bytes_; }

private:
    void release() noexcept {
        if (ptr_) cudaFree(ptr_);
        ptr_ = nullptr;
        bytes_ = 0;
    }
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

// Page-locked host memory for asynchronous copies.
class PinnedBuffer {
public:
    PinnedBuffer() = default;
    explicit PinnedBuffer(size_t bytes) {
        if (bytes == 0) return;
        const cudaError_t e = cudaMallocHost(&ptr_, bytes);
        if (e == cudaErrorMemoryAllocation) {
            cudaGetLastError();
            ptr_ = nullptr;
            throw DeviceError("out of page-locked host memory allocating " + mib(bytes) +
                              "; free host memory or build the engine with smaller profiles");
        }
        if (e != cudaSuccess) throw_cuda(e, "cudaMallocHost", __FILE__, __LINE__);
        bytes_ = bytes;
    }
    ~PinnedBuffer() {
        if (ptr_) cudaFreeHost(ptr_);
    }
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
    PinnedBuffer(PinnedBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
    PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
        if (this != &o) {
            if (ptr_) cudaFreeHost(ptr_);
            ptr_ = std::exchange(o.ptr_, nullptr);
            bytes_ = std::exchange(o.bytes_, 0);
        }
        return *this;
    }
    void* get() const { return ptr_; }
    template <typename T>
    T* as() const { return static_cast<T*>(ptr_); }
    size_t bytes() const { return bytes_; }

private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

class Stream {
public:
    Stream() { BERTQA_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
    ~Stream() {
        if (s_) cudaStreamDestroy(s_);
    }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    cudaStream_t get() const { return s_; }
    void synchronize() const { BERTQA_CUDA_CHECK(cudaStreamSynchronize(s_)); }

private:
    cudaStream_t s_ = nullptr;
};

class Event {
public:
    Event() { BERTQA_CUDA_CHECK(cudaEventCreate(&e_)); }
    ~Event() {
        if (e_) cudaEventDestroy(e_);
    }
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    cudaEvent_t get() const { return e_; }
    void record(cudaStream_t s) const { BERTQA_CUDA_CHECK(cudaEventRecord(e_, s)); }
    // Milliseconds from start to this event (both recorded and complete).
    float since(const Event& start) const {
        BERTQA_CUDA_CHECK(cudaEventSynchronize(e_));
        float ms = 0;
        BERTQA_CUDA_CHECK(cudaEventElapsedTime(&ms, start.e_, e_));
        return ms;
    }

private:
    cudaEvent_t e_ = nullptr;
};

class Graph {
public:
    Graph() = default;
    explicit Graph(cudaGraph_t g) : g_(g) {}
    ~Graph() {
        if (g_) cudaGraphDestroy(g_);
    }
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;
    Graph(Graph&& o) noexcept : g_(std::exchange(o.g_, nullptr)) {}
    cudaGraph_t get() const { return g_; }

private:
    cudaGraph_t g_ = nullptr;
};

class GraphExec {
public:
    GraphExec() = default;
    explicit GraphExec(const Graph& g) { BERTQA_CUDA_CHECK(cudaGraphInstantiate(&e_, g.get(), 0)); }
    ~GraphExec() {
        if (e_) cudaGraphExecDestroy(e_);
    }
    GraphExec(const GraphExec&) = delete;
    GraphExec& operator=(const GraphExec&) = delete;
    GraphExec(GraphExec&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
    GraphExec& operator=(GraphExec&& o) noexcept {
        if (this != &o) {
            if (e_) cudaGraphExecDestroy(e_);
            e_ = std::exchange(o.e_, nullptr);
        }
        return *this;
    }
    void launch(cudaStream_t s) const { BERTQA_CUDA_CHECK(cudaGraphLaunch(e_, s)); }
    explicit operator bool() const { return e_ != nullptr; }

private:
    cudaGraphExec_t e_ = nullptr;
};

// The current device, or a DeviceError when no GPU can be used.
struct DeviceInfo {
    int device = 0;
    int sm = 0;  // major * 10 + minor
    std::string name;
    size_t total_memory = 0;
    int multiprocessors = 0;
    int runtime_version = 0;
    int driver_version = 0;
};

inline DeviceInfo current_device_info() {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        cudaGetLastError();
        throw DeviceError(std::string("no usable CUDA GPU (") +
                          (e != cudaSuccess ? cudaGetErrorString(e) : "no device found") +
                          "); run on a machine with an NVIDIA GPU and driver");
    }
    DeviceInfo d;
    BERTQA_CUDA_CHECK(cudaGetDevice(&d.device));
    cudaDeviceProp prop{};
    BERTQA_CUDA_CHECK(cudaGetDeviceProperties(&prop, d.device));
    d.sm = prop.major * 10 + prop.minor;
    d.name = prop.name;
    d.total_memory = prop.totalGlobalMem;
    d.multiprocessors = prop.multiProcessorCount;
    cudaRuntimeGetVersion(&d.runtime_version);
    cudaDriverGetVersion(&d.driver_version);
    return d;
}

}  // namespace bertqa
