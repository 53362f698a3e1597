#pragma once
// A rendered prompt: text runs and control tokens, in order. As text it is exactly what
// the Jinja template writes; as ids, each control token is placed by its id and each text
// run is encoded with special-token matching off. The two agree with the Hugging Face
// tokenizer on the whole text (added tokens cut it into the same runs), except where typed
// text spells a control token: "<turn|>" in a message stays text here, so a message cannot
// end a turn or forge a role.

#include <string>
#include <string_view>
#include <vector>

#include "gemma4/error.hpp"
#include "gemma4/tokenizer/tokenizer.hpp"

namespace gemma4 {

// Gemma 4's control tokens by their text (spec section 6); ids come from the tokenizer.
namespace control_token {
inline constexpr std::string_view kBos = "<bos>";
inline constexpr std::string_view kTurnStart = "<|turn>";
inline constexpr std::string_view kTurnEnd = "<turn|>";
inline constexpr std::string_view kThink = "<|think|>";
inline constexpr std::string_view kChannelStart = "<|channel>";
inline constexpr std::string_view kChannelEnd = "<channel|>";
inline constexpr std::string_view kToolStart = "<|tool>";
inline constexpr std::string_view kToolEnd = "<tool|>";
inline constexpr std::string_view kToolCallStart = "<|tool_call>";
inline constexpr std::string_view kToolCallEnd = "<tool_call|>";
inline constexpr std::string_view kToolResponseStart = "<|tool_response>";
inline constexpr std::string_view kToolResponseEnd = "<tool_response|>";
inline constexpr std::string_view kQuote = "<|\"|>";  // string delimiter of tool syntax
}  // namespace control_token

// The id of a control token; turn framing must be marked special, so typed text encoded
// with matching off can never produce it.
inline int control_token_id(const Tokenizer& tokenizer, std::string_view token) {
  const std::optional<int> id = tokenizer.added_token_id(token);
  if (!id) fail(ErrorKind::kConfigMismatch, "the tokenizer has no added token \"{}\"; is this a Gemma 4 tokenizer.json?", token);
  if (!tokenizer.is_special(*id)) {
    fail(ErrorKind::kConfigMismatch, "token {} \"{}\" is not marked special in tokenizer.json; typed text could forge it", *id, token);
  }
  return *id;
}

class PromptText {
 public:
  struct Segment {
    bool control;      // a control token (its text), else a run of plain text
    std::string text;
  };

  void text(std::string_view s) {
    if (s.empty()) return;
    if (segments_.empty() || segments_.back().control) segments_.push_back({false, {}});
    segments_.back().text += s;
  }
  void control(std::string_view token) { segments_.push_back({true, std::string(token)}); }

  const std::vector<Segment>& segments() const { return segments_; }

  std::string str() const {
    std::string out;
    for (const Segment& s : segments_) out += s.text;
    return out;
  }

  // Text runs are encoded whole, so a run's tokens are what the full-text encoding gives.
  std::vector<int> ids(const Tokenizer& tokenizer) const {
    std::vector<int> out;
    for (const Segment& s : segments_) {
      if (s.control) {
        out.push_back(control_token_id(tokenizer, s.text));
      } else {
        const std::vector<int> run = tokenizer.encode(s.text, {.add_bos = false, .match_special_tokens = false});
        out.insert(out.end(), run.begin(), run.end());
      }
    }
    return out;
  }

 private:
  std::vector<Segment> segments_;
};

}  // namespace gemma4
