#pragma once
// The generation loop: feed a prompt into a Session, then sample, feed, sample... until
// a stop id, a token budget, a full context or the caller says stop. Times prefill and
// decode separately for the summary line every front end prints.
//
//   gemma4::Generator<gemma4::E2B> generator(session, sampling, stop_ids);
//   auto result = generator.generate(prompt_ids, /*max_new_tokens=*/256,
//                                    [&](int id) { print(id); return true; });
//
// The last sampled token (the stop id, or the one that hit a limit) is never fed to the
// session: session.position() counts the prompt and all generated tokens but that one.
// Allocates the result up front, not per token; not for concurrent use.

#include <algorithm>
#include <chrono>
#include <concepts>
#include <span>
#include <vector>

#include "gemma4/error.hpp"
#include "gemma4/grammar/grammar_constraint.hpp"
#include "gemma4/model/session.hpp"
#include "gemma4/sampling/sampler.hpp"

namespace gemma4 {

enum class StopReason { kStopToken, kMaxTokens, kContextFull, kCaller, kGrammar };

inline const char* to_string(StopReason r) {
  switch (r) {
    case StopReason::kStopToken: return "stop token";
    case StopReason::kMaxTokens: return "token limit";
    case StopReason::kContextFull: return "context full";
    case StopReason::kCaller: return "stopped";
    case StopReason::kGrammar: return "grammar";
  }
  return "?";
}

struct GenerationStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;        // sampled tokens, the final stop id included
  double prefill_seconds = 0;      // feeding the prompt
  double first_token_seconds = 0;  // from the start to the first sampled token
  double decode_seconds = 0;       // the rest
  int target_passes = 0;           // target forward passes after the prompt's
  int drafted = 0;                 // tokens an assistant drafted (speculative generation)
  int accepted = 0;                // drafts the target agreed with

  double prefill_tokens_per_second() const { return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0; }
  double decode_tokens_per_second() const {
    return decode_seconds > 0 && generated_tokens > 1 ? (generated_tokens - 1) / decode_seconds : 0;
  }
  double acceptance_rate() const { return drafted > 0 ? static_cast<double>(accepted) / drafted : 0; }
  // Tokens each target pass after the prompt's produced: 1 without drafts.
  double tokens_per_target_pass() const { return target_passes > 0 ? static_cast<double>(generated_tokens - 1) / target_passes : 0; }
};

struct GenerationResult {
  std::vector<int> tokens;  // every sampled token, in order; a stop id is the last
  StopReason stop = StopReason::kMaxTokens;
  GenerationStats stats;
};

// Whether generation goes on after sampling `id` (already in result.tokens): not after a
// stop id, a false from on_token(id) or the token budget; if not, sets result.stop.
template <typename OnToken>
bool keep_going(int id, std::span<const int> stop_ids, int max_new_tokens, GenerationResult& result, OnToken& on_token) {
  if (std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end()) {
    result.stop = StopReason::kStopToken;
    return false;
  }
  if (!on_token(id)) {
    result.stop = StopReason::kCaller;
    return false;
  }
  if (static_cast<int>(result.tokens.size()) >= max_new_tokens) {
    result.stop = StopReason::kMaxTokens;
    return false;
  }
  return true;
}

// A constrained step's share (Generator, BatchGenerator), after `id` was sampled: a token
// that is not a stop id advances the constraint; false (and the stop reason set) when the
// grammar is then complete and no stop id can end it.
inline bool constraint_goes_on(GrammarConstraint* constraint, int id, std::span<const int> stop_ids, GenerationResult& result) {
  if (constraint == nullptr || std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end()) return true;
  constraint->accept(id);
  if (constraint->can_continue() || !stop_ids.empty()) return true;
  result.stop = StopReason::kGrammar;
  return false;
}

