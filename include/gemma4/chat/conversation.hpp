#pragma once
// A multi-turn chat with an instruction-tuned model, tools included. The conversation is
// kept as messages (chat/messages.hpp) and each turn renders all of it with the model's
// chat template (chat/prompt_renderer.hpp), exactly as the template would: earlier answers
// as text, thoughts dropped once a new user turn follows, tool calls and results inside the
// model turn. The session's KV cache keeps the longest prefix it shares with that prompt
// and only the rest is fed; where the sliding-window caches cannot rewind far enough, the
// turn re-feeds the conversation from the start.
//
//   gemma4::Conversation<gemma4::E2B> chat(session, model, {.tools = tools});  // model: a loaded Model<E2B>
//   auto reply = chat.ask("What's the weather in Paris?", [](std::string_view text, bool thought) {
//     if (!thought) std::fwrite(text.data(), 1, text.size(), stdout);
//     return true;  // false cancels the reply (a callback may also return void)
//   });
//   while (!reply.tool_calls.empty()) reply = chat.send_tool_results(run_tools(reply.tool_calls), on_text);
//
// Not for concurrent use.

#include <algorithm>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "gemma4/chat/chat_template.hpp"
#include "gemma4/chat/messages.hpp"
#include "gemma4/chat/prompt_renderer.hpp"
#include "gemma4/chat/tool_call_parser.hpp"
#include "gemma4/model/generate.hpp"
#include "gemma4/model/model.hpp"
#include "gemma4/tokenizer/stream_decoder.hpp"

namespace gemma4 {

struct ConversationOptions {
  std::string system{};      // system prompt; empty: none
  bool thinking = false;     // <|think|> in the system turn: the model reasons first
  int max_new_tokens = 1024;  // per answer
  std::vector<Tool> tools{};  // functions the model may call
  // The revision to render; unset: the model directory's (with a Model), else the current one.
  std::optional<ChatTemplate> chat_template{};
};

struct Reply {
  std::string answer;   // the visible text
  std::string thought;  // the thought channel's text, if the model wrote one
  std::vector<ToolCall> tool_calls;                 // calls to run; send_tool_results answers them
  std::vector<MalformedToolCall> malformed_calls;  // tool-call output that could not be parsed
  int dropped_turns = 0;  // the oldest user turns (with their replies) dropped from the history to fit the context
  GenerationResult generation;
};

// A tool's result for the call with id `call_id` (ToolCall::id): text, or a number.
struct ToolResult {
  std::string call_id;
  JsonValue content;
};

template <Variant V>
class Conversation {
 public:
  // `session` and `tokenizer` must outlive the conversation. Generation also stops on the
  // turn-end token and, with tools, on <|tool_response>, whatever generation_config.json
  // lists. Throws for tools the chat template cannot declare.
  Conversation(Session<V>& session, const Tokenizer& tokenizer, const GenerationConfig& generation, ConversationOptions options)
      : tokenizer_(tokenizer), options_(std::move(options)), chat_template_(options_.chat_template.value_or(ChatTemplate{})),
        ids_(control_ids(tokenizer)),
        generator_(session, generation.sampling, with_stop_ids(generation.stop_ids, ids_, !options_.tools.empty())) {
    render_prompt(chat_template_, {}, options_.tools);  // refuses tools it cannot declare, now
    restart();
  }
  // With a loaded model: its tokenizer, generation defaults and chat template.
  Conversation(Session<V>& session, const Model<V>& model, ConversationOptions options)
      : Conversation(session, model.tokenizer, model.generation, with_template(std::move(options), model.chat_template)) {}
  Conversation(Session<V>&, const Model<V>&&, ConversationOptions) = delete;
  Conversation(Session<V>&&, const Tokenizer&, const GenerationConfig&, ConversationOptions) = delete;  // would dangle
  Conversation(Session<V>&, const Tokenizer&&, const GenerationConfig&, ConversationOptions) = delete;

  // Sends a user turn and generates the model's answer. on_text(text, is_thought) gets
  // the answer as it is decoded (tool calls are not shown: they come in Reply::tool_calls)
  // and returns false to cancel the reply (or returns void). A cancelled reply, or one cut
  // by the token limit or a full context, stays in the history as far as it went. When
  // the history leaves no room for an answer in the context, its oldest turns are dropped
  // (the system prompt stays; Reply::dropped_turns says how many). An exception (invalid
  // UTF-8, a turn too long for the context on its own, one thrown by on_text) leaves the
  // history as it was, and the next turn goes on from it.
  template <typename OnText>
  Reply ask(std::string_view user_text, OnText&& on_text) {
    NoDrafts none;
    return ask(user_text, none, std::forward<OnText>(on_text));
  }

