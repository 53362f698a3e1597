// Generation and chat end to end on tiny-e2b with the demo tokenizer (the real Gemma
// tokenizer, trimmed to the tiny vocabulary, control tokens under their Gemma 4 names).
#include <algorithm>
#include <type_traits>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "gemma4/app/conversation.hpp"
#include "gemma4/chat/prompt_renderer.hpp"
#include "gemma4/tiny.hpp"
#include "gemma4/weights/synthetic_checkpoint.hpp"
#include "support.hpp"

using namespace gemma4;
using Catch::Matchers::Contains;

namespace {

struct TinyChatModel {
  test::TempDir dir;
  Weights<TinyE2B> weights;
  Tokenizer tokenizer;

  TinyChatModel()
      : weights((write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 11}), dir.path())),
        tokenizer(Tokenizer::from_file(test::kSourceDir / "examples/data/demo-tokenizer.json")) {}
};

TinyChatModel& model() {
  static TinyChatModel m;
  return m;
}

const std::vector<int> kStops = {1, 106, 50};
// Gemma 4's control token ids (spec section 6), which the demo tokenizer keeps.
constexpr int kTurnEnd = 106, kChannelStart = 100;

std::vector<int> prompt_ids(const std::string& text) { return model().tokenizer.encode(text); }

}  // namespace

TEST_CASE("Greedy generation is the argmax of the forward pass, token after token") {
  Session<TinyE2B> session(model().weights);
  Generator<TinyE2B> generator(session, {.temperature = 0.0f}, {});
  const std::vector<int> prompt = prompt_ids("The sea is");
  const auto result = generator.generate(prompt, 12, [](int) { return true; });
  REQUIRE(result.tokens.size() == 12);
  CHECK(result.stop == StopReason::kMaxTokens);
  CHECK(session.position() == static_cast<int>(prompt.size()) + 11);  // the last token is not fed

  std::vector<int> all = prompt;
  all.insert(all.end(), result.tokens.begin(), result.tokens.end() - 1);
  Session<TinyE2B> check(model().weights);
  const std::size_t vocab = TinyE2B::config.vocab_size;
  std::vector<float> logits(all.size() * vocab);
  check.forward(all, Logits::kAll, logits);
  for (std::size_t i = 0; i < result.tokens.size(); ++i) {
    const auto row = std::span(logits).subspan((prompt.size() - 1 + i) * vocab, vocab);
    CHECK(result.tokens[i] == std::max_element(row.begin(), row.end()) - row.begin());
  }
}

TEST_CASE("Generation stops on a stop id, at the token limit and when the context is full") {
  const std::vector<int> prompt = prompt_ids("Hello");
  Session<TinyE2B> probe(model().weights);
  Generator<TinyE2B> greedy(probe, {.temperature = 0.0f}, {});
  const int first = greedy.generate(prompt, 1, [](int) { return true; }).tokens[0];

  Session<TinyE2B> session(model().weights);
  Generator<TinyE2B> stopping(session, {.temperature = 0.0f}, {first});
  int seen = 0;
  const auto stopped = stopping.generate(prompt, 50, [&](int) { return ++seen, true; });
  CHECK(stopped.stop == StopReason::kStopToken);
  CHECK(stopped.tokens == std::vector<int>{first});
  CHECK(seen == 0);  // a stop id is not passed on

  const int max_context = static_cast<int>(prompt.size()) + 3;
  Session<TinyE2B> small(model().weights, {.max_context = max_context});
  Generator<TinyE2B> filling(small, {.temperature = 0.0f}, {});
  const auto full = filling.generate(prompt, 50, [](int) { return true; });
  CHECK(full.stop == StopReason::kContextFull);
  CHECK(full.tokens.size() == 4);
  CHECK(small.position() == max_context);

  Session<TinyE2B> tiny_context(model().weights, {.max_context = 2});
  Generator<TinyE2B> refusing(tiny_context, {}, kStops);
  CHECK_THROWS_WITH(refusing.generate(prompt, 5, [](int) { return true; }), Contains("prompt is") && Contains("context"));
}

TEST_CASE("Sampled generation repeats with its seed", "[host-only]") {
  const auto run = [](std::uint64_t seed) {
    Session<TinyE2B> session(model().weights);
    Generator<TinyE2B> generator(session, {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = seed}, {});
    return generator.generate(prompt_ids("Once upon a time"), 20, [](int) { return true; }).tokens;
  };
  CHECK(run(3) == run(3));
  CHECK(run(3) != run(4));
}

