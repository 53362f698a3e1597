#pragma once
// A multi-turn chat with an instruction-tuned model. The KV cache is kept between turns:
// a new turn feeds only its own tokens. Thought blocks are shown or hidden as asked,
// and dropped from the history the model sees next turn; when the last answer had one,
// the next turn re-feeds the conversation from the start instead (the cache cannot
// un-see the thought).
//
//   gemma4::Conversation<gemma4::E2B> chat(session, tokenizer, generation, {.thinking = false});
//   auto reply = chat.ask("Why is the sky blue?", [](std::string_view text, bool thought) {
//     if (!thought) std::fwrite(text.data(), 1, text.size(), stdout);
//   });
//
// Not for concurrent use.

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/chat/chat_format.hpp"
#include "gemma4/model/generate.hpp"
#include "gemma4/tokenizer/stream_decoder.hpp"

namespace gemma4 {

struct ConversationOptions {
  std::string system{};      // system prompt; empty: none
  bool thinking = false;     // <|think|> in the system turn: the model reasons first
  int max_new_tokens = 1024;  // per answer
};

struct Reply {
  std::string answer;   // the visible text
  std::string thought;  // the thought channel's text, if the model wrote one
  GenerationResult generation;
};

template <Variant V>
class Conversation {
 public:
  // `session` and `tokenizer` must outlive the conversation. Generation also stops on
  // the turn-end token, whatever generation_config.json lists.
  Conversation(Session<V>& session, const Tokenizer& tokenizer, const GenerationConfig& generation, ConversationOptions options)
      : tokenizer_(tokenizer), format_(tokenizer), options_(std::move(options)),
        generator_(session, generation.sampling, with_turn_end(generation.stop_ids, format_.ids().turn_end)) {
    restart();
  }

  // Sends a user turn and generates the model's answer. on_text(text, is_thought) gets
  // the answer as it is decoded. Errors (invalid UTF-8, a prompt past the context) leave
  // the conversation as it was.
  template <typename OnText>
  Reply ask(std::string_view user_text, OnText&& on_text) {
    std::vector<int> wanted = history_;
    format_.append_turn(wanted, Role::kUser, user_text);
    format_.append_generation_prompt(wanted);

    const bool cache_usable = cached_.size() <= wanted.size() && std::equal(cached_.begin(), cached_.end(), wanted.begin());
    if (!cache_usable) {
      generator_.reset();
      cached_.clear();
    }
    const std::span<const int> feed = std::span(wanted).subspan(cached_.size());

    Reply reply;
    StreamDecoder stream(tokenizer_, {.skip_special = true});
    bool in_thought = false;
    const auto emit = [&](const std::string& text) {
      if (text.empty()) return;
      (in_thought ? reply.thought : reply.answer) += text;
      on_text(std::string_view(text), in_thought);
    };
    reply.generation = generator_.generate(feed, options_.max_new_tokens, [&](int id) {
      const bool opens = id == format_.ids().channel_start, closes = id == format_.ids().channel_end;
      if (opens || closes) {
        emit(stream.finish());
        in_thought = opens;
      } else {
        emit(stream.push(id));
      }
      return true;
    });
    emit(stream.finish());

    // What the session now holds: everything fed, the final sampled token excepted.
    const std::vector<int>& sampled = reply.generation.tokens;
    cached_ = wanted;
    cached_.insert(cached_.end(), sampled.begin(), sampled.end() - 1);

    // The history keeps the answer without thoughts and without the stop id.
    std::span<const int> answer = sampled;
    if (reply.generation.stop == StopReason::kStopToken) answer = answer.first(answer.size() - 1);
    history_ = std::move(wanted);
    const std::vector<int> kept = format_.without_thoughts(answer);
    history_.insert(history_.end(), kept.begin(), kept.end());
    format_.close_turn(history_);
    return reply;
  }

  // Forgets every turn (the system prompt stays).
  void restart() {
    history_.clear();
    format_.append_start(history_, options_.system, options_.thinking);
  }

  // The ids the next turn builds on: the conversation as the model will see it.
  const std::vector<int>& history() const { return history_; }

 private:
  static std::vector<int> with_turn_end(std::vector<int> stop_ids, int turn_end) {
    if (std::find(stop_ids.begin(), stop_ids.end(), turn_end) == stop_ids.end()) stop_ids.push_back(turn_end);
    return stop_ids;
  }

  const Tokenizer& tokenizer_;
  ChatFormat format_;
  ConversationOptions options_;
  Generator<V> generator_;
  std::vector<int> history_;  // the conversation, answers without thoughts, each turn closed
  std::vector<int> cached_;   // the ids in the session's KV cache
};

}  // namespace gemma4
