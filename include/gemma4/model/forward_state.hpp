#pragma once
// What a session's forward pass works on, apart from the code that runs it: the KV
// caches, the tokens they hold and the scratch of one chunk, all sized when the session
// is made; and ForwardPass, the forward-pass code of one SIMD target (model/forward-inl.h
// compiles it per target, model/session.hpp chooses one). No Highway here: this part is
// the same for every target.
//
// Caches (ops/kv_cache.hpp): a sliding layer keeps a ring of at least sliding_window
// + prefill_chunk - 1 positions (enough that writing a whole chunk never overwrites a key
// a query of that chunk still sees); a full layer keeps max_context positions; a
// KV-shared layer keeps nothing and reads its donor's cache.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "gemma4/config/topology.hpp"
#include "gemma4/error.hpp"
#include "gemma4/ops/kv_cache.hpp"
#include "gemma4/ops/quantized_activations.hpp"
#include "gemma4/parallel/thread_pool.hpp"
#include "gemma4/weights/load.hpp"

namespace gemma4 {

struct SessionOptions {
  int max_context = 4096;   // positions; going past it is an Error
  int prefill_chunk = 64;   // tokens per matrix-matrix step of a prompt
  ThreadPool* pool = nullptr;  // threads to run on; null: the process-wide default_pool()
};

// f32 frequencies of each rotated pair of one attention type; 0 for unrotated pairs
// (the proportional RoPE of full layers rotates only partial_rotary_factor of them,
// with exponents over the whole head dim).
inline std::vector<float> rope_frequencies(const Rope& rope, int head_dim) {
  const int half = head_dim / 2;
  const int rotated = static_cast<int>(std::lround(rope.partial_rotary_factor * half));
  std::vector<float> f(static_cast<std::size_t>(half), 0.0f);
  for (int i = 0; i < rotated; ++i) {
    f[i] = 1.0f / std::pow(static_cast<float>(rope.rope_theta), static_cast<float>(2 * i) / static_cast<float>(head_dim));
  }
  return f;
}

template <Variant V>
struct ForwardState {
  static constexpr const ModelConfig& kC = V::config;
  static constexpr int kHidden = kC.hidden_size;
  static constexpr int kHeads = kC.num_attention_heads;
  static constexpr int kKvHeads = kC.num_key_value_heads;
  static constexpr int kPle = kC.hidden_size_per_layer_input;
  static constexpr int kNumLayers = kC.num_hidden_layers;
  static constexpr int kVocab = kC.vocab_size;
  static constexpr int kWindow = kC.sliding_window;
  static constexpr int kMaxHeadDim = std::max(kC.head_dim.value, kC.global_head_dim.value);
  static constexpr int kMaxFfn = ffn_width(kC, LayerKind{AttentionType::kSliding, true});
  static constexpr int kGroupHeads = kHeads / kKvHeads;  // query heads per kv head
  static_assert(kHeads % kKvHeads == 0, "gemma4: query heads must group evenly over kv heads");
  static_assert(kGroupHeads == 1 || kGroupHeads == 2 || kGroupHeads == 4 || kGroupHeads == 8,
                "gemma4: the attention kernel takes 1, 2, 4 or 8 query heads per kv head");
  static_assert(kC.head_dim % kValueChunk == 0 && kC.global_head_dim % kValueChunk == 0,
                "gemma4: the attention kernel needs head dims that are multiples of 32");
  static_assert(kC.vocab_size_per_layer_input >= kC.vocab_size, "gemma4: every token id must have a PLE row");

  struct RopeTables {
    std::vector<float> frequencies;  // [head_dim / 2]
    std::vector<float> cos, sin;     // [chunk, head_dim / 2] for the chunk's positions
  };

