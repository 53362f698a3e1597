#pragma once
// A session runs the Gemma 4 forward pass (spec sections 3-4) over a token stream and
// owns the KV caches. Everything is sized from the variant's topology and max_context
// when the session is created; running tokens allocates nothing.
//
// Caches (model/kv_cache.hpp): a sliding layer keeps a ring of at least sliding_window
// + prefill_chunk - 1 positions (enough that writing a whole chunk never overwrites a key
// a query of that chunk still sees); a full layer keeps max_context positions; a
// KV-shared layer keeps nothing and reads its donor's cache. Prompts run in chunks of up
// to prefill_chunk tokens as matrix-matrix products; decoding is the same path with one
// token.

#include <algorithm>
#include <array>
#include <cmath>
#include <span>
#include <utility>
#include <vector>

#include "gemma4/config/topology.hpp"
#include "gemma4/error.hpp"
#include "gemma4/ops/kv_cache.hpp"
#include "gemma4/ops/attention-inl.h"
#include "gemma4/ops/matmul-inl.h"
#include "gemma4/ops/ops-inl.h"
#include "gemma4/ops/quantized_matmul-inl.h"
#include "gemma4/parallel/thread_pool.hpp"
#include "gemma4/weights/load.hpp"

namespace gemma4 {

namespace ops = gemma4::HWY_NAMESPACE;

struct SessionOptions {
  int max_context = 4096;   // positions; going past it is an Error
  int prefill_chunk = 64;   // tokens per matrix-matrix step of a prompt
  ThreadPool* pool = nullptr;  // threads to run on; null: the process-wide default_pool()
};

enum class Logits { kAll, kLast };

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
class Session {
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

 public:
  // `weights` must outlive the session. A session is not thread-safe; several sessions
  // may share one Weights from different threads (the weights are read-only).
  Session(const Weights<V>&&, const SessionOptions& = {}) = delete;  // would dangle
  explicit Session(const Weights<V>& weights, const SessionOptions& options = {})
      : weights_(weights), options_(options), pool_(options.pool != nullptr ? *options.pool : default_pool()) {
    if (options.max_context < 1 || options.max_context > kC.max_position_embeddings) {
      fail(ErrorKind::kInvalidArgument, "max_context must be in [1, {}], got {}", kC.max_position_embeddings.value, options.max_context);
    }
    if (options.prefill_chunk < 1) fail(ErrorKind::kInvalidArgument, "prefill_chunk must be at least 1, got {}", options.prefill_chunk);
    const std::size_t chunk = static_cast<std::size_t>(options.prefill_chunk);
    for (const LayerFacts& f : kLayers<V>) {
      if (f.kind.kv_shared) continue;
      const bool sliding = f.kind.attention == AttentionType::kSliding;
      const int capacity = sliding ? std::min(options.max_context, kWindow + options.prefill_chunk - 1) : options.max_context;
      caches_.emplace_back(capacity, kKvHeads, f.head_dim);
    }
    // A rewound query at position p needs keys back to p - window + 1, still in a ring
    // that holds the last `capacity` positions when p is at most capacity - window + 1 back.
    rewind_margin_ = options.max_context;
    for (const KvCache& c : caches_) {
      if (c.capacity() < options.max_context) rewind_margin_ = std::min(rewind_margin_, c.capacity() - kWindow + 1);
    }
    tokens_.reserve(static_cast<std::size_t>(options.max_context));
    x_.resize(chunk * kHidden);
    normed_.resize(chunk * kHidden);
    q_.resize(chunk * kHeads * kMaxHeadDim);
    k_.resize(chunk * kKvHeads * kMaxHeadDim);
    v_.resize(chunk * kKvHeads * kMaxHeadDim);
    attn_.resize(chunk * kHeads * kMaxHeadDim);
    gate_.resize(chunk * kMaxFfn);
    up_.resize(chunk * kMaxFfn);
    ple_.resize(chunk * kNumLayers * kPle);
    ple_gate_.resize(chunk * kPle);
    ple_row_.resize(static_cast<std::size_t>(kNumLayers) * kPle);
    scores_per_thread_ = kGroupHeads * attention_score_span(0, options.max_context - 1);
    scores_.resize(scores_per_thread_ * static_cast<std::size_t>(pool_.size()));
    activations_.reserve(chunk, std::max<std::size_t>({kHidden, std::size_t{kHeads} * kMaxHeadDim, kMaxFfn, kPle}));
    for (AttentionType type : {AttentionType::kSliding, AttentionType::kFull}) {
      const int d = head_dim(kC, type);
      const Rope& rope = type == AttentionType::kFull ? kC.rope_parameters.value.full_attention
                                                      : kC.rope_parameters.value.sliding_attention;
      RopeTables& r = rope_[static_cast<int>(type)];
      r.frequencies = rope_frequencies(rope, d);
      r.cos.resize(chunk * d / 2);
      r.sin.resize(chunk * d / 2);
    }
  }

