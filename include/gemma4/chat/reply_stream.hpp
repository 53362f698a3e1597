#pragma once
// What a chat front end makes of a reply's tokens as they are generated: the visible
// text, the thought channel's text kept apart, and tool calls parsed out of the text
// (chat/tool_call_parser.hpp), never shown. Conversation, the CLI's batch of prompts and
// the server all read replies through it.
//
//   gemma4::ReplyStream reply(tokenizer);
//   for (int id : generated) reply.push(id, [](std::string_view text, bool thought) { show(text, thought); });
//   reply.finish(on_text);
//   reply.calls();  // complete calls; reply.malformed() the ones that could not be parsed

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/chat/prompt_text.hpp"
#include "gemma4/chat/tool_call_parser.hpp"
#include "gemma4/tokenizer/stream_decoder.hpp"
#include "gemma4/tokenizer/tokenizer.hpp"

namespace gemma4 {

class ReplyStream {
 public:
  // `tokenizer` must outlive the stream; it must have Gemma 4's control tokens.
  explicit ReplyStream(const Tokenizer& tokenizer)
      : tokenizer_(tokenizer),
        stream_(tokenizer, {.skip_special = true}),
        channel_start_(control_token_id(tokenizer, control_token::kChannelStart)),
        channel_end_(control_token_id(tokenizer, control_token::kChannelEnd)),
        tool_syntax_{control_token_id(tokenizer, control_token::kToolCallStart), control_token_id(tokenizer, control_token::kToolCallEnd),
                     control_token_id(tokenizer, control_token::kQuote)} {}
  explicit ReplyStream(const Tokenizer&&) = delete;  // would dangle

  // One generated token: on_text(text, is_thought) gets the text it completes, if any.
  template <typename OnText>
  void push(int id, OnText&& on_text) {
    if (id == channel_start_ || id == channel_end_) {
      flush(on_text);
      in_thought_ = id == channel_start_;
    } else if (!in_thought_ && std::find(tool_syntax_.begin(), tool_syntax_.end(), id) != tool_syntax_.end()) {
      flush(on_text);  // the parser reads the markers, which decoding skips as special
      emit(parser_.push(tokenizer_.token_text(id)), false, on_text);
    } else if (in_thought_) {
      emit(stream_.push(id), true, on_text);
    } else {
      emit(parser_.push(stream_.push(id)), false, on_text);
    }
  }

  // The end of the reply: text still held back, and an unterminated call reported.
  template <typename OnText>
  void finish(OnText&& on_text) {
    flush(on_text);
    emit(parser_.finish(), false, on_text);
  }

  bool in_thought() const { return in_thought_; }
  std::vector<ToolCall>& calls() { return parser_.calls(); }
  const std::vector<ToolCall>& calls() const { return parser_.calls(); }
  std::vector<MalformedToolCall>& malformed() { return parser_.malformed(); }
  const std::vector<MalformedToolCall>& malformed() const { return parser_.malformed(); }
  // Every call begun, as far as it has streamed (ToolCallParser::streamed).
  const std::vector<StreamedToolCall>& streamed_calls() const { return parser_.streamed(); }

 private:
  template <typename OnText>
  static void emit(const std::string& text, bool thought, OnText& on_text) {
    if (!text.empty()) on_text(std::string_view(text), thought);
  }

  template <typename OnText>
  void flush(OnText& on_text) {
    std::string text = stream_.finish();
    in_thought_ ? emit(text, true, on_text) : emit(parser_.push(text), false, on_text);
  }

  const Tokenizer& tokenizer_;
  StreamDecoder stream_;
  ToolCallParser parser_;
  int channel_start_, channel_end_;
  std::vector<int> tool_syntax_;  // <|tool_call>, <tool_call|>, <|"|>
  bool in_thought_ = false;
};

}  // namespace gemma4
