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
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "gemma4/chat/chat_template.hpp"
#include "gemma4/chat/messages.hpp"
#include "gemma4/chat/prompt_renderer.hpp"
#include "gemma4/chat/reply_stream.hpp"
#include "gemma4/chat/tool_call_grammar.hpp"
#include "gemma4/model/generate.hpp"
#include "gemma4/app/model.hpp"

namespace gemma4 {

// What a chat reply stops on: generation_config.json's stop ids, the turn end and, when
// tools are declared, <|tool_response> (the model waits for a call's result).
inline std::vector<int> chat_stop_ids(std::vector<int> stop_ids, const Tokenizer& tokenizer, bool tools) {
  for (const std::string_view token : {control_token::kTurnEnd, tools ? control_token::kToolResponseStart : control_token::kTurnEnd}) {
    const int id = control_token_id(tokenizer, token);
    if (std::find(stop_ids.begin(), stop_ids.end(), id) == stop_ids.end()) stop_ids.push_back(id);
  }
  return stop_ids;
}

struct ConversationOptions {
  std::string system{};      // system prompt; empty: none
  bool thinking = false;     // <|think|> in the system turn: the model reasons first
  int max_new_tokens = 1024;  // per answer
  std::vector<Tool> tools{};  // functions the model may call
  std::optional<SamplingOptions> sampling{};  // unset: generation_config.json's (GenerationConfig::sampling)
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
        generator_(session, options_.sampling.value_or(generation.sampling), chat_stop_ids(generation.stop_ids, tokenizer, !options_.tools.empty())) {
    render_prompt(chat_template_, {}, options_.tools);  // refuses tools it cannot declare, now
    restart();
  }
  // With a loaded model: its tokenizer, generation defaults and chat template.
  Conversation(Session<V>& session, const Model<V>& model, ConversationOptions options)
      : Conversation(session, model.tokenizer, model.generation, with_template(std::move(options), model.chat_template)) {}
  Conversation(Session<V>&, const Model<V>&&, ConversationOptions) = delete;
  Conversation(Session<V>&&, const Tokenizer&, const GenerationConfig&, ConversationOptions) = delete;  // would dangle
  Conversation(Session<V>&, const Tokenizer&&, const GenerationConfig&, ConversationOptions) = delete;

  // Every later answer is text `constraint` allows (grammar/grammar_constraint.hpp), the
  // turn ending where its grammar may end; null: free text. Not with thinking or tools, whose
  // channel and call syntax a grammar would have to allow too. It must outlive its use.
  void constrain(GrammarConstraint* constraint) {
    if (constraint != nullptr && (options_.thinking || !options_.tools.empty())) {
      fail(ErrorKind::kInvalidArgument, "a grammar constrains plain answers: leave out thinking and tools");
    }
    generator_.constrain(constraint);
  }

  // Every tool call the model writes from now on names a declared tool and has arguments
  // its parameters schema allows, so that it parses (chat/tool_call_grammar.hpp); the text
  // around calls stays free. `vocabulary` is this conversation's tokenizer's and must
  // outlive the conversation. Returns why some tools' arguments are checked for syntax only.
  std::vector<std::string> constrain_tool_calls(const TokenTrie& vocabulary) {
    ToolCallGrammar calls = tool_call_grammar(options_.tools);
    tool_calls_ = std::make_unique<GrammarConstraint>(std::move(calls.grammar), vocabulary, calls.start);
    vocabulary_ = &vocabulary;
    generator_.constrain(tool_calls_.get());
    return calls.unchecked;
  }

  // The next reply is tool calls (ToolChoice::kRequired: to any tool; kFunction: to that
  // one), started from its first token; later replies are free to call or not. Needs
  // constrain_tool_calls first.
  void force_tool_call(ToolChoice choice) {
    if (vocabulary_ == nullptr) fail(ErrorKind::kInvalidArgument, "force_tool_call: constrain_tool_calls first (it gives the vocabulary)");
    if (choice.mode == ToolChoice::Mode::kAuto) {
      forced_.reset();
      return;
    }
    ToolCallGrammar calls = tool_call_grammar(options_.tools, choice);  // errors for a tool not declared, now
    forced_ = std::make_unique<GrammarConstraint>(std::move(calls.grammar), *vocabulary_, calls.start);
  }

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
  static ConversationOptions with_template(ConversationOptions options, const ChatTemplate& chat_template) {
    if (!options.chat_template) options.chat_template = chat_template;
    return options;
  }

  PromptText render(std::span<const Message> messages, bool generation_prompt) const {
    return render_prompt(chat_template_, messages, options_.tools,
                         {.thinking = options_.thinking, .add_generation_prompt = generation_prompt});
  }

  template <DraftSource Drafts, typename OnText>
  Reply respond(std::vector<Message> next, Drafts& drafts, OnText&& on_text) {
    std::vector<int> wanted = render(next, /*generation_prompt=*/true).ids(tokenizer_);
    const int dropped = drop_oldest_turns(next, wanted);
    const std::span<const int> feed = std::span(wanted).subspan(keep_common_prefix(generator_.session(), wanted));

    Reply reply;
    reply.dropped_turns = dropped;
    ReplyStream stream(tokenizer_);
    bool go_on = true;
    const auto emit = [&](std::string_view text, bool thought) {
      if (!go_on) return;
      (thought ? reply.thought : reply.answer) += text;
      if constexpr (std::is_void_v<std::invoke_result_t<OnText&, std::string_view, bool>>) {
        on_text(text, thought);
      } else {
        go_on = on_text(text, thought);
      }
    };
    // A forced call constrains this reply only; the usual constraint comes back after it, thrown or not.
    const std::unique_ptr<GrammarConstraint> forced = std::move(forced_);
    if (forced) generator_.constrain(forced.get());
    const auto restore = [this] { generator_.constrain(tool_calls_.get()); };
    try {
      reply.generation = generator_.generate(feed, options_.max_new_tokens, drafts, [&](int id) {
        stream.push(id, emit);
        return go_on;
      });
    } catch (...) {
      if (forced) restore();
      throw;
    }
    if (forced) restore();
    stream.finish(emit);

    for (ToolCall& call : stream.calls()) call.id = fmt::format("call_{}", ++calls_made_);
    reply.tool_calls = stream.calls();
    reply.malformed_calls = std::move(stream.malformed());
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

  const Tokenizer& tokenizer_;
  ConversationOptions options_;
  ChatTemplate chat_template_;
  Generator<V> generator_;
  std::vector<Message> messages_;  // the conversation; a system message first if there is one
  int calls_made_ = 0;             // numbers the tool calls' ids
  const TokenTrie* vocabulary_ = nullptr;          // given to constrain_tool_calls
  std::unique_ptr<GrammarConstraint> tool_calls_;  // constrain_tool_calls: what every reply's calls follow
  std::unique_ptr<GrammarConstraint> forced_;      // force_tool_call: the next reply's calls
};

}  // namespace gemma4
