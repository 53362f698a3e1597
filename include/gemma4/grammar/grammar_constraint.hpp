#pragma once
// Constrained decoding: which tokens a grammar allows next, applied to a row of logits
// before sampling, and advanced by each token generated.
//
//   gemma4::TokenTrie vocabulary(tokenizer);                 // once per tokenizer
//   gemma4::GrammarConstraint constraint(gemma4::parse_gbnf(text), vocabulary);
//   generator.constrain(&constraint);                        // model/generate.hpp
//
// A token is allowed iff the grammar can consume every byte it adds (a token ending inside
// a UTF-8 character included); a special token only where the grammar names it. A stop
// token is allowed only where the text is complete.
//
// A grammar may also wait for its trigger (ConstraintStart::kOnTrigger): the text is free
// until the model writes the special token the grammar starts with, then follows the
// grammar until nothing more can follow it, then is free again. That is how tool calls are
// constrained (chat/tool_call_grammar.hpp): free text around `<|tool_call>...<tool_call|>`.
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
#include <optional>
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

enum class ConstraintStart : std::uint8_t {
  kNow,        // the text follows the grammar from its first token
  kOnTrigger,  // free until the grammar's first token, a special token, is written
};

class GrammarConstraint {
 public:
  // `vocabulary` must outlive the constraint. Errors if the grammar names a special token
  // the vocabulary lacks, or waits for a trigger but does not start with exactly one
  // special token.
  GrammarConstraint(Grammar grammar, const TokenTrie& vocabulary, ConstraintStart start = ConstraintStart::kNow)
      : grammar_(std::move(grammar)), vocabulary_(vocabulary), matcher_(grammar_), start_(start), walk_(vocabulary.max_depth() + 1) {
    for (const std::string& text : grammar_.tokens) {
      const std::optional<int> id = vocabulary.special_token(text);
      if (!id) fail(ErrorKind::kInvalidArgument, "grammar: the vocabulary has no special token {}", text);
      token_ids_.push_back(*id);
    }
    reset();
    if (start_ == ConstraintStart::kOnTrigger) find_trigger();
  }
  GrammarConstraint(const GrammarConstraint&) = delete;
  GrammarConstraint& operator=(const GrammarConstraint&) = delete;

  // Back to the start of the grammar (or to waiting for its trigger), for the next generation.
  void reset() {
    if (states_.size() >= kMaxStates) forget_states();
    current_ = intern(matcher_.start());
    waiting_ = start_ == ConstraintStart::kOnTrigger;
  }

  // Waiting for the trigger: the text is free.
  bool waiting() const { return waiting_; }
  // The text so far is a whole sentence of the grammar (or free): a stop token may end it.
  bool can_end() const { return waiting_ || state().can_end; }
  // Something may still follow.
  bool can_continue() const { return waiting_ || state().can_continue(); }

  // Whether token `id` (not a stop token) may come next.
  bool allows(int id) {
    check_id(id);
    return waiting_ || (mask()[static_cast<std::size_t>(id) / 64] >> (id % 64) & 1) != 0;
  }