TEST_CASE("The chat prompt is Gemma 4's current format") {
  const std::vector<Message> messages = {{.role = Role::kSystem, .content = "Be brief."}, {.role = Role::kUser, .content = "Hi"}};
  const PromptText prompt = render_prompt({}, messages, {}, {.thinking = true});
  CHECK(prompt.str() == "<bos><|turn>system\n<|think|>\nBe brief.<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n");
  CHECK(model().tokenizer.decode(prompt.ids(model().tokenizer)) == prompt.str());
}

TEST_CASE("A tokenizer without Gemma 4's control tokens cannot drive the chat") {
  const std::string json = test::read_file(test::kSourceDir / "examples/data/demo-tokenizer.json");
  std::string unspecial = json;
  const std::string turn_end = "\"content\": \"<turn|>\",";
  const auto at = unspecial.find(turn_end);
  REQUIRE(at != std::string::npos);
  const auto special = unspecial.find("\"special\": true", at);
  unspecial.replace(special, 15, "\"special\": false");
  const Tokenizer tok = Tokenizer::from_json_text(unspecial);
  CHECK_THROWS_WITH(control_token_id(tok, control_token::kTurnEnd), Contains("106") && Contains("not marked special"));
  Session<TinyE2B> session(model().weights);
  CHECK_THROWS_WITH(Conversation<TinyE2B>(session, tok, {}, {}), Contains("106") && Contains("not marked special"));
  CHECK(control_token_id(model().tokenizer, control_token::kTurnEnd) == kTurnEnd);
}

namespace {

// The prompt the next turn feeds after `messages` and a user turn: what the session holds
// when the conversation and its cache are in step.
std::vector<int> with_user_turn(std::vector<Message> messages, std::string_view text, const ConversationOptions& options = {}) {
  messages.push_back({.role = Role::kUser, .content = std::string(text)});
  return render_prompt(options.chat_template.value_or(ChatTemplate{}), messages, options.tools, {.thinking = options.thinking}).ids(model().tokenizer);
}

bool session_holds(const Session<TinyE2B>& session, const std::vector<int>& expected) {
  const auto held = session.tokens();
  return held.size() >= expected.size() && std::equal(expected.begin(), expected.end(), held.begin());
}

}  // namespace

TEST_CASE("A conversation keeps its cache between turns and its history as the template renders it") {
  Session<TinyE2B> session(model().weights);
  const GenerationConfig generation{.sampling = {.temperature = 0.0f}, .stop_ids = kStops};
  Conversation<TinyE2B> chat(session, model().tokenizer, generation, {.max_new_tokens = 6});
  std::string streamed;
  const Reply first = chat.ask("Hi", [&](std::string_view text, bool thought) {
    if (!thought) streamed += text;
  });
  CHECK(streamed == first.answer);
  const std::string after_first = model().tokenizer.decode(chat.history());
  CHECK(after_first.starts_with("<bos><|turn>user\nHi<turn|>\n<|turn>model\n"));
  CHECK(after_first.ends_with("<turn|>\n"));
  REQUIRE(chat.messages().size() == 2);
  CHECK(chat.messages()[1].role == Role::kAssistant);

  const std::vector<int> wanted = with_user_turn(chat.messages(), "More");
  const Reply second = chat.ask("More", [](std::string_view, bool) {});
  // The cache held the first turn's prompt, which is not fed again. (The answer is, where
  // its text encodes to other tokens than the random model sampled.)
  const std::size_t first_prompt = with_user_turn({}, "Hi").size();
  CHECK(second.generation.stats.prompt_tokens <= static_cast<int>(wanted.size() - first_prompt));
  CHECK(session_holds(session, wanted));

  // Invalid UTF-8 is refused and changes nothing.
  const std::vector<int> history = chat.history();
  CHECK_THROWS_WITH(chat.ask("bad \xC3", [](std::string_view, bool) {}), Contains("not valid UTF-8"));
  CHECK(chat.history() == history);
}

