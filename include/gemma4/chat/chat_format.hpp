#pragma once
// Gemma 4's chat prompt format (spec section 6), built as token ids:
//
//   <bos><|turn>system\n<|think|>{system}<turn|>\n        (only with a system text or thinking)
//   <|turn>user\n{text}<turn|>\n
//   <|turn>model\n{answer}<turn|>\n                       (earlier answers, thoughts dropped)
//   <|turn>model\n                                        (the generation prompt)
//
// Control tokens are placed by id, looked up in the tokenizer's added tokens by their
// Gemma 4 names (spec section 6). What a user types is encoded with special-token matching off, so typing "<turn|>"
// cannot end a turn or forge a role.
//
// Errors: the constructor throws gemma4::Error when the tokenizer lacks a control token;
// the append_* functions throw for text that is not UTF-8. Immutable after construction.

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/error.hpp"
#include "gemma4/tokenizer/tokenizer.hpp"

namespace gemma4 {

// The ids of the control tokens the chat format places (105, 106, ... in Gemma 4's
// vocabulary), as the tokenizer gives them.
struct ChatTokenIds {
  int bos;
  int turn_start;     // <|turn>
  int turn_end;       // <turn|>
  int think;          // <|think|>: thinking mode, in the system turn
  int channel_start;  // <|channel>: opens the thought channel
  int channel_end;    // <channel|>
};

// Looks every control token up by its name; `special`: turn framing, which typed text must
// never produce, so tokenizer.json must mark it special.
inline ChatTokenIds chat_token_ids(const Tokenizer& tokenizer) {
  const auto id_of = [&](std::string_view name, bool special) {
    const std::optional<int> id = tokenizer.added_token_id(name);
    if (!id) fail(ErrorKind::kConfigMismatch, "the tokenizer has no added token \"{}\"; is this a Gemma 4 tokenizer.json?", name);
    if (special && !tokenizer.is_special(*id)) {
      fail(ErrorKind::kConfigMismatch, "token {} \"{}\" is not marked special in tokenizer.json; typed text could forge it", *id, name);
    }
    return *id;
  };
  return {.bos = id_of("<bos>", true),
          .turn_start = id_of("<|turn>", true),
          .turn_end = id_of("<turn|>", true),
          .think = id_of("<|think|>", false),
          .channel_start = id_of("<|channel>", false),
          .channel_end = id_of("<channel|>", false)};
}

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
  explicit ChatFormat(const Tokenizer& tokenizer)
      : tokenizer_(tokenizer), ids_(chat_token_ids(tokenizer)), newline_(tokenizer.encode("\n", {.add_bos = false})) {}
  explicit ChatFormat(const Tokenizer&&) = delete;  // would dangle

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
