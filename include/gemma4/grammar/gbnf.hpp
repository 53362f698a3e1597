#pragma once
// Grammars as text: the subset of llama.cpp's GBNF that people write, compiled to a
// byte Grammar (grammar/grammar.hpp).
//
//   root   ::= object
//   object ::= "{" ws ( pair ( "," ws pair )* )? "}"
//   pair   ::= string ":" ws value     # comments run to the end of the line
//   digit  ::= [0-9]
//
// - A rule is `name ::= alternatives`; names are letters, digits and '-'; `root` is where
//   matching starts. A rule's body runs up to the next `name ::=`.
// - Alternatives are separated by `|`; a sequence is made of "literals", character
//   classes `[a-z_]` and `[^"\\]`, `.` (any character), rule names and `( groups )`, each
//   optionally repeated with `*`, `+`, `?`, `{n}`, `{m,}` or `{m,n}` (n at most 1000).
// - Escapes in literals and classes: \n \r \t \\ \" \' \[ \] \- \^ \xHH \uHHHH \UHHHHHHHH.
// - `<...>` up to the first '>' is a special token by its text (`<|tool_call>`, `<|"|>`):
//   only that token matches it, never text spelling it (grammar/grammar_constraint.hpp
//   refuses a name the vocabulary has no special token for).
// Errors name the line and column: unknown syntax, an undefined or twice-defined rule,
// left recursion, a rule that can never end, text that is not UTF-8.

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gemma4/error.hpp"
#include "gemma4/grammar/grammar.hpp"
#include "gemma4/tokenizer/utf8.hpp"

namespace gemma4 {

namespace detail {

class GbnfParser {
 public:
  GbnfParser(std::string_view text, std::string_view source) : text_(text), source_(source) {}

  Grammar parse() {
    utf8::require_valid(text_, source_);
    skip_space();
    if (at_end()) fail(ErrorKind::kInvalidArgument, "{}: the grammar is empty (it needs a rule 'root ::= ...')", source_);
    while (!at_end()) parse_rule();
    const auto root = rules_.find("root");
    if (root == rules_.end() || !defined_[root->second]) fail(ErrorKind::kInvalidArgument, "{}: no rule 'root' (matching starts there)", source_);
    for (const auto& [name, index] : rules_) {
      if (!defined_[index]) fail(ErrorKind::kInvalidArgument, "{}: rule '{}' is used but never defined", source_, name);
    }
    return builder_.build(root->second, source_);
  }

 private:
  static constexpr int kMaxRepetitions = 1000;
  static constexpr std::size_t kMaxExpandedElements = 100000;

