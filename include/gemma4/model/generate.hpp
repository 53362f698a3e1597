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
#include <span>
#include <vector>

#include "gemma4/error.hpp"
#include "gemma4/model/session.hpp"
#include "gemma4/sampling/sampler.hpp"

namespace gemma4 {

enum class StopReason { kStopToken, kMaxTokens, kContextFull, kCaller };

inline const char* to_string(StopReason r) {
  switch (r) {
    case StopReason::kStopToken: return "stop token";
    case StopReason::kMaxTokens: return "token limit";
    case StopReason::kContextFull: return "context full";
    case StopReason::kCaller: return "stopped";
  }
  return "?";
}

struct GenerationStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;        // sampled tokens, the final stop id included
  double prefill_seconds = 0;      // feeding the prompt
  double first_token_seconds = 0;  // from the start to the first sampled token
  double decode_seconds = 0;       // the rest

  double prefill_tokens_per_second() const { return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0; }
  double decode_tokens_per_second() const {
    return decode_seconds > 0 && generated_tokens > 1 ? (generated_tokens - 1) / decode_seconds : 0;
  }
};

struct GenerationResult {
  std::vector<int> tokens;  // every sampled token, in order; a stop id is the last
  StopReason stop = StopReason::kMaxTokens;
  GenerationStats stats;
};

template <Variant V>
class Generator {
 public:
  // `session` must outlive the generator; it may already hold earlier turns.
  Generator(Session<V>& session, const SamplingOptions& sampling, std::vector<int> stop_ids)
      : session_(session), sampler_(sampling, V::config.vocab_size), stop_ids_(std::move(stop_ids)),
        logits_(static_cast<std::size_t>(V::config.vocab_size)) {}
  Generator(Session<V>&&, const SamplingOptions&, std::vector<int>) = delete;  // would dangle

  // Feeds `prompt` after what the session holds, then generates up to max_new_tokens.
  // on_token(id) sees each sampled token that is not a stop id and returns false to stop.
  // The repetition penalty counts every token the session holds (Session::tokens()).
  template <typename OnToken>
  GenerationResult generate(std::span<const int> prompt, int max_new_tokens, OnToken&& on_token) {
    if (prompt.empty()) fail(ErrorKind::kInvalidArgument, "generate: empty prompt (it needs at least <bos>)");
    if (max_new_tokens < 1) fail(ErrorKind::kInvalidArgument, "generate: max_new_tokens must be at least 1, got {}", max_new_tokens);
    const int room = session_.max_context() - session_.position();
    if (static_cast<long>(prompt.size()) > room) {
      fail(ErrorKind::kContextFull, "the prompt is {} tokens, but only {} of the context's {} positions are free; shorten it or raise the context size",
           prompt.size(), room, session_.max_context());
    }
    using Clock = std::chrono::steady_clock;
    const auto seconds_since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };

    GenerationResult result;
    result.tokens.reserve(static_cast<std::size_t>(max_new_tokens));  // no growth in the decode loop
    result.stats.prompt_tokens = static_cast<int>(prompt.size());
    const auto start = Clock::now();
    session_.forward(prompt, Logits::kLast, logits_);
    result.stats.prefill_seconds = seconds_since(start);

    Clock::time_point decode_start;
    while (true) {
      const int id = sampler_.sample(logits_, session_.tokens());
      result.tokens.push_back(id);
      if (result.tokens.size() == 1) {
        result.stats.first_token_seconds = seconds_since(start);
        decode_start = Clock::now();
      }
      if (std::find(stop_ids_.begin(), stop_ids_.end(), id) != stop_ids_.end()) {
        result.stop = StopReason::kStopToken;
        break;
      }
      if (!on_token(id)) {
        result.stop = StopReason::kCaller;
        break;
      }
      if (static_cast<int>(result.tokens.size()) >= max_new_tokens) {
        result.stop = StopReason::kMaxTokens;
        break;
      }
      if (session_.position() >= session_.max_context()) {
        result.stop = StopReason::kContextFull;
        break;
      }
      session_.forward(std::span(&id, 1), Logits::kLast, logits_);
    }
    result.stats.generated_tokens = static_cast<int>(result.tokens.size());
    result.stats.decode_seconds = seconds_since(decode_start);
    return result;
  }

  Session<V>& session() { return session_; }

 private:
  Session<V>& session_;
  Sampler sampler_;
  std::vector<int> stop_ids_;
  std::vector<float> logits_;  // [vocab]
};

}  // namespace gemma4
