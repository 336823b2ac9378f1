// The BERT question-answering runtime: loads a cuda engine file, uploads its weights once, and
// runs the network description op by op (plugins' fused kernels + cuBLASLt linears) on one CUDA
// stream, replaying a CUDA graph captured per (batch, sequence length).
//
//   BertRuntime rt("bert.engine");                       // verifies the file and the GPU
//   rt.run(ids, segs, mask, batch, seq, logits);         // host int32 [B,S] x3 -> host float32 [B,S,2]
//
// run() checks the inputs on the host (token ids < vocab, segment ids < type_vocab, the mask a
// prefix of ones with at least one token per sequence, (batch, seq) inside a profile), copies them
// in from pinned staging, runs, and copies the logits out: one stream synchronisation per call.
// The first call for a (batch, seq) runs eagerly and captures the graph for the later ones.
// Packed engines (sequence_mode "packed", builder_varseqlen.py) run variable-length sequences back to
// back without padding: run_packed(ids [T], segs [T], cu_seqlens [B+1]) -> logits [T, 2]. GEMMs run
// over T rounded up to the engine's token granularity (a "bucket"), the batch is rounded up to a
// power of two with empty sequences, and the bucket's extra tokens form one dummy sequence of id 0
// (computed, never read back), so a CUDA graph per (token bucket, batch bucket) replays any batch
// of that size with no host synchronisation beyond the logits copy.
// Activations live in a few buffers sized for the largest profile and shared by the ops whose
// lifetimes do not overlap. A runtime object is used by one thread at a time (run() locks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda_utils.h"
#include "engine_file.h"
#include "gemm.h"

namespace bertqa {

struct RuntimeStats {
    size_t weight_bytes = 0;
    size_t activation_bytes = 0;
    size_t io_bytes = 0;
    size_t workspace_bytes = 0;   // cuBLASLt's workspace and the split-K partials
    int activation_buffers = 0;
    int graphs = 0;
    int gemm_fallbacks = 0;  // stored algorithms cuBLASLt rejected here (heuristic used instead)
    size_t total() const { return weight_bytes + activation_bytes + io_bytes + workspace_bytes; }
};

class BertRuntime {
public:
    explicit BertRuntime(const std::string& engine_path, bool enable_graph = true);
    ~BertRuntime();
    BertRuntime(const BertRuntime&) = delete;
    BertRuntime& operator=(const BertRuntime&) = delete;

    // Logits [batch, seq, 2] (start, end) into out. All arrays are row-major [batch, seq].
    void run(const int32_t* input_ids, const int32_t* segment_ids, const int32_t* input_mask, int batch, int seq,
             float* out);

    // Packed engines: sequence b is tokens [cu_seqlens[b], cu_seqlens[b+1]) of input_ids/segment_ids
    // ([tokens] each); logits [tokens, 2] into out. UserError (before any kernel runs) when
    // cu_seqlens does not start at 0, decreases, does not end at tokens, has an empty sequence or
    // one longer than max_seq(), tokens > token_capacity(), batch > max_batch(), or an id is out of range.
    void run_packed(const int32_t* input_ids, const int32_t* segment_ids, int tokens, const int32_t* cu_seqlens,
                    int batch, float* out);
    void check_packed_inputs(const int32_t* input_ids, const int32_t* segment_ids, int tokens,
                             const int32_t* cu_seqlens, int batch) const;
    bool packed() const { return packed_; }
    int token_capacity() const { return token_capacity_; }
    int max_batch() const { return max_batch_; }
    int max_seq() const { return max_seq_; }
    int token_granularity() const { return granularity_; }
    // Packed buckets: tokens rounded up to the granularity; batch to a power of two (<= max_batch()).
    int token_bucket(int tokens) const;
    int batch_bucket(int batch) const;

    // For timing: check and upload inputs once (synchronously) ...
    void set_inputs(const int32_t* input_ids, const int32_t* segment_ids, const int32_t* input_mask, int batch,
                    int seq);
    // ... then enqueue forward passes on them (graph replay or eager ops; no copies, no sync).
    void enqueue_forward(int batch, int seq);
    // ... and read the logits of the last forward pass (synchronises).
    void copy_logits(int batch, int seq, float* out);
    cudaStream_t stream() const { return stream_->get(); }
    void synchronize() const { stream_->synchronize(); }

    // (batch, seq) of three [batch, seq] arrays given by their shapes; UserError when they are not
    // 2-D, differ, or are empty.
    static std::pair<int, int> input_shape(const std::vector<int64_t>& input_ids, const std::vector<int64_t>& segment_ids,
                                           const std::vector<int64_t>& input_mask);

    // Per-iteration latency in ms of `iterations` forward passes on inputs set by set_inputs(), each
    // timed with CUDA events and waited for, after `warmup` untimed passes.
    std::vector<double> time_forward(int batch, int seq, int iterations, int warmup);

