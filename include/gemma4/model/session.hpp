#pragma once
// A session runs the Gemma 4 forward pass over a token stream and owns the KV caches:
// the public face of model/pass_state.hpp (what is held) and model/forward-inl.h
// (the code, per SIMD target). Everything is sized when the session is created;
// running tokens allocates nothing.
//
// SIMD target: the passes are compiled for the one Highway target the compiler's flags
// give (-march=...), or for several chosen at run time (GEMMA4_DYNAMIC_DISPATCH), here
// or once for the whole program (GEMMA4_EXTERN_PASSES): model/passes.hpp.

#include <algorithm>
#include <span>

#include "gemma4/error.hpp"
#include "gemma4/model/pass_state.hpp"
#include "gemma4/weights/load.hpp"

#ifndef GEMMA4_DYNAMIC_DISPATCH
#define GEMMA4_DYNAMIC_DISPATCH 0
#endif
#ifndef GEMMA4_EXTERN_PASSES
#define GEMMA4_EXTERN_PASSES 0
#endif
#if !GEMMA4_EXTERN_PASSES
#include "gemma4/model/passes.hpp"
#endif

namespace gemma4 {

enum class Logits { kAll, kLast };

inline constexpr bool kDynamicDispatch = GEMMA4_DYNAMIC_DISPATCH;

// The forward pass of the best SIMD target this program was built for and the CPU has
// (defined in model/passes.hpp).
template <Variant V>
ForwardPass<V> choose_forward_pass();

template <Variant V>
class Session {
  static constexpr int kVocab = V::config.vocab_size;
  static constexpr int kHidden = V::config.hidden_size;

 public:
  // `weights` must outlive the session. A session is not thread-safe; several sessions
  // may share one Weights from different threads (the weights are read-only).
  Session(const Weights<V>&&, const SessionOptions& = {}) = delete;  // would dangle
  explicit Session(const Weights<V>& weights, const SessionOptions& options = {})
      : options_(options),
        sequence_(options),
        weights_(weights),
        pass_state_(weights, weights.residency(), options.prefill_chunk, pool_or_default(options.pool)),
        pass_(choose_forward_pass<V>()) {}

  // The tokens the KV caches hold, in order: the one record of what the session has seen.
  std::span<const int> tokens() const { return sequence_.tokens; }
  int position() const { return sequence_.position(); }
  int threads() const { return pass_state_.pool.size(); }
  // Memory held by the KV caches, all sized when the session was made.
  std::size_t kv_cache_bytes() const {
    std::size_t bytes = 0;
    for (const KvCache& c : sequence_.caches) bytes += c.bytes();
    return bytes;
  }
  // Memory of the scratch for one prefill chunk, sized when the session was made.
  std::size_t scratch_bytes() const { return pass_state_.bytes(); }
  const SessionOptions& options() const { return options_; }
  int max_context() const { return options_.max_context; }
  const Weights<V>& weights() const { return weights_; }
  ThreadPool& pool() const { return pass_state_.pool; }
  // The KV cache of layers with kv_cache_slot `slot`: what an assistant reads.
  const KvCache& kv_cache(int slot) const { return sequence_.caches.at(static_cast<std::size_t>(slot)); }
  void reset() {
    sequence_.tokens.clear();
    sequence_.rewind_floor = 0;
  }

  // Whether rewind(position) can keep what the caches hold before `position`: full
  // layers keep every position, but a sliding layer's ring reaches only so far back
  // (prefill_chunk positions, and at least 1; any with rewind_anywhere), and a restored
  // prompt cache only as far as the sliding keys it held.
  bool can_rewind_to(int position) const {
    return position >= sequence_.rewind_floor && position <= this->position() && this->position() - position <= rewind_margin();
  }
  int rewind_margin() const { return sequence_.rewind_margin; }
  // Forgets the tokens from `position` on, as if only tokens()[0, position) had been run.
  void rewind(int position) {
    if (!can_rewind_to(position)) {
      fail(ErrorKind::kInvalidArgument,
           "cannot rewind a session at position {} to {}: its sliding-window caches keep {} positions back at most, and nothing before {}",
           this->position(), position, sequence_.rewind_margin, sequence_.rewind_floor);
    }
    sequence_.tokens.resize(static_cast<std::size_t>(position));
  }