  [[noreturn]] void error(std::string_view what) const {
    int line = 1, column = 1;
    for (std::size_t i = 0; i < pos_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    fail(ErrorKind::kInvalidArgument, "{}:{}:{}: {}", source_, line, column, what);
  }

  bool at_end() const { return pos_ >= text_.size(); }
  char peek(std::size_t ahead = 0) const { return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0'; }
  static bool is_name_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'; }

  void skip_space() {
    while (!at_end()) {
      const char c = peek();
      if (c == '#') {
        while (!at_end() && peek() != '\n') ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else {
        break;
      }
    }
  }

  std::string_view parse_name() {
    const std::size_t start = pos_;
    while (!at_end() && is_name_char(peek())) ++pos_;
    if (pos_ == start) error(fmt::format("expected a rule name, found '{}'", peek()));
    return text_.substr(start, pos_ - start);
  }

  // Whether a `name ::=` starts here: where the previous rule's body ends.
  bool at_rule_start() const {
    std::size_t i = pos_;
    while (i < text_.size() && is_name_char(text_[i])) ++i;
    if (i == pos_) return false;
    while (i < text_.size() && (text_[i] == ' ' || text_[i] == '\t' || text_[i] == '\n' || text_[i] == '\r')) ++i;
    return text_.substr(i, 3) == "::=";
  }

  std::uint32_t rule_index(std::string_view name) {
    const auto [it, added] = rules_.try_emplace(std::string(name), 0);
    if (added) {
      it->second = builder_.add_rule(std::string(name));
      defined_.push_back(false);
    }
    return it->second;
  }

  std::uint32_t generated_rule(std::string_view base) {
    defined_.push_back(true);
    return builder_.add_rule(fmt::format("{}_{}", base, builder_.rule_count()));
  }

  void parse_rule() {
    const std::size_t start = pos_;
    const std::string name(parse_name());
    skip_space();
    if (text_.substr(pos_, 3) != "::=") error(fmt::format("expected '::=' after rule name '{}'", name));
    pos_ += 3;
    const std::uint32_t rule = rule_index(name);
    if (defined_[rule]) {
      pos_ = start;
      error(fmt::format("rule '{}' is defined twice", name));
    }
    defined_[rule] = true;
    current_rule_ = name;
    parse_alternatives(rule, /*in_group=*/false);
  }

  void parse_alternatives(std::uint32_t rule, bool in_group) {
    while (true) {
      builder_.add_alternative(rule, parse_sequence(in_group));
      if (peek() != '|') break;
      ++pos_;
    }
  }

  GrammarSequence parse_sequence(bool in_group) {
    GrammarSequence sequence;
    while (true) {
      skip_space();
      if (at_end() || peek() == '|' || peek() == ')' || (!in_group && at_rule_start())) break;
      const std::size_t item_start = sequence.size();
      parse_atom(sequence);
      skip_space();
      parse_repetition(sequence, item_start);
    }
    if (in_group && at_end()) error("'(' is never closed");
    if (!in_group && peek() == ')') error("')' without a matching '('");
    return sequence;
  }

  void parse_atom(GrammarSequence& out) {
    const char c = peek();
    if (c == '"') {
      ++pos_;
      while (peek() != '"') {
        if (at_end()) error("a string literal is never closed");
        append_utf8(parse_char(), out);
      }
      ++pos_;
    } else if (c == '[') {
      parse_class(out);
    } else if (c == '.') {
      ++pos_;
      add_class(out, {{0, 0x10FFFF}});
    } else if (c == '(') {
      ++pos_;
      const std::uint32_t group = generated_rule(current_rule_);
      parse_alternatives(group, /*in_group=*/true);
      if (peek() != ')') error("'(' is never closed");
      ++pos_;
      out.push_back(rule_ref(group));
    } else if (c == '<') {
      const std::size_t end = text_.find_first_of(">\n", pos_);
      if (end == std::string_view::npos || text_[end] != '>') error("a special token '<...' is never closed with '>' on its line");
      out.push_back(token_ref(builder_.token(text_.substr(pos_, end + 1 - pos_))));
      pos_ = end + 1;
    } else if (is_name_char(c)) {
      out.push_back(rule_ref(rule_index(parse_name())));
    } else {
      error(fmt::format("unexpected '{}'", c));
    }
  }

  // One character of a literal or class: an escape or a UTF-8 sequence.
  std::uint32_t parse_char() {
    if (peek() != '\\') {
      const std::size_t n = utf8::sequence_length(text_, pos_);
      const std::uint32_t cp = utf8::decode(text_, pos_, n);
      pos_ += n;
      return cp;
    }
    ++pos_;
    const char e = peek();
    ++pos_;
    switch (e) {
      case 'n': return '\n';
      case 'r': return '\r';
      case 't': return '\t';
      case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': return static_cast<std::uint32_t>(e);
      case 'x': return parse_hex(2);
      case 'u': return parse_hex(4);
      case 'U': return parse_hex(8);
      default: --pos_, error(fmt::format("unknown escape '\\{}'", e));
    }
  }

  std::uint32_t parse_hex(int digits) {
    std::uint32_t value = 0;
    for (int i = 0; i < digits; ++i) {
      const char c = peek();
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) error(fmt::format("expected {} hexadecimal digits", digits));
      value = value * 16 + static_cast<std::uint32_t>(d);
      ++pos_;
    }
    if (value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) error(fmt::format("U+{:X} is not a Unicode scalar value", value));
    return value;
  }

  void parse_class(GrammarSequence& out) {
    ++pos_;  // '['
    const bool negated = peek() == '^';
    if (negated) ++pos_;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges;
    while (peek() != ']') {
      if (at_end()) error("a character class is never closed");
      const std::uint32_t lo = parse_char();
      std::uint32_t hi = lo;
      if (peek() == '-' && peek(1) != ']' && pos_ + 1 < text_.size()) {
        ++pos_;
        hi = parse_char();
        if (hi < lo) error(fmt::format("the range U+{:X}-U+{:X} is reversed", lo, hi));
      }
      ranges.emplace_back(lo, hi);
    }
    ++pos_;
    if (negated) ranges = complement(std::move(ranges));
    if (ranges.empty()) error("the character class matches nothing");
    add_class(out, ranges);
  }

  static std::vector<std::pair<std::uint32_t, std::uint32_t>> complement(std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges) {
    std::sort(ranges.begin(), ranges.end());
    std::vector<std::pair<std::uint32_t, std::uint32_t>> out;
    std::uint32_t next = 0;
    for (const auto& [lo, hi] : ranges) {
      if (lo > next) out.emplace_back(next, lo - 1);
      next = std::max(next, hi + 1);
    }
    if (next <= 0x10FFFF) out.emplace_back(next, 0x10FFFF);
    return out;
  }

  // A class as a rule whose alternatives are its UTF-8 byte sequences; one ASCII range
  // stays a single element.
  void add_class(GrammarSequence& out, const std::vector<std::pair<std::uint32_t, std::uint32_t>>& ranges) {
    std::vector<GrammarSequence> sequences;
    for (const auto& [lo, hi] : ranges) utf8_sequences(lo, hi, sequences);
    if (sequences.size() == 1 && sequences[0].size() == 1) {
      out.push_back(sequences[0][0]);
      return;
    }
    const std::uint32_t rule = generated_rule(current_rule_);
    for (GrammarSequence& s : sequences) builder_.add_alternative(rule, std::move(s));
    out.push_back(rule_ref(rule));
  }

  // Applies a repetition suffix to the item sequence[item_start..].
  void parse_repetition(GrammarSequence& sequence, std::size_t item_start) {
    const char c = peek();
    if (c != '*' && c != '+' && c != '?' && c != '{') return;
    ++pos_;
    int min = 0, max = -1;  // -1: unbounded
    if (c == '+') min = 1;
    if (c == '?') max = 1;
    if (c == '{') {
      skip_space();
      min = max = parse_count();
      skip_space();
      if (peek() == ',') {
        ++pos_;
        skip_space();
        max = peek() == '}' ? -1 : parse_count();
        skip_space();
      }
      if (peek() != '}') error("expected '}' to close a repetition");
      ++pos_;
      if (max >= 0 && max < min) error(fmt::format("the repetition {{{},{}}} is reversed", min, max));
    }
    const GrammarSequence item(sequence.begin() + static_cast<std::ptrdiff_t>(item_start), sequence.end());
    if (item.size() * static_cast<std::size_t>(std::max(min, max)) > kMaxExpandedElements) {
      error(fmt::format("the repetition expands to more than {} elements (write a recursive rule instead)", kMaxExpandedElements));
    }
    sequence.resize(item_start);
    for (int i = 0; i < min; ++i) sequence.insert(sequence.end(), item.begin(), item.end());
    if (max < 0) {
      // rest ::= item rest | (empty): right recursion, which the matcher runs in constant stack.
      const std::uint32_t rest = generated_rule(current_rule_);
      GrammarSequence again = item;
      again.push_back(rule_ref(rest));
      builder_.add_alternative(rest, std::move(again));
      builder_.add_alternative(rest, {});
      sequence.push_back(rule_ref(rest));
      return;
    }
    // Up to max - min more: optional ::= item optional' | (empty), nested.
    std::uint32_t inner = 0;
    for (int i = 0; i < max - min; ++i) {
      const std::uint32_t optional = generated_rule(current_rule_);
      GrammarSequence more = item;
      if (i > 0) more.push_back(rule_ref(inner));
      builder_.add_alternative(optional, std::move(more));
      builder_.add_alternative(optional, {});
      inner = optional;
    }
    if (max > min) sequence.push_back(rule_ref(inner));
  }

  int parse_count() {
    int value = 0;
    if (peek() < '0' || peek() > '9') error("expected a repetition count");
    while (peek() >= '0' && peek() <= '9') {
      value = value * 10 + (peek() - '0');
      if (value > kMaxRepetitions) error(fmt::format("a repetition count above {} (write a recursive rule instead)", kMaxRepetitions));
      ++pos_;
    }
    return value;
  }

  std::string_view text_;
  std::string_view source_;
  std::size_t pos_ = 0;
  GrammarBuilder builder_;
  std::map<std::string, std::uint32_t> rules_;
  std::vector<bool> defined_;  // per rule
  std::string current_rule_;
};

}  // namespace detail

// Compiles GBNF text; `source` names it in error messages (a file name).
inline Grammar parse_gbnf(std::string_view text, std::string_view source = "grammar") { return detail::GbnfParser(text, source).parse(); }

// Compiles the GBNF file at `path`.
inline Grammar read_gbnf_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::kMissingFile, "{}: missing or unreadable grammar file", path.string());
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  return parse_gbnf(text, path.string());
}

}  // namespace gemma4
