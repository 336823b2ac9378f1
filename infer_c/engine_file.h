// Reading and verifying the engine file written by helpers/engine_file.py (format version 1).
//
// Layout (little-endian): 64-byte preamble {magic "BQAENGN\0", u32 version, u32 0, u64 header
// size, u64 data size, u32 header CRC-32, u32 data CRC-32, 24 reserved bytes}, the UTF-8 JSON
// header, zero padding to a multiple of 256, then the data section whose tensors start at
// multiples of 256 from its start. CRC-32 is zlib's (polynomial 0xEDB88320).
//
// This file has no CUDA dependency: it builds and is tested on machines without a GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "errors.h"
#include "json.h"

namespace bertqa {

constexpr char kEngineMagic[8] = {'B', 'Q', 'A', 'E', 'N', 'G', 'N', '\0'};
constexpr uint32_t kEngineFormatVersion = 1;
constexpr size_t kEngineAlign = 256;
constexpr size_t kEnginePreambleSize = 64;

enum class TensorDType { kFloat32, kFloat16, kInt8, kInt32 };
size_t dtype_size(TensorDType t);
const char* dtype_name(TensorDType t);

struct TensorEntry {
    std::string name;
    TensorDType dtype = TensorDType::kFloat32;
    std::vector<int64_t> shape;
    uint64_t offset = 0;  // from the data start, a multiple of 256
    uint64_t nbytes = 0;
    int64_t numel() const;
};

// BertConfig as helpers/config.py serialises it.
struct ModelConfig {
    int vocab_size = 0;
    int hidden_size = 0;
    int num_layers = 0;
    int num_heads = 0;
    int intermediate_size = 0;
    int max_position_embeddings = 512;
    int type_vocab_size = 2;
    double layer_norm_eps = 1e-12;
    std::string hidden_act = "gelu";
    int head_size() const { return num_heads ? hidden_size / num_heads : 0; }
};

struct OpDesc {
    std::string kind;  // embed_layernorm | linear | attention | skip_layernorm
    std::vector<std::string> inputs;
    std::string output;
    std::vector<std::string> weights;
    json::Value attrs;  // an object
};

struct ProfileDesc {
    int batch = 0;  // largest batch the profile runs
    int seq = 0;    // the sequence length it runs
};

struct EngineFile {
    std::string path;
    std::string backend;
    std::string precision;  // "fp32" | "fp16"
    std::string producer;
    ModelConfig config;
    std::vector<std::string> inputs;
    std::string output;
    std::vector<OpDesc> ops;
    std::vector<ProfileDesc> profiles;
    // "padded" (the default, and what files without the field are) or "packed" (variable sequence
    // length: one profile {max batch, max seq}; token_capacity = max batch * max seq tokens per run).
    std::string sequence_mode = "padded";
    int token_capacity = 0;
    bool packed() const { return sequence_mode == "packed"; }
    bool do_lower_case = true;
    size_t vocab_entries = 0;
    std::string header_text;  // the JSON header as stored
    json::Value header;       // parsed
    json::Value backend_info; // header["backend_info"] (an object, maybe empty)
    std::vector<TensorEntry> tensors;
    std::map<std::string, size_t> tensor_index;
    std::vector<uint8_t> data;  // the data section; tensors live at data.data() + offset

    bool has_tensor(const std::string& name) const { return tensor_index.count(name) != 0; }
    const TensorEntry& tensor(const std::string& name) const;  // EngineFileError when absent
    const uint8_t* tensor_data(const std::string& name) const { return data.data() + tensor(name).offset; }
    // The smallest profile that runs (batch, seq); UserError naming the profiles otherwise.
    size_t profile_for(int batch, int seq) const;
    std::string profiles_text() const;  // "B<=8 S=128, B<=1 S=384"
};

// Reads and fully verifies path (magic, version, sizes, both CRCs, header fields, tensor bounds,
// the network's weights present). expected_backend, when not empty, must equal the file's backend.
// Throws EngineFileError with a one-line message saying what to do.
EngineFile read_engine_file(const std::string& path, const std::string& expected_backend = "cuda");

// Parses and verifies an engine file already in memory (file = preamble + header + data).
EngineFile parse_engine_file(const uint8_t* file, size_t size, const std::string& path,
                             const std::string& expected_backend = "cuda");

// Checks that the engine was built for this GPU: backend_info "sm" (e.g. 90) must equal sm.
// Throws EngineFileError naming both architectures and telling to rebuild on this GPU.
void check_engine_arch(const EngineFile& engine, int sm, const std::string& gpu_name);

// zlib-compatible CRC-32 (slicing-by-8).
uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);

}  // namespace bertqa
