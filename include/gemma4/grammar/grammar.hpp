#pragma once
// A context-free grammar over bytes, what constrained decoding follows (grammar/matcher.hpp).
// Each rule is a list of alternatives; each alternative a sequence of byte ranges, special
// tokens and references to rules. A special token (Gemma's <|"|>, <|tool_call>) is a
// terminal of its own, matched by that token and never by text that spells it. Text grammars (grammar/gbnf.hpp) speak of code points: their
// classes are compiled to UTF-8 byte sequences here (utf8_sequences), so the matcher
// consumes a token byte by byte, a token that ends inside a character included.
//
// A Grammar is immutable once built and checked (check_grammar): every referenced rule
// defined, none left-recursive, every rule able to finish.

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gemma4/error.hpp"

namespace gemma4 {

struct GrammarElement {
  enum class Kind : std::uint8_t { kBytes, kToken, kRule, kEnd };
  Kind kind = Kind::kEnd;
  std::uint8_t lo = 0, hi = 0;  // kBytes: one byte in [lo, hi]
  std::uint32_t index = 0;      // kRule: the rule's index; kToken: the token's in Grammar::tokens
};

// What a matcher consumes: a byte (0..255), or special token k of Grammar::tokens as
// kFirstTokenSymbol + k.
using GrammarSymbol = std::uint32_t;
inline constexpr GrammarSymbol kFirstTokenSymbol = 256;

struct Grammar {
  std::vector<GrammarElement> elements;             // every alternative back to back, each ending in kEnd
  std::vector<std::vector<std::uint32_t>> rules;    // per rule: where each alternative starts in `elements`
  std::vector<std::string> rule_names;              // per rule, for messages (generated rules: "name_3")
  std::vector<std::string> tokens;                  // the special tokens it matches, by their text
  std::uint32_t root = 0;
};

// One alternative under construction: byte ranges, tokens and rule references, no kEnd.
using GrammarSequence = std::vector<GrammarElement>;

inline GrammarElement byte_range(std::uint8_t lo, std::uint8_t hi) { return {GrammarElement::Kind::kBytes, lo, hi, 0}; }
inline GrammarElement rule_ref(std::uint32_t rule) { return {GrammarElement::Kind::kRule, 0, 0, rule}; }
inline GrammarElement token_ref(std::uint32_t token) { return {GrammarElement::Kind::kToken, 0, 0, token}; }

inline void append_utf8(std::uint32_t cp, GrammarSequence& out) {
  const auto byte = [&](std::uint32_t b) { out.push_back(byte_range(static_cast<std::uint8_t>(b), static_cast<std::uint8_t>(b))); };
  if (cp < 0x80) {
    byte(cp);
  } else if (cp < 0x800) {
    byte(0xC0 | cp >> 6), byte(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    byte(0xE0 | cp >> 12), byte(0x80 | (cp >> 6 & 0x3F)), byte(0x80 | (cp & 0x3F));
  } else {
    byte(0xF0 | cp >> 18), byte(0x80 | (cp >> 12 & 0x3F)), byte(0x80 | (cp >> 6 & 0x3F)), byte(0x80 | (cp & 0x3F));
  }
}

// The UTF-8 encodings of the code points in [lo, hi] (surrogates left out) as byte-range
// sequences whose union is exactly that set: the split every regex engine makes, cutting
// the range where the encoded length changes and where continuation bytes would not span
// 0x80..0xBF.
inline void utf8_sequences(std::uint32_t lo, std::uint32_t hi, std::vector<GrammarSequence>& out) {
  if (lo > hi) return;
  if (lo < 0xD800 && hi > 0xDFFF) {
    utf8_sequences(lo, 0xD7FF, out);
    utf8_sequences(0xE000, hi, out);
    return;
  }
  if (lo >= 0xD800 && hi <= 0xDFFF) return;
  if (lo >= 0xD800 && lo <= 0xDFFF) lo = 0xE000;
  if (hi >= 0xD800 && hi <= 0xDFFF) hi = 0xD7FF;
  if (lo > hi) return;
  for (const std::uint32_t boundary : {0x7Fu, 0x7FFu, 0xFFFFu}) {
    if (lo <= boundary && hi > boundary) {
      utf8_sequences(lo, boundary, out);
      utf8_sequences(boundary + 1, hi, out);
      return;
    }
  }
  for (int i = 1; i < 4; ++i) {
    const std::uint32_t low_bits = (1u << (6 * i)) - 1;
    if ((lo & ~low_bits) == (hi & ~low_bits)) continue;
    if ((lo & low_bits) != 0) {
      utf8_sequences(lo, lo | low_bits, out);
      utf8_sequences((lo | low_bits) + 1, hi, out);
      return;
    }
    if ((hi & low_bits) != low_bits) {
      utf8_sequences(lo, (hi & ~low_bits) - 1, out);
      utf8_sequences(hi & ~low_bits, hi, out);
      return;
    }
  }
  GrammarSequence first, last;
  append_utf8(lo, first);
  append_utf8(hi, last);
  GrammarSequence sequence;
  for (std::size_t i = 0; i < first.size(); ++i) sequence.push_back(byte_range(first[i].lo, last[i].lo));
  out.push_back(std::move(sequence));
}

// Builds a Grammar rule by rule; build() flattens and checks it.
class GrammarBuilder {
 public:
  // A new rule with no alternatives yet; `name` is for messages.
  std::uint32_t add_rule(std::string name) {
    alternatives_.emplace_back();
    names_.push_back(std::move(name));
    return static_cast<std::uint32_t>(names_.size() - 1);
  }
  void add_alternative(std::uint32_t rule, GrammarSequence sequence) { alternatives_[rule].push_back(std::move(sequence)); }
  std::size_t rule_count() const { return names_.size(); }
  // The index of the special token with this text, for token_ref.
  std::uint32_t token(std::string_view text) {
    const auto it = std::find(tokens_.begin(), tokens_.end(), text);
    if (it != tokens_.end()) return static_cast<std::uint32_t>(it - tokens_.begin());
    tokens_.emplace_back(text);
    return static_cast<std::uint32_t>(tokens_.size() - 1);
  }

  // `source` names the grammar in error messages.
  Grammar build(std::uint32_t root, std::string_view source) const {
    Grammar g;
    g.root = root;
    g.rule_names = names_;
    g.tokens = tokens_;
    for (const auto& alternatives : alternatives_) {
      auto& starts = g.rules.emplace_back();
      for (const GrammarSequence& sequence : alternatives) {
        starts.push_back(static_cast<std::uint32_t>(g.elements.size()));
        g.elements.insert(g.elements.end(), sequence.begin(), sequence.end());
        g.elements.push_back({});
      }
    }
    check(source);
    return g;
  }

 private:
  // Every rule defined and able to finish, none reaching itself before consuming a byte
  // (the matcher would expand it for ever).
  void check(std::string_view source) const {
    const std::size_t n = names_.size();
    for (std::size_t r = 0; r < n; ++r) {
      if (alternatives_[r].empty()) fail(ErrorKind::kInvalidArgument, "{}: rule '{}' is used but never defined", source, names_[r]);
    }
    // Rules that can finish, and those that can finish without a byte, to a fixpoint.
    std::vector<bool> finishes(n, false), nullable(n, false);
    for (bool changed = true; changed;) {
      changed = false;
      for (std::size_t r = 0; r < n; ++r) {
        for (const GrammarSequence& s : alternatives_[r]) {
          bool all_finish = true, all_nullable = true;
          for (const GrammarElement& e : s) {
            const bool is_rule = e.kind == GrammarElement::Kind::kRule;
            all_finish = all_finish && (!is_rule || finishes[e.index]);
            all_nullable = all_nullable && is_rule && nullable[e.index];
          }
          if (all_finish && !finishes[r]) finishes[r] = changed = true;
          if (all_nullable && !nullable[r]) nullable[r] = changed = true;
        }
      }
    }
    for (std::size_t r = 0; r < n; ++r) {
      if (!finishes[r]) fail(ErrorKind::kInvalidArgument, "{}: rule '{}' can never end (every alternative refers back to it)", source, names_[r]);
    }
    // Left recursion: a path from a rule to itself through rules reached before any byte.
    std::vector<std::vector<std::uint32_t>> left(n);
    for (std::size_t r = 0; r < n; ++r) {
      for (const GrammarSequence& s : alternatives_[r]) {
        for (const GrammarElement& e : s) {
          if (e.kind != GrammarElement::Kind::kRule) break;
          left[r].push_back(e.index);
          if (!nullable[e.index]) break;
        }
      }
    }
    enum class Mark : std::uint8_t { kNew, kOnPath, kDone };
    std::vector<Mark> mark(n, Mark::kNew);
    const auto visit = [&](auto& self, std::uint32_t r) -> void {
      mark[r] = Mark::kOnPath;
      for (const std::uint32_t next : left[r]) {
        if (mark[next] == Mark::kOnPath) {
          fail(ErrorKind::kInvalidArgument, "{}: rule '{}' is left-recursive (it can reach itself through '{}' before matching any text)", source,
               names_[next], names_[r]);
        }
        if (mark[next] == Mark::kNew) self(self, next);
      }
      mark[r] = Mark::kDone;
    };
    for (std::uint32_t r = 0; r < n; ++r) {
      if (mark[r] == Mark::kNew) visit(visit, r);
    }
  }

  std::vector<std::vector<GrammarSequence>> alternatives_;
  std::vector<std::string> names_;
  std::vector<std::string> tokens_;
};

}  // namespace gemma4
