#pragma once
// Picks the next token from a row of logits, in Hugging Face's order: repetition
// penalty, then temperature, top-k, top-p, min-p, then a draw. Greedy (temperature 0)
// takes the argmax after the penalty. All buffers are sized at construction, and the
// random stream is std::mt19937_64 (fully specified by the standard), so a seed gives
// the same tokens on every platform and standard library.
//
//   gemma4::Sampler sampler(options, vocab_size);
//   int next = sampler.sample(logits, tokens_so_far);   // logits are modified
//
// One Sampler per generation stream; not for concurrent use.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "gemma4/error.hpp"
#include "gemma4/sampling/sampling_options.hpp"

namespace gemma4 {

class Sampler {
 public:
  Sampler(const SamplingOptions& options, int vocab_size) : options_(options), rng_(options.seed) {
    options.validate();
    if (vocab_size < 1) fail(ErrorKind::kInvalidArgument, "sampler: vocabulary size must be positive, got {}", vocab_size);
    candidates_.reserve(static_cast<std::size_t>(vocab_size));
    penalized_.assign(static_cast<std::size_t>(vocab_size), false);
  }

  const SamplingOptions& options() const { return options_; }

  // The next token. `logits` has one entry per vocabulary id and is used as scratch;
  // `history` (prompt and generated tokens) feeds the repetition penalty.
  int sample(std::span<float> logits, std::span<const int> history) {
    if (logits.size() != penalized_.size()) fail(ErrorKind::kInvalidArgument, "sampler: {} logits for a vocabulary of {}", logits.size(), penalized_.size());
    if (options_.repetition_penalty != 1.0f) apply_repetition_penalty(logits, history);
    if (options_.greedy()) {
      const auto best = std::max_element(logits.begin(), logits.end());
      if (*best == -std::numeric_limits<float>::infinity()) fail_all_forbidden();
      return static_cast<int>(best - logits.begin());
    }

    select_top_k(logits);
    to_probabilities();
    if (options_.top_p < 1.0f) keep_top_p();
    if (options_.min_p > 0.0f) keep_min_p();
    return draw();
  }

 private:
  struct Candidate {
    float value;  // logit / temperature, then probability
    int id;
  };
  [[noreturn]] static void fail_all_forbidden() { fail(ErrorKind::kInvalidArgument, "sampler: every logit is -infinity, no token can be drawn"); }
  static bool more_likely(const Candidate& a, const Candidate& b) { return a.value != b.value ? a.value > b.value : a.id < b.id; }

  // Each distinct token once: logit / p if positive, logit * p if not (as HF does).
  void apply_repetition_penalty(std::span<float> logits, std::span<const int> history) {
    const float p = options_.repetition_penalty;
    for (const int id : history) {
      if (id < 0 || static_cast<std::size_t>(id) >= logits.size() || penalized_[id]) continue;
      penalized_[id] = true;
      logits[id] = logits[id] > 0 ? logits[id] / p : logits[id] * p;
    }
    for (const int id : history) {
      if (id >= 0 && static_cast<std::size_t>(id) < logits.size()) penalized_[id] = false;
    }
  }

  // Candidates sorted most likely first: the top k, and any tied with the k-th (HF keeps
  // ties). A logit of -infinity (a token a grammar forbids) is never a candidate.
  void select_top_k(std::span<const float> logits) {
    candidates_.clear();
    const float inverse_temperature = 1.0f / options_.temperature;
    for (std::size_t id = 0; id < logits.size(); ++id) {
      if (logits[id] != -std::numeric_limits<float>::infinity()) candidates_.push_back({logits[id] * inverse_temperature, static_cast<int>(id)});
    }
    if (candidates_.empty()) fail_all_forbidden();
    const std::size_t k = options_.top_k == 0 ? candidates_.size() : std::min<std::size_t>(options_.top_k, candidates_.size());
    if (k < candidates_.size()) {
      std::nth_element(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(k - 1), candidates_.end(), more_likely);
      const float kth = candidates_[k - 1].value;
      const auto end = std::partition(candidates_.begin(), candidates_.end(), [&](const Candidate& c) { return c.value >= kth; });
      candidates_.erase(end, candidates_.end());
    }
    std::sort(candidates_.begin(), candidates_.end(), more_likely);
  }

  void to_probabilities() {
    const float top = candidates_.front().value;
    double sum = 0;
    for (Candidate& c : candidates_) sum += (c.value = std::exp(c.value - top));
    for (Candidate& c : candidates_) c.value = static_cast<float>(c.value / sum);
  }

  // Drops the least likely tokens whose total stays within 1 - top_p; keeps at least one.
  void keep_top_p() {
    const double drop_budget = 1.0 - options_.top_p;
    double tail = 0;
    std::size_t keep = candidates_.size();
    while (keep > 1 && (tail += candidates_[keep - 1].value) <= drop_budget) --keep;
    candidates_.resize(keep);
  }

  void keep_min_p() {
    const float threshold = options_.min_p * candidates_.front().value;
    const auto end = std::find_if(candidates_.begin() + 1, candidates_.end(), [&](const Candidate& c) { return c.value < threshold; });
    candidates_.erase(end, candidates_.end());
  }

  int draw() {
    double total = 0;
    for (const Candidate& c : candidates_) total += c.value;
    const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * total;  // uniform in [0, total)
    double cumulative = 0;
    for (const Candidate& c : candidates_) {
      cumulative += c.value;
      if (u < cumulative) return c.id;
    }
    return candidates_.back().id;
  }

  SamplingOptions options_;
  std::mt19937_64 rng_;
  std::vector<Candidate> candidates_;  // capacity: vocab_size
  std::vector<bool> penalized_;        // [vocab_size], all false between calls
};

}  // namespace gemma4
