#pragma once
// Reads Gemma 4's tool calls out of the model's output as it streams:
//
//   <|tool_call>call:NAME{key:value,...}<tool_call|>
//
// Values are the template's format_argument syntax: strings between <|"|> delimiters,
// numbers, true/false/null, {key:value} objects (keys bare or delimited) and [lists].
// Text outside calls passes through; a call is parsed when its end marker arrives, so a
// call split anywhere across pushes parses the same. A call that cannot be parsed
// (unterminated, wrong delimiters, longer than kMaxCallBytes, not UTF-8) is reported as
// malformed with its raw text, never dropped and never thrown.
//
//   ToolCallParser parser;
//   show(parser.push(decoded_text));   // text to show now; calls() grows as calls end
//   show(parser.finish());             // at the end of the output
//
// For a client that shows calls as they are written (the server's streamed delta.tool_calls),
// streamed() has every call begun: its name once known, and its arguments so far as JSON
// text, written as the call's text arrives.

#include <cctype>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/chat/messages.hpp"
#include "gemma4/chat/prompt_text.hpp"
#include "gemma4/tokenizer/utf8.hpp"

namespace gemma4 {

struct MalformedToolCall {
  std::string raw;     // as the model wrote it, from <|tool_call> on
  std::string reason;
};

// What a call's function name is made of: letters, digits, '_', '-' and '.'.
inline bool is_tool_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'; }

// Parses the body of one call ("call:NAME{...}"); nullopt with `reason` set if it is not one.
inline std::optional<ToolCall> parse_tool_call_body(std::string_view body, std::string& reason);

// A call as it streams. `arguments` is a prefix of the JSON text of the call's arguments:
// for a call that parses, the whole of a JSON object equal to ToolCall::arguments once the
// call has ended. Bytes come as the call's text does (<|"|> strings become JSON strings,
// bare keys quoted keys; numbers and literals are copied).
struct StreamedToolCall {
  std::string name;       // once `named`
  std::string arguments;  // JSON text so far
  bool named = false;     // the '{' after the name came

  // The call's text after "<|tool_call>", one byte or <|"|> at a time.
  void add(char c) {
    if (!named) {
      if (c != '{') {
        head_ += c;
        return;
      }
      named = true;
      name = head_.starts_with("call:") ? head_.substr(5) : head_;
    }
    if (in_string_) return escape(c);
    if (in_bare_key_) {
      if (c != ':') return escape(c);
      in_bare_key_ = false;
      arguments += '"';
    }
    if (open_.empty() && !arguments.empty()) return;  // past the arguments: the parser reports it
    switch (c) {
      case '{': case '[': open_.push_back(c); break;
      case '}': case ']': if (!open_.empty()) open_.pop_back(); break;
      default: break;
    }
    const bool key_next = (c == '{' || c == ',') && !open_.empty() && open_.back() == '{';
    if (expect_key_ && c != '}') {
      in_bare_key_ = true;
      arguments += '"';
      expect_key_ = false;
      return escape(c);
    }
    expect_key_ = key_next;
    arguments += c;
  }
  void add_quote() {
    if (!named || (open_.empty() && !arguments.empty())) return;
    arguments += '"';
    in_string_ = !in_string_;
    expect_key_ = false;
  }

 private:
  void escape(char c) {
    if (c == '"' || c == '\\') {
      arguments += '\\';
      arguments += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      arguments += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      arguments += c;
    }
  }

  std::string head_;        // "call:NAME" before the '{'
  std::vector<char> open_;  // the objects and lists open, innermost last
  bool in_string_ = false, in_bare_key_ = false, expect_key_ = false;
};

class ToolCallParser {
 public:
  static constexpr std::size_t kMaxCallBytes = std::size_t{1} << 20;

  // Text outside tool calls that can be shown now (a possible start of a marker is held).
  std::string push(std::string_view text) {
    pending_ += text;
    std::string shown;
    while (!pending_.empty()) {
      if (!in_call_) {
        const std::size_t start = pending_.find(control_token::kToolCallStart);
        if (start == std::string::npos) {
          const std::size_t keep = partial_marker_suffix(pending_, control_token::kToolCallStart);
          shown += pending_.substr(0, pending_.size() - keep);
          pending_.erase(0, pending_.size() - keep);
          break;
        }
        shown += pending_.substr(0, start);
        pending_.erase(0, start + control_token::kToolCallStart.size());
        in_call_ = true;
        streamed_.emplace_back();
        call_.clear();
        scanned_ = 0;
        in_string_ = false;
        continue;
      }
      if (!take_call_text()) break;
    }
    return shown;
  }