TEST_CASE("Thought blocks are hidden, reported apart, and dropped from the history", "[slow-emulated]") {
  // Random weights never think on purpose: find a seed whose near-uniform sampling
  // opens the thought channel, so the whole path runs for real.
  const GenerationConfig base{.sampling = {.temperature = 50.0f, .top_k = 0, .top_p = 1.0f}, .stop_ids = kStops};
  for (std::uint64_t seed = 1; seed < 400; ++seed) {
    GenerationConfig generation = base;
    generation.sampling.seed = seed;
    Session<TinyE2B> session(model().weights);
    const ConversationOptions options{.thinking = true, .max_new_tokens = 40};
    Conversation<TinyE2B> chat(session, model().tokenizer, generation, options);
    std::string visible, hidden;
    const Reply reply = chat.ask("Think first.", [&](std::string_view text, bool thought) { (thought ? hidden : visible) += text; });
    // The channel must open before the last sampled token, which is never fed to the cache.
    const auto& tokens = reply.generation.tokens;
    if (std::find(tokens.begin(), tokens.end() - 1, kChannelStart) == tokens.end() - 1) continue;
    if (!reply.tool_calls.empty() || !reply.malformed_calls.empty()) continue;

    CHECK(visible == reply.answer);
    CHECK(hidden == reply.thought);
    // The next user turn drops the thought: the session rewinds past it and then holds
    // exactly what the template renders.
    const std::vector<int> expected = with_user_turn(chat.messages(), "Go on.", options);
    CHECK(std::find(expected.begin(), expected.end(), kChannelStart) == expected.end());
    const Reply next = chat.ask("Go on.", [](std::string_view, bool) {});
    CHECK(next.generation.stats.prompt_tokens < static_cast<int>(expected.size()));
    CHECK(session_holds(session, expected));
    return;
  }
  FAIL("no seed below 400 opened the thought channel");
}

namespace {

// What a fresh session generates greedily after `prompt`: what a conversation's next
// reply must be when its session is in step with its history.
std::vector<int> fresh_greedy_reply(const std::vector<int>& prompt, int max_new_tokens, std::vector<int> stops = kStops) {
  Session<TinyE2B> session(model().weights);
  Generator<TinyE2B> generator(session, {.temperature = 0.0f}, std::move(stops));
  return generator.generate(prompt, max_new_tokens, [](int) { return true; }).tokens;
}

}  // namespace

TEST_CASE("A reply cut by an exception, a cancel or a full context leaves the conversation in step with its session", "[host-only]") {
  const GenerationConfig greedy{.sampling = {.temperature = 0.0f}, .stop_ids = kStops};
  constexpr int kMaxNew = 8;
  Session<TinyE2B> session(model().weights);
  Conversation<TinyE2B> chat(session, model().tokenizer, greedy, {.max_new_tokens = kMaxNew});
  chat.ask("Hi", [](std::string_view, bool) {});
  const std::vector<int> before = chat.history();

  SECTION("a callback that throws on its third call") {
    int calls = 0;
    CHECK_THROWS_WITH(chat.ask("Tell me a long story", [&](std::string_view, bool) {
      if (++calls == 3) throw std::runtime_error("caller gave up");
    }), Contains("caller gave up"));
    CHECK(calls == 3);
    CHECK(chat.history() == before);  // the failed turn is not part of the conversation
  }
  SECTION("a callback that cancels on its second call") {
    int calls = 0;
    const Reply cut = chat.ask("Tell me a long story", [&](std::string_view, bool) { return ++calls < 2; });
    CHECK(calls == 2);
    CHECK(cut.generation.stop == StopReason::kCaller);
    CHECK(chat.history().size() > before.size());  // the reply so far stays in the history
  }
  const Reply next = chat.ask("Again", [](std::string_view, bool) {});
  const std::vector<Message> asked(chat.messages().begin(), chat.messages().end() - 2);
  CHECK(next.generation.tokens == fresh_greedy_reply(with_user_turn(asked, "Again"), kMaxNew));
}

TEST_CASE("A reply that fills the context ends the conversation cleanly; a restart is a fresh conversation") {
  const GenerationConfig greedy{.sampling = {.temperature = 0.0f}, .stop_ids = {}};  // only <turn|> stops
  const int prompt_size = static_cast<int>(with_user_turn({}, "Hi").size());
  Session<TinyE2B> session(model().weights, {.max_context = prompt_size + 4});
  Conversation<TinyE2B> chat(session, model().tokenizer, greedy, {.max_new_tokens = 64});
  const Reply full = chat.ask("Hi", [](std::string_view, bool) {});
  if (full.generation.stop != StopReason::kContextFull) {
    WARN("the greedy reply ended before the context did: " << to_string(full.generation.stop));
  }
  CHECK(full.generation.stop == StopReason::kContextFull);
  const std::vector<int> history = chat.history();
  CHECK_THROWS_WITH(chat.ask("More", [](std::string_view, bool) {}), Contains("context"));
  CHECK(chat.history() == history);
  chat.restart();
  const Reply again = chat.ask("Hi", [](std::string_view, bool) {});
  CHECK(again.generation.tokens == full.generation.tokens);
}

