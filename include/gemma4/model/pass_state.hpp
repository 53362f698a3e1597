#pragma once
// What a forward pass works on, apart from the code that runs it: each sequence's KV
// caches and the tokens they hold, and the scratch of one pass's rows, all sized when
// made; and ForwardPass, the forward-pass code of one SIMD target (model/forward-inl.h
// compiles it per target, model/session.hpp chooses one). No Highway here: this part is
// the same for every target.
//
// Caches (ops/kv_cache.hpp): a sliding layer keeps a ring of at least sliding_window
// + prefill_chunk - 1 positions (enough that writing a whole chunk never overwrites a key
// a query of that chunk still sees), or max_context with rewind_anywhere; a full layer
// keeps max_context positions; a KV-shared layer keeps nothing and reads its donor's cache.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "gemma4/config/topology.hpp"
#include "gemma4/error.hpp"
#include "gemma4/ops/attention_scratch.hpp"
#include "gemma4/ops/kv_cache.hpp"
#include "gemma4/ops/quantized_activations.hpp"
#include "gemma4/parallel/thread_pool.hpp"
#include "gemma4/weights/model_weights.hpp"
#include "gemma4/weights/residency.hpp"

namespace gemma4 {

struct SessionOptions {
  int max_context = 4096;   // positions; going past it is an Error
  int prefill_chunk = 64;   // tokens per matrix-matrix step of a prompt
  KvFormat kv_format = kDefaultKvFormat;  // how the KV caches store keys and values (ops/kv_cache.hpp)
  // Sliding layers keep every position, as full layers do, so that rewind() reaches any
  // position (a prompt cache reused at any prefix), for their cache at full context.
  bool rewind_anywhere = false;
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

// The rotations of one attention type at the positions of the rows of a pass (a draft
// step has one row).
struct RopeTable {
  RopeTable(const Rope& rope, int head_dim, int rows) : frequencies(rope_frequencies(rope, head_dim)) {
    cos.resize(static_cast<std::size_t>(rows) * frequencies.size());
    sin.resize(cos.size());
  }
  // Row `row` at `position`.
  void set_row(std::size_t row, int position) {
    const std::size_t half = frequencies.size();
    for (std::size_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(position) * frequencies[i];
      cos[row * half + i] = std::cos(angle);
      sin[row * half + i] = std::sin(angle);
    }
  }
  std::size_t bytes() const { return (frequencies.size() + cos.size() + sin.size()) * sizeof(float); }

  std::vector<float> frequencies;  // [head_dim / 2]
  std::vector<float> cos, sin;     // [rows, head_dim / 2]
};

// Both attention types' tables of config c for `rows` rows, by AttentionType.
inline std::array<RopeTable, 2> rope_tables(const ModelConfig& c, int rows) {
  const auto& r = c.rope_parameters.value;
  return {RopeTable(r.sliding_attention, head_dim(c, AttentionType::kSliding), rows),
          RopeTable(r.full_attention, head_dim(c, AttentionType::kFull), rows)};
}

// One sequence's memory: the KV caches and the tokens they hold. A session owns one; a
// batch (model/batch.hpp) runs several sessions' sequences in one pass.
template <Variant V>
struct SequenceState {
  static constexpr const ModelConfig& kC = V::config;

  explicit SequenceState(const SessionOptions& options) : max_context(options.max_context) {
    if (options.max_context < 1 || options.max_context > kC.max_position_embeddings) {
      fail(ErrorKind::kInvalidArgument, "max_context must be in [1, {}], got {}", kC.max_position_embeddings.value, options.max_context);
    }
    if (options.prefill_chunk < 1) fail(ErrorKind::kInvalidArgument, "prefill_chunk must be at least 1, got {}", options.prefill_chunk);
    for (const LayerFacts& f : kLayers<V>) {
      if (f.kind.kv_shared) continue;
      const bool sliding = f.kind.attention == AttentionType::kSliding;
      const int ring = options.rewind_anywhere ? options.max_context : kC.sliding_window + options.prefill_chunk - 1;
      const int capacity = sliding ? std::min(options.max_context, ring) : options.max_context;
      caches.emplace_back(capacity, kC.num_key_value_heads, f.head_dim, options.kv_format);
    }
    // A rewound query at position p needs keys back to p - window + 1, still in a ring
    // that holds the last `capacity` positions when p is at most capacity - window + 1 back.
    rewind_margin = options.max_context;
    for (const KvCache& c : caches) {
      if (c.capacity() < options.max_context) rewind_margin = std::min(rewind_margin, c.capacity() - kC.sliding_window + 1);
    }
    tokens.reserve(static_cast<std::size_t>(options.max_context));
  }

  int position() const { return static_cast<int>(tokens.size()); }

