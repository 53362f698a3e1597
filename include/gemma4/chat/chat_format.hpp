#pragma once
// Gemma 4's chat prompt format (spec section 6), built as token ids:
//
//   <bos><|turn>system\n<|think|>{system}<turn|>\n        (only with a system text or thinking)
//   <|turn>user\n{text}<turn|>\n
//   <|turn>model\n{answer}<turn|>\n                       (earlier answers, thoughts dropped)
//   <|turn>model\n                                        (the generation prompt)
//
// Control tokens are placed by id; their text comes from the tokenizer, never from here.
// What a user types is encoded with special-token matching off, so typing "<turn|>"
// cannot end a turn or forge a role.
//
// Errors: the constructor throws gemma4::Error when the tokenizer lacks a control token;
// the append_* functions throw for text that is not UTF-8. Immutable after construction.

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/error.hpp"
#include "gemma4/tokenizer/tokenizer.hpp"

namespace gemma4 {

// The control token ids of the Gemma 4 vocabulary (spec section 6).
struct ChatTokenIds {
  int bos = 2;
  int turn_start = 105;    // <|turn>
  int turn_end = 106;      // <turn|>
  int think = 98;          // <|think|>: thinking mode, in the system turn
  int channel_start = 100;  // <|channel>: opens the thought channel
  int channel_end = 101;    // <channel|>
};
inline constexpr ChatTokenIds kGemma4ChatTokens{};

enum class Role { kSystem, kUser, kModel };

inline std::string_view role_name(Role role) {
  switch (role) {
    case Role::kSystem: return "system";
    case Role::kUser: return "user";
    case Role::kModel: return "model";
  }
  return "?";
}

class ChatFormat {
 public:
  // Checks that the tokenizer has each control token as an added token, and that the ones
  // that frame turns are special (else typed text could produce them).
  explicit ChatFormat(const Tokenizer& tokenizer, ChatTokenIds ids = kGemma4ChatTokens) : tokenizer_(tokenizer), ids_(ids) {
    const auto require = [&](int id, const char* what, bool special) {
      if (!tokenizer.is_known(id) || tokenizer.added_token(id) == nullptr) {
        fail(ErrorKind::kConfigMismatch, "the tokenizer has no added token with id {} ({}); is this a Gemma 4 tokenizer.json?", id, what);
      }
      if (special && !tokenizer.is_special(id)) {
        fail(ErrorKind::kConfigMismatch, "token {} \"{}\" ({}) is not marked special in tokenizer.json; typed text could forge it", id,
             tokenizer.token_text(id), what);
      }
    };
    require(ids.bos, "<bos>", true);
    require(ids.turn_start, "turn start", true);
    require(ids.turn_end, "turn end", true);
    require(ids.think, "thinking switch", false);
    require(ids.channel_start, "channel start", false);
    require(ids.channel_end, "channel end", false);
    newline_ = tokenizer.encode("\n", {.add_bos = false});
  }

  explicit ChatFormat(const Tokenizer&&, ChatTokenIds = kGemma4ChatTokens) = delete;  // would dangle

  const ChatTokenIds& ids() const { return ids_; }

  // <bos> and, with a system text or thinking on, the system turn.
  void append_start(std::vector<int>& out, std::string_view system, bool thinking) const {
    out.push_back(ids_.bos);
    if (system.empty() && !thinking) return;
    open_turn(out, Role::kSystem);
    if (thinking) out.push_back(ids_.think);
    append_text(out, system);
    close_turn(out);
  }

  // A whole turn from text: what a user typed, or an earlier answer kept as text.
  void append_turn(std::vector<int>& out, Role role, std::string_view text) const {
    open_turn(out, role);
    append_text(out, text);
    close_turn(out);
  }

  // "<|turn>model\n": the model's answer comes next.
  void append_generation_prompt(std::vector<int>& out) const { open_turn(out, Role::kModel); }

  // Ends a turn whose body is already in `out` (an answer kept as generated ids).
  void close_turn(std::vector<int>& out) const {
    out.push_back(ids_.turn_end);
    out.insert(out.end(), newline_.begin(), newline_.end());
  }

  // Typed text: special tokens are not matched (see EncodeOptions).
  void append_text(std::vector<int>& out, std::string_view text) const {
    const std::vector<int> ids = tokenizer_.encode(text, {.add_bos = false, .match_special_tokens = false});
    out.insert(out.end(), ids.begin(), ids.end());
  }

  // An answer's ids without its thought blocks (<|channel> ... <channel|>, inclusive);
  // an unclosed block runs to the end.
  std::vector<int> without_thoughts(std::span<const int> answer) const {
    std::vector<int> kept;
    bool in_thought = false;
    for (const int id : answer) {
      if (id == ids_.channel_start) {
        in_thought = true;
      } else if (id == ids_.channel_end && in_thought) {
        in_thought = false;
      } else if (!in_thought) {
        kept.push_back(id);
      }
    }
    return kept;
  }

 private:
  void open_turn(std::vector<int>& out, Role role) const {
    out.push_back(ids_.turn_start);
    append_text(out, role_name(role));
    out.insert(out.end(), newline_.begin(), newline_.end());
  }

  const Tokenizer& tokenizer_;
  ChatTokenIds ids_;
  std::vector<int> newline_;  // "\n"
};

}  // namespace gemma4