  // The tokens the KV caches hold, in order: the one record of what the session has seen.
  std::span<const int> tokens() const { return tokens_; }
  int position() const { return static_cast<int>(tokens_.size()); }
  int threads() const { return pool_.size(); }
  // Memory held by the KV caches, all sized when the session was made.
  std::size_t kv_cache_bytes() const {
    std::size_t bytes = 0;
    for (const KvCache& c : caches_) bytes += c.bytes();
    return bytes;
  }
  int max_context() const { return options_.max_context; }
  void reset() { tokens_.clear(); }

  // Whether rewind(position) can keep what the caches hold before `position`: full
  // layers keep every position, but a sliding layer's ring reaches only so far back
  // (prefill_chunk positions, and at least 1).
  bool can_rewind_to(int position) const {
    return position >= 0 && position <= this->position() && this->position() - position <= rewind_margin_;
  }
  // Forgets the tokens from `position` on, as if only tokens()[0, position) had been run.
  void rewind(int position) {
    if (!can_rewind_to(position)) {
      fail(ErrorKind::kInvalidArgument, "cannot rewind a session at position {} to {}: its sliding-window caches keep {} positions back at most",
           this->position(), position, rewind_margin_);
    }
    tokens_.resize(static_cast<std::size_t>(position));
  }

