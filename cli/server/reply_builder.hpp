#pragma once
// A reply of gemma4 serve as its tokens come: the visible content with the request's stop
// strings applied, the reasoning (the thought channel) and the tool calls, each with an
// id of its own; a raw completion is text only.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "gemma4/chat/reply_stream.hpp"
#include "gemma4/chat/stop_strings.hpp"
#include "gemma4/tokenizer/stream_decoder.hpp"

namespace gemma4::server {

class ReplyBuilder {
 public:
  // `id`: the response's, which the tool calls' ids are made from. `tokenizer` must outlive it.
  ReplyBuilder(const Tokenizer& tokenizer, bool chat, std::vector<std::string> stops, std::string id)
      : stops_(std::move(stops)), id_(std::move(id)) {
    if (chat) {
      chat_.emplace(tokenizer);
    } else {
      raw_.emplace(tokenizer, DecodeOptions{.skip_special = true});
    }
  }

  // on_delta(text, is_reasoning) for each piece of text the token completes.
  template <typename OnDelta>
  void push(int id, OnDelta&& on_delta) {
    if (stops_.stopped()) return;
    ++tokens_;
    const auto piece = [&](std::string_view text, bool thought) { add(text, thought, on_delta); };
    chat_ ? chat_->push(id, piece) : piece(raw_->push(id), false);
  }
  template <typename OnDelta>
  void finish(OnDelta&& on_delta) {
    const auto piece = [&](std::string_view text, bool thought) { add(text, thought, on_delta); };
    chat_ ? chat_->finish(piece) : piece(raw_->finish(), false);
    if (chat_) {  // a call that could not be parsed is shown as written: nothing is lost
      for (const MalformedToolCall& bad : chat_->malformed()) piece(bad.raw, false);
    }
    const std::string held = stops_.finish();
    if (!held.empty() && !stops_.stopped()) {
      content_ += held;
      on_delta(std::string_view(held), false);
    }
  }

  bool stopped_by_string() const { return stops_.stopped(); }
  int tokens() const { return tokens_; }
  const std::string& content() const { return content_; }
  const std::string& reasoning() const { return reasoning_; }
  // The complete tool calls, with ids unique to this reply.
  std::vector<ToolCall> calls() const {
    std::vector<ToolCall> calls = chat_ ? chat_->calls() : std::vector<ToolCall>{};
    for (std::size_t i = 0; i < calls.size(); ++i) calls[i].id = call_id(i);
    return calls;
  }

  // What the tool calls added since the last time, as delta.tool_calls entries: a call's
  // index, id, type and name once its name is known, then its arguments as they are
  // written (JSON text, in pieces). A call that turns out malformed has streamed as far
  // as it went; its raw text comes as content at the end, as without streaming.
  JsonValue take_call_deltas() {
    JsonValue deltas = JsonValue::array();
    if (!chat_) return deltas;
    const std::vector<StreamedToolCall>& streamed = chat_->streamed_calls();
    for (std::size_t i = 0; i < streamed.size() && streamed[i].named; ++i) {
      const std::string& arguments = streamed[i].arguments;
      if (i == arguments_sent_.size()) {
        arguments_sent_.push_back(0);
        deltas.push_back({{"index", i}, {"id", call_id(i)}, {"type", "function"}, {"function", {{"name", streamed[i].name}, {"arguments", ""}}}});
      }
      if (arguments.size() > arguments_sent_[i]) {
        deltas.push_back({{"index", i}, {"function", {{"arguments", arguments.substr(arguments_sent_[i])}}}});
        arguments_sent_[i] = arguments.size();
      }
    }
    return deltas;
  }

 private:
  template <typename OnDelta>
  void add(std::string_view text, bool thought, OnDelta& on_delta) {
    if (text.empty() || stops_.stopped()) return;
    if (thought) return add_reasoning(text, on_delta);
    const std::string shown = stops_.push(text);
    content_ += shown;
    if (!shown.empty()) on_delta(std::string_view(shown), false);
  }

  // The thought channel without its name line ("thought\n") and the newline before its
  // end, which the template writes around it: both held back until they are known.
  template <typename OnDelta>
  void add_reasoning(std::string_view text, OnDelta& on_delta) {
    constexpr std::string_view kName = "thought\n";
    held_reasoning_ += text;
    if (!named_) {
      if (held_reasoning_.size() < kName.size() && kName.starts_with(held_reasoning_)) return;
      if (held_reasoning_.starts_with(kName)) held_reasoning_.erase(0, kName.size());
      named_ = true;
    }
    const bool newline = held_reasoning_.ends_with('\n');
    const std::string out = held_reasoning_.substr(0, held_reasoning_.size() - (newline ? 1 : 0));
    held_reasoning_ = newline ? "\n" : "";
    reasoning_ += out;
    if (!out.empty()) on_delta(std::string_view(out), true);
  }

  std::optional<ReplyStream> chat_;
  std::optional<StreamDecoder> raw_;
  StopStrings stops_;
  std::string content_, reasoning_, held_reasoning_;
  bool named_ = false;  // the thought channel's name line is past
  std::string call_id(std::size_t index) const { return fmt::format("call-{}-{}", id_, index); }

  std::string id_;
  int tokens_ = 0;
  std::vector<std::size_t> arguments_sent_;  // per call streamed: the bytes of its arguments sent
};

}  // namespace gemma4::server
