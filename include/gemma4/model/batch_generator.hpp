#pragma once
// Generation for several sequences at once (continuous batching, model/batch.hpp): a
// sequence joins with its prompt; each step then advances every active sequence by one
// token in one batched pass and samples each one's next token with its own sampler; a
// sequence that stops (stop id, token budget, full context, its caller) leaves, and its
// slot takes the next one to join. A prompt runs either at once, in its own session's
// prefill passes (the others wait), or, with prefill_rows, a chunk per step inside the
// batched passes, so a long prompt never stalls the sequences already decoding.
//
//   gemma4::Batch<gemma4::E2B> batch(weights, {.max_rows = 4});
//   gemma4::BatchGenerator<gemma4::E2B> generator(batch);  // prompts run as they join
//   // or, with a batch of max_rows 20, (batch, 16): 4 sequences, 16 prompt tokens a step
//   for (i...) generator.join(sessions[i], prompts[i], sampling, stop_ids, 256, on_token);
//   while (generator.step(on_token) > 0) {}   // on_token(slot, id) -> bool
//   generator.result(slot)...
//
// Each sequence gets the very tokens Generator::generate gives it alone: the same logits
// bit for bit, sampled with its own history and random draws. Steps allocate nothing,
// but for a grammar's first visit to a state (its DFA row and mask).

#include <algorithm>
#include <chrono>
#include <span>
#include <vector>

#include "gemma4/error.hpp"
#include "gemma4/model/batch.hpp"
#include "gemma4/model/generate.hpp"
#include "gemma4/sampling/sampler.hpp"

namespace gemma4 {

template <Variant V>
class BatchGenerator {
  static constexpr std::size_t kVocab = V::config.vocab_size;
  using Clock = std::chrono::steady_clock;

 public:
  // `batch` must outlive the generator. prefill_rows 0: a prompt runs when its sequence
  // joins, and up to batch.max_rows() sequences run at once. prefill_rows N > 0: each
  // step also runs up to N tokens of joined prompts, and up to max_rows - N sequences
  // run at once.
  explicit BatchGenerator(Batch<V>& batch, int prefill_rows = 0)
      : batch_(batch),
        prefill_rows_(checked_prefill_rows(batch, prefill_rows)),
        slots_(static_cast<std::size_t>(batch.max_rows() - prefill_rows)),
        logits_(static_cast<std::size_t>(batch.max_rows()) * kVocab) {
    entries_.reserve(static_cast<std::size_t>(batch.max_rows()));
    members_.reserve(static_cast<std::size_t>(batch.max_rows()));
  }

  // A sequence joins in a free slot, which it returns: `prompt` runs in `session` (after
  // what it holds; now, or with prefill_rows in the steps to come) and its first token
  // is sampled and given to on_token(slot, id) (return false to stop). `session` must
  // outlive the sequence, and so must `constraint`, if given: its tokens are then those a
  // grammar allows, as Generator::constrain makes them. Errors, before running anything,
  // when every slot is busy, when the session already runs here, or for what
  // Generator::generate and Batch reject.
  template <typename OnToken>
  int join(Session<V>& session, std::span<const int> prompt, const SamplingOptions& sampling, std::vector<int> stop_ids, int max_new_tokens,
           OnToken&& on_token, GrammarConstraint* constraint = nullptr) {
    const auto free = std::find_if(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.active; });
    if (free == slots_.end()) fail(ErrorKind::kInvalidArgument, "batch generator: all {} slots are busy", slots_.size());
    for (const Slot& s : slots_) {
      if (s.active && s.session == &session) fail(ErrorKind::kInvalidArgument, "batch generator: the session already runs a sequence here");
    }
    const int slot = static_cast<int>(free - slots_.begin());
    batch_.check_session(session, static_cast<std::size_t>(slot));
    check_generation(session, prompt, max_new_tokens);
    if (constraint != nullptr) constraint->reset();
    *free = Slot{.session = &session, .sampler = Sampler(sampling, V::config.vocab_size), .stop_ids = std::move(stop_ids),
                 .max_new_tokens = max_new_tokens, .constraint = constraint, .start = Clock::now()};
    free->result.tokens.reserve(static_cast<std::size_t>(max_new_tokens));  // no growth in steps
    free->result.stats.prompt_tokens = static_cast<int>(prompt.size());
    free->active = true;
    if (prefill_rows_ > 0) {
      free->prompt.assign(prompt.begin(), prompt.end());
      return slot;
    }
    const std::span<float> row = std::span(logits_).first(kVocab);
    session.forward(prompt, Logits::kLast, row);
    free->result.stats.prefill_seconds = seconds_since(free->start);
    sample_next(slot, row, on_token);
    return slot;
  }

