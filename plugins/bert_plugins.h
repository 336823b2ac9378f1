// The fused CUDA kernels ("plugins") of the BERT engine: one header, one home per kernel.
//
//   embed_layernorm.cu   word + position + token-type embedding lookup fused with LayerNorm
//   skip_layernorm.cu    LayerNorm(x [+ residual] [+ bias]), FP32 statistics; x may come as the
//                        split-K partial products of the linear before it; the QA head (two
//                        logits per token) may be folded into it
//   bias_gelu.cu         x = gelu(x + bias) in place (erf or tanh form), when no GEMM epilogue does it
//   attention.cu         fused multi-head attention from the packed QKV projection
//                        (QKV-to-context), head sizes 32/64/128, any sequence length up to 512,
//                        padded batches (seqlens) or packed ones (cu_seqlens)
//
// Activations are token-major: token t's row of a [tokens, width] tensor starts at t * width.
// Padded batches lay sequence b's position s at token b * seq + s; packed batches lay the
// sequences back to back, sequence b at tokens [cu_seqlens[b], cu_seqlens[b + 1]).
// Every launcher checks its arguments and throws std::invalid_argument / std::runtime_error
// (never exit()); it enqueues on the given stream and never synchronises, so launches can be
// captured into CUDA graphs.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

namespace bertqa {

enum class DType : int { kFloat32 = 0, kFloat16 = 1 };

struct EmbedLayerNormParams {
    DType dtype;                   // of the tables, gamma/beta and out
    const int32_t* input_ids;      // [tokens]
    const int32_t* segment_ids;    // [tokens]
    const void* word;              // [vocab, hidden]
    const void* position;          // [max_position, hidden]
    const void* token_type;        // [type_vocab, hidden]
    const void* gamma;             // [hidden]
    const void* beta;              // [hidden]
    void* out;                     // [tokens, hidden]
    int tokens;                    // padded: batch * seq; packed: cu_seqlens[batch]
    int seq;                       // padded: positions per sequence (position = token % seq)
    int batch;
    const int32_t* cu_seqlens;     // packed: [batch + 1]; nullptr means padded
    int hidden;
    float eps;
};

struct SkipLayerNormParams {
    DType dtype;
    const void* x;                 // [tokens, hidden]
    const void* residual;          // [tokens, hidden] or nullptr: a plain LayerNorm (the GEMM added it)
    const void* bias;              // [hidden] or nullptr
    const void* gamma;             // [hidden]
    const void* beta;              // [hidden]
    void* out;                     // [tokens, hidden]; may alias x or residual; null with a head: not stored
    int tokens;
    int hidden;
    float eps;
    // Split-K: x given as the fp32 partial products of a linear run over partial_count slices of K
    // ([partial_count, tokens, hidden], slice after slice); their sum replaces x, which must then be
    // null. The linear's bias comes in `bias`. Lets a small-batch GEMM fill the GPU with no
    // reduction kernel of its own (infer_c/NOTES.md, "Split-K into the LayerNorm").
    const float* partials;         // nullptr: x is the input
    int partial_count;             // 0 with x; 2..16 with partials
    // Output head: head_out[t, j] = sum_i out[t, i] * head_weight[j, i] + head_bias[j], j = 0, 1, in
    // fp32 over the normalised row as stored (rounded to dtype). The QA linear folded into the last
    // LayerNorm: one launch, one GEMM and one read of the hidden states fewer per forward pass.
    const void* head_weight;       // [2, hidden], rows hidden apart (the QA linear's first two rows) or nullptr
    const void* head_bias;         // [2]
    float* head_out;               // [tokens, 2]
};

struct BiasGeluParams {
    DType dtype;
    void* x;                       // [tokens, width], updated in place
    const void* bias;              // [width]
    int tokens;
    int width;
    bool tanh_approximation;       // false: erf GELU as BERT; true: tanh form
};

// FlashAttention-style parameters: one plain struct, cu_seqlens absent meaning padded.
struct AttentionParams {
    DType dtype;
    const void* qkv;               // [tokens, 3, heads, head_size]: Q, K, V of each token
    void* out;                     // [tokens, heads, head_size]
    int batch;
    int heads;
    int head_size;                 // 32, 64 or 128
    int seq;                       // padded: positions per sequence; packed: the longest sequence
    const int32_t* seqlens;        // padded: [batch] valid keys per sequence (mask = prefix)
    const int32_t* cu_seqlens;     // packed: [batch + 1]; nullptr means padded
    float scale;                   // usually 1 / sqrt(head_size)
};

void embed_layernorm(const EmbedLayerNormParams& p, cudaStream_t stream);
void skip_layernorm(const SkipLayerNormParams& p, cudaStream_t stream);
void bias_gelu(const BiasGeluParams& p, cudaStream_t stream);
void attention(const AttentionParams& p, cudaStream_t stream);

}  // namespace bertqa
