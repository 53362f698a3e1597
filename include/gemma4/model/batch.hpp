#pragma once
// Several sessions' sequences advanced in one forward pass. A decode step reads every
// weight for one row; a batch reads them once for a row of each sequence, so on a
// memory-bound machine N sequences cost little more than one.
//
//   gemma4::Batch<gemma4::E2B> batch(weights, {.max_rows = 4});
//   // each session has run its prompt (Session::forward); next[i] is its next token
//   const gemma4::BatchEntry<gemma4::E2B> entries[] = {{&a, {&next[0], 1}}, {&b, {&next[1], 1}}};
//   batch.forward(entries, gemma4::Logits::kLast, logits);  // [2, vocab]
//
// Each sequence gets bit for bit the logits its own Session::forward would give: the
// matmuls quantize and sum each row on its own, attention runs per sequence over its
// own cache. Sessions join and leave a batch between passes (continuous batching):
// the batch holds no sequence, only the scratch of one pass.

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "gemma4/error.hpp"
#include "gemma4/model/session.hpp"

namespace gemma4 {

struct BatchOptions {
  int max_rows = 8;            // tokens one pass runs, over all its sequences
  ThreadPool* pool = nullptr;  // threads to run on; null: the process-wide default_pool()
};

// One sequence's part of a pass: tokens to run at its session's next positions (one to
// decode; more to verify drafts or to prefill alongside others).
template <Variant V>
struct BatchEntry {
  Session<V>* session = nullptr;
  std::span<const int> tokens;
};

template <Variant V>
class Batch {
  static constexpr int kVocab = V::config.vocab_size;
  static constexpr int kHidden = V::config.hidden_size;

 public:
  // `weights` must outlive the batch and be the weights of every session it runs.
  Batch(const Weights<V>&&, const BatchOptions& = {}) = delete;  // would dangle
  explicit Batch(const Weights<V>& weights, const BatchOptions& options = {})
      : options_(checked(options)),
        pass_state_(weights, weights.residency(), options.max_rows, pool_or_default(options.pool)),
        pass_(choose_forward_pass<V>()) {
    runs_.reserve(static_cast<std::size_t>(options.max_rows));
    tokens_.reserve(static_cast<std::size_t>(options.max_rows));
  }

  // Runs every entry's tokens in one pass, each at its session's next positions, and
  // writes logits [entries, vocab] of each entry's last token (Logits::kLast) or [rows,
  // vocab] of every token, entry after entry (Logits::kAll). Errors, and changes no
  // session, for what Session::forward rejects, more rows than max_rows, more tokens of
  // one session than its prefill_chunk, a session twice, or a session of other weights.
  void forward(std::span<const BatchEntry<V>> entries, Logits which, std::span<float> logits) {
    if (entries.empty()) fail(ErrorKind::kInvalidArgument, "batch: no sequences");
    std::size_t rows = 0;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const Session<V>* session = entries[i].session;
      if (session == nullptr) fail(ErrorKind::kInvalidArgument, "batch: sequence {} has no session", i);
      check_session(*session, i);
      for (std::size_t j = 0; j < i; ++j) {
        if (entries[j].session == session) fail(ErrorKind::kInvalidArgument, "batch: sequences {} and {} are the same session", j, i);
      }
      session->check_next_tokens(entries[i].tokens);
      if (entries[i].tokens.size() > static_cast<std::size_t>(session->options().prefill_chunk)) {
        // A sliding layer's ring holds the window and one chunk more: a longer run would
        // overwrite keys its own first tokens still see.
        fail(ErrorKind::kInvalidArgument, "batch: sequence {} runs {} tokens in one pass, more than its session's prefill_chunk of {}", i,
             entries[i].tokens.size(), session->options().prefill_chunk);
      }
      rows += entries[i].tokens.size();
    }
    if (rows > static_cast<std::size_t>(options_.max_rows)) {
      fail(ErrorKind::kInvalidArgument, "batch: {} tokens in one pass, the batch was made for {}", rows, options_.max_rows);
    }
    const std::size_t out_rows = which == Logits::kAll ? rows : entries.size();
    if (logits.size() != out_rows * kVocab) fail(ErrorKind::kInvalidArgument, "batch: logits buffer holds {} floats, needs {}", logits.size(), out_rows * kVocab);

    runs_.clear();
    tokens_.clear();
    for (const BatchEntry<V>& e : entries) {
      runs_.push_back({&e.session->sequence_, static_cast<int>(e.tokens.size())});
      tokens_.insert(tokens_.end(), e.tokens.begin(), e.tokens.end());
    }
    pass_.run(pass_state_, tokens_, runs_);
    if (which == Logits::kLast) {
      // Each entry's last row moves up to row i (never down: row i's source is at least i).
      std::size_t last = 0;
      for (std::size_t i = 0; i < entries.size(); ++i) {
        last += entries[i].tokens.size();
        std::copy_n(pass_state_.x.data() + (last - 1) * kHidden, kHidden, pass_state_.x.data() + i * kHidden);
      }
    }
    pass_.final_logits(pass_state_, 0, out_rows, logits, nullptr);
    for (const BatchEntry<V>& e : entries) {
      std::vector<int>& held = e.session->sequence_.tokens;
      held.insert(held.end(), e.tokens.begin(), e.tokens.end());
    }
  }

  // Errors unless the batch can run `session` as its sequence `index` (which the message
  // names): a session of the batch's weights. Its context may be any length: attention's
  // scratch holds one segment of positions, whatever the context.
  void check_session(const Session<V>& session, std::size_t index) const {
    if (&session.weights() != &pass_state_.weights) fail(ErrorKind::kInvalidArgument, "batch: sequence {}'s session runs other weights", index);
  }

  int max_rows() const { return options_.max_rows; }
  // Memory of the scratch of one pass, sized when the batch was made.
  std::size_t scratch_bytes() const { return pass_state_.bytes(); }

 private:
  static const BatchOptions& checked(const BatchOptions& options) {
    if (options.max_rows < 1) fail(ErrorKind::kInvalidArgument, "batch: max_rows must be at least 1, got {}", options.max_rows);
    return options;
  }

  BatchOptions options_;
  PassState<V> pass_state_;
  ForwardPass<V> pass_;
  std::vector<SequenceRun<V>> runs_;  // [entries] of the current pass
  std::vector<int> tokens_;           // [rows] of the current pass
};

}  // namespace gemma4
