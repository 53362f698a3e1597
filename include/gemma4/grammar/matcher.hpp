#pragma once
// Where a text stands in a Grammar (grammar/grammar.hpp), byte by byte (and special token
// by special token): a pushdown matcher whose state is the set of stacks that can still
// match.
//
//   GrammarMatcher m(grammar);
//   GrammarState s = m.start();
//   m.advance(s, '{', next);      // false: the grammar allows no '{' here
//   next.can_end;                 // the text so far is a whole sentence of the grammar
//
// A stack is a chain of frames, each a place in an alternative; the top frame always
// waits on a byte range or a token. Stacks are interned (equal stacks share one id), so a state is a
// sorted list of ids: cheap to copy, compare and use as a cache key. A rule referenced
// last in an alternative replaces its caller's frame (a tail call), so repetition by
// right recursion keeps the stack flat and its states repeat.
//
// A grammar so ambiguous that a state holds more than 4096 stacks, or a pool past 4M
// stacks, is refused with an error rather than let it take exponential time or memory.
// Not for concurrent use: advancing may add stacks to the pool.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <unordered_map>
#include <vector>

#include "gemma4/error.hpp"
#include "gemma4/grammar/grammar.hpp"

namespace gemma4 {

struct GrammarState {
  std::vector<std::uint32_t> stacks;  // sorted ids of the stacks waiting on a byte or a token
  bool can_end = false;               // the text so far is complete

  bool can_continue() const { return !stacks.empty(); }
  bool operator==(const GrammarState&) const = default;
};

class GrammarMatcher {
 public:
  // `grammar` must outlive the matcher.
  explicit GrammarMatcher(const Grammar& grammar) : grammar_(grammar) {
    begin_closure();
    for (const std::uint32_t alternative : grammar_.rules[grammar_.root]) expand(intern(alternative, kBottom), start_);
    finish(start_);
  }

  const GrammarState& start() const { return start_; }

  // `to` = `from` after `symbol` (a byte, or a token: grammar.hpp's GrammarSymbol); false
  // (and `to` empty) if no stack takes it.
  bool advance(const GrammarState& from, GrammarSymbol symbol, GrammarState& to) {
    to.stacks.clear();
    to.can_end = false;
    begin_closure();
    bool taken = false;
    for (const std::uint32_t id : from.stacks) {
      const Frame frame = frames_[id];
      const GrammarElement& e = grammar_.elements[frame.position];
      const bool takes = e.kind == GrammarElement::Kind::kToken ? symbol == kFirstTokenSymbol + e.index : symbol >= e.lo && symbol <= e.hi;
      if (!takes) continue;
      taken = true;
      expand(intern(frame.position + 1, frame.caller), to);
    }
    finish(to);
    return taken;
  }

  // `state` after all of `bytes`; false (state unchanged) if the grammar stops them.
  bool advance(GrammarState& state, std::string_view bytes) {
    GrammarState next = state, scratch;
    for (const char c : bytes) {
      if (!advance(next, static_cast<std::uint8_t>(c), scratch)) return false;
      std::swap(next, scratch);
    }
    state = std::move(next);
    return true;
  }

 private:
  static constexpr std::size_t kMaxStacksPerState = 4096, kMaxStacks = std::size_t{1} << 22;
  static constexpr std::uint32_t kBottom = std::numeric_limits<std::uint32_t>::max();  // below the root's frame

  struct Frame {
    std::uint32_t position;  // in grammar.elements: what this frame matches next
    std::uint32_t caller;    // the stack below (kBottom for the root rule)
  };

  std::uint32_t intern(std::uint32_t position, std::uint32_t caller) {
    const std::uint64_t key = static_cast<std::uint64_t>(position) << 32 | caller;
    const auto [it, added] = ids_.try_emplace(key, static_cast<std::uint32_t>(frames_.size()));
    if (added) {
      if (frames_.size() >= kMaxStacks) fail(ErrorKind::kInvalidArgument, "grammar: matching needs more than {} parse stacks (the grammar is too ambiguous)", kMaxStacks);
      frames_.push_back({position, caller});
      visited_.push_back(0);
    }
    return it->second;
  }

  void begin_closure() { ++epoch_; }

  void finish(GrammarState& state) const {
    if (state.stacks.size() > kMaxStacksPerState) {
      fail(ErrorKind::kInvalidArgument, "grammar: the text so far parses in more than {} ways (the grammar is too ambiguous)", kMaxStacksPerState);
    }
    std::sort(state.stacks.begin(), state.stacks.end());
  }

  // Adds to `out` every stack waiting on a byte or token that `id` reaches without consuming one:
  // a finished frame returns to its caller, a rule reference opens each alternative.
  void expand(std::uint32_t id, GrammarState& out) {
    pending_.assign(1, id);
    while (!pending_.empty()) {
      const std::uint32_t s = pending_.back();
      pending_.pop_back();
      if (visited_[s] == epoch_) continue;  // nullable loops reach a stack again
      visited_[s] = epoch_;
      const Frame frame = frames_[s];
      const GrammarElement& e = grammar_.elements[frame.position];
      switch (e.kind) {
        case GrammarElement::Kind::kBytes:
        case GrammarElement::Kind::kToken: out.stacks.push_back(s); break;
        case GrammarElement::Kind::kEnd:
          if (frame.caller == kBottom) {
            out.can_end = true;
          } else {
            pending_.push_back(frame.caller);
          }
          break;
        case GrammarElement::Kind::kRule: {
          const bool tail = grammar_.elements[frame.position + 1].kind == GrammarElement::Kind::kEnd;
          const std::uint32_t caller = tail ? frame.caller : intern(frame.position + 1, frame.caller);
          for (const std::uint32_t alternative : grammar_.rules[e.index]) pending_.push_back(intern(alternative, caller));
          break;
        }
      }
    }
  }

  const Grammar& grammar_;
  std::vector<Frame> frames_;                        // by stack id
  std::unordered_map<std::uint64_t, std::uint32_t> ids_;  // (position, caller) -> stack id
  std::vector<std::uint32_t> visited_;               // by stack id: the closure that last reached it
  std::uint32_t epoch_ = 0;
  std::vector<std::uint32_t> pending_;
  GrammarState start_;
};

}  // namespace gemma4