// Errors unless generating after `prompt` in `session` can start: a prompt of at least
// one token that fits the free context, and a budget of at least one token.
template <Variant V>
void check_generation(const Session<V>& session, std::span<const int> prompt, int max_new_tokens) {
  if (prompt.empty()) fail(ErrorKind::kInvalidArgument, "generate: empty prompt (it needs at least <bos>)");
  if (max_new_tokens < 1) fail(ErrorKind::kInvalidArgument, "generate: max_new_tokens must be at least 1, got {}", max_new_tokens);
  const int room = session.max_context() - session.position();
  if (static_cast<long>(prompt.size()) > room) {
    fail(ErrorKind::kContextFull, "the prompt is {} tokens, but only {} of the context's {} positions are free; shorten it or raise the context size",
         prompt.size(), room, session.max_context());
  }
}

// What speculative generation drafts with (model/drafter.hpp's Drafter): given the last
// token, the target's final-normed hidden row before it and room for up to max_drafts(),
// it writes its guesses of the next tokens and returns how many.
template <typename D>
concept DraftSource = requires(D& d, int token, std::span<const float> hidden, std::span<int> out, std::span<const int> stop_ids) {
  { d.max_drafts() } -> std::convertible_to<int>;
  { d.draft(token, hidden, out, stop_ids) } -> std::convertible_to<int>;
};

// Plain generation: one token per target pass.
struct NoDrafts {
  int max_drafts() const { return 0; }
  int draft(int, std::span<const float>, std::span<int>, std::span<const int>) { return 0; }
};

template <Variant V>
class Generator {
  static constexpr std::size_t kVocab = V::config.vocab_size, kHidden = V::config.hidden_size;

 public:
  // `session` must outlive the generator; it may already hold earlier turns.
  Generator(Session<V>& session, const SamplingOptions& sampling, std::vector<int> stop_ids)
      : session_(session), sampler_(sampling, V::config.vocab_size), stop_ids_(std::move(stop_ids)), logits_(kVocab) {}
  Generator(Session<V>&&, const SamplingOptions&, std::vector<int>) = delete;  // would dangle

  // Every later generate() samples only tokens `constraint` allows, from its start; a stop
  // id only where its grammar may end (grammar/grammar_constraint.hpp). Generation stops
  // with StopReason::kGrammar when the grammar allows nothing more and there is no stop id
  // to end it, or no token of the vocabulary can continue it. Null: unconstrained. The
  // constraint must outlive its use.
  void constrain(GrammarConstraint* constraint) { constraint_ = constraint; }

  // Feeds `prompt` after what the session holds, then generates up to max_new_tokens.
  // on_token(id) sees each sampled token that is not a stop id and returns false to stop.
  // The repetition penalty counts every token the session holds (Session::tokens()).
  template <typename OnToken>
  GenerationResult generate(std::span<const int> prompt, int max_new_tokens, OnToken&& on_token) {
    NoDrafts none;
    return generate(prompt, max_new_tokens, none, std::forward<OnToken>(on_token));
  }

  // The same with speculative decoding (spec gemma4-assistant.md section 4): each round
  // `drafts` proposes up to k tokens, the target runs [last, drafts...] in one pass, and
  // every sampled token that agrees with its draft lets the next row be used as well.
  // Each token is sampled from the very row, with the very history and random draw, that
  // plain generation would use: the output is the same token for token (greedy or
  // seeded), only faster when drafts are accepted.
  template <DraftSource Drafts, typename OnToken>
  GenerationResult generate(std::span<const int> prompt, int max_new_tokens, Drafts& drafts, OnToken&& on_token) {
    check_generation(session_, prompt, max_new_tokens);
    // A drafter reads the caches of the session it was made with: drafting for another
    // would draft from the wrong history.
    if constexpr (requires { drafts.session(); }) {
      if (static_cast<const void*>(&drafts.session()) != static_cast<const void*>(&session_)) {
        fail(ErrorKind::kInvalidArgument, "generate: the drafter was made for another session; make it with this generator's session");
      }
    }
    const int max_drafts = drafts.max_drafts();
    if (max_drafts > session_.rewind_margin()) {
      fail(ErrorKind::kInvalidArgument, "{} drafts per round need a session that can rewind {} positions; it can {} (raise prefill_chunk)", max_drafts,
           max_drafts, session_.rewind_margin());
    }
    const bool speculative = max_drafts > 0;
    logits_.resize(static_cast<std::size_t>(max_drafts + 1) * kVocab);
    hidden_.resize(speculative ? static_cast<std::size_t>(max_drafts + 1) * kHidden : 0);
    drafted_.resize(static_cast<std::size_t>(max_drafts));
    drafted_input_.reserve(static_cast<std::size_t>(max_drafts + 1));
    using Clock = std::chrono::steady_clock;
    const auto seconds_since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };

