#pragma once
// Constrained decoding: which tokens a grammar allows next, applied to a row of logits
// before sampling, and advanced by each token generated.
//
//   gemma4::TokenTrie vocabulary(tokenizer);                 // once per tokenizer
//   gemma4::GrammarConstraint constraint(gemma4::parse_gbnf(text), vocabulary);
//   generator.constrain(&constraint);                        // model/generate.hpp
//
// A token is allowed iff the grammar can consume every byte it adds (a token ending inside
// a UTF-8 character included). A stop token is allowed only where the text is complete.
// The mask of a state is computed by walking the vocabulary trie, each refused prefix
// skipping its subtree, over a DFA of the matcher's states built as it is needed; masks
// are kept per state: the states of a repetition (the characters of a string, the digits
// of a number) repeat, and so do their successors.
//
// Not for concurrent use; one per generation stream.

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gemma4/error.hpp"
#include "gemma4/grammar/grammar.hpp"
#include "gemma4/grammar/matcher.hpp"
#include "gemma4/grammar/token_trie.hpp"

namespace gemma4 {

class GrammarConstraint {
 public:
  // `vocabulary` must outlive the constraint.
  GrammarConstraint(Grammar grammar, const TokenTrie& vocabulary)
      : grammar_(std::move(grammar)), vocabulary_(vocabulary), matcher_(grammar_), walk_(vocabulary.max_depth() + 1) {
    reset();
  }
  GrammarConstraint(const GrammarConstraint&) = delete;
  GrammarConstraint& operator=(const GrammarConstraint&) = delete;

  // Back to the start of the grammar, for the next generation.
  void reset() {
    if (states_.size() >= kMaxStates) forget_states();
    current_ = intern(matcher_.start());
  }

  // The text so far is a whole sentence of the grammar: a stop token may end it.
  bool can_end() const { return state().can_end; }
  // Some byte may still follow.
  bool can_continue() const { return state().can_continue(); }

  // Whether token `id` (not a stop token) may come next.
  bool allows(int id) {
    check_id(id);
    return (mask()[static_cast<std::size_t>(id) / 64] >> (id % 64) & 1) != 0;
  }

  // Sets every logit the grammar forbids to -infinity; `stop_ids` stay only where the text
  // may end. A model's vocabulary may be smaller or larger than the tokenizer's (Gemma's
  // tokenizer.json has one id past the embedding): an id the tokenizer lacks is forbidden.
  // False if nothing is left (a dead end: the caller stops, see StopReason::kGrammar).
  bool apply(std::span<float> logits, std::span<const int> stop_ids) {
    kept_stops_.clear();
    if (can_end()) {
      for (const int id : stop_ids) {
        if (id >= 0 && static_cast<std::size_t>(id) < logits.size()) kept_stops_.emplace_back(id, logits[id]);
      }
    }
    const std::vector<std::uint64_t>& allowed = mask();
    const std::size_t known = std::min(logits.size(), static_cast<std::size_t>(vocabulary_.vocab_size()));
    bool any = !kept_stops_.empty();
    for (std::size_t id = 0; id < known; ++id) {
      if ((allowed[id / 64] >> (id % 64) & 1) != 0) {
        any = true;
      } else {
        logits[id] = -std::numeric_limits<float>::infinity();
      }
    }
    std::fill(logits.begin() + static_cast<std::ptrdiff_t>(known), logits.end(), -std::numeric_limits<float>::infinity());
    for (const auto& [id, logit] : kept_stops_) logits[static_cast<std::size_t>(id)] = logit;
    return any;
  }

  // Advances past token `id`; an error if the grammar does not allow it.
  void accept(int id) {
    check_id(id);
    const std::string_view bytes = vocabulary_.bytes(id);
    int next = bytes.empty() ? kDead : current_;
    for (std::size_t i = 0; i < bytes.size() && next != kDead; ++i) next = transition(next, static_cast<std::uint8_t>(bytes[i]));
    if (next == kDead) fail(ErrorKind::kInvalidArgument, "grammar: token {} ({:?}) is not allowed here", id, std::string(bytes));
    current_ = next;
    if (states_.size() >= kMaxStates) forget_states();
  }

  // Where the text stands: the matcher's state (grammar/matcher.hpp).
  const GrammarState& state() const { return states_[static_cast<std::size_t>(current_)]; }
  GrammarMatcher& matcher() { return matcher_; }

