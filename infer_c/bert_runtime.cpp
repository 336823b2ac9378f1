#include "bert_runtime.h"

#include <algorithm>
#include <cstring>
#include <cstdio>
#include <set>

#include "bert_plugins.h"
#include "kernels.h"

namespace bertqa {

// One op of the network, resolved against the engine's weights and activation widths.
struct BertRuntime::Step {
    enum class Kind { kEmbed, kLinear, kAttention, kSkipLayerNorm } kind = Kind::kEmbed;
    std::string in0, in1, out;  // activation names
    std::vector<std::string> weights;
    // linear
    int n = 0, k = 0;
    GemmEpilogue epilogue = GemmEpilogue::kBias;
    bool plugin_gelu = false;  // GEMM without bias, then plugins' bias_gelu (erf)
    bool to_output = false;    // the network output: extract [T, 2] float32 logits
    int linear_index = -1;
    bool feeds_layernorm = false;  // its output is read only by the next skip_layernorm (as x): split-K
                                   // or the residual in the epilogue allowed
    int to_layernorm = -1;         // with feeds_layernorm: the step index of that skip_layernorm
    bool in_layernorm = false;     // the output linear, computed by the skip_layernorm before it (no GEMM)
    // attention
    int heads = 0, head_size = 0;
    float scale = 1.f;
    // layer norms
    int width = 0;
    float eps = 1e-12f;
    int from_linear = -1;  // skip_layernorm: the step index of the linear computing x, if it may split
    int head_linear = -1;  // skip_layernorm: the step index of the output linear folded into it
    bool store_out = true; // skip_layernorm with a head: false when only the head reads the row
};

struct BertRuntime::ShapeState {
    size_t profile = 0;
    std::vector<GemmPlan> gemms;  // one per linear step
    std::vector<int> partials;    // per linear step: its split-K count (1: unsplit)
    std::vector<char> residual;   // per linear step: adds its skip_layernorm's residual (beta = 1)
    bool ran_eager = false;
    GraphExec graph;
};

namespace {

const char* const kInputIds = "input_ids";
const char* const kSegmentIds = "segment_ids";
const char* const kInputMask = "input_mask";

std::string engine_problem(const std::string& path, const std::string& what) {
    return path + " is not a usable engine file: " + what + "; rebuild it with builder.py --backend cuda";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Construction
// ---------------------------------------------------------------------------------------------
BertRuntime::BertRuntime(const std::string& engine_path, bool enable_graph)
    : path_(engine_path), enable_graph_(enable_graph) {
    EngineFile engine = read_engine_file(engine_path, "cuda");
    device_ = current_device_info();  // DeviceError without a GPU
    check_engine_arch(engine, device_.sm, device_.name);
    if (engine.precision != "fp32" && engine.precision != "fp16")
        throw EngineFileError(engine_problem(path_, "its precision '" + engine.precision + "' is not fp32 or fp16"));
    precision_ = engine.precision;
    half_ = precision_ == "fp16";
    config_ = engine.config;
    profiles_ = engine.profiles;
    header_json_ = engine.header_text;
    for (const auto& p : profiles_) {
        if (p.seq > config_.max_position_embeddings)
            throw EngineFileError(engine_problem(path_, "profile sequence length " + std::to_string(p.seq) +
                                                            " exceeds max_position_embeddings " +
                                                            std::to_string(config_.max_position_embeddings)));
        max_batch_ = std::max(max_batch_, p.batch);
        if (int64_t(p.batch) * p.seq > (int64_t(1) << 24))
            throw EngineFileError(engine_problem(path_, "profile B=" + std::to_string(p.batch) + " S=" +
                                                            std::to_string(p.seq) + " is too large (over 16M tokens)"));
        max_tokens_ = std::max(max_tokens_, p.batch * p.seq);
    }
    if (engine.packed()) {
        packed_ = true;
        token_capacity_ = engine.token_capacity;
        max_seq_ = profiles_[0].seq;
        granularity_ = std::min(128, max_seq_);
        max_tokens_ = token_bucket(token_capacity_);
    }
    const json::Value& bi = engine.backend_info;
    if (const json::Value* ws = bi.find("workspace_bytes"))
        if (ws->is_integer() && ws->as_int() > 0) workspace_bytes_ = size_t(ws->as_int());
    if (const json::Value* v = bi.find("cublaslt_version"))
        if (v->is_integer()) built_cublaslt_ = std::to_string(v->as_int());

    build_steps(engine);

    stream_ = std::make_unique<Stream>();
    lt_ = std::make_unique<LtHandle>();

    // Weights: the data section as one allocation (tensors keep their 256-byte aligned offsets).
    weights_.reset(engine.data.size(), "the engine's weights");
    BERTQA_CUDA_CHECK(cudaMemcpy(weights_.get(), engine.data.data(), engine.data.size(), cudaMemcpyHostToDevice));
    for (const auto& t : engine.tensors) weight_ptr_[t.name] = weights_.as<uint8_t>() + t.offset;
    engine.data.clear();
    engine.data.shrink_to_fit();

    // Stored GEMM algorithms.
    size_t partials_bytes = 0;
    if (const json::Value* algos = bi.find("gemm_algos")) {
        try {
            for (const auto& a : algos->as_array("gemm_algos")) {
                std::vector<int64_t> ints;
                for (const auto& x : a.get_array("algo")) ints.push_back(x.as_int("algo"));
                const int n = int(a.get_int("n")), k = int(a.get_int("k"));
                const int epi = int(gemm_epilogue_from_string(a.get_string("epilogue")));
                StoredGemm g{GemmAlgoConfig::from_ints(ints), 1};
                if (const json::Value* pv = a.find("partials")) g.partials = int(pv->as_int("partials"));
                if (const json::Value* rv = a.find("residual")) g.residual = rv->as_bool("residual");
                if (g.partials < 1 || g.partials > 16 || k % g.partials != 0 || (k / g.partials) % 8 != 0)
                    throw std::invalid_argument("partials " + std::to_string(g.partials) + " for k=" + std::to_string(k));
                if (g.residual && g.partials > 1) throw std::invalid_argument("residual stored with split-K");
                if (g.partials > 1 || g.residual) {
                    // Only linears whose output goes straight into a skip_layernorm can split or add its residual.
                    bool ok = epi == int(GemmEpilogue::kBias);
                    for (const Step& st : steps_)
                        if (st.kind == Step::Kind::kLinear && st.n == n && st.k == k && int(st.epilogue) == epi)
                            ok = ok && st.feeds_layernorm;
                    if (!ok)
                        throw std::invalid_argument(std::string(g.residual ? "a residual" : "split-K") +
                                                    " stored for a linear that does not feed a skip_layernorm");
                }
                const int m = int(a.get_int("m"));
                if (packed_) {
                    packed_algos_[std::make_tuple(n, k, epi)][m] = g;  // partials sized below
                } else {
                    const int64_t pi = a.get_int("profile");
                    if (pi < 0 || pi >= int64_t(profiles_.size())) throw std::invalid_argument("profile index out of range");
                    stored_algos_[std::make_tuple(int(pi), n, k, epi)] = g;
                    const size_t rows = size_t(profiles_[size_t(pi)].batch) * size_t(profiles_[size_t(pi)].seq);
                    if (g.partials > 1) partials_bytes = std::max(partials_bytes, size_t(g.partials) * rows * size_t(n) * 4);
                }
            }
        } catch (const std::exception& ex) {
            throw EngineFileError(engine_problem(path_, std::string("its GEMM algorithms are malformed (") + ex.what() + ")"));
        }
    }
    // Packed: a bucket uses the smallest tuned m at or above it, the largest tuned m beyond that.
    for (const auto& [key, by_m] : packed_algos_) {
        for (auto it = by_m.begin(); it != by_m.end(); ++it) {
            const bool last = std::next(it) == by_m.end();
            const size_t rows = size_t(last ? std::max(max_tokens_, it->first) : it->first);
            if (it->second.partials > 1)
                partials_bytes = std::max(partials_bytes, size_t(it->second.partials) * rows * size_t(std::get<0>(key)) * 4);
        }
    }
    if (partials_bytes) partials_.reset(partials_bytes, "the split-K partial products");

    plan_buffers();
    workspace_.reset(workspace_bytes_, "the GEMM workspace");
    const size_t io_ints = 2 * size_t(max_tokens_) + size_t(max_batch_) + 2;
    dev_io_.reset(io_ints * sizeof(int32_t), "the input ids");
    dev_logits_.reset(size_t(max_tokens_) * 2 * sizeof(float), "the logits");
    host_in_ = PinnedBuffer(io_ints * sizeof(int32_t));
    host_logits_ = PinnedBuffer(size_t(max_tokens_) * 2 * sizeof(float));
}

BertRuntime::~BertRuntime() {
    if (stream_) cudaStreamSynchronize(stream_->get());
}

void BertRuntime::build_steps(const EngineFile& engine) {
    const std::vector<std::string> want_inputs = {kInputIds, kSegmentIds, kInputMask};
    if (engine.inputs != want_inputs)
        throw EngineFileError(engine_problem(path_, "its network inputs are not input_ids, segment_ids, input_mask"));
    const ModelConfig& c = config_;
    const TensorDType wdt = half_ ? TensorDType::kFloat16 : TensorDType::kFloat32;
    const json::Value& bi = engine.backend_info;
    std::string gelu_mode = "plugin";
    if (const json::Value* g = bi.find("gelu"))
        if (g->is_string()) gelu_mode = g->as_string();
    if (gelu_mode != "plugin" && gelu_mode != "epilogue")
        throw EngineFileError(engine_problem(path_, "backend_info.gelu must be 'plugin' or 'epilogue'"));

    auto weight = [&](const std::string& name, std::vector<int64_t> shape) {
        const TensorEntry& t = engine.tensor(name);
        if (t.dtype != wdt)
            throw EngineFileError(engine_problem(path_, "tensor " + name + " is " + dtype_name(t.dtype) + " but the engine is " + precision_));
        if (!shape.empty()) {
            bool ok = t.shape.size() == shape.size();
            for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || t.shape[i] == shape[i];
            if (!ok) throw EngineFileError(engine_problem(path_, "tensor " + name + " has an unexpected shape"));
        }
        return t;
    };
    auto width_of = [&](const std::string& act) {
        auto it = act_width_.find(act);
        if (it == act_width_.end())
            throw EngineFileError(engine_problem(path_, "activation '" + act + "' is used before it is computed"));
        return it->second;
    };
    auto define = [&](const std::string& act, int width) {
        if (act == kInputIds || act == kSegmentIds || act == kInputMask || act_width_.count(act))
            throw EngineFileError(engine_problem(path_, "activation '" + act + "' is defined twice"));
        act_width_[act] = width;
    };

    int linears = 0;
    bool output_seen = false;
    try {
        for (const OpDesc& op : engine.ops) {
            Step s;
            s.out = op.output;
            s.weights = op.weights;
            if (op.kind == "embed_layernorm") {
                if (op.inputs.size() != 2 || op.inputs[0] != kInputIds || op.inputs[1] != kSegmentIds ||
                    op.weights.size() != 5)
                    throw EngineFileError(engine_problem(path_, "embed_layernorm must read input_ids and segment_ids with 5 weights"));
                s.kind = Step::Kind::kEmbed;
                s.width = c.hidden_size;
                weight(op.weights[0], {c.vocab_size, c.hidden_size});
                weight(op.weights[1], {-1, c.hidden_size});
                weight(op.weights[2], {c.type_vocab_size, c.hidden_size});
                weight(op.weights[3], {c.hidden_size});
                weight(op.weights[4], {c.hidden_size});
                if (engine.tensor(op.weights[1]).shape[0] < engine.config.max_position_embeddings)
                    throw EngineFileError(engine_problem(path_, "the position table is shorter than max_position_embeddings"));
                s.eps = float(op.attrs.get_double("eps"));
                define(s.out, s.width);
            } else if (op.kind == "linear") {
                if (op.inputs.size() != 1 || op.weights.size() != 2)
                    throw EngineFileError(engine_problem(path_, "linear must have one input and two weights"));
                s.kind = Step::Kind::kLinear;
                s.in0 = op.inputs[0];
                const TensorEntry& w = weight(op.weights[0], {});
                if (w.shape.size() != 2) throw EngineFileError(engine_problem(path_, op.weights[0] + " is not a matrix"));
                s.n = int(w.shape[0]);
                s.k = int(w.shape[1]);
                if (s.k != width_of(s.in0))
                    throw EngineFileError(engine_problem(path_, op.weights[0] + " does not match its input's width"));
                weight(op.weights[1], {s.n});
                const std::string act = op.attrs.get_string("activation");
                if (act == "none") {
                    s.epilogue = GemmEpilogue::kBias;
                } else if (act == "gelu_tanh" || (act == "gelu" && gelu_mode == "epilogue")) {
                    s.epilogue = GemmEpilogue::kGeluBias;
                } else if (act == "gelu") {
                    s.epilogue = GemmEpilogue::kNone;
                    s.plugin_gelu = true;
                } else {
                    throw EngineFileError(engine_problem(path_, "unknown linear activation '" + act + "'"));
                }
                s.to_output = s.out == engine.output;
                if (s.to_output) {
                    if (s.n < 2 || act != "none")
                        throw EngineFileError(engine_problem(path_, "the output linear must give 2 logits per token"));
                    output_seen = true;
                }
                s.linear_index = linears++;
                define(s.out, s.n);
            } else if (op.kind == "attention") {
                if (op.inputs.size() != 2 || op.inputs[1] != kInputMask || !op.weights.empty())
                    throw EngineFileError(engine_problem(path_, "attention must read (qkv, input_mask)"));
                s.kind = Step::Kind::kAttention;
                s.in0 = op.inputs[0];
                s.heads = int(op.attrs.get_int("num_heads"));
                s.head_size = int(op.attrs.get_int("head_size"));
                s.scale = float(op.attrs.get_double("scale"));
                if (s.heads < 1 || s.head_size < 1 || width_of(s.in0) != 3 * s.heads * s.head_size)
                    throw EngineFileError(engine_problem(path_, "attention heads do not match the QKV width"));
                if (s.head_size != 32 && s.head_size != 64 && s.head_size != 128)
                    throw EngineFileError(path_ + " has attention head size " + std::to_string(s.head_size) +
                                          "; the CUDA engine supports head sizes 32, 64 and 128 (use --backend onnxruntime)");
                define(s.out, s.heads * s.head_size);
            } else {  // skip_layernorm
                if (op.inputs.size() != 2 || op.weights.size() != 2)
                    throw EngineFileError(engine_problem(path_, "skip_layernorm must have two inputs and two weights"));
                s.kind = Step::Kind::kSkipLayerNorm;
                s.in0 = op.inputs[0];
                s.in1 = op.inputs[1];
                s.width = width_of(s.in0);
                if (width_of(s.in1) != s.width)
                    throw EngineFileError(engine_problem(path_, "skip_layernorm inputs differ in width"));
                weight(op.weights[0], {s.width});
                weight(op.weights[1], {s.width});
                s.eps = float(op.attrs.get_double("eps"));
                define(s.out, s.width);
            }
            steps_.push_back(std::move(s));
        }
    } catch (const json::TypeError& ex) {
        throw EngineFileError(engine_problem(path_, std::string("an op's attributes are malformed (") + ex.what() + ")"));
    }
    if (!output_seen)
        throw EngineFileError(engine_problem(path_, "no linear op computes the output '" + engine.output + "'"));
    // Linears that may run split-K: activation none, output read only by one skip_layernorm as its x.
    std::map<std::string, int> reads, producer;  // activation -> how many step inputs read it / its step
    for (size_t i = 0; i < steps_.size(); ++i) {
        producer[steps_[i].out] = int(i);
        for (const std::string* in : {&steps_[i].in0, &steps_[i].in1})
            if (!in->empty()) ++reads[*in];
    }
    for (size_t i = 0; i < steps_.size(); ++i) {
        Step& ln = steps_[i];
        if (ln.kind != Step::Kind::kSkipLayerNorm || reads[ln.in0] != 1) continue;
        auto it = producer.find(ln.in0);
        if (it == producer.end()) continue;
        Step& lin = steps_[size_t(it->second)];
        if (lin.kind == Step::Kind::kLinear && lin.epilogue == GemmEpilogue::kBias && !lin.to_output) {
            lin.feeds_layernorm = true;
            lin.to_layernorm = int(i);
            ln.from_linear = it->second;
        }
    }
    // The output linear (two logits per token) folded into the skip_layernorm computing its input:
    // one GEMM, one logits-extraction launch and one read of the last hidden states fewer per pass.
    for (size_t i = 0; i < steps_.size(); ++i) {
        Step& head = steps_[i];
        if (head.kind != Step::Kind::kLinear || !head.to_output) continue;
        auto it = producer.find(head.in0);
        if (it == producer.end()) continue;
        Step& ln = steps_[size_t(it->second)];
        if (ln.kind != Step::Kind::kSkipLayerNorm || ln.width != head.k) continue;
        ln.head_linear = int(i);
        ln.store_out = reads[ln.out] > 1;
        head.in_layernorm = true;
    }
}

// Greedy buffer sharing: walk the ops in order; an op's output takes the smallest free buffer
// that holds it (else a new one), allocated before the op's dying inputs are released, so an
// output never aliases an input of the same op.
void BertRuntime::plan_buffers() {
    const size_t elem = half_ ? 2 : 4;
    std::map<std::string, size_t> last_use;
    for (size_t i = 0; i < steps_.size(); ++i) {
        for (const std::string* in : {&steps_[i].in0, &steps_[i].in1})
            if (!in->empty() && act_width_.count(*in)) last_use[*in] = i;
        last_use.emplace(steps_[i].out, i);  // an unused output dies at once
    }
    std::vector<size_t> capacity;  // bytes of each buffer
    std::vector<bool> busy;
    for (size_t i = 0; i < steps_.size(); ++i) {
        const Step& s = steps_[i];
        const size_t need = size_t(max_tokens_) * size_t(act_width_.at(s.out)) * elem;
        int pick = -1;
        for (size_t b = 0; b < capacity.size(); ++b)
            if (!busy[b] && capacity[b] >= need && (pick < 0 || capacity[b] < capacity[size_t(pick)])) pick = int(b);
        if (pick < 0) {
            // Grow the largest free buffer rather than add one, if there is a free one.
            for (size_t b = 0; b < capacity.size(); ++b)
                if (!busy[b] && (pick < 0 || capacity[b] > capacity[size_t(pick)])) pick = int(b);
            if (pick < 0) {
                capacity.push_back(0);
                busy.push_back(false);
                pick = int(capacity.size() - 1);
            }
            capacity[size_t(pick)] = need;
        }
        busy[size_t(pick)] = true;
        act_buffer_[s.out] = pick;
        for (const std::string* in : {&s.in0, &s.in1, &s.out})
            if (!in->empty() && act_buffer_.count(*in) && last_use.at(*in) == i) busy[size_t(act_buffer_.at(*in))] = false;
    }
    buffers_.clear();
    for (size_t b = 0; b < capacity.size(); ++b)
        buffers_.emplace_back(capacity[b], "activations (largest profile: " + std::to_string(max_tokens_) + " tokens)");
    // Debugging aid (tests/test_sanitizer_gpu.py): activations start as all-ones bytes, NaN in fp16
    // and fp32, so a read of an element no step wrote turns the logits non-finite. compute-sanitizer's
    // initcheck cannot say this for whole engines: it does not see the bulk (TMA) stores of
    // cuBLASLt's Hopper kernels and reports every later read of a GEMM's output.
    if (env_flag("BERTQA_POISON_ACTIVATIONS"))
        for (auto& b : buffers_) BERTQA_CUDA_CHECK(cudaMemset(b.get(), 0xFF, b.bytes()));
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------
void BertRuntime::check_inputs(const int32_t* ids, const int32_t* segs, const int32_t* mask, int batch,
                               int seq) const {
    if (packed_)
        throw UserError("this is a packed (variable sequence length) engine: give packed inputs (run_packed: "
                        "token ids [T], segment ids [T], cu_seqlens [B+1]), or use helpers' CudaRunner.run, "
                        "which packs padded arrays");
    if (batch < 1 || seq < 1)
        throw UserError("batch and sequence length must be >= 1, got batch " + std::to_string(batch) +
                        " and sequence length " + std::to_string(seq));
    EngineFile dummy;  // profile lookup shares EngineFile's wording
    dummy.profiles = profiles_;
    dummy.profile_for(batch, seq);
    if (!ids || !segs || !mask) throw UserError("input_ids, segment_ids and input_mask must all be given");
    const int vocab = config_.vocab_size, types = config_.type_vocab_size;
    for (int b = 0; b < batch; ++b) {
        const size_t row = size_t(b) * size_t(seq);
        int len = 0;
        bool ended = false;
        for (int s = 0; s < seq; ++s) {
            const int32_t id = ids[row + s], sg = segs[row + s], m = mask[row + s];
            if (id < 0 || id >= vocab)
                throw UserError("input_ids[" + std::to_string(b) + "][" + std::to_string(s) + "] = " + std::to_string(id) +
                                " is outside the vocabulary [0, " + std::to_string(vocab) +
                                "); tokenize with the engine's own vocabulary");
            if (sg < 0 || sg >= types)
                throw UserError("segment_ids[" + std::to_string(b) + "][" + std::to_string(s) + "] = " + std::to_string(sg) +
                                " must be in [0, " + std::to_string(types) + ") (0 for the question, 1 for the passage)");
            if (m != 0 && m != 1)
                throw UserError("input_mask[" + std::to_string(b) + "][" + std::to_string(s) + "] = " + std::to_string(m) +
                                "; the mask holds 1 for tokens and 0 for padding");
            if (m == 1) {
                if (ended)
                    throw UserError("input_mask row " + std::to_string(b) + " has a 1 at position " + std::to_string(s) +
                                    " after padding; the mask must be ones then zeros (pad at the end)");
                ++len;
            } else {
                ended = true;
            }
        }
        if (len == 0)
            throw UserError("input_mask row " + std::to_string(b) +
                            " is all zeros; every sequence needs at least its [CLS] token");
    }
}

void BertRuntime::stage_inputs(const int32_t* ids, const int32_t* segs, const int32_t* mask, int batch, int seq) {
    const size_t T = size_t(batch) * size_t(seq);
    int32_t* h = host_in_.as<int32_t>();
    std::memcpy(h, ids, T * sizeof(int32_t));
    std::memcpy(h + T, segs, T * sizeof(int32_t));
    for (int b = 0; b < batch; ++b) {
        const int32_t* m = mask + size_t(b) * seq;
        int len = 0;
        while (len < seq && m[len] == 1) ++len;
        h[2 * T + size_t(b)] = len;
    }
    BERTQA_CUDA_CHECK(cudaMemcpyAsync(dev_io_.get(), h, (2 * T + size_t(batch)) * sizeof(int32_t),
                                      cudaMemcpyHostToDevice, stream_->get()));
}

// ---------------------------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------------------------
BertRuntime::ShapeState& BertRuntime::shape_state(int batch, int seq) {
    const auto key = std::make_pair(batch, seq);
    auto it = shapes_.find(key);
    if (it != shapes_.end()) return *it->second;
    EngineFile lookup;
    lookup.profiles = profiles_;
    auto st = make_state(batch * seq, lookup.profile_for(batch, seq));
    return *shapes_.emplace(key, std::move(st)).first->second;
}

BertRuntime::ShapeState& BertRuntime::packed_state(int token_bucket, int batch_bucket) {
    const auto key = std::make_pair(token_bucket, batch_bucket);
    auto it = packed_shapes_.find(key);
    if (it != packed_shapes_.end()) return *it->second;
    return *packed_shapes_.emplace(key, make_state(token_bucket, 0)).first->second;
}

std::unique_ptr<BertRuntime::ShapeState> BertRuntime::make_state(int m, size_t profile) {
    auto st = std::make_unique<ShapeState>();
    st->profile = profile;
    const GemmDType dt = half_ ? GemmDType::kFloat16 : GemmDType::kFloat32;
    for (const Step& s : steps_) {
        if (s.kind != Step::Kind::kLinear) continue;
        const StoredGemm* stored = nullptr;
        bool exact = true;
        if (packed_) {
            // The algorithm tuned for the smallest tuned m >= this bucket (else the largest).
            auto pa = packed_algos_.find(std::make_tuple(s.n, s.k, int(s.epilogue)));
            if (pa != packed_algos_.end() && !pa->second.empty()) {
                auto at = pa->second.lower_bound(m);
                if (at == pa->second.end()) --at;
                stored = &at->second;
                exact = at->first == m;
            }
        } else {
            auto a = stored_algos_.find(std::make_tuple(int(profile), s.n, s.k, int(s.epilogue)));
            if (a != stored_algos_.end()) stored = &a->second;
        }
        const int partials = stored && s.feeds_layernorm ? stored->partials : 1;
        GemmShape shape{m, s.n, s.k, dt, partials > 1 ? GemmEpilogue::kNone : s.epilogue, partials};
        shape.residual = stored && s.feeds_layernorm && partials == 1 && stored->residual;
        GemmPlan plan(*lt_, shape);
        if (!stored || !plan.set_algo(stored->algo, workspace_bytes_)) {
            if (stored && exact && gemm_fallbacks_++ == 0)
                std::fprintf(stderr,
                             "warning: this cuBLASLt (%zu) rejects a GEMM algorithm stored in %s (built with cuBLASLt "
                             "%s); using its heuristic instead. Rebuild the engine for full speed.\n",
                             cublaslt_version(), path_.c_str(), built_cublaslt_.empty() ? "?" : built_cublaslt_.c_str());
            plan.set_heuristic_algo(workspace_bytes_);
        }
        if (shape.epilogue != GemmEpilogue::kNone) plan.set_bias(weight_ptr_.at(s.weights[1]));
        st->gemms.push_back(std::move(plan));
        st->partials.push_back(partials);
        st->residual.push_back(shape.residual);
    }
    return st;
}

void BertRuntime::enqueue_ops(ShapeState& st, const Exec& x) {
    cudaStream_t stream = stream_->get();
    const int T = x.tokens;
    const int batch = x.batch, seq = x.seq;
    const DType dt = half_ ? DType::kFloat16 : DType::kFloat32;
    const int32_t* ids = dev_io_.as<int32_t>();
    const int32_t* segs = ids + T;
    const int32_t* seqlens = ids + 2 * size_t(T);  // padded: [batch] lengths; packed: cu_seqlens [batch + 1]
    auto act = [&](const std::string& name) { return buffers_[size_t(act_buffer_.at(name))].get(); };
    auto w = [&](const Step& s, size_t i) { return weight_ptr_.at(s.weights[i]); };

    for (size_t i = 0; i < steps_.size(); ++i) {
        const Step& s = steps_[i];
        if (op_events_) (*op_events_)[i]->record(stream);
        switch (s.kind) {
            case Step::Kind::kEmbed: {
                EmbedLayerNormParams p{};
                p.dtype = dt;
                p.input_ids = ids;
                p.segment_ids = segs;
                p.word = w(s, 0);
                p.position = w(s, 1);
                p.token_type = w(s, 2);
                p.gamma = w(s, 3);
                p.beta = w(s, 4);
                p.out = act(s.out);
                p.tokens = T;
                p.seq = seq;
                p.batch = batch;
                p.cu_seqlens = x.packed ? seqlens : nullptr;
                p.hidden = s.width;
                p.eps = s.eps;
                embed_layernorm(p, stream);
                break;
            }
            case Step::Kind::kLinear: {
                if (s.in_layernorm) break;  // computed by the skip_layernorm before it
                const bool split = st.partials[size_t(s.linear_index)] > 1;  // fp32 partials; the LayerNorm adds the bias
                void* y = split ? partials_.get() : act(s.out);
                const void* residual =  // the skip_layernorm's residual, added by the epilogue
                    st.residual[size_t(s.linear_index)] ? act(steps_[size_t(s.to_layernorm)].in1) : nullptr;
                st.gemms[size_t(s.linear_index)].run(w(s, 0), act(s.in0), y, workspace_.get(), workspace_bytes_, stream,
                                                     residual);
                if (split) break;
                if (s.plugin_gelu) {
                    BiasGeluParams p{};
                    p.dtype = dt;
                    p.x = y;
                    p.bias = w(s, 1);
                    p.tokens = T;
                    p.width = s.n;
                    p.tanh_approximation = false;
                    bias_gelu(p, stream);
                }
                if (s.to_output) extract_logits(y, s.n, half_, dev_logits_.as<float>(), T, stream);
                break;
            }
            case Step::Kind::kAttention: {
                AttentionParams p{};
                p.dtype = dt;
                p.qkv = act(s.in0);
                p.out = act(s.out);
                p.batch = batch;
                p.heads = s.heads;
                p.head_size = s.head_size;
                p.seq = seq;
                p.seqlens = x.packed ? nullptr : seqlens;
                p.cu_seqlens = x.packed ? seqlens : nullptr;
                p.scale = s.scale;
                attention(p, stream);
                break;
            }
            case Step::Kind::kSkipLayerNorm: {
                SkipLayerNormParams p{};
                p.dtype = dt;
                p.x = act(s.in0);
                p.residual = act(s.in1);
                p.bias = nullptr;
                if (s.from_linear >= 0) {
                    const Step& lin = steps_[size_t(s.from_linear)];
                    const int parts = st.partials[size_t(lin.linear_index)];
                    if (parts > 1) {
                        p.x = nullptr;
                        p.partials = partials_.as<float>();
                        p.partial_count = parts;
                        p.bias = w(lin, 1);
                    }
                    if (st.residual[size_t(lin.linear_index)]) p.residual = nullptr;  // the GEMM added it
                }
                p.gamma = w(s, 0);
                p.beta = w(s, 1);
                p.out = s.store_out ? act(s.out) : nullptr;
                if (s.head_linear >= 0) {
                    const Step& head = steps_[size_t(s.head_linear)];
                    p.head_weight = w(head, 0);
                    p.head_bias = w(head, 1);
                    p.head_out = dev_logits_.as<float>();
                }
                p.tokens = T;
                p.hidden = s.width;
                p.eps = s.eps;
                skip_layernorm(p, stream);
                break;
            }
        }
    }
    if (op_events_) op_events_->back()->record(stream);
}

void BertRuntime::forward(int batch, int seq) { run_graph(shape_state(batch, seq), padded_exec(batch, seq)); }

void BertRuntime::run_graph(ShapeState& st, const Exec& x) {
    if (!enable_graph_ || !st.ran_eager) {
        // Eager: always without graphs; with graphs, the first pass of a shape (it also settles
        // any lazy initialisation of the kernels before capture).
        enqueue_ops(st, x);
        st.ran_eager = true;
        return;
    }
    if (!st.graph) {
        cudaStream_t stream = stream_->get();
        BERTQA_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        cudaGraph_t raw = nullptr;
        try {
            enqueue_ops(st, x);
        } catch (const std::exception& ex) {
            cudaStreamEndCapture(stream, &raw);
            if (raw) cudaGraphDestroy(raw);
            cudaGetLastError();
            throw std::runtime_error(std::string("CUDA graph capture failed (") + ex.what() +
                                     "); run with graphs disabled (enable_graph=False) and report this");
        }
        BERTQA_CUDA_CHECK(cudaStreamEndCapture(stream, &raw));
        Graph graph(raw);
        st.graph = GraphExec(graph);
    }
    st.graph.launch(stream_->get());
}

void BertRuntime::run(const int32_t* ids, const int32_t* segs, const int32_t* mask, int batch, int seq, float* out) {
    std::lock_guard<std::mutex> lock(mu_);
    check_inputs(ids, segs, mask, batch, seq);
    if (!out) throw UserError("no output array given");
    stage_inputs(ids, segs, mask, batch, seq);
    staged_shape_ = {batch, seq};
    forward(batch, seq);
    const size_t n = size_t(batch) * size_t(seq) * 2;
    BERTQA_CUDA_CHECK(cudaMemcpyAsync(host_logits_.get(), dev_logits_.get(), n * sizeof(float), cudaMemcpyDeviceToHost,
                                      stream_->get()));
    stream_->synchronize();
    std::memcpy(out, host_logits_.get(), n * sizeof(float));
}

void BertRuntime::set_inputs(const int32_t* ids, const int32_t* segs, const int32_t* mask, int batch, int seq) {
    std::lock_guard<std::mutex> lock(mu_);
    check_inputs(ids, segs, mask, batch, seq);
    stage_inputs(ids, segs, mask, batch, seq);
    stream_->synchronize();
    staged_shape_ = {batch, seq};
}

void BertRuntime::enqueue_forward(int batch, int seq) {
    std::lock_guard<std::mutex> lock(mu_);
    if (staged_shape_ != std::make_pair(batch, seq))
        throw UserError("no inputs of batch " + std::to_string(batch) + " x sequence length " + std::to_string(seq) +
                        " were set; call set_inputs with that shape first");
    forward(batch, seq);
}

void BertRuntime::copy_logits(int batch, int seq, float* out) {
    std::lock_guard<std::mutex> lock(mu_);
    if (staged_shape_ != std::make_pair(batch, seq))
        throw UserError("the last inputs were not of batch " + std::to_string(batch) + " x sequence length " +
                        std::to_string(seq));
    const size_t n = size_t(batch) * size_t(seq) * 2;
    BERTQA_CUDA_CHECK(cudaMemcpyAsync(host_logits_.get(), dev_logits_.get(), n * sizeof(float), cudaMemcpyDeviceToHost,
                                      stream_->get()));
    stream_->synchronize();
    std::memcpy(out, host_logits_.get(), n * sizeof(float));
}

std::pair<int, int> BertRuntime::input_shape(const std::vector<int64_t>& ids, const std::vector<int64_t>& segs,
                                             const std::vector<int64_t>& mask) {
    auto text = [](const std::vector<int64_t>& s) {
        std::string t = "(";
        for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
        return t + (s.size() == 1 ? ",)" : ")");
    };
    if (ids.size() != 2)
        throw UserError("input_ids must be a 2-D [batch, seq] array, got shape " + text(ids));
    if (segs != ids || mask != ids)
        throw UserError("input_ids, segment_ids and input_mask must have the same shape, got " + text(ids) + ", " +
                        text(segs) + " and " + text(mask));
    if (ids[0] < 1 || ids[1] < 1 || ids[0] > INT32_MAX || ids[1] > INT32_MAX)
        throw UserError("input arrays must have at least one sequence of at least one token, got shape " + text(ids));
    return {int(ids[0]), int(ids[1])};
}

std::vector<double> BertRuntime::time_forward(int batch, int seq, int iterations, int warmup) {
    if (iterations < 1) throw UserError("iterations must be >= 1, got " + std::to_string(iterations));
    if (warmup < 0) throw UserError("warm-up iterations must be >= 0, got " + std::to_string(warmup));
    // At least the passes that settle a shape: the eager first pass and, with graphs, the capture.
    const int passes = std::max(warmup, enable_graph_ ? 2 : 1);
    for (int i = 0; i < passes; ++i) enqueue_forward(batch, seq);
    synchronize();
    Event start, stop;
    std::vector<double> ms;
    ms.reserve(size_t(iterations));
    for (int i = 0; i < iterations; ++i) {
        start.record(stream());
        enqueue_forward(batch, seq);
        stop.record(stream());
        ms.push_back(double(stop.since(start)));
    }
    return ms;
}

std::vector<std::pair<std::string, double>> BertRuntime::time_ops(int batch, int seq, int iterations) {
    std::lock_guard<std::mutex> lock(mu_);
    if (staged_shape_ != std::make_pair(batch, seq))
        throw UserError("no inputs of batch " + std::to_string(batch) + " x sequence length " + std::to_string(seq) +
                        " were set; call set_inputs with that shape first");
    if (iterations < 1) throw UserError("iterations must be >= 1");
    std::vector<std::unique_ptr<Event>> events;
    for (size_t i = 0; i <= steps_.size(); ++i) events.push_back(std::make_unique<Event>());
    ShapeState& st = shape_state(batch, seq);
    std::vector<double> per_step(steps_.size(), 0.0);
    enqueue_ops(st, padded_exec(batch, seq));  // warm-up
    for (int it = 0; it < iterations; ++it) {
        op_events_ = &events;
        try {
            enqueue_ops(st, padded_exec(batch, seq));
        } catch (...) {
            op_events_ = nullptr;
            throw;
        }
        op_events_ = nullptr;
        for (size_t i = 0; i < steps_.size(); ++i) per_step[i] += events[i + 1]->since(*events[i]);
    }
    std::vector<std::pair<std::string, double>> out;
    std::map<std::string, size_t> where;
    for (size_t i = 0; i < steps_.size(); ++i) {
        const Step& s = steps_[i];
        std::string name;
        switch (s.kind) {
            case Step::Kind::kEmbed: name = "embed_layernorm"; break;
            case Step::Kind::kAttention: name = "attention"; break;
            case Step::Kind::kSkipLayerNorm: name = "skip_layernorm"; break;
            case Step::Kind::kLinear:
                name = "linear k=" + std::to_string(s.k) + " n=" + std::to_string(s.n) + " " + to_string(s.epilogue) +
                       (st.residual[size_t(s.linear_index)] ? " +residual" : "") +
                       (s.plugin_gelu ? " +bias_gelu" : "") + (s.to_output ? " +logits" : "");
                break;
        }
        auto it = where.find(name);
        if (it == where.end()) {
            where[name] = out.size();
            out.emplace_back(name, 0.0);
            it = where.find(name);
        }
        out[it->second].second += per_step[i] / iterations;
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Packed (variable sequence length) execution
// ---------------------------------------------------------------------------------------------
int BertRuntime::token_bucket(int tokens) const {
    const int g = std::max(granularity_, 1);
    return std::max(1, (tokens + g - 1) / g) * g;
}

int BertRuntime::batch_bucket(int batch) const {
    int b = 1;
    while (b < batch) b *= 2;
    return std::min(b, std::max(max_batch_, batch));
}

void BertRuntime::check_packed_inputs(const int32_t* ids, const int32_t* segs, int tokens, const int32_t* cu,
                                      int batch) const {
    if (!packed_)
        throw UserError("this engine runs padded [batch, seq] inputs (sequence_mode 'padded'); packed inputs need "
                        "an engine built with builder_varseqlen.py");
    if (batch < 1) throw UserError("cu_seqlens must hold at least 2 entries (one sequence), got " +
                                   std::to_string(batch < 0 ? 0 : batch + 1));
    if (batch > max_batch_)
        throw UserError("batch of " + std::to_string(batch) + " sequences is over this engine's maximum batch " +
                        std::to_string(max_batch_) + "; split it or rebuild with builder_varseqlen.py -b");
    if (tokens < 1) throw UserError("no tokens given; every sequence needs at least its [CLS] token");
    if (tokens > token_capacity_)
        throw UserError("total token count " + std::to_string(tokens) + " is over this engine's token capacity " +
                        std::to_string(token_capacity_) + " (max batch " + std::to_string(max_batch_) +
                        " x max sequence length " + std::to_string(max_seq_) + "); split the batch");
    if (!ids || !segs || !cu) throw UserError("input_ids, segment_ids and cu_seqlens must all be given");
    if (cu[0] != 0) throw UserError("cu_seqlens must start at 0, got cu_seqlens[0] = " + std::to_string(cu[0]));
    for (int b = 0; b < batch; ++b) {
        const int64_t len = int64_t(cu[b + 1]) - cu[b];
        if (len < 0)
            throw UserError("cu_seqlens must be non-decreasing, but cu_seqlens[" + std::to_string(b + 1) + "] = " +
                            std::to_string(cu[b + 1]) + " < cu_seqlens[" + std::to_string(b) + "] = " +
                            std::to_string(cu[b]));
        if (len == 0)
            throw UserError("sequence " + std::to_string(b) +
                            " is empty (cu_seqlens repeats a value); every sequence needs at least its [CLS] token");
        if (len > max_seq_)
            throw UserError("sequence " + std::to_string(b) + " has " + std::to_string(len) +
                            " tokens, longer than this engine's maximum sequence length " + std::to_string(max_seq_));
    }
    if (cu[batch] != tokens)
        throw UserError("cu_seqlens must end at the token count " + std::to_string(tokens) + ", got cu_seqlens[" +
                        std::to_string(batch) + "] = " + std::to_string(cu[batch]));
    const int vocab = config_.vocab_size, types = config_.type_vocab_size;
    for (int t = 0; t < tokens; ++t) {
        if (ids[t] < 0 || ids[t] >= vocab)
            throw UserError("input_ids[" + std::to_string(t) + "] = " + std::to_string(ids[t]) +
                            " is outside the vocabulary [0, " + std::to_string(vocab) +
                            "); tokenize with the engine's own vocabulary");
        if (segs[t] < 0 || segs[t] >= types)
            throw UserError("segment_ids[" + std::to_string(t) + "] = " + std::to_string(segs[t]) + " must be in [0, " +
                            std::to_string(types) + ") (0 for the question, 1 for the passage)");
    }
}

void BertRuntime::run_packed(const int32_t* ids, const int32_t* segs, int tokens, const int32_t* cu, int batch,
                             float* out) {
    std::lock_guard<std::mutex> lock(mu_);
    check_packed_inputs(ids, segs, tokens, cu, batch);
    if (!out) throw UserError("no output array given");
    const int tb = token_bucket(tokens), bb = batch_bucket(batch);
    // Staging: ids | segs over the bucket (the dummy tokens past `tokens` are id 0, segment 0), then
    // cu_seqlens over the batch bucket (empty sequences at `tokens`) and the dummy sequence's end.
    int32_t* h = host_in_.as<int32_t>();
    const size_t TB = size_t(tb), T = size_t(tokens);
    std::memcpy(h, ids, T * sizeof(int32_t));
    std::memset(h + T, 0, (TB - T) * sizeof(int32_t));
    std::memcpy(h + TB, segs, T * sizeof(int32_t));
    std::memset(h + TB + T, 0, (TB - T) * sizeof(int32_t));
    int32_t* c = h + 2 * TB;
    std::memcpy(c, cu, size_t(batch + 1) * sizeof(int32_t));
    for (int b = batch + 1; b <= bb; ++b) c[b] = tokens;
    c[bb + 1] = tb;
    BERTQA_CUDA_CHECK(cudaMemcpyAsync(dev_io_.get(), h, (2 * TB + size_t(bb) + 2) * sizeof(int32_t),
                                      cudaMemcpyHostToDevice, stream_->get()));
    staged_shape_ = {0, 0};  // the padded staging is overwritten
    run_graph(packed_state(tb, bb), Exec{true, bb + 1, max_seq_, tb});
    BERTQA_CUDA_CHECK(cudaMemcpyAsync(host_logits_.get(), dev_logits_.get(), T * 2 * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream_->get()));
    stream_->synchronize();
    std::memcpy(out, host_logits_.get(), T * 2 * sizeof(float));
}

RuntimeStats BertRuntime::stats() const {
    RuntimeStats s;
    s.weight_bytes = weights_.bytes();
    for (const auto& b : buffers_) s.activation_bytes += b.bytes();
    s.activation_buffers = int(buffers_.size());
    s.io_bytes = dev_io_.bytes() + dev_logits_.bytes();
    s.workspace_bytes = workspace_.bytes() + partials_.bytes();
    for (const auto& kv : shapes_) s.graphs += kv.second->graph ? 1 : 0;
    for (const auto& kv : packed_shapes_) s.graphs += kv.second->graph ? 1 : 0;
    s.gemm_fallbacks = gemm_fallbacks_;
    return s;
}

}  // namespace bertqa