  // The same, decoding speculatively with `drafts` (an assistant's Drafter on this
  // conversation's session): the same reply, sooner when its drafts are accepted.
  template <DraftSource Drafts, typename OnText>
  Reply ask(std::string_view user_text, Drafts& drafts, OnText&& on_text) {
    utf8::require_valid(user_text, "the message");
    std::vector<Message> next = messages_;
    next.push_back({.role = Role::kUser, .content = std::string(user_text)});
    return respond(std::move(next), drafts, std::forward<OnText>(on_text));
  }

  // Answers the tool calls of the last reply and lets the model go on with the results.
  template <typename OnText>
  Reply send_tool_results(std::span<const ToolResult> results, OnText&& on_text) {
    NoDrafts none;
    return send_tool_results(results, none, std::forward<OnText>(on_text));
  }

  template <DraftSource Drafts, typename OnText>
  Reply send_tool_results(std::span<const ToolResult> results, Drafts& drafts, OnText&& on_text) {
    if (messages_.empty() || messages_.back().tool_calls.empty()) fail(ErrorKind::kInvalidArgument, "no tool calls to answer: the last reply made none");
    if (results.empty()) fail(ErrorKind::kInvalidArgument, "no tool results given");
    const std::vector<ToolCall>& calls = messages_.back().tool_calls;
    std::vector<Message> next = messages_;
    for (const ToolResult& result : results) {
      const auto call = std::find_if(calls.begin(), calls.end(), [&](const ToolCall& c) { return c.id == result.call_id; });
      if (call == calls.end()) fail(ErrorKind::kInvalidArgument, "a tool result for \"{}\", which is not a call of the last reply", result.call_id);
      if (result.content.is_string()) utf8::require_valid(result.content.get_ref<const std::string&>(), "the tool result");
      next.push_back({.role = Role::kTool, .content = result.content, .tool_call_id = call->id, .name = call->name});
    }
    return respond(std::move(next), drafts, std::forward<OnText>(on_text));
  }

  // Forgets every turn (the system prompt and the tools stay).
  void restart() {
    messages_.clear();
    if (!options_.system.empty()) messages_.push_back({.role = Role::kSystem, .content = options_.system});
  }

  // Goes on from a conversation kept as messages (after the system prompt, which comes
  // from the options); the next turn renders them and feeds what the cache lacks.
  void restore(std::span<const Message> messages) {
    restart();
    messages_.insert(messages_.end(), messages.begin(), messages.end());
  }

  // The conversation so far, as messages.
  const std::vector<Message>& messages() const { return messages_; }

  // The conversation as the model will see it next (without the generation prompt).
  std::vector<int> history() const { return render(messages_, /*generation_prompt=*/false).ids(tokenizer_); }

 private:
  struct ControlIds {
    int turn_end, channel_start, channel_end, tool_response;
    std::vector<int> tool_syntax;  // <|tool_call>, <tool_call|>, <|"|>: read by the parser
  };

  static ControlIds control_ids(const Tokenizer& tokenizer) {
    const auto id = [&](std::string_view token) { return control_token_id(tokenizer, token); };
    return {id(control_token::kTurnEnd), id(control_token::kChannelStart), id(control_token::kChannelEnd), id(control_token::kToolResponseStart),
            {id(control_token::kToolCallStart), id(control_token::kToolCallEnd), id(control_token::kQuote)}};
  }

  static ConversationOptions with_template(ConversationOptions options, const ChatTemplate& chat_template) {
    if (!options.chat_template) options.chat_template = chat_template;
    return options;
  }

  static std::vector<int> with_stop_ids(std::vector<int> stop_ids, const ControlIds& ids, bool tools) {
    for (const int id : {ids.turn_end, tools ? ids.tool_response : ids.turn_end}) {
      if (std::find(stop_ids.begin(), stop_ids.end(), id) == stop_ids.end()) stop_ids.push_back(id);
    }
    return stop_ids;
  }