  // Sets every logit the grammar forbids to -infinity; `stop_ids` stay only where the text
  // may end. A model's vocabulary may be smaller or larger than the tokenizer's (Gemma's
  // tokenizer.json has one id past the embedding): an id the tokenizer lacks is forbidden.
  // False if nothing is left (a dead end: the caller stops, see StopReason::kGrammar).
  bool apply(std::span<float> logits, std::span<const int> stop_ids) {
    if (waiting_) return true;
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

  // Advances past token `id`; an error if the grammar does not allow it. While waiting,
  // only the trigger matters: it starts the grammar.
  void accept(int id) {
    check_id(id);
    if (waiting_ && id != trigger_id_) return;
    int next = current_;
    if (const auto token = std::find(token_ids_.begin(), token_ids_.end(), id); token != token_ids_.end()) {
      next = transition(current_, kFirstTokenSymbol + static_cast<GrammarSymbol>(token - token_ids_.begin()));
    } else {
      const std::string_view bytes = vocabulary_.bytes(id);
      if (bytes.empty()) next = kDead;
      for (std::size_t i = 0; i < bytes.size() && next != kDead; ++i) next = transition(next, static_cast<std::uint8_t>(bytes[i]));
    }
    if (next == kDead) fail(ErrorKind::kInvalidArgument, "grammar: token {} ({:?}) is not allowed here", id, std::string(vocabulary_.bytes(id)));
    current_ = next;
    waiting_ = false;
    if (states_.size() >= kMaxStates) forget_states();
    if (start_ == ConstraintStart::kOnTrigger && !state().can_continue()) reset();  // the triggered text is complete: free again
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

  // The one special token a triggered grammar starts with: no byte and no other token may
  // start it, and it must not be complete before it.
  void find_trigger() {
    const int start = current_;
    bool other_start = state().can_end;  // empty text, or a byte, would do without the trigger
    for (GrammarSymbol byte = 0; byte < kFirstTokenSymbol; ++byte) other_start = other_start || transition(start, byte) != kDead;
    int starting_tokens = 0;
    for (std::size_t k = 0; k < token_ids_.size(); ++k) {
      if (transition(start, kFirstTokenSymbol + static_cast<GrammarSymbol>(k)) == kDead) continue;
      ++starting_tokens;
      trigger_id_ = token_ids_[k];
    }
    if (other_start || starting_tokens != 1) {
      fail(ErrorKind::kInvalidArgument, "grammar: a grammar waiting for a trigger must start with exactly one special token, and nothing else");
    }
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

  int transition(int from, GrammarSymbol symbol) {
    if (symbol >= kFirstTokenSymbol) {  // rare (a few per call): kept apart from the byte rows
      const std::uint64_t key = static_cast<std::uint64_t>(from) << 32 | symbol;
      if (const auto it = token_transitions_.find(key); it != token_transitions_.end()) return it->second;
      const int found = matcher_.advance(states_[static_cast<std::size_t>(from)], symbol, scratch_) ? intern(scratch_) : kDead;
      token_transitions_.emplace(key, found);
      return found;
    }
    int& next = transitions_[static_cast<std::size_t>(from)][symbol];
    if (next != kUnknown) return next;
    const int found = matcher_.advance(states_[static_cast<std::size_t>(from)], symbol, scratch_) ? intern(scratch_) : kDead;
    transitions_[static_cast<std::size_t>(from)][symbol] = found;  // `next` may dangle: intern() grows transitions_
    return found;
  }

  // Between steps, when the DFA has grown past its budget: only the current state stays.
  void forget_states() {
    const GrammarState current = states_[static_cast<std::size_t>(current_)];
    states_.clear();
    transitions_.clear();
    token_transitions_.clear();
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
    for (std::size_t k = 0; k < token_ids_.size(); ++k) {
      if (transition(current_, kFirstTokenSymbol + static_cast<GrammarSymbol>(k)) == kDead) continue;
      const int id = token_ids_[k];
      allowed[static_cast<std::size_t>(id) / 64] |= std::uint64_t{1} << (id % 64);
    }
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
  ConstraintStart start_;
  std::vector<int> token_ids_;                             // the ids of grammar_.tokens
  int trigger_id_ = -1;                                    // kOnTrigger: the token that starts the grammar
  bool waiting_ = false;                                   // kOnTrigger, before the trigger: free text
  std::vector<GrammarState> states_;                       // by state id
  std::vector<std::array<int, 256>> transitions_;          // by state id and byte: the next state, kDead or kUnknown
  std::unordered_map<std::uint64_t, int> token_transitions_;  // (state id, token symbol) -> the next state or kDead
  std::unordered_map<std::string, int> state_ids_;         // a state's stacks and can_end -> its id
  int current_ = 0;
  GrammarState scratch_;
  std::vector<int> walk_;                                  // [max token length + 1] state ids
  std::unordered_map<int, std::vector<std::uint64_t>> masks_;  // by state id
  std::vector<std::pair<int, float>> kept_stops_;          // the stop tokens apply() keeps, with their logits
};

}  // namespace gemma4
