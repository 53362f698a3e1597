#pragma once
// A multi-turn chat with an instruction-tuned model. The session is the one record of
// what the KV cache holds (Session::tokens()); each turn feeds only what the cache lacks
// of the conversation so far, after rewinding past whatever it holds that the
// conversation no longer says: a thought block (dropped from the history the model sees
// next turn), or the rest of a reply that ended in an exception. Where the sliding-window
// caches cannot rewind that far, the turn re-feeds the conversation from the start.
//
//   gemma4::Conversation<gemma4::E2B> chat(session, tokenizer, generation, {.thinking = false});
//   auto reply = chat.ask("Why is the sky blue?", [](std::string_view text, bool thought) {
//     if (!thought) std::fwrite(text.data(), 1, text.size(), stdout);
//     return true;  // false cancels the reply (a callback may also return void)
//   });
//
// Not for concurrent use.

#include <algorithm>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
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
  Conversation(Session<V>&&, const Tokenizer&, const GenerationConfig&, ConversationOptions) = delete;  // would dangle
  Conversation(Session<V>&, const Tokenizer&&, const GenerationConfig&, ConversationOptions) = delete;

  // Sends a user turn and generates the model's answer. on_text(text, is_thought) gets
  // the answer as it is decoded and returns false to cancel the reply (or returns void).
  // A cancelled reply, or one cut by the token limit or a full context, stays in the
  // history as far as it went. An exception (invalid UTF-8, a prompt past the context,
  // one thrown by on_text) leaves the history as it was, and the next turn goes on from it.
  template <typename OnText>
  Reply ask(std::string_view user_text, OnText&& on_text) {
    NoDrafts none;
    return ask(user_text, none, std::forward<OnText>(on_text));
  }

  // The same, decoding speculatively with `drafts` (an assistant's Drafter on this
  // conversation's session): the same reply, sooner when its drafts are accepted.
  template <DraftSource Drafts, typename OnText>
  Reply ask(std::string_view user_text, Drafts& drafts, OnText&& on_text) {
    std::vector<int> wanted = history_;
    format_.append_turn(wanted, Role::kUser, user_text);
    format_.append_generation_prompt(wanted);
    const std::span<const int> feed = std::span(wanted).subspan(reuse_cache_for(wanted));

    Reply reply;
    StreamDecoder stream(tokenizer_, {.skip_special = true});
    bool in_thought = false, go_on = true;
    const auto emit = [&](const std::string& text) {
      if (text.empty() || !go_on) return;
      (in_thought ? reply.thought : reply.answer) += text;
      if constexpr (std::is_void_v<std::invoke_result_t<OnText&, std::string_view, bool>>) {
        on_text(std::string_view(text), in_thought);
      } else {
        go_on = on_text(std::string_view(text), in_thought);
      }
    };
    reply.generation = generator_.generate(feed, options_.max_new_tokens, drafts, [&](int id) {
      const bool opens = id == format_.ids().channel_start, closes = id == format_.ids().channel_end;
      if (opens || closes) {
        emit(stream.finish());
        in_thought = opens;
      } else {
        emit(stream.push(id));
      }
      return go_on;
    });
    emit(stream.finish());

    // The history keeps the answer without thoughts and without the stop id.
    std::span<const int> answer = reply.generation.tokens;
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

  // Leaves in the session the longest prefix of `wanted` it holds and can keep (at least
  // the last token of `wanted` is fed again, for its logits) and returns its length.
  std::size_t reuse_cache_for(const std::vector<int>& wanted) {
    Session<V>& session = generator_.session();
    const std::span<const int> held = session.tokens();
    const std::size_t limit = std::min(held.size(), wanted.size() - 1);
    const auto common = static_cast<std::size_t>(std::mismatch(held.begin(), held.begin() + limit, wanted.begin()).first - held.begin());
    if (!session.can_rewind_to(static_cast<int>(common))) {
      session.reset();
      return 0;
    }
    session.rewind(static_cast<int>(common));
    return common;
  }

  const Tokenizer& tokenizer_;
  ChatFormat format_;
  ConversationOptions options_;
  Generator<V> generator_;
  std::vector<int> history_;  // the conversation, answers without thoughts, each turn closed
};

}  // namespace gemma4