  // Runs `tokens` at the next positions. `logits` receives [tokens.size(), vocab] floats
  // for Logits::kAll, or [vocab] for the last token with Logits::kLast. Errors (and no
  // change to the session) for an unknown token id, a context overflow or a wrong size.
  void forward(std::span<const int> tokens, Logits which, std::span<float> logits) {
    if (tokens.empty()) fail(ErrorKind::kInvalidArgument, "forward: no tokens");
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] < 0 || tokens[i] >= kVocab) {
        fail(ErrorKind::kInvalidArgument, "token id {} at index {} is outside the vocabulary [0, {})", tokens[i], i, kVocab);
      }
    }
    if (tokens.size() > static_cast<std::size_t>(options_.max_context - position())) {
      fail(ErrorKind::kContextFull, "{} tokens at position {} exceed the context of {} positions", tokens.size(), position(), options_.max_context);
    }
    const std::size_t want = (which == Logits::kAll ? tokens.size() : 1) * kVocab;
    if (logits.size() != want) fail(ErrorKind::kInvalidArgument, "forward: logits buffer holds {} floats, needs {}", logits.size(), want);

    const std::size_t chunk = static_cast<std::size_t>(options_.prefill_chunk);
    for (std::size_t first = 0; first < tokens.size(); first += chunk) {
      const std::size_t n = std::min(chunk, tokens.size() - first);
      run_chunk(tokens.subspan(first, n));
      if (which == Logits::kAll) {
        final_logits(0, n, logits.subspan(first * kVocab, n * kVocab));
      } else if (first + n == tokens.size()) {
        final_logits(n - 1, 1, logits);
      }
      tokens_.insert(tokens_.end(), tokens.begin() + first, tokens.begin() + first + n);
    }
  }

 private:
  struct RopeTables {
    std::vector<float> frequencies;  // [head_dim / 2]
    std::vector<float> cos, sin;     // [chunk, head_dim / 2] for the chunk's positions
  };

  void run_chunk(std::span<const int> tokens) {
    const int n = static_cast<int>(tokens.size());
    embed(tokens);
    per_layer_inputs(tokens);
    // Dropping the table pages costs a TLB shootdown on every core: do it every
    // kReleaseEvery tokens, which bounds what the tables add to the resident size.
    tokens_since_release_ += n;
    if (tokens_since_release_ >= kReleaseEvery) {
      weights_.release_looked_up_rows();
      tokens_since_release_ = 0;
    }
    for (RopeTables& r : rope_) {
      const std::size_t half = r.frequencies.size();
      for (int t = 0; t < n; ++t) {
        const float pos = static_cast<float>(position() + t);
        for (std::size_t i = 0; i < half; ++i) {
          const float angle = pos * r.frequencies[i];
          r.cos[t * half + i] = std::cos(angle);
          r.sin[t * half + i] = std::sin(angle);
        }
      }
    }
    run_layers(n, std::make_index_sequence<kNumLayers>{});
  }

  // h = E[token] * embed_scale
  void embed(std::span<const int> tokens) {
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      ops::ScaledRow(weights_.global.embed_tokens, static_cast<std::size_t>(tokens[t]) * kHidden, kHidden, weights_.embedding_scale(),
                     x_.data() + t * kHidden);
    }
  }

  // ple[t][l] = (RMSNorm(W_plp h * hidden^-0.5) + E_ple[token][l] * sqrt(P)) * 2^-0.5
  void per_layer_inputs(std::span<const int> tokens) {
    const GlobalWeights& g = weights_.global;
    const std::size_t n = tokens.size(), width = static_cast<std::size_t>(kNumLayers) * kPle;
    matmul(g.per_layer_model_projection.linear, x_.data(), n, ple_.data());
    ops::Scale(ple_.data(), n * width, 1.0f / std::sqrt(static_cast<float>(kHidden)));
    norm_rows(ple_.data(), n * kNumLayers, kPle, g.per_layer_projection_norm);
    const float token_scale = std::sqrt(static_cast<float>(kPle));
    const float mix = 1.0f / std::sqrt(2.0f);
    const TensorView& table = g.embed_tokens_per_layer;  // mapped; only these rows are read
    for (std::size_t t = 0; t < n; ++t) {
      float* ple = ple_.data() + t * width;
      ops::ScaledRow(table, static_cast<std::size_t>(tokens[t]) * width, width, token_scale, ple_row_.data());
      ops::AddTo(ple_row_.data(), ple, width);
      ops::Scale(ple, width, mix);
    }
  }

  template <std::size_t... kLayer>
  void run_layers(int n, std::index_sequence<kLayer...>) {
    (run_layer<kLayers<V>[kLayer].kind>(static_cast<int>(kLayer), n), ...);
  }

  // One decoder layer of kind kKind over the chunk's n tokens (spec section 3).
  template <LayerKind kKind>
  void run_layer(int layer, int n) {
    constexpr int D = head_dim(kC, kKind.attention);
    const LayerWeights& w = weights_.layers[layer];
    const float eps = kC.rms_norm_eps;
    const std::size_t hidden_floats = static_cast<std::size_t>(n) * kHidden;
    const RopeTables& rope = rope_[static_cast<int>(kKind.attention)];
    KvCache& cache = caches_[kLayers<V>[layer].kv_cache_slot];

    // Attention.
    std::copy_n(x_.data(), hidden_floats, normed_.data());
    norm_rows(normed_.data(), n, kHidden, w.input_layernorm);
    if constexpr (kKind.kv_shared) {
      matmul(w.q_proj.linear, normed_.data(), n, q_.data());
    } else {
      matmul<3>({&w.q_proj.linear, &w.k_proj.linear, &w.v_proj.linear}, normed_.data(), n, {q_.data(), k_.data(), v_.data()});
    }
    norm_rows(q_.data(), n * kHeads, D, w.q_norm);
    apply_rope<D>(q_.data(), n, kHeads, rope);
    if constexpr (!kKind.kv_shared) {
      norm_rows(k_.data(), n * kKvHeads, D, w.k_norm);
      apply_rope<D>(k_.data(), n, kKvHeads, rope);
      for (int r = 0; r < n * kKvHeads; ++r) ops::RMSNormPlain(v_.data() + r * D, D, eps);
      const std::size_t row = static_cast<std::size_t>(kKvHeads) * D;
      for (int t = 0; t < n; ++t) cache.store(position() + t, k_.data() + t * row, v_.data() + t * row);
    }
    attend<D, kKind.attention>(cache, n);
    matmul(w.o_proj.linear, attn_.data(), n, normed_.data());
    norm_rows(normed_.data(), n, kHidden, w.post_attention_layernorm);
    ops::AddTo(normed_.data(), x_.data(), hidden_floats);

    // MLP.
    constexpr int F = ffn_width(kC, kKind);
    std::copy_n(x_.data(), hidden_floats, normed_.data());
    norm_rows(normed_.data(), n, kHidden, w.pre_feedforward_layernorm);
    matmul<2>({&w.gate_proj.linear, &w.up_proj.linear}, normed_.data(), n, {gate_.data(), up_.data()});
    for_rows(pool_, n, F, [&](std::size_t first, std::size_t end) {
      for (std::size_t t = first; t < end; ++t) ops::GeluMul(gate_.data() + t * F, up_.data() + t * F, F);
    });
    matmul(w.down_proj.linear, gate_.data(), n, normed_.data());
    norm_rows(normed_.data(), n, kHidden, w.post_feedforward_layernorm);
    ops::AddTo(normed_.data(), x_.data(), hidden_floats);

    // Per-layer input.
    matmul(w.per_layer_input_gate.linear, x_.data(), n, ple_gate_.data());
    for (int t = 0; t < n; ++t) {
      ops::GeluMul(ple_gate_.data() + t * kPle, ple_.data() + (static_cast<std::size_t>(t) * kNumLayers + layer) * kPle, kPle);
    }
    matmul(w.per_layer_projection.linear, ple_gate_.data(), n, normed_.data());
    norm_rows(normed_.data(), n, kHidden, w.post_per_layer_input_norm);
    ops::AddTo(normed_.data(), x_.data(), hidden_floats);

    ops::Scale(x_.data(), hidden_floats, w.layer_scalar.at(0));
  }

  // ops/matmul-inl.h: layers that share their input x [n, cols], in one parallel loop.
  template <std::size_t kCount>
  void matmul(const std::array<const WeightMatrix*, kCount>& ws, const float* x, std::size_t n,
              const std::array<float*, kCount>& outs) {
    ops::ParallelMatMul<kCount>(pool_, ws, x, n, outs, activations_);
  }
  void matmul(const WeightMatrix& w, const float* x, std::size_t n, float* out) { matmul<1>({&w}, x, n, {out}); }

  // RMSNorm of `rows` rows of `width` floats, in place.
  void norm_rows(float* x, std::size_t rows, std::size_t width, const TensorView& w) {
    for_rows(pool_, rows, width, [&](std::size_t first, std::size_t end) {
      ops::RMSNormRows(x + first * width, end - first, width, w, kC.rms_norm_eps);
    });
  }

  template <int D>
  void apply_rope(float* heads, int n, int num_heads, const RopeTables& rope) {
    for (int t = 0; t < n; ++t) {
      for (int h = 0; h < num_heads; ++h) {
        ops::Rope(heads + (static_cast<std::size_t>(t) * num_heads + h) * D, rope.cos.data() + t * D / 2,
                  rope.sin.data() + t * D / 2, D / 2);
      }
    }
  }

  // attn[t, h] = softmax(q[t, h] . K) V over the positions query t may see. The query
  // heads of one kv head run together (one pass over its keys and values for all of
  // them); when that leaves fewer work items than threads (decode), the group is split.
  template <int D, AttentionType kType>
  void attend(const KvCache& cache, int n) {
    int split = 1;
    while (split < kGroupHeads && n * kKvHeads * split < pool_.size()) split *= 2;
    const int group = kGroupHeads / split;
    pool_.parallel_for(static_cast<std::size_t>(n) * kKvHeads * split, [&](int thread, std::size_t begin, std::size_t end) {
      float* scores = scores_.data() + static_cast<std::size_t>(thread) * scores_per_thread_;
      for (std::size_t item = begin; item < end; ++item) {
        const int t = static_cast<int>(item / (kKvHeads * split));
        const int kv_head = static_cast<int>(item % (kKvHeads * split)) / split;
        const int first_head = kv_head * kGroupHeads + static_cast<int>(item % split) * group;
        const int query_pos = position() + t;
        const std::size_t offset = (static_cast<std::size_t>(t) * kHeads + first_head) * D;
        attend_heads<kGroupHeads>(group, q_.data() + offset, cache, kv_head, first_visible_position(query_pos, kType, kWindow),
                                  query_pos, scores, attn_.data() + offset);
      }
    });
  }

  // ops::AttendGroup for `group` heads (a power of two up to kMax), chosen at run time.
  template <int kMax>
  static void attend_heads(int group, const float* q, const KvCache& cache, int kv_head, int first, int last, float* scores,
                           float* out) {
    if constexpr (kMax > 1) {
      if (group < kMax) return attend_heads<kMax / 2>(group, q, cache, kv_head, first, last, scores, out);
    }
    ops::AttendGroup<kMax>(q, cache, kv_head, first, last, scores, out);
  }

  // logits of `count` chunk tokens from `first`: softcap(E . RMSNorm(x, norm)).
  void final_logits(std::size_t first, std::size_t count, std::span<float> out) {
    std::copy_n(x_.data() + first * kHidden, count * kHidden, normed_.data());
    ops::RMSNormRows(normed_.data(), count, kHidden, weights_.global.norm, kC.rms_norm_eps);
    matmul(weights_.global.embed_tokens.linear, normed_.data(), count, out.data());
    if (kC.final_logit_softcapping > 0) ops::Softcap(out.data(), out.size(), static_cast<float>(kC.final_logit_softcapping));
  }

  const Weights<V>& weights_;
  SessionOptions options_;
  ThreadPool& pool_;
  static constexpr int kReleaseEvery = 32;
  std::vector<int> tokens_;      // [position]: every token run so far
  int rewind_margin_ = 0;        // see can_rewind_to()
  int tokens_since_release_ = 0;
  std::vector<KvCache> caches_;  // one per layer that owns a cache, by kv_cache_slot
  RopeTables rope_[2];           // by AttentionType
  // Scratch for one chunk of up to prefill_chunk tokens.
  std::vector<float> x_;         // [chunk, hidden] residual stream
  std::vector<float> normed_;    // [chunk, hidden]
  std::vector<float> q_;         // [chunk, heads, head_dim]
  std::vector<float> k_, v_;     // [chunk, kv_heads, head_dim]
  std::vector<float> attn_;      // [chunk, heads, head_dim]
  std::vector<float> gate_, up_; // [chunk, ffn]
  std::vector<float> ple_;       // [chunk, layers, ple_dim]
  std::vector<float> ple_gate_;  // [chunk, ple_dim]
  std::vector<float> ple_row_;   // [layers, ple_dim]: one token's row of the PLE table
  std::vector<float> scores_;    // [threads, scores_per_thread_]
  std::size_t scores_per_thread_ = 0;
  QuantizedActivations activations_;  // the current int8/int4 matmul's input
};

}  // namespace gemma4