  PromptText render(std::span<const Message> messages, bool generation_prompt) const {
    return render_prompt(chat_template_, messages, options_.tools,
                         {.thinking = options_.thinking, .add_generation_prompt = generation_prompt});
  }

  template <DraftSource Drafts, typename OnText>
  Reply respond(std::vector<Message> next, Drafts& drafts, OnText&& on_text) {
    std::vector<int> wanted = render(next, /*generation_prompt=*/true).ids(tokenizer_);
    const int dropped = drop_oldest_turns(next, wanted);
    const std::span<const int> feed = std::span(wanted).subspan(reuse_cache_for(wanted));

    Reply reply;
    reply.dropped_turns = dropped;
    StreamDecoder stream(tokenizer_, {.skip_special = true});
    ToolCallParser parser;
    bool in_thought = false, go_on = true;
    const auto emit = [&](const std::string& text, bool thought) {
      if (text.empty() || !go_on) return;
      (thought ? reply.thought : reply.answer) += text;
      if constexpr (std::is_void_v<std::invoke_result_t<OnText&, std::string_view, bool>>) {
        on_text(std::string_view(text), thought);
      } else {
        go_on = on_text(std::string_view(text), thought);
      }
    };
    // Decoded text goes to the thought, or through the tool-call parser to the answer.
    const auto flush = [&] {
      std::string text = stream.finish();
      in_thought ? emit(text, true) : emit(parser.push(text), false);
    };
    reply.generation = generator_.generate(feed, options_.max_new_tokens, drafts, [&](int id) {
      const bool opens = id == ids_.channel_start, closes = id == ids_.channel_end;
      if (opens || closes) {
        flush();
        in_thought = opens;
      } else if (!in_thought && std::find(ids_.tool_syntax.begin(), ids_.tool_syntax.end(), id) != ids_.tool_syntax.end()) {
        flush();
        emit(parser.push(tokenizer_.token_text(id)), false);
      } else if (in_thought) {
        emit(stream.push(id), true);
      } else {
        emit(parser.push(stream.push(id)), false);
      }
      return go_on;
    });
    flush();
    emit(parser.finish(), false);

    for (ToolCall& call : parser.calls()) call.id = fmt::format("call_{}", ++calls_made_);
    reply.tool_calls = parser.calls();
    reply.malformed_calls = std::move(parser.malformed());
    next.push_back({.role = Role::kAssistant, .content = reply.answer, .reasoning = reasoning_of(reply.thought), .tool_calls = reply.tool_calls});
    messages_ = std::move(next);
    return reply;
  }

  // The thought channel's text without its name line ("thought\n") and final newline,
  // which the template writes around it.
  static std::string reasoning_of(std::string_view thought) {
    if (thought.starts_with("thought\n")) thought.remove_prefix(8);
    if (thought.ends_with('\n')) thought.remove_suffix(1);
    return std::string(thought);
  }

  // Drops the oldest user turns of `next`, each with the replies and tool turns after it
  // (the system prompt stays, and so does the newest user turn), until its prompt
  // `wanted` leaves room for an answer: max_new_tokens, or a quarter of the context if
  // less. Returns how many went; `wanted` is the prompt of what is left. A chat whose
  // context has filled goes on instead of failing every later turn.
  int drop_oldest_turns(std::vector<Message>& next, std::vector<int>& wanted) const {
    const int context = generator_.session().max_context();
    const std::size_t room = static_cast<std::size_t>(std::min(options_.max_new_tokens, context / 4));
    const auto is_user = [](const Message& m) { return m.role == Role::kUser; };
    int dropped = 0;
    while (wanted.size() + room > static_cast<std::size_t>(context)) {
      const auto oldest = std::find_if(next.begin(), next.end(), is_user);
      const auto following = oldest == next.end() ? next.end() : std::find_if(oldest + 1, next.end(), is_user);
      if (following == next.end()) break;  // only the newest turn is left: a prompt too long fails as such
      next.erase(oldest, following);
      ++dropped;
      wanted = render(next, /*generation_prompt=*/true).ids(tokenizer_);
    }
    return dropped;
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
  ConversationOptions options_;
  ChatTemplate chat_template_;
  ControlIds ids_;
  Generator<V> generator_;
  std::vector<Message> messages_;  // the conversation; a system message first if there is one
  int calls_made_ = 0;             // numbers the tool calls' ids
};

}  // namespace gemma4