    // Mean GPU time in ms of each op kind (e.g. "linear 1024x4096 gelu_bias", "attention"), from
    // `iterations` eager passes on inputs set by set_inputs() with an event around every op.
    std::vector<std::pair<std::string, double>> time_ops(int batch, int seq, int iterations);

    // Throws UserError when (batch, seq) is outside the profiles or the arrays are invalid.
    void check_inputs(const int32_t* input_ids, const int32_t* segment_ids, const int32_t* input_mask, int batch,
                      int seq) const;

    const std::vector<ProfileDesc>& profiles() const { return profiles_; }
    const ModelConfig& config() const { return config_; }
    const std::string& precision() const { return precision_; }
    const std::string& header_json() const { return header_json_; }
    const std::string& engine_path() const { return path_; }
    const DeviceInfo& device() const { return device_; }
    bool graph_enabled() const { return enable_graph_; }
    RuntimeStats stats() const;
    size_t device_memory_bytes() const { return stats().total(); }

private:
    struct Step;
    struct ShapeState;
    struct Exec {                 // the shape the kernels see
        bool packed = false;
        int batch = 0;            // padded: B; packed: batch bucket + 1 (the dummy sequence)
        int seq = 0;              // padded: S; packed: the engine's max sequence length
        int tokens = 0;           // padded: B * S; packed: the token bucket
    };

    void build_steps(const EngineFile& engine);
    void plan_buffers();
    ShapeState& shape_state(int batch, int seq);
    ShapeState& packed_state(int token_bucket, int batch_bucket);
    std::unique_ptr<ShapeState> make_state(int m, size_t profile);
    void enqueue_ops(ShapeState& st, const Exec& x);
    void run_graph(ShapeState& st, const Exec& x);
    static Exec padded_exec(int batch, int seq) { return Exec{false, batch, seq, batch * seq}; }
    void stage_inputs(const int32_t* input_ids, const int32_t* segment_ids, const int32_t* input_mask, int batch,
                      int seq);
    void forward(int batch, int seq);

    std::string path_;
    bool enable_graph_ = true;
    DeviceInfo device_;
    ModelConfig config_;
    std::string precision_;
    bool half_ = false;
    std::string header_json_;
    std::vector<ProfileDesc> profiles_;
    int max_tokens_ = 0;
    int max_batch_ = 0;
    bool packed_ = false;
    int token_capacity_ = 0;
    int max_seq_ = 0;
    int granularity_ = 0;
    size_t workspace_bytes_ = size_t(32) << 20;
    std::string built_cublaslt_;

    std::unique_ptr<Stream> stream_;
    std::unique_ptr<LtHandle> lt_;
    DeviceBuffer weights_;
    std::map<std::string, const void*> weight_ptr_;
    std::vector<Step> steps_;

    // Activations: slot (an activation name) -> buffer; buffers reused across slots.
    std::map<std::string, int> act_width_;   // activation name -> width (elements per token)
    std::map<std::string, int> act_buffer_;  // activation name -> index into buffers_
    std::vector<DeviceBuffer> buffers_;
    DeviceBuffer workspace_;
    DeviceBuffer dev_io_;        // int32 [ids | segs | seqlens] for the current shape
    DeviceBuffer dev_logits_;    // float32 [max_tokens, 2]
    PinnedBuffer host_in_;       // pinned staging of dev_io_
    PinnedBuffer host_logits_;   // pinned float32 [max_tokens, 2]

    // A stored GEMM choice: the cuBLASLt algorithm and the split-K count (1, or > 1: fp32 partials
    // summed by the skip_layernorm after the linear; gemm.h).
    struct StoredGemm {
        GemmAlgoConfig algo;
        int partials = 1;
        bool residual = false;  // the LayerNorm's residual added in the GEMM's epilogue (beta = 1)
    };
    // Stored GEMM algorithms: (profile, n, k, epilogue) -> choice.
    std::map<std::tuple<int, int, int, int>, StoredGemm> stored_algos_;
    // Packed engines: (n, k, epilogue) -> tuned m -> choice (the bucket uses the next tuned m up).
    std::map<std::tuple<int, int, int>, std::map<int, StoredGemm>> packed_algos_;
    DeviceBuffer partials_;  // fp32 split-K partials, sized for the largest stored split product
    std::map<std::pair<int, int>, std::unique_ptr<ShapeState>> shapes_;
    std::map<std::pair<int, int>, std::unique_ptr<ShapeState>> packed_shapes_;  // (token bucket, batch bucket)
    int gemm_fallbacks_ = 0;
    std::pair<int, int> staged_shape_{0, 0};
    std::vector<std::unique_ptr<Event>>* op_events_ = nullptr;  // time_ops(): one event before each op
    std::mutex mu_;
};

}  // namespace bertqa
