#pragma once
// Drafting tokens with an assistant (spec gemma4-assistant.md section 3) for a target
// session: the draft source of speculative generation (model/generate.hpp).
//
//   const gemma4::Assistant<gemma4::E2BAssistant> assistant(assistant_dir);
//   gemma4::Drafter<gemma4::E2BAssistant> drafter(assistant, session, {.max_drafts = 3});
//   auto result = generator.generate(prompt, 256, drafter, on_token);
//
// A round starts from the session as committed (positions 0..p-1), the token b at p
// that the target produced last and the target's final-normed hidden row h at p-1. The
// assistant reads the target's caches and keeps no state between rounds; it queries at
// position p for every draft of the round. Not for concurrent use.

#include <algorithm>
#include <cmath>
#include <span>

#include "gemma4/error.hpp"
#include "gemma4/model/draft_state.hpp"
#include "gemma4/model/session.hpp"

namespace gemma4 {

struct DrafterOptions {
  int max_drafts = 3;            // k: drafts per round (llama.cpp's default)
  float min_probability = 0.0f;  // stop a round at a draft whose probability is below this; 0: never
  DraftHead head = DraftHead::kCentroids;
  int centroids_kept = 0;        // centroids the head keeps; 0: the config's top k (32)
};

// The draft step of the SIMD target the session's forward pass runs on (defined in
// model/passes.hpp).
template <AssistantVariant A>
DraftPass<A> choose_draft_pass();

template <AssistantVariant A>
class Drafter {
  using Target = typename A::Target;
  using State = DraftState<A>;

 public:
  // `assistant` and `session` must outlive the drafter.
  Drafter(const Assistant<A>& assistant, const Session<Target>& session, const DrafterOptions& options = {})
      : session_(session), options_(options),
        state_(assistant, session.weights(), session.kv_cache(State::cache_slot(AttentionType::kSliding)),
               session.kv_cache(State::cache_slot(AttentionType::kFull)), session.pool(),
               options.centroids_kept == 0 ? A::head.centroid_intermediate_top_k.value : options.centroids_kept),
        pass_(choose_draft_pass<A>()) {
    if (options.max_drafts < 0) fail(ErrorKind::kInvalidArgument, "max_drafts must not be negative, got {}", options.max_drafts);
    if (!(options.min_probability >= 0.0f && options.min_probability <= 1.0f)) {
      fail(ErrorKind::kInvalidArgument, "min_probability must be in [0, 1], got {}", options.min_probability);
    }
  }
  Drafter(const Assistant<A>&&, const Session<Target>&, const DrafterOptions& = {}) = delete;  // would dangle
  Drafter(const Assistant<A>&, const Session<Target>&&, const DrafterOptions& = {}) = delete;

  int max_drafts() const { return options_.max_drafts; }
  // The session whose KV caches the drafts read: the one generation must run.
  const Session<Target>& session() const { return session_; }

  // Drafts up to out.size() tokens for the round at the session's position from `token`
  // (b) and `hidden` (h); stops after a stop id or an unlikely draft. Returns the count.
  int draft(int token, std::span<const float> hidden, std::span<int> out, std::span<const int> stop_ids) {
    if (out.empty()) return 0;
    std::span<const float> logits = first_step(token, hidden);
    for (std::size_t n = 0;;) {
      const int id = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());  // lowest id on a tie
      if (options_.min_probability > 0.0f && probability(logits, id) < options_.min_probability) return static_cast<int>(n);
      out[n++] = id;
      if (n == out.size() || std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end()) return static_cast<int>(n);
      logits = step(id);
    }
  }

  // The logits of a round's first draft step ([vocab]; ids the centroid head does not
  // score hold its lowest logit - 1): what `gemma4 logits --draft` writes.
  std::span<const float> first_step(int token, std::span<const float> hidden) {
    if (hidden.size() != state_.g.size()) fail(ErrorKind::kInvalidArgument, "draft: hidden row has {} floats, needs {}", hidden.size(), state_.g.size());
    if (session_.position() < 1) fail(ErrorKind::kInvalidArgument, "draft: the session holds no tokens to draft from");
    if (token < 0 || token >= State::kVocab) fail(ErrorKind::kInvalidArgument, "draft: token id {} is outside the vocabulary [0, {})", token, State::kVocab);
    std::copy(hidden.begin(), hidden.end(), state_.g.begin());
    return step(token);
  }

  // The logits of the round's next draft step, from the previous draft `token`.
  std::span<const float> next_step(int token) {
    if (token < 0 || token >= State::kVocab) fail(ErrorKind::kInvalidArgument, "draft: token id {} is outside the vocabulary [0, {})", token, State::kVocab);
    return step(token);
  }

 private:
  std::span<const float> step(int token) {
    pass_.step(state_, token, session_.position(), options_.head);
    return state_.logits;
  }

  // softmax(logits)[id]
  static float probability(std::span<const float> logits, int id) {
    const float top = logits[id];
    double sum = 0;
    for (const float l : logits) sum += std::exp(static_cast<double>(l - top));
    return static_cast<float>(1.0 / sum);
  }

  const Session<Target>& session_;
  DrafterOptions options_;
  State state_;
  DraftPass<A> pass_;
};

}  // namespace gemma4