TEST_CASE("A chat that outgrows its context drops its oldest turns and goes on", "[host-only]") {
  const GenerationConfig greedy{.sampling = {.temperature = 0.0f}, .stop_ids = {}};
  constexpr int kContext = 96;
  Session<TinyE2B> session(model().weights, {.max_context = kContext});
  Conversation<TinyE2B> chat(session, model().tokenizer, greedy, {.system = "Be brief.", .max_new_tokens = 8});
  int dropped = 0;
  for (int turn = 0; turn < 12; ++turn) {
    const Reply reply = chat.ask(fmt::format("Turn {} of the chat.", turn), [](std::string_view, bool) {});
    dropped += reply.dropped_turns;
    CHECK(static_cast<int>(chat.history().size()) <= kContext);
  }
  CHECK(dropped > 0);
  const std::vector<Message>& kept = chat.messages();
  CHECK(kept.front().role == Role::kSystem);
  CHECK(kept[1].role == Role::kUser);
  CHECK(kept[1].content != "Turn 0 of the chat.");
  CHECK(kept[kept.size() - 2].content == "Turn 11 of the chat.");
  // What is left answers as a fresh chat holding only those turns would.
  Session<TinyE2B> fresh_session(model().weights, {.max_context = kContext});
  Conversation<TinyE2B> fresh(fresh_session, model().tokenizer, greedy, {.system = "Be brief.", .max_new_tokens = 8});
  fresh.restore(std::span(kept).subspan(1));
  const Reply a = chat.ask("One more.", [](std::string_view, bool) {}), b = fresh.ask("One more.", [](std::string_view, bool) {});
  CHECK(a.generation.tokens == b.generation.tokens);
  CHECK(a.dropped_turns == b.dropped_turns);
}

namespace {

const Tool kWeatherTool{JsonValue::parse(R"({"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})")};

}  // namespace

TEST_CASE("A chat whose history holds tool turns renders them and keeps its cache in step", "[host-only]") {
  const GenerationConfig greedy{.sampling = {.temperature = 0.0f}, .stop_ids = kStops};
  const ConversationOptions options{.max_new_tokens = 6, .tools = {kWeatherTool}};
  Session<TinyE2B> session(model().weights);
  Conversation<TinyE2B> chat(session, model().tokenizer, greedy, options);
  const Reply first = chat.ask("Weather in Paris?", [](std::string_view, bool) {});
  CHECK_THROWS_WITH(chat.send_tool_results({}, [](std::string_view, bool) {}), Contains("no tool calls"));

  // Random weights call no tools: a conversation restored from messages that hold a call
  // and its result goes on from them exactly as the template renders them.
  std::vector<Message> history = {{.role = Role::kUser, .content = "Weather in Paris?"},
                                  {.role = Role::kAssistant, .tool_calls = {{.id = "c1", .name = "get_weather", .arguments = {{"city", "Paris"}}}}},
                                  {.role = Role::kTool, .content = "18 degrees", .tool_call_id = "c1"},
                                  {.role = Role::kAssistant, .content = "It is 18 degrees."}};
  const std::vector<int> wanted = with_user_turn(history, "And Rome?", options);
  const std::string text = model().tokenizer.decode(wanted);
  CHECK(text.find("<|tool>declaration:get_weather{") != std::string::npos);
  CHECK(text.find("<|turn>model\n<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>}<tool_call|><|tool_response>response:get_weather{value:<|\"|>18 "
                  "degrees<|\"|>}<tool_response|>It is 18 degrees.<turn|>\n<|turn>user\nAnd Rome?<turn|>\n<|turn>model\n") != std::string::npos);
  Conversation<TinyE2B> restored(session, model().tokenizer, greedy, options);
  restored.restore(history);
  const Reply reply = restored.ask("And Rome?", [](std::string_view, bool) {});
  CHECK(session_holds(session, wanted));
  CHECK(reply.generation.tokens == fresh_greedy_reply(wanted, 6, {1, 106, 50}));
  (void)first;
}

