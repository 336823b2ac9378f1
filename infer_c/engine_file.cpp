#include "engine_file.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>

namespace bertqa {

// ---------------------------------------------------------------------------------------------
// CRC-32 (zlib's), slicing-by-8
// ---------------------------------------------------------------------------------------------
namespace {

struct CrcTables {
    uint32_t t[8][256];
    CrcTables() {
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; ++i)
            for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    }
};

const CrcTables& crc_tables() {
    static const CrcTables tables;
    return tables;
}

uint32_t load_le32(const uint8_t* p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
uint64_t load_le64(const uint8_t* p) { return uint64_t(load_le32(p)) | uint64_t(load_le32(p + 4)) << 32; }

size_t pad_to_align(size_t n) { return (kEngineAlign - n % kEngineAlign) % kEngineAlign; }

}  // namespace

uint32_t crc32(const void* data, size_t size, uint32_t crc) {
    const auto& T = crc_tables().t;
    const uint8_t* p = static_cast<const uint8_t*>(data);
    crc = ~crc;
    while (size && (reinterpret_cast<uintptr_t>(p) & 7)) {
        crc = T[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
        --size;
    }
    while (size >= 8) {
        const uint32_t a = load_le32(p) ^ crc;
        const uint32_t b = load_le32(p + 4);
        crc = T[7][a & 0xFF] ^ T[6][(a >> 8) & 0xFF] ^ T[5][(a >> 16) & 0xFF] ^ T[4][a >> 24] ^
              T[3][b & 0xFF] ^ T[2][(b >> 8) & 0xFF] ^ T[1][(b >> 16) & 0xFF] ^ T[0][b >> 24];
        p += 8;
        size -= 8;
    }
    while (size--) crc = T[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

// ---------------------------------------------------------------------------------------------
// Small pieces
// ---------------------------------------------------------------------------------------------
size_t dtype_size(TensorDType t) {
    switch (t) {
        case TensorDType::kFloat32: return 4;
        case TensorDType::kFloat16: return 2;
        case TensorDType::kInt8: return 1;
        case TensorDType::kInt32: return 4;
    }
    return 0;
}

const char* dtype_name(TensorDType t) {
    switch (t) {
        case TensorDType::kFloat32: return "float32";
        case TensorDType::kFloat16: return "float16";
        case TensorDType::kInt8: return "int8";
        case TensorDType::kInt32: return "int32";
    }
    return "?";
}

int64_t TensorEntry::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

const TensorEntry& EngineFile::tensor(const std::string& name) const {
    auto it = tensor_index.find(name);
    if (it == tensor_index.end())
        throw EngineFileError(path + " is not a usable engine file: it lacks the tensor " + name +
                              "; rebuild it with builder.py");
    return tensors[it->second];
}

// No iostreams in the library: in some host processes (Python with other native extensions loaded)
// their locale machinery crashed; std::to_string formats through snprintf.
std::string EngineFile::profiles_text() const {
    std::string out;
    for (size_t i = 0; i < profiles.size(); ++i)
        out += (i ? ", B<=" : "B<=") + std::to_string(profiles[i].batch) + " S=" + std::to_string(profiles[i].seq);
    return out;
}

size_t EngineFile::profile_for(int batch, int seq) const {
    size_t best = profiles.size();
    for (size_t i = 0; i < profiles.size(); ++i)
        if (profiles[i].seq == seq && profiles[i].batch >= batch &&
            (best == profiles.size() || profiles[i].batch < profiles[best].batch))
            best = i;
    if (best == profiles.size())
        throw UserError("batch " + std::to_string(batch) + " x sequence length " + std::to_string(seq) +
                        " is outside this engine's profiles (" + profiles_text() +
                        "); rebuild with builder.py -b/-s covering it");
    return best;
}

// ---------------------------------------------------------------------------------------------
// Header parsing
// ---------------------------------------------------------------------------------------------
namespace {

struct Sizes {
    uint64_t header_size = 0, data_size = 0, data_start = 0;
    uint32_t header_crc = 0, data_crc = 0;
};

Sizes check_preamble(const uint8_t* pre, size_t file_size, const std::string& path) {
    const std::string where = path + " is not a usable engine file";
    if (file_size < kEnginePreambleSize || std::memcmp(pre, kEngineMagic, 8) != 0)
        throw EngineFileError(where + ": it does not start with the engine magic (a foreign file?)");
    const uint32_t version = load_le32(pre + 8);
    if (version != kEngineFormatVersion)
        throw EngineFileError(where + ": it has format version " + std::to_string(version) +
                              ", this program reads version " + std::to_string(kEngineFormatVersion) +
                              "; rebuild it with this builder.py");
    Sizes s;
    s.header_size = load_le64(pre + 16);
    s.data_size = load_le64(pre + 24);
    s.header_crc = load_le32(pre + 32);
    s.data_crc = load_le32(pre + 36);
    const uint64_t hend = kEnginePreambleSize + s.header_size;
    // Overflow-safe: both sizes must be below the file size before they are added.
    if (s.header_size > file_size || s.data_size > file_size ||
        hend + pad_to_align(hend) + s.data_size != file_size) {
        const uint64_t says = s.header_size > file_size || s.data_size > file_size
                                  ? 0
                                  : hend + pad_to_align(hend) + s.data_size;
        throw EngineFileError(where + ": it is " + std::to_string(file_size) + " bytes but its preamble says " +
                              (says ? std::to_string(says) : std::string("more")) +
                              " (truncated or appended to)");
    }
    s.data_start = hend + pad_to_align(hend);
    return s;
}

TensorDType parse_dtype(const std::string& s) {
    if (s == "float32") return TensorDType::kFloat32;
    if (s == "float16") return TensorDType::kFloat16;
    if (s == "int8") return TensorDType::kInt8;
    if (s == "int32") return TensorDType::kInt32;
    throw json::TypeError("unknown tensor dtype '" + s + "'");
}

std::vector<std::string> string_list(const json::Value& v, std::string_view what) {
    std::vector<std::string> out;
    for (const auto& e : v.as_array(what)) out.push_back(e.as_string(what));
    return out;
}

int positive_int(const json::Value& obj, std::string_view key) {
    const int64_t v = obj.get_int(key);
    if (v < 1 || v > (int64_t(1) << 30)) throw json::TypeError("'" + std::string(key) + "' must be a positive int");
    return static_cast<int>(v);
}

// Fills everything but data from the verified header text.
void parse_header(EngineFile& e, uint64_t data_size) {
    const std::string where = e.path + " is not a usable engine file";
    try {
        e.header = json::parse(e.header_text);
        const json::Value& h = e.header;
        h.as_object("header");
        if (const json::Value* fv = h.find("format_version"))
            if (fv->as_int("format_version") != kEngineFormatVersion)
                throw json::TypeError("format_version disagrees with the preamble");
        e.backend = h.get_string("backend");
        if (e.backend != "onnxruntime" && e.backend != "cuda")
            throw EngineFileError(where + ": unknown backend '" + e.backend + "'");
        e.precision = h.get_string("precision");
        if (const json::Value* p = h.find("producer")) e.producer = p->is_string() ? p->as_string() : "";

        const json::Value& c = h.at("config");
        c.as_object("config");
        ModelConfig& m = e.config;
        m.vocab_size = positive_int(c, "vocab_size");
        m.hidden_size = positive_int(c, "hidden_size");
        m.num_layers = positive_int(c, "num_layers");
        m.num_heads = positive_int(c, "num_heads");
        m.intermediate_size = positive_int(c, "intermediate_size");
        if (c.find("max_position_embeddings")) m.max_position_embeddings = positive_int(c, "max_position_embeddings");
        if (c.find("type_vocab_size")) m.type_vocab_size = positive_int(c, "type_vocab_size");
        if (c.find("layer_norm_eps")) m.layer_norm_eps = c.get_double("layer_norm_eps");
        if (c.find("hidden_act")) m.hidden_act = c.get_string("hidden_act");
        if (m.hidden_size % m.num_heads) throw json::TypeError("hidden_size is not a multiple of num_heads");
        if (m.hidden_act != "gelu" && m.hidden_act != "gelu_tanh")
            throw json::TypeError("unsupported hidden_act '" + m.hidden_act + "'");

        const json::Value& net = h.at("network");
        e.inputs = string_list(net.at("inputs"), "network.inputs");
        e.output = net.get_string("output");
        for (const auto& o : net.get_array("ops")) {
            OpDesc op;
            op.kind = o.get_string("kind");
            if (op.kind != "embed_layernorm" && op.kind != "linear" && op.kind != "attention" &&
                op.kind != "skip_layernorm")
                throw json::TypeError("unknown op kind '" + op.kind + "'");
            op.inputs = string_list(o.at("inputs"), "op inputs");
            op.output = o.get_string("output");
            op.weights = string_list(o.at("weights"), "op weights");
            op.attrs = o.at("attrs");
            op.attrs.as_object("op attrs");
            e.ops.push_back(std::move(op));
        }

        for (const auto& p : h.get_array("profiles"))
            e.profiles.push_back({positive_int(p, "batch"), positive_int(p, "seq")});
        if (const json::Value* sm = h.find("sequence_mode")) e.sequence_mode = sm->as_string("sequence_mode");
        if (e.sequence_mode != "padded" && e.sequence_mode != "packed")
            throw json::TypeError("sequence_mode must be 'padded' or 'packed', got '" + e.sequence_mode + "'");
        if (e.packed()) {
            e.token_capacity = positive_int(h, "token_capacity");
            if (e.profiles.size() != 1 ||
                int64_t(e.profiles[0].batch) * e.profiles[0].seq != int64_t(e.token_capacity))
                throw json::TypeError("a packed engine has one profile {max batch, max seq} and "
                                      "token_capacity = batch * seq");
        }
        e.vocab_entries = h.get_array("vocab").size();
        e.do_lower_case = h.get_bool("do_lower_case");
        if (const json::Value* bi = h.find("backend_info")) {
            bi->as_object("backend_info");
            e.backend_info = *bi;
        } else {
            e.backend_info = json::Value::object({});
        }

        for (const auto& t : h.get_array("tensors")) {
            TensorEntry te;
            te.name = t.get_string("name");
            te.dtype = parse_dtype(t.get_string("dtype"));
            for (const auto& d : t.get_array("shape")) {
                const int64_t v = d.as_int("shape");
                if (v < 0) throw json::TypeError("negative tensor dimension");
                te.shape.push_back(v);
            }
            const int64_t off = t.get_int("offset"), nb = t.get_int("nbytes");
            if (off < 0 || nb < 0) throw json::TypeError("negative tensor offset or size");
            te.offset = uint64_t(off);
            te.nbytes = uint64_t(nb);
            if (uint64_t(te.numel()) * dtype_size(te.dtype) != te.nbytes || te.offset > data_size ||
                te.nbytes > data_size - te.offset)
                throw EngineFileError(where + ": tensor " + te.name + " lies outside the data");
            if (te.offset % kEngineAlign)
                throw EngineFileError(where + ": tensor " + te.name + " is not 256-byte aligned");
            if (!e.tensor_index.emplace(te.name, e.tensors.size()).second)
                throw json::TypeError("tensor " + te.name + " is listed twice");
            e.tensors.push_back(std::move(te));
        }
    } catch (const json::ParseError& ex) {
        throw EngineFileError(where + ": its header is not valid JSON (" + ex.what() + ")");
    } catch (const json::TypeError& ex) {
        throw EngineFileError(where + ": its header is malformed (" + ex.what() + ")");
    }
    std::vector<std::string> missing;
    for (const auto& op : e.ops)
        for (const auto& w : op.weights)
            if (!e.has_tensor(w)) missing.push_back(w);
    if (!missing.empty()) {
        std::string names;
        for (size_t i = 0; i < missing.size() && i < 4; ++i) names += (i ? ", " : "") + missing[i];
        throw EngineFileError(where + ": it lacks the weights " + names);
    }
    if (e.profiles.empty()) throw EngineFileError(where + ": it has no profiles; rebuild it with builder.py -b/-s");
}

void check_backend(const EngineFile& e, const std::string& expected) {
    if (!expected.empty() && e.backend != expected)
        throw EngineFileError(e.path + " was built for the " + e.backend + " backend, not " + expected +
                              "; rebuild it with builder.py --backend " + expected);
}

struct FileCloser {
    void operator()(std::FILE* f) const { if (f) std::fclose(f); }
};

}  // namespace

EngineFile parse_engine_file(const uint8_t* file, size_t size, const std::string& path,
                             const std::string& expected_backend) {
    if (size < kEnginePreambleSize)
        throw EngineFileError(path + " is not a usable engine file: it does not start with the engine magic (a foreign file?)");
    const Sizes s = check_preamble(file, size, path);
    EngineFile e;
    e.path = path;
    e.header_text.assign(reinterpret_cast<const char*>(file) + kEnginePreambleSize, s.header_size);
    if (crc32(e.header_text.data(), e.header_text.size()) != s.header_crc)
        throw EngineFileError(path + " is not a usable engine file: its header checksum does not match (corrupt file)");
    if (crc32(file + s.data_start, s.data_size) != s.data_crc)
        throw EngineFileError(path + " is not a usable engine file: its weights checksum does not match (corrupt file)");
    parse_header(e, s.data_size);
    check_backend(e, expected_backend);
    e.data.assign(file + s.data_start, file + s.data_start + s.data_size);
    return e;
}

EngineFile read_engine_file(const std::string& path, const std::string& expected_backend) {
    errno = 0;
    std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
    if (!f) {
        if (errno == ENOENT)
            throw EngineFileError("no engine file at " + path + "; build one with builder.py -o " + path);
        throw EngineFileError("cannot read engine file " + path + ": " + std::strerror(errno));
    }
    if (std::fseek(f.get(), 0, SEEK_END) != 0)
        throw EngineFileError(path + " is a directory or not a regular file, not an engine file");
    const long end = std::ftell(f.get());
    if (end < 0) throw EngineFileError(path + " is a directory or not a regular file, not an engine file");
    const size_t size = static_cast<size_t>(end);
    std::rewind(f.get());
    uint8_t pre[kEnginePreambleSize] = {};
    const size_t got = std::fread(pre, 1, std::min(size, kEnginePreambleSize), f.get());
    if (got < kEnginePreambleSize) {
        if (std::ferror(f.get()))
            throw EngineFileError(path + " is a directory or cannot be read, not an engine file");
        throw EngineFileError(path + " is not a usable engine file: it does not start with the engine magic (a foreign file?)");
    }
    const Sizes s = check_preamble(pre, size, path);
    EngineFile e;
    e.path = path;
    e.header_text.resize(s.header_size);
    std::vector<uint8_t> pad(s.data_start - kEnginePreambleSize - s.header_size);
    e.data.resize(s.data_size);
    if (std::fread(e.header_text.data(), 1, s.header_size, f.get()) != s.header_size ||
        std::fread(pad.data(), 1, pad.size(), f.get()) != pad.size() ||
        std::fread(e.data.data(), 1, s.data_size, f.get()) != s.data_size)
        throw EngineFileError("cannot read engine file " + path + ": short read (was it changed while reading?)");
    if (crc32(e.header_text.data(), e.header_text.size()) != s.header_crc)
        throw EngineFileError(path + " is not a usable engine file: its header checksum does not match (corrupt file)");
    if (crc32(e.data.data(), e.data.size()) != s.data_crc)
        throw EngineFileError(path + " is not a usable engine file: its weights checksum does not match (corrupt file)");
    parse_header(e, s.data_size);
    check_backend(e, expected_backend);
    return e;
}

void check_engine_arch(const EngineFile& e, int sm, const std::string& gpu_name) {
    const json::Value* v = e.backend_info.is_object() ? e.backend_info.find("sm") : nullptr;
    if (!v || !v->is_integer())
        throw EngineFileError(e.path + " is not a usable engine file: it does not record the GPU architecture "
                              "it was built for; rebuild it with builder.py --backend cuda");
    const int64_t built = v->as_int();
    if (built != sm) {
        std::string built_name;
        if (const json::Value* n = e.backend_info.find("gpu_name"))
            if (n->is_string()) built_name = " (" + n->as_string() + ")";
        throw EngineFileError(e.path + " was built for GPU architecture sm_" + std::to_string(built) + built_name +
                              ", but this GPU is sm_" + std::to_string(sm) + " (" + gpu_name +
                              "); rebuild the engine on this GPU with builder.py --backend cuda");
    }
}

}  // namespace bertqa