  // The end of the output: an open call is malformed; held text is shown.
  std::string finish() {
    std::string shown;
    if (in_call_ && !skipping_) {
      malformed_.push_back({std::string(control_token::kToolCallStart) + call_ + pending_, "unterminated: the output ended inside the call"});
    } else if (!in_call_) {
      shown = pending_;
    }
    pending_.clear();
    call_.clear();
    in_call_ = skipping_ = false;
    return shown;
  }

  std::vector<ToolCall>& calls() { return calls_; }
  const std::vector<ToolCall>& calls() const { return calls_; }
  std::vector<MalformedToolCall>& malformed() { return malformed_; }
  const std::vector<MalformedToolCall>& malformed() const { return malformed_; }
  // Every call begun, as far as it streamed (malformed ones included).
  const std::vector<StreamedToolCall>& streamed() const { return streamed_; }

 private:
  // Moves text into the open call up to its end marker (outside strings); true when the
  // call ended.
  bool take_call_text() {
    call_ += pending_;
    pending_.clear();
    if (skipping_) return skip_to_call_end();
    for (; scanned_ < call_.size(); ++scanned_) {
      const std::string_view rest = std::string_view(call_).substr(scanned_);
      if (rest.starts_with(control_token::kQuote)) {
        in_string_ = !in_string_;
        scanned_ += control_token::kQuote.size() - 1;
        streamed_.back().add_quote();
      } else if (!in_string_ && rest.starts_with(control_token::kToolCallEnd)) {
        pending_ = call_.substr(scanned_ + control_token::kToolCallEnd.size());
        end_call(call_.substr(0, scanned_));
        return true;
      } else if (rest.size() < control_token::kToolCallEnd.size() &&
                 (control_token::kToolCallEnd.starts_with(rest) || control_token::kQuote.starts_with(rest))) {
        break;  // a marker may be arriving
      } else {
        streamed_.back().add(rest[0]);
      }
    }
    if (call_.size() <= kMaxCallBytes) return false;
    malformed_.push_back({std::string(control_token::kToolCallStart) + call_.substr(0, kMaxCallBytes),
                          fmt::format("longer than {} bytes (the raw text is cut there)", kMaxCallBytes)});
    skipping_ = true;
    return skip_to_call_end();
  }

  // The rest of an oversized call is dropped up to its end marker.
  bool skip_to_call_end() {
    const std::size_t end = call_.find(control_token::kToolCallEnd);
    if (end == std::string::npos) {
      call_.erase(0, call_.size() - partial_marker_suffix(call_, control_token::kToolCallEnd));
      return false;
    }
    pending_ = call_.substr(end + control_token::kToolCallEnd.size());
    call_.clear();
    in_call_ = skipping_ = false;
    return true;
  }

  void end_call(const std::string& body) {
    std::string reason;
    if (!utf8::is_valid(body)) {
      reason = "not valid UTF-8";
    } else if (std::optional<ToolCall> call = parse_tool_call_body(body, reason)) {
      calls_.push_back(std::move(*call));
    }
    if (!reason.empty()) {
      malformed_.push_back({fmt::format("{}{}{}", control_token::kToolCallStart, body, control_token::kToolCallEnd), std::move(reason)});
    }
    in_call_ = false;
    call_.clear();
  }

  // How many trailing bytes of `text` could begin `marker`.
  static std::size_t partial_marker_suffix(std::string_view text, std::string_view marker) {
    for (std::size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n) {
      if (marker.starts_with(text.substr(text.size() - n))) return n;
    }
    return 0;
  }

  std::string pending_, call_;
  std::size_t scanned_ = 0;
  bool in_call_ = false, in_string_ = false, skipping_ = false;
  std::vector<ToolCall> calls_;
  std::vector<MalformedToolCall> malformed_;
  std::vector<StreamedToolCall> streamed_;
};

namespace detail {

// A recursive-descent reader of format_argument's syntax.
class ToolValueReader {
 public:
  explicit ToolValueReader(std::string_view text) : text_(text) {}

  std::size_t position() const { return at_; }
  bool done() const { return at_ == text_.size(); }
  bool take(std::string_view token) {
    if (!text_.substr(at_).starts_with(token)) return false;
    at_ += token.size();
    return true;
  }

  // A function name (is_tool_name_char), possibly empty.
  std::string_view take_name() {
    const std::size_t begin = at_;
    while (at_ < text_.size() && is_tool_name_char(text_[at_])) ++at_;
    return text_.substr(begin, at_ - begin);
  }

