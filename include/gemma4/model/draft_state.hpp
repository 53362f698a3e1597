#pragma once
// What one draft step of an assistant works on (spec gemma4-assistant.md section 3),
// apart from the code that runs it (model/draft-inl.h, per SIMD target): the assistant's
// and the target's weights, the two target caches it reads, the carried state g and
// the scratch of one step, all sized up front. No Highway here.

#include <algorithm>
#include <array>
#include <cstddef>
#include <utility>
#include <vector>

#include "gemma4/config/assistant.hpp"
#include "gemma4/model/pass_state.hpp"
#include "gemma4/weights/assistant_weights.hpp"

namespace gemma4 {

// How draft logits are computed: the published centroid head (the best centroids' ids
// only), or the dense head over the whole vocabulary (for tests and comparisons).
enum class DraftHead { kCentroids, kDense };

template <AssistantVariant A>
struct DraftState {
  using Target = typename A::Target;
  static constexpr const ModelConfig& kC = A::config;
  static constexpr int kHidden = kC.hidden_size;
  static constexpr int kBackbone = A::head.backbone_hidden_size;
  static constexpr int kHeads = kC.num_attention_heads;
  static constexpr int kKvHeads = kC.num_key_value_heads;
  static constexpr int kVocab = kC.vocab_size;
  static constexpr int kMaxHeadDim = std::max(kC.head_dim.value, kC.global_head_dim.value);
  static constexpr int kCentroids = A::head.num_centroids;
  static constexpr int kIdsPerCentroid = kVocab / kCentroids;
  static_assert(kIdsPerCentroid % kRowBlock == 0, "gemma4: a centroid's ids are whole row blocks of a packed head table");
  static_assert(kFitsTarget<A>, "gemma4: this assistant does not fit its target");
  static_assert(kC.head_dim % kValueChunk == 0 && kC.global_head_dim % kValueChunk == 0,
                "gemma4: the attention kernel needs head dims that are multiples of 32");

  // The target's cache each attention type reads (E2B: layers 13 and 14).
  static constexpr int cache_slot(AttentionType type) { return kv_cache_slot(Target::config, assistant_donor(Target::config, type)); }

  DraftState(const Assistant<A>& assistant, const ModelWeights<Target>& target, const KvCache& sliding_cache, const KvCache& full_cache,
             ThreadPool& pool, int centroids_kept)
      : assistant(assistant), target(target), caches{&sliding_cache, &full_cache}, pool(pool), centroids_kept(centroids_kept),
        rope(rope_tables(kC, 1)), attention(pool.size(), std::size_t{kHeads / kKvHeads}, kMaxHeadDim) {
    if (centroids_kept < 1 || centroids_kept > kCentroids) {
      fail(ErrorKind::kInvalidArgument, "an assistant keeps between 1 and {} centroids, not {}", kCentroids, centroids_kept);
    }
    u.resize(2 * kBackbone);
    g.resize(kBackbone);
    x.resize(kHidden);
    normed.resize(kHidden);
    y.resize(kHidden);
    q.resize(static_cast<std::size_t>(kHeads) * kMaxHeadDim);
    attn.resize(q.size());
    gate.resize(kC.intermediate_size);
    up.resize(kC.intermediate_size);
    centroid_scores.resize(kCentroids);
    ranked.resize(kCentroids);
    ordered_logits.resize(kVocab);
    logits.resize(kVocab);
    activations.reserve(1, std::max<std::size_t>({2 * kBackbone, std::size_t{kHeads} * kMaxHeadDim, std::size_t(kC.intermediate_size)}));
  }

  const Assistant<A>& assistant;
  const ModelWeights<Target>& target;
  const KvCache* caches[2];  // by AttentionType: the target's donor caches
  ThreadPool& pool;
  int centroids_kept;
  std::vector<float> u;      // [2 * backbone]: target embedding, then g
  std::vector<float> g;      // [backbone]: the carried state (h, then post-projections)
  std::vector<float> x, normed, y;  // [hidden]
  std::vector<float> q, attn;       // [heads, head_dim]
  std::vector<float> gate, up;      // [intermediate]
  std::vector<float> centroid_scores;           // [num_centroids]
  std::vector<std::pair<float, int>> ranked;    // [num_centroids]: (score, centroid)
  std::vector<float> ordered_logits;            // [vocab] in token_ordering's order; the kept centroids' blocks only
  std::vector<float> logits;                    // [vocab]
  std::array<RopeTable, 2> rope;                // by AttentionType, at the round's position
  AttentionScratch attention;
  QuantizedActivations activations;             // the quantized input of packed matrices
};

// The draft step as compiled for one SIMD target.
template <AssistantVariant A>
struct DraftPass {
  // One step at round position `position` from input token `token` and state.g; leaves
  // the logits in state.logits and the next state in state.g.
  void (*step)(DraftState<A>& state, int token, int position, DraftHead head);
};

}  // namespace gemma4
