// One draft step of an assistant (spec gemma4-assistant.md section 3), written once with
// Highway and compiled per SIMD target alongside the target's forward pass
// (model/passes-inl.h), so a session's target choice covers it. Templates only: a
// program instantiates them only when it makes a Drafter. What it works on is in
// model/draft_state.hpp; model/drafter.hpp is the public face.

#ifndef GEMMA4_MODEL_DRAFT_INL_H_
#define GEMMA4_MODEL_DRAFT_INL_H_
#include <algorithm>
#include <cstddef>
#include <utility>

#include "gemma4/model/draft_state.hpp"
#endif  // GEMMA4_MODEL_DRAFT_INL_H_

#if defined(GEMMA4_MODEL_DRAFT_TOGGLE) == defined(HWY_TARGET_TOGGLE)
#ifdef GEMMA4_MODEL_DRAFT_TOGGLE
#undef GEMMA4_MODEL_DRAFT_TOGGLE
#else
#define GEMMA4_MODEL_DRAFT_TOGGLE
#endif

#include "gemma4/model/decoder_layer-inl.h"
#include "gemma4/model/forward-inl.h"  // LookupRow: the target's embedding, as its pass looks it up
#include "gemma4/ops/attention-inl.h"
#include "gemma4/ops/int_dot-inl.h"
#include "gemma4/ops/matmul-inl.h"
#include "gemma4/ops/ops-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace gemma4 {
namespace HWY_NAMESPACE {

template <AssistantVariant A, IntDot kDot>
class Draft {
  using State = DraftState<A>;
  static constexpr const ModelConfig& kC = A::config;
  static constexpr int kHidden = State::kHidden, kBackbone = State::kBackbone, kHeads = State::kHeads, kKvHeads = State::kKvHeads;

 public:
  static void Step(State& state, int token, int position, DraftHead head) { Draft(state).step(token, position, head); }

 private:
  explicit Draft(State& state) : s_(state) {}

  void step(int token, int position, DraftHead head) {
    // u = concat(E_target[token] * sqrt(B) as the target scales it, g); x = W_pre u.
    LookupRow(s_.target.global.embed_tokens, token, kBackbone, s_.target.embedding_scale, s_.u.data());
    std::copy(s_.g.begin(), s_.g.end(), s_.u.begin() + kBackbone);
    matmul(s_.assistant.pre_projection.linear, s_.u.data(), s_.x.data());
    for (RopeTable& r : s_.rope) r.set_row(0, position);
    run_layers(position, std::make_index_sequence<kNumLayers<A>>{});
    std::copy(s_.x.begin(), s_.x.end(), s_.y.begin());
    RMSNormRows(s_.y.data(), 1, kHidden, s_.assistant.global.norm, kC.rms_norm_eps);
    if (head == DraftHead::kDense) {
      matmul(s_.assistant.ordered_embeddings.linear, s_.y.data(), s_.ordered_logits.data());
      scatter_logits(0, State::kVocab);
    } else {
      centroid_logits();
    }
    matmul(s_.assistant.post_projection.linear, s_.y.data(), s_.g.data());  // from the normed y
  }

  template <std::size_t... kLayer>
  void run_layers(int position, std::index_sequence<kLayer...>) {
    (run_layer<kLayers<A>[kLayer].kind>(static_cast<int>(kLayer), position), ...);
  }

  // A query-only layer: keys and values are the target's, as its donor layer stored them.
  template <LayerKind kKind>
  void run_layer(int layer, int position) {
    static_assert(kKind.kv_shared && !kLayers<A>[0].per_layer_input, "gemma4: an assistant's layers only query");
    TargetCache kv{*this, position};
    DecoderLayer<kC, kKind, false, kDot>(s_, s_.assistant.layers[layer], 1, s_.rope[static_cast<int>(kKind.attention)], kv);
  }

  // The target's cache of an attention type, as DecoderLayer reads it: keys
  // 0..position-1, and for a sliding layer the target's window at query `position`.
  struct TargetCache {
    Draft& d;
    int position;

    template <AttentionType kType, int D>
    void attend() {
      const int first = first_visible_position(position, kType, kC.sliding_window);
      const AttentionRun run{.cache = d.s_.caches[static_cast<int>(kType)], .q = d.s_.q.data(), .out = d.s_.attn.data(), .tokens = 1,
                             .last = position - 1};
      AttendAllHeads<kHeads, kKvHeads>(d.s_.pool, std::span(&run, 1), [first](int) { return first; }, d.s_.attention);
    }
  };

  // The centroid head: scores of the centroids, the ids of the best few, their logits
  // E_a[t] . y; every other id gets min(candidate logits) - 1.
  void centroid_logits() {
    matmul(s_.assistant.centroids.linear, s_.y.data(), s_.centroid_scores.data());
    for (int c = 0; c < State::kCentroids; ++c) s_.ranked[c] = {s_.centroid_scores[c], c};
    const auto kept = s_.ranked.begin() + s_.centroids_kept;
    // Ties go to the lower centroid, so the choice does not depend on the sort.
    std::partial_sort(s_.ranked.begin(), kept, s_.ranked.end(),
                      [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
    // A kept centroid's ids are one block of rows of the ordered table.
    const auto first_row = [&](std::size_t i) { return static_cast<std::size_t>(s_.ranked[i].second) * State::kIdsPerCentroid; };
    const WeightMatrix& table = s_.assistant.ordered_embeddings.linear;
    if (const QuantizedMatrix* packed = quantized_matrix(table)) QuantizeInput(s_.pool, s_.y.data(), 1, kHidden, packed->format(), s_.activations);
    s_.pool.parallel_for(static_cast<std::size_t>(s_.centroids_kept), [&](int, std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) {
        MatMulRows<kDot>(table, first_row(i), first_row(i) + State::kIdsPerCentroid, s_.y.data(), 1, s_.activations, s_.ordered_logits.data());
      }
    });
    float lowest = s_.ordered_logits[first_row(0)];
    for (int i = 0; i < s_.centroids_kept; ++i) {
      const auto block = s_.ordered_logits.begin() + static_cast<std::ptrdiff_t>(first_row(i));
      lowest = std::min(lowest, *std::min_element(block, block + State::kIdsPerCentroid));
    }
    std::fill(s_.logits.begin(), s_.logits.end(), lowest - 1.0f);
    for (int i = 0; i < s_.centroids_kept; ++i) scatter_logits(first_row(i), first_row(i) + State::kIdsPerCentroid);
  }

  // Logits of ordered rows [first, end) to their ids.
  void scatter_logits(std::size_t first, std::size_t end) {
    for (std::size_t r = first; r < end; ++r) s_.logits[s_.assistant.token_ordering[r]] = s_.ordered_logits[r];
  }

  void matmul(const WeightMatrix& w, const float* x, float* out) { ParallelMatMul<kDot, 1>(s_.pool, {&w}, x, 1, {out}, s_.activations); }

  State& s_;
};

// The draft step of this target, with the dot product the CPU does best, as the target's
// forward pass.
template <AssistantVariant A>
DraftPass<A> SimdTargetDraftPass() {
  return WithChosenIntDot([]<IntDot kDot>() { return DraftPass<A>{&Draft<A, kDot>::Step}; });
}

}  // namespace HWY_NAMESPACE
}  // namespace gemma4
HWY_AFTER_NAMESPACE();

#endif  // toggle
