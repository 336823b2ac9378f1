// Exceptions of the C++ runtime. Every message is one line that says what to do next.
//
//   UserError        a mistake in the caller's input (token ids, mask, a shape outside the profiles)
//   EngineFileError  an engine file that is missing, corrupt, foreign, or built for another GPU
//   DeviceError      no usable GPU, or out of GPU memory
//   std::runtime_error for everything else (a CUDA or cuBLASLt call that failed: a bug or a broken GPU)
//
// The library never calls exit(); the perf binary's main() and the Python bindings turn these
// into an exit status or Python exceptions.
#pragma once

#include <stdexcept>
#include <string>

namespace bertqa {

class UserError : public std::runtime_error {
public:
    explicit UserError(const std::string& what) : std::runtime_error(what) {}
};

class EngineFileError : public UserError {
public:
    explicit EngineFileError(const std::string& what) : UserError(what) {}
};

class DeviceError : public UserError {
public:
    explicit DeviceError(const std::string& what) : UserError(what) {}
};

}  // namespace bertqa