  int max_context;
  std::vector<int> tokens;      // [position]: every token run so far
  int rewind_margin = 0;        // see Session::can_rewind_to()
  int rewind_floor = 0;         // ... and no further back: a restored prompt cache held no older sliding keys
  std::vector<KvCache> caches;  // one per layer that owns a cache, by kv_cache_slot
};

// The rows of one pass that belong to one sequence: `rows` consecutive tokens from its
// position() on (not yet counted in its tokens). A session's chunk is one run; a batch's
// pass has one per sequence, laid out in order.
template <Variant V>
struct SequenceRun {
  SequenceState<V>* sequence;
  int rows;
};

// What a forward pass works on besides the sequences: the weights (and when to release
// the pages of the tables it looks rows up in), the threads, and
// scratch for up to `rows` rows (a session's prefill chunk, or a batch's rows).
template <Variant V>
struct PassState {
  static constexpr const ModelConfig& kC = V::config;
  static constexpr int kHidden = kC.hidden_size;
  static constexpr int kHeads = kC.num_attention_heads;
  static constexpr int kKvHeads = kC.num_key_value_heads;
  static constexpr int kPle = kC.hidden_size_per_layer_input;
  static constexpr int kNumLayers = kC.num_hidden_layers;
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

  PassState(const ModelWeights<V>& weights, const PageResidency& residency, int rows, ThreadPool& pool)
      : weights(weights), row_release(residency), pool(pool), rows(rows), rope(rope_tables(kC, rows)),
        attention(pool.size(), kGroupHeads * std::min<std::size_t>(kQueryBlock, static_cast<std::size_t>(rows)), kMaxHeadDim) {
    const std::size_t n = static_cast<std::size_t>(rows);
    x.resize(n * kHidden);
    normed.resize(n * kHidden);
    q.resize(n * kHeads * kMaxHeadDim);
    k.resize(n * kKvHeads * kMaxHeadDim);
    v.resize(n * kKvHeads * kMaxHeadDim);
    attn.resize(n * kHeads * kMaxHeadDim);
    gate.resize(n * kMaxFfn);
    up.resize(n * kMaxFfn);
    ple.resize(n * kNumLayers * kPle);
    ple_gate.resize(n * kPle);
    ple_row.resize(static_cast<std::size_t>(kNumLayers) * kPle);
    attention_runs.resize(n);
    activations.reserve(n, std::max<std::size_t>({kHidden, std::size_t{kHeads} * kMaxHeadDim, kMaxFfn, kPle}));
  }

  // Memory of the scratch, sized when it was made.
  std::size_t bytes() const {
    std::size_t floats = x.size() + normed.size() + q.size() + k.size() + v.size() + attn.size() + gate.size() + up.size() + ple.size() +
                         ple_gate.size() + ple_row.size();
    return floats * sizeof(float) + rope[0].bytes() + rope[1].bytes() + attention.bytes() + activations.bytes();
  }

  const ModelWeights<V>& weights;
  RowRelease row_release;
  ThreadPool& pool;
  int rows;                      // the most rows a pass may run
  std::array<RopeTable, 2> rope;  // by AttentionType
  std::vector<float> x;          // [rows, hidden] residual stream
  std::vector<float> normed;     // [rows, hidden]
  std::vector<float> q;          // [rows, heads, head_dim]
  std::vector<float> k, v;       // [rows, kv_heads, head_dim]
  std::vector<float> attn;       // [rows, heads, head_dim]
  std::vector<float> gate, up;   // [rows, ffn]
  std::vector<float> ple;        // [rows, layers, ple_dim]
  std::vector<float> ple_gate;   // [rows, ple_dim]
  std::vector<float> ple_row;    // [layers, ple_dim]: one token's row of the PLE table
  AttentionScratch attention;
  std::vector<AttentionRun> attention_runs;  // [rows]: a pass has at most one run per row
  QuantizedActivations activations;  // the current int8/int4 matmul's input
};

// The forward pass as compiled for one SIMD target.
template <Variant V>
struct ForwardPass {
  // Runs `tokens` (at most pass.rows), the runs' rows in order, each at its sequence's
  // next positions, and stores their keys and values in the sequences' caches.
  void (*run)(PassState<V>& pass, std::span<const int> tokens, std::span<const SequenceRun<V>> runs);
  // Logits of `count` rows of the last pass from row `first` into out [count, vocab],
  // and their final-normed hidden rows into hidden [count, hidden_size] unless it is null.
  void (*final_logits)(PassState<V>& pass, std::size_t first, std::size_t count, std::span<float> out, float* hidden);
  const char* simd_target;  // Highway's name of the target, e.g. "AVX2"
  const char* integer_dot;  // how int8/int4 matmuls multiply: "AVX-512 VNNI", "16-bit pairs" or "portable"
};

}  // namespace gemma4