    if (constraint_ != nullptr) constraint_->reset();
    GenerationResult result;
    result.tokens.reserve(static_cast<std::size_t>(max_new_tokens));  // no growth in the decode loop
    result.stats.prompt_tokens = static_cast<int>(prompt.size());
    const auto start = Clock::now();
    session_.forward(prompt, Logits::kLast, row(0), hidden_row(0));
    result.stats.prefill_seconds = seconds_since(start);

    // Each round: rows 0..k of the last pass, for the tokens [last, drafted_[0..k)].
    Clock::time_point decode_start;
    int k = 0;
    while (true) {
      const int first_row_position = session_.position() - k;  // the history row 0 was computed after
      int i = 0, id = -1;
      bool go_on = true;
      for (; i <= k; ++i) {
        if (constraint_ != nullptr && !constraint_->apply(row(i), stop_ids_)) {
          result.stop = StopReason::kGrammar;
          go_on = false;
          break;
        }
        id = sampler_.sample(row(i), session_.tokens().first(static_cast<std::size_t>(first_row_position + i)));
        result.tokens.push_back(id);
        if (result.tokens.size() == 1) {
          result.stats.first_token_seconds = seconds_since(start);
          decode_start = Clock::now();
        }
        go_on = keep_going(id, stop_ids_, max_new_tokens, result, on_token) && constraint_goes_on(constraint_, id, stop_ids_, result);
        if (!go_on || i == k || id != drafted_[i]) break;
        ++result.stats.accepted;
      }
      // Keep what this round accepted; the rejected drafts (and the draft of a token
      // that ended generation) are forgotten.
      session_.rewind(first_row_position + i);
      if (go_on && session_.position() >= session_.max_context()) {
        result.stop = StopReason::kContextFull;
        go_on = false;
      }
      if (!go_on) break;

      // The next round: draft after `id`, as many as the token budget and the context
      // leave room for, then run the target on [id, drafts...].
      const int budget = std::min({max_drafts, max_new_tokens - static_cast<int>(result.tokens.size()) - 1,
                                   session_.max_context() - session_.position() - 1});
      k = budget > 0 ? drafts.draft(id, hidden_row(i), std::span(drafted_).first(static_cast<std::size_t>(budget)), stop_ids_) : 0;
      result.stats.drafted += k;
      drafted_input_.assign(1, id);
      drafted_input_.insert(drafted_input_.end(), drafted_.begin(), drafted_.begin() + k);
      session_.forward(drafted_input_, Logits::kAll, std::span(logits_).first(static_cast<std::size_t>(k + 1) * kVocab),
                       speculative ? std::span(hidden_).first(static_cast<std::size_t>(k + 1) * kHidden) : std::span<float>{});
      ++result.stats.target_passes;
    }
    result.stats.generated_tokens = static_cast<int>(result.tokens.size());
    result.stats.decode_seconds = result.tokens.empty() ? 0 : seconds_since(decode_start);  // a grammar may allow no first token
    return result;
  }

  Session<V>& session() { return session_; }
  const Session<V>& session() const { return session_; }

 private:
  std::span<float> row(int i) { return std::span(logits_).subspan(static_cast<std::size_t>(i) * kVocab, kVocab); }
  std::span<float> hidden_row(int i) { return hidden_.empty() ? std::span<float>{} : std::span(hidden_).subspan(static_cast<std::size_t>(i) * kHidden, kHidden); }

  Session<V>& session_;
  Sampler sampler_;
  std::vector<int> stop_ids_;
  std::vector<float> logits_;        // [max drafts + 1, vocab]: the rows of the last target pass
  std::vector<float> hidden_;        // [max drafts + 1, hidden]: their final-normed hidden rows (speculative only)
  std::vector<int> drafted_;         // [max drafts]
  std::vector<int> drafted_input_;   // [max drafts + 1]: what the target runs next
  GrammarConstraint* constraint_ = nullptr;
};

}  // namespace gemma4