  // Runs `tokens` at the next positions. `logits` receives [tokens.size(), vocab] floats
  // for Logits::kAll, or [vocab] for the last token with Logits::kLast; `hidden`, if not
  // empty, the same rows of the final-normed hidden state ([rows, hidden_size], what the
  // LM head reads and what an assistant drafts from). Errors (and no change to the
  // session) for an unknown token id, a context overflow, a wrong size or a corrupt
  // table row of a packed model.
  void forward(std::span<const int> tokens, Logits which, std::span<float> logits, std::span<float> hidden = {}) {
    check_next_tokens(tokens);
    const std::size_t rows = which == Logits::kAll ? tokens.size() : 1;
    if (logits.size() != rows * kVocab) fail(ErrorKind::kInvalidArgument, "forward: logits buffer holds {} floats, needs {}", logits.size(), rows * kVocab);
    if (!hidden.empty() && hidden.size() != rows * kHidden) {
      fail(ErrorKind::kInvalidArgument, "forward: hidden buffer holds {} floats, needs {}", hidden.size(), rows * kHidden);
    }

    const std::size_t chunk = static_cast<std::size_t>(options_.prefill_chunk);
    for (std::size_t first = 0; first < tokens.size(); first += chunk) {
      const std::size_t n = std::min(chunk, tokens.size() - first);
      const SequenceRun<V> run{&sequence_, static_cast<int>(n)};
      pass_.run(pass_state_, tokens.subspan(first, n), std::span(&run, 1));
      if (which == Logits::kAll) {
        pass_.final_logits(pass_state_, 0, n, logits.subspan(first * kVocab, n * kVocab), hidden.empty() ? nullptr : hidden.data() + first * kHidden);
      } else if (first + n == tokens.size()) {
        pass_.final_logits(pass_state_, n - 1, 1, logits, hidden.empty() ? nullptr : hidden.data());
      }
      sequence_.tokens.insert(sequence_.tokens.end(), tokens.begin() + first, tokens.begin() + first + n);
    }
  }

  // Errors unless `tokens` can run next: ids in the vocabulary (and, in a packed model,
  // table rows that are intact), and room in the context.
  void check_next_tokens(std::span<const int> tokens) const {
    if (tokens.empty()) fail(ErrorKind::kInvalidArgument, "forward: no tokens");
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] < 0 || tokens[i] >= kVocab) {
        fail(ErrorKind::kInvalidArgument, "token id {} at index {} is outside the vocabulary [0, {})", tokens[i], i, kVocab);
      }
    }
    if (tokens.size() > static_cast<std::size_t>(max_context() - position())) {
      fail(ErrorKind::kContextFull, "{} tokens at position {} exceed the context of {} positions", tokens.size(), position(), max_context());
    }
    weights().check_looked_up_rows(tokens);
  }

  // The Highway target the forward pass runs on (e.g. "AVX2") and how its int8/int4
  // matmuls multiply ("AVX-512 VNNI", "16-bit pairs" or "portable").
  const char* simd_target() const { return pass_.simd_target; }
  const char* integer_dot() const { return pass_.integer_dot; }

 private:
  template <Variant>
  friend class Batch;  // runs the sequence in its own passes
  template <Variant>
  friend struct PromptCacheFile;  // writes and reads the sequence (model/prompt_cache.hpp)

  SessionOptions options_;
  SequenceState<V> sequence_;
  const Weights<V>& weights_;
  PassState<V> pass_state_;  // for prefill chunks
  ForwardPass<V> pass_;
};

// How many leading tokens `a` and `b` share.
inline std::size_t common_prefix(std::span<const int> a, std::span<const int> b) {
  const std::size_t n = std::min(a.size(), b.size());
  return static_cast<std::size_t>(std::mismatch(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(n), b.begin()).first - a.begin());
}

// Leaves in `session` the longest prefix of `wanted` it holds and can keep (at least the
// last token of `wanted` is left to feed again, for its logits) and returns its length;
// where the sliding-window caches cannot rewind that far, the session starts over (0).
// A chat that re-renders its whole history each turn feeds only what is new.
template <Variant V>
std::size_t keep_common_prefix(Session<V>& session, std::span<const int> wanted) {
  const std::size_t common = common_prefix(session.tokens(), wanted.first(wanted.empty() ? 0 : wanted.size() - 1));
  if (!session.can_rewind_to(static_cast<int>(common))) {
    session.reset();
    return 0;
  }
  session.rewind(static_cast<int>(common));
  return common;
}

}  // namespace gemma4