  ForwardState(const Weights<V>& weights, const SessionOptions& options)
      : weights(weights), options(options), pool(options.pool != nullptr ? *options.pool : default_pool()) {
    if (options.max_context < 1 || options.max_context > kC.max_position_embeddings) {
      fail(ErrorKind::kInvalidArgument, "max_context must be in [1, {}], got {}", kC.max_position_embeddings.value, options.max_context);
    }
    if (options.prefill_chunk < 1) fail(ErrorKind::kInvalidArgument, "prefill_chunk must be at least 1, got {}", options.prefill_chunk);
    const std::size_t chunk = static_cast<std::size_t>(options.prefill_chunk);
    for (const LayerFacts& f : kLayers<V>) {
      if (f.kind.kv_shared) continue;
      const bool sliding = f.kind.attention == AttentionType::kSliding;
      const int capacity = sliding ? std::min(options.max_context, kWindow + options.prefill_chunk - 1) : options.max_context;
      caches.emplace_back(capacity, kKvHeads, f.head_dim);
    }
    // A rewound query at position p needs keys back to p - window + 1, still in a ring
    // that holds the last `capacity` positions when p is at most capacity - window + 1 back.
    rewind_margin = options.max_context;
    for (const KvCache& c : caches) {
      if (c.capacity() < options.max_context) rewind_margin = std::min(rewind_margin, c.capacity() - kWindow + 1);
    }
    tokens.reserve(static_cast<std::size_t>(options.max_context));
    x.resize(chunk * kHidden);
    normed.resize(chunk * kHidden);
    q.resize(chunk * kHeads * kMaxHeadDim);
    k.resize(chunk * kKvHeads * kMaxHeadDim);
    v.resize(chunk * kKvHeads * kMaxHeadDim);
    attn.resize(chunk * kHeads * kMaxHeadDim);
    gate.resize(chunk * kMaxFfn);
    up.resize(chunk * kMaxFfn);
    ple.resize(chunk * kNumLayers * kPle);
    ple_gate.resize(chunk * kPle);
    ple_row.resize(static_cast<std::size_t>(kNumLayers) * kPle);
    // Every query row of a block of tokens sees positions below max_context.
    scores_per_thread = kGroupHeads * std::min<std::size_t>(kQueryBlock, chunk) * attention_score_span(0, options.max_context - 1);
    scores.resize(scores_per_thread * static_cast<std::size_t>(pool.size()));
    activations.reserve(chunk, std::max<std::size_t>({kHidden, std::size_t{kHeads} * kMaxHeadDim, kMaxFfn, kPle}));
    for (AttentionType type : {AttentionType::kSliding, AttentionType::kFull}) {
      const int d = head_dim(kC, type);
      const Rope& r = type == AttentionType::kFull ? kC.rope_parameters.value.full_attention : kC.rope_parameters.value.sliding_attention;
      RopeTables& tables = rope[static_cast<int>(type)];
      tables.frequencies = rope_frequencies(r, d);
      tables.cos.resize(chunk * d / 2);
      tables.sin.resize(chunk * d / 2);
    }
  }

  int position() const { return static_cast<int>(tokens.size()); }

  const Weights<V>& weights;
  SessionOptions options;
  ThreadPool& pool;
  std::vector<int> tokens;       // [position]: every token run so far
  int rewind_margin = 0;         // see Session::can_rewind_to()
  int tokens_since_release = 0;  // see Forward::RunChunk
  std::vector<KvCache> caches;   // one per layer that owns a cache, by kv_cache_slot
  RopeTables rope[2];            // by AttentionType
  // Scratch for one chunk of up to prefill_chunk tokens.
  std::vector<float> x;          // [chunk, hidden] residual stream
  std::vector<float> normed;     // [chunk, hidden]
  std::vector<float> q;          // [chunk, heads, head_dim]
  std::vector<float> k, v;       // [chunk, kv_heads, head_dim]
  std::vector<float> attn;       // [chunk, heads, head_dim]
  std::vector<float> gate, up;   // [chunk, ffn]
  std::vector<float> ple;        // [chunk, layers, ple_dim]
  std::vector<float> ple_gate;   // [chunk, ple_dim]
  std::vector<float> ple_row;    // [layers, ple_dim]: one token's row of the PLE table
  std::vector<float> scores;     // [threads, scores_per_thread]
  std::size_t scores_per_thread = 0;
  QuantizedActivations activations;  // the current int8/int4 matmul's input
};

// The forward pass as compiled for one SIMD target.
template <Variant V>
struct ForwardPass {
  // Runs up to prefill_chunk tokens at state.position() (not yet counted in state.tokens).
  void (*run_chunk)(ForwardState<V>& state, std::span<const int> tokens);
  // Logits of `count` rows of the last chunk from row `first` into out [count, vocab],
  // and their final-normed hidden rows into hidden [count, hidden_size] unless it is null.
  void (*final_logits)(ForwardState<V>& state, std::size_t first, std::size_t count, std::span<float> out, float* hidden);
  const char* simd_target;  // Highway's name of the target, e.g. "AVX2"
  const char* integer_dot;  // how int8/int4 matmuls multiply: "AVX-512 VNNI", "16-bit pairs" or "portable"
};

}  // namespace gemma4