  // A value; nullopt with reason_ set on error. `depth` bounds nesting (no stack overflow).
  std::optional<JsonValue> value(int depth = 0) {
    if (depth > kMaxDepth) return error("nested deeper than 64 levels");
    if (take(control_token::kQuote)) {
      std::optional<std::string> s = rest_of_quoted("a string");
      if (!s) return std::nullopt;
      return JsonValue(std::move(*s));
    }
    if (take("{")) return object(depth);
    if (take("[")) return list(depth);
    if (take("true")) return JsonValue(true);
    if (take("false")) return JsonValue(false);
    if (take("null")) return JsonValue(nullptr);
    return number();
  }

  // {key:value,...} after its "{"; keys bare or delimited.
  std::optional<JsonValue> object(int depth) {
    JsonValue out = JsonValue::object();
    if (take("}")) return out;
    while (true) {
      std::optional<std::string> key = this->key();
      if (!key) return std::nullopt;
      if (!take(":")) return error("a key without ':'");
      std::optional<JsonValue> v = value(depth + 1);
      if (!v) return std::nullopt;
      out[*key] = std::move(*v);
      if (take("}")) return out;
      if (!take(",")) return error("expected ',' or '}' in an object");
    }
  }

  const std::string& why() const { return reason_; }

 private:
  static constexpr int kMaxDepth = 64;

  std::nullopt_t error(std::string reason) {
    if (reason_.empty()) reason_ = fmt::format("{} at byte {}", reason, at_);
    return std::nullopt;
  }

  // The text up to the closing <|"|> of a string or key whose opening one was taken.
  std::optional<std::string> rest_of_quoted(std::string_view what) {
    const std::size_t end = text_.find(control_token::kQuote, at_);
    if (end == std::string_view::npos) return error(fmt::format("{} without its closing <|\"|>", what));
    std::string text(text_.substr(at_, end - at_));
    at_ = end + control_token::kQuote.size();
    return text;
  }

  std::optional<std::string> key() {
    if (take(control_token::kQuote)) return rest_of_quoted("a key");
    const std::size_t begin = at_;
    while (at_ < text_.size() && std::string_view(":,{}[]<").find(text_[at_]) == std::string_view::npos) ++at_;
    if (at_ == begin) return error("an empty key");
    return std::string(text_.substr(begin, at_ - begin));
  }

  std::optional<JsonValue> list(int depth) {
    JsonValue out = JsonValue::array();
    if (take("]")) return out;
    while (true) {
      std::optional<JsonValue> v = value(depth + 1);
      if (!v) return std::nullopt;
      out.push_back(std::move(*v));
      if (take("]")) return out;
      if (!take(",")) return error("expected ',' or ']' in a list");
    }
  }

  // A JSON number; anything else is not a value of this syntax.
  std::optional<JsonValue> number() {
    const std::size_t begin = at_;
    while (at_ < text_.size() && std::string_view("+-.0123456789eE").find(text_[at_]) != std::string_view::npos) ++at_;
    const std::string_view digits = text_.substr(begin, at_ - begin);
    JsonValue parsed = JsonValue::parse(digits, nullptr, /*allow_exceptions=*/false);
    if (digits.empty() || !parsed.is_number()) {
      at_ = begin;
      return error("a value that is not a <|\"|>string<|\"|>, number, true, false, null, {object} or [list]");
    }
    return parsed;
  }

  std::string_view text_;
  std::size_t at_ = 0;
  std::string reason_;
};

}  // namespace detail

inline std::optional<ToolCall> parse_tool_call_body(std::string_view body, std::string& reason) {
  detail::ToolValueReader reader(body);
  if (!reader.take("call:")) {
    reason = "does not start with \"call:\"";
    return std::nullopt;
  }
  ToolCall call{.name = std::string(reader.take_name())};
  if (call.name.empty()) {
    reason = "no function name after \"call:\"";
    return std::nullopt;
  }
  if (!reader.take("{")) {
    reason = fmt::format("expected '{{' after the function name \"{}\"", call.name);
    return std::nullopt;
  }
  std::optional<JsonValue> arguments = reader.object(0);
  if (!arguments) {
    reason = reader.why();
    return std::nullopt;
  }
  if (!reader.done()) {
    reason = fmt::format("text after the arguments at byte {}", reader.position());
    return std::nullopt;
  }
  call.arguments = std::move(*arguments);
  return call;
}

}  // namespace gemma4