  // One batched pass for every active sequence, then each one's next token, given to
  // on_token(slot, id); with prefill_rows, the pass also runs the next chunks of joined
  // prompts (in slot order), and a prompt it finishes gets its first token. Returns how
  // many sequences are still active.
  template <typename OnToken>
  int step(OnToken&& on_token) {
    entries_.clear();
    members_.clear();
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (!slots_[i].active || prefilling(slots_[i])) continue;
      entries_.push_back({slots_[i].session, std::span(&slots_[i].next, 1)});
      members_.push_back(static_cast<int>(i));
    }
    std::size_t budget = static_cast<std::size_t>(prefill_rows_);
    for (std::size_t i = 0; i < slots_.size() && budget > 0; ++i) {
      Slot& s = slots_[i];
      if (!s.active || !prefilling(s)) continue;
      const std::size_t n = std::min({s.prompt.size() - s.prompt_done, budget, static_cast<std::size_t>(s.session->options().prefill_chunk)});
      entries_.push_back({s.session, std::span(s.prompt).subspan(s.prompt_done, n)});
      members_.push_back(static_cast<int>(i));
      budget -= n;
    }
    if (entries_.empty()) return 0;
    batch_.forward(entries_, Logits::kLast, std::span(logits_).first(entries_.size() * kVocab));
    for (std::size_t k = 0; k < members_.size(); ++k) {
      Slot& s = slots_[static_cast<std::size_t>(members_[k])];
      const std::span<float> row = std::span(logits_).subspan(k * kVocab, kVocab);
      if (!prefilling(s)) {
        ++s.result.stats.target_passes;
        sample_next(members_[k], row, on_token);
        continue;
      }
      s.prompt_done += entries_[k].tokens.size();
      if (prefilling(s)) continue;
      s.result.stats.prefill_seconds = seconds_since(s.start);
      sample_next(members_[k], row, on_token);
    }
    return active();
  }

  int active() const {
    return static_cast<int>(std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.active; }));
  }
  int slots() const { return static_cast<int>(slots_.size()); }
  bool finished(int slot) const { return !at(slot).active; }
  // What the slot's sequence has generated so far; after it finished, until the slot's
  // next join.
  const GenerationResult& result(int slot) const { return at(slot).result; }
  // Stops the slot's sequence as its caller would (StopReason::kCaller).
  void cancel(int slot) {
    if (at(slot).active) finish(slots_[static_cast<std::size_t>(slot)], StopReason::kCaller);
  }

 private:
  struct Slot {
    Session<V>* session = nullptr;
    std::vector<int> prompt{};     // with prefill_rows: the prompt its steps run
    std::size_t prompt_done = 0;   // of which they have run so far
    Sampler sampler{SamplingOptions{}, 1};
    std::vector<int> stop_ids;
    int max_new_tokens = 0;
    GrammarConstraint* constraint = nullptr;
    GenerationResult result{};
    int next = -1;  // the sampled token the next pass runs
    bool active = false;
    Clock::time_point start{}, decode_start{};
  };

  static double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

  static int checked_prefill_rows(const Batch<V>& batch, int prefill_rows) {
    if (prefill_rows < 0 || prefill_rows >= batch.max_rows()) {
      fail(ErrorKind::kInvalidArgument, "batch generator: prefill_rows must be in [0, {}) for a batch of {} rows, got {}", batch.max_rows(),
           batch.max_rows(), prefill_rows);
    }
    return prefill_rows;
  }

  // Whether the slot's prompt still has tokens to run (never without prefill_rows).
  static bool prefilling(const Slot& s) { return s.prompt_done < s.prompt.size(); }

  const Slot& at(int slot) const {
    if (slot < 0 || slot >= slots()) fail(ErrorKind::kInvalidArgument, "batch generator: no slot {} (it has {})", slot, slots_.size());
    return slots_[static_cast<std::size_t>(slot)];
  }

  // Samples the slot's next token from its row of logits, as Generator::generate would.
  template <typename OnToken>
  void sample_next(int index, std::span<float> row, OnToken& on_token) {
    Slot& s = slots_[static_cast<std::size_t>(index)];
    if (s.constraint != nullptr && !s.constraint->apply(row, s.stop_ids)) return finish(s, StopReason::kGrammar);
    const int id = s.sampler.sample(row, s.session->tokens());
    s.result.tokens.push_back(id);
    if (s.result.tokens.size() == 1) {
      s.result.stats.first_token_seconds = seconds_since(s.start);
      s.decode_start = Clock::now();
    }
    const auto on_this = [&](int token) { return on_token(index, token); };
    if (!keep_going(id, s.stop_ids, s.max_new_tokens, s.result, on_this) || !constraint_goes_on(s.constraint, id, s.stop_ids, s.result)) {
      return finish(s, s.result.stop);
    }
    if (s.session->position() >= s.session->max_context()) return finish(s, StopReason::kContextFull);
    s.next = id;
  }

  void finish(Slot& s, StopReason why) {
    s.result.stop = why;
    s.result.stats.generated_tokens = static_cast<int>(s.result.tokens.size());
    s.result.stats.decode_seconds = s.result.tokens.empty() ? 0 : seconds_since(s.decode_start);  // a grammar may allow no first token
    s.active = false;
  }

  Batch<V>& batch_;
  int prefill_rows_;
  std::vector<Slot> slots_;               // [max_rows - prefill_rows]
  std::vector<float> logits_;             // [max_rows, vocab]: the last pass's rows
  std::vector<BatchEntry<V>> entries_;    // [active] of the current pass
  std::vector<int> members_;              // [active]: the slot of each entry
};

}  // namespace gemma4