TEST_CASE("Tool results answer the last reply's calls and the model goes on in the same turn", "[host-only]") {
  const GenerationConfig greedy{.sampling = {.temperature = 0.0f}, .stop_ids = kStops};
  const ConversationOptions options{.thinking = true, .max_new_tokens = 5, .tools = {kWeatherTool}};
  Session<TinyE2B> session(model().weights);
  Conversation<TinyE2B> chat(session, model().tokenizer, greedy, options);
  const std::vector<Message> history = {
      {.role = Role::kUser, .content = "Weather?"},
      {.role = Role::kAssistant, .reasoning = "Call it.", .tool_calls = {{.id = "c7", .name = "get_weather", .arguments = {{"city", "Oslo"}}}}}};
  chat.restore(history);
  const std::vector<ToolResult> wrong = {{.call_id = "c8", .content = "x"}};
  CHECK_THROWS_WITH(chat.send_tool_results(wrong, [](std::string_view, bool) {}), Contains("\"c8\""));
  const std::vector<ToolResult> bad_utf8 = {{.call_id = "c7", .content = "\xC3"}};
  CHECK_THROWS_WITH(chat.send_tool_results(bad_utf8, [](std::string_view, bool) {}), Contains("not valid UTF-8"));
  CHECK(chat.messages().size() == 2);

  const std::vector<ToolResult> results = {{.call_id = "c7", .content = "-2 degrees"}};
  chat.send_tool_results(results, [](std::string_view, bool) {});
  // No new turn after a tool result; with thinking on, the July 2026 template cues a thought.
  const std::string held = model().tokenizer.decode(session.tokens());
  CHECK(held.find("<|channel>thought\nCall it.\n<channel|><|tool_call>call:get_weather{city:<|\"|>Oslo<|\"|>}<tool_call|><|tool_response>response:"
                  "get_weather{value:<|\"|>-2 degrees<|\"|>}<tool_response|><|channel>thought\n") != std::string::npos);
  REQUIRE(chat.messages().size() == 4);
  CHECK(chat.messages()[2].role == Role::kTool);
  CHECK(chat.messages()[3].role == Role::kAssistant);
}

TEST_CASE("Tool-call output in a live reply goes to the parser: reported, not shown", "[slow-emulated]") {
  // As with thoughts: find a seed whose near-uniform sampling writes <|tool_call>; what
  // follows is random, so the call is malformed, and must come back as such.
  constexpr int kToolCallStart = 48;
  const GenerationConfig base{.sampling = {.temperature = 50.0f, .top_k = 0, .top_p = 1.0f}, .stop_ids = kStops};
  for (std::uint64_t seed = 1; seed < 400; ++seed) {
    GenerationConfig generation = base;
    generation.sampling.seed = seed;
    Session<TinyE2B> session(model().weights);
    Conversation<TinyE2B> chat(session, model().tokenizer, generation, {.max_new_tokens = 24, .tools = {kWeatherTool}});
    std::string shown;
    const Reply reply = chat.ask("Weather?", [&](std::string_view text, bool thought) {
      if (!thought) shown += text;
    });
    const auto& tokens = reply.generation.tokens;
    const auto call = std::find(tokens.begin(), tokens.end(), kToolCallStart);
    if (call == tokens.end() || std::find(tokens.begin(), call, kChannelStart) != call) continue;

    CHECK(reply.tool_calls.empty());
    REQUIRE(reply.malformed_calls.size() >= 1);
    CHECK(reply.malformed_calls[0].raw.starts_with("<|tool_call>"));
    CHECK(shown == reply.answer);
    CHECK(shown.find("<|tool_call>") == std::string::npos);
    return;
  }
  FAIL("no seed below 400 wrote <|tool_call>");
}

TEST_CASE("Objects that keep a reference refuse temporaries") {
  STATIC_REQUIRE_FALSE(std::is_constructible_v<Session<TinyE2B>, Weights<TinyE2B>>);
  STATIC_REQUIRE(std::is_constructible_v<Session<TinyE2B>, const Weights<TinyE2B>&>);
  STATIC_REQUIRE_FALSE(std::is_constructible_v<Conversation<TinyE2B>, Session<TinyE2B>, const Tokenizer&, const GenerationConfig&,
                                               ConversationOptions>);
  STATIC_REQUIRE_FALSE(std::is_constructible_v<Conversation<TinyE2B>, Session<TinyE2B>&, Tokenizer, const GenerationConfig&,
                                               ConversationOptions>);
  STATIC_REQUIRE_FALSE(std::is_constructible_v<Generator<TinyE2B>, Session<TinyE2B>, const SamplingOptions&, std::vector<int>>);
  STATIC_REQUIRE_FALSE(std::is_constructible_v<StreamDecoder, Tokenizer>);
}