 private:
  static constexpr int kDead = -1, kUnknown = -2;
  // A state's row of transitions is 1 KB: 16384 states are 16 MB, then they are forgotten.
  static constexpr std::size_t kMaxStates = 16384;
  static constexpr std::size_t kCachedMasks = 256;  // 8 MB for the 262144-token vocabulary

  void check_id(int id) const {
    if (id < 0 || id >= vocabulary_.vocab_size()) fail(ErrorKind::kInvalidArgument, "grammar: token id {} is not in the vocabulary (0..{})", id, vocabulary_.vocab_size() - 1);
  }

  // States are numbered as first met, and the state after each byte is computed once (a
  // DFA built as the text and the mask walks need it): the trie walk of a state whose
  // successors are known costs an array read per node.
  int intern(const GrammarState& state) {
    std::string key(reinterpret_cast<const char*>(state.stacks.data()), state.stacks.size() * sizeof(std::uint32_t));
    key.push_back(state.can_end ? '\1' : '\0');
    const auto [it, added] = state_ids_.try_emplace(std::move(key), static_cast<int>(states_.size()));
    if (added) {
      states_.push_back(state);
      transitions_.emplace_back();
      transitions_.back().fill(kUnknown);
    }
    return it->second;
  }

  int transition(int from, std::uint8_t byte) {
    int& next = transitions_[static_cast<std::size_t>(from)][byte];
    if (next != kUnknown) return next;
    const int found = matcher_.advance(states_[static_cast<std::size_t>(from)], byte, scratch_) ? intern(scratch_) : kDead;
    transitions_[static_cast<std::size_t>(from)][byte] = found;  // `next` may dangle: intern() grows transitions_
    return found;
  }

  // Between steps, when the DFA has grown past its budget: only the current state stays.
  void forget_states() {
    const GrammarState current = states_[static_cast<std::size_t>(current_)];
    states_.clear();
    transitions_.clear();
    state_ids_.clear();
    masks_.clear();
    current_ = intern(current);
  }

  const std::vector<std::uint64_t>& mask() {
    if (const auto it = masks_.find(current_); it != masks_.end()) return it->second;
    if (masks_.size() >= kCachedMasks) masks_.clear();
    std::vector<std::uint64_t>& allowed = masks_[current_];
    allowed.assign((static_cast<std::size_t>(vocabulary_.vocab_size()) + 63) / 64, 0);
    walk(allowed);
    return allowed;
  }

  // Pre-order over the trie: walk_[d] is the state after the first d bytes of the node's
  // prefix; a byte the grammar refuses skips the node's subtree.
  void walk(std::vector<std::uint64_t>& allowed) {
    const std::vector<TokenTrie::Node>& nodes = vocabulary_.nodes();
    const std::vector<int>& ids = vocabulary_.token_ids();
    walk_[0] = current_;
    for (std::size_t i = 0; i < nodes.size();) {
      const TokenTrie::Node& node = nodes[i];
      const int here = transition(walk_[node.depth - 1], node.byte);
      if (here == kDead) {
        i = node.subtree_end;
        continue;
      }
      walk_[node.depth] = here;
      for (std::uint32_t t = 0; t < node.token_count; ++t) {
        const int id = ids[node.first_token + t];
        allowed[static_cast<std::size_t>(id) / 64] |= std::uint64_t{1} << (id % 64);
      }
      i = states_[static_cast<std::size_t>(here)].can_continue() ? i + 1 : node.subtree_end;
    }
  }

  Grammar grammar_;
  const TokenTrie& vocabulary_;
  GrammarMatcher matcher_;
  std::vector<GrammarState> states_;                       // by state id
  std::vector<std::array<int, 256>> transitions_;          // by state id and byte: the next state, kDead or kUnknown
  std::unordered_map<std::string, int> state_ids_;         // a state's stacks and can_end -> its id
  int current_ = 0;
  GrammarState scratch_;
  std::vector<int> walk_;                                  // [max token length + 1] state ids
  std::unordered_map<int, std::vector<std::uint64_t>> masks_;  // by state id
  std::vector<std::pair<int, float>> kept_stops_;          // the stop tokens apply() keeps, with their logits
};

}  // namespace gemma4
