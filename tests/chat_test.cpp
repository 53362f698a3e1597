// Generation and chat end to end on tiny-e2b with the demo tokenizer (the real Gemma
// tokenizer, trimmed to the tiny vocabulary, control tokens under their Gemma 4 names).
#include <algorithm>
#include <type_traits>

#include <catch2/catch.hpp>

#include "gemma4/chat/conversation.hpp"
#include "gemma4/tiny.hpp"
#include "gemma4/testing/synthetic.hpp"
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
        tokenizer(Tokenizer::from_file(std::filesystem::path(GEMMA4_SOURCE_DIR) / "examples/data/demo-tokenizer.json")) {}
};

TinyChatModel& model() {
  static TinyChatModel m;
  return m;
}

const std::vector<int> kStops = {1, 106, 50};
// Gemma 4's control token ids (spec section 6), which the demo tokenizer keeps.
constexpr ChatTokenIds kIds{.bos = 2, .turn_start = 105, .turn_end = 106, .think = 98, .channel_start = 100, .channel_end = 101};

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

TEST_CASE("Sampled generation repeats with its seed") {
  const auto run = [](std::uint64_t seed) {
    Session<TinyE2B> session(model().weights);
    Generator<TinyE2B> generator(session, {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = seed}, {});
    return generator.generate(prompt_ids("Once upon a time"), 20, [](int) { return true; }).tokens;
  };
  CHECK(run(3) == run(3));
  CHECK(run(3) != run(4));
}

TEST_CASE("The chat prompt is Gemma 4's format") {
  const Tokenizer& tok = model().tokenizer;
  ChatFormat format(tok);
  std::vector<int> ids;
  format.append_start(ids, "Be brief.", /*thinking=*/true);
  format.append_turn(ids, Role::kUser, "Hi <turn|> there");
  format.append_generation_prompt(ids);
  CHECK(tok.decode(ids) == "<bos><|turn>system\n<|think|>Be brief.<turn|>\n<|turn>user\nHi <turn|> there<turn|>\n<|turn>model\n");
  // The typed "<turn|>" is text: the only turn ends are the two the format placed.
  CHECK(std::count(ids.begin(), ids.end(), kIds.turn_end) == 2);

  std::vector<int> plain;
  format.append_start(plain, "", /*thinking=*/false);
  CHECK(plain == std::vector<int>{kIds.bos});

  const std::vector<int> answer = {10, 100, 11, 12, 101, 13, 100, 14};
  CHECK(format.without_thoughts(answer) == std::vector<int>{10, 13});
}

TEST_CASE("A tokenizer without Gemma 4's control tokens cannot drive the chat") {
  const std::string json = test::read_file(std::filesystem::path(GEMMA4_SOURCE_DIR) / "examples/data/demo-tokenizer.json");
  std::string unspecial = json;
  const std::string turn_end = "\"content\": \"<turn|>\",";
  const auto at = unspecial.find(turn_end);
  REQUIRE(at != std::string::npos);
  const auto special = unspecial.find("\"special\": true", at);
  unspecial.replace(special, 15, "\"special\": false");
  const Tokenizer tok = Tokenizer::from_json_text(unspecial);
  CHECK_THROWS_WITH(ChatFormat(tok), Contains("106") && Contains("not marked special"));
  const ChatTokenIds ids = chat_token_ids(model().tokenizer);
  CHECK((ids.bos == kIds.bos && ids.turn_start == kIds.turn_start && ids.turn_end == kIds.turn_end && ids.think == kIds.think &&
         ids.channel_start == kIds.channel_start && ids.channel_end == kIds.channel_end));
}

TEST_CASE("A conversation keeps its cache between turns and its history in Gemma 4's format") {
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

  const std::size_t history_before = chat.history().size();
  const Reply second = chat.ask("More", [](std::string_view, bool) {});
  // Only the new turn is fed when the cache holds the conversation so far. The cache
  // lacks the last sampled token, which the history closes with <turn|>\n instead.
  std::vector<int> new_turn;
  ChatFormat(model().tokenizer).append_turn(new_turn, Role::kUser, "More");
  std::vector<int> generation_prompt;
  ChatFormat(model().tokenizer).append_generation_prompt(generation_prompt);
  const int not_yet_fed = first.generation.stop == StopReason::kStopToken ? 2 : 3;
  CHECK(second.generation.stats.prompt_tokens == not_yet_fed + static_cast<int>(new_turn.size() + generation_prompt.size()));
  CHECK(chat.history().size() > history_before);

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
    Conversation<TinyE2B> chat(session, model().tokenizer, generation, {.thinking = true, .max_new_tokens = 40});
    std::string visible, hidden;
    const Reply reply = chat.ask("Think first.", [&](std::string_view text, bool thought) { (thought ? hidden : visible) += text; });
    // The channel must open before the last sampled token, which is never fed to the cache.
    const auto& tokens = reply.generation.tokens;
    if (std::find(tokens.begin(), tokens.end() - 1, kIds.channel_start) == tokens.end() - 1) continue;

    CHECK(visible == reply.answer);
    CHECK(hidden == reply.thought);
    const std::vector<int> history = chat.history();
    CHECK(std::find(history.begin(), history.end(), kIds.channel_start) == history.end());
    // The cache held the thought, the history does not: the next turn rewinds the
    // session past it, and the session then holds exactly what the history says.
    const Reply next = chat.ask("Go on.", [](std::string_view, bool) {});
    std::vector<int> expected = history;
    ChatFormat format(model().tokenizer);
    format.append_turn(expected, Role::kUser, "Go on.");
    format.append_generation_prompt(expected);
    CHECK(next.generation.stats.prompt_tokens < static_cast<int>(expected.size()));
    const auto held = session.tokens();
    REQUIRE(held.size() >= expected.size());
    CHECK(std::equal(expected.begin(), expected.end(), held.begin()));
    return;
  }
  FAIL("no seed below 400 opened the thought channel");
}

namespace {

// What a fresh session generates greedily after `prompt`: what a conversation's next
// reply must be when its session is in step with its history.
std::vector<int> fresh_greedy_reply(const std::vector<int>& prompt, int max_new_tokens) {
  Session<TinyE2B> session(model().weights);
  Generator<TinyE2B> generator(session, {.temperature = 0.0f}, kStops);
  return generator.generate(prompt, max_new_tokens, [](int) { return true; }).tokens;
}

std::vector<int> with_user_turn(std::vector<int> history, std::string_view text) {
  const ChatFormat format(model().tokenizer);
  format.append_turn(history, Role::kUser, text);
  format.append_generation_prompt(history);
  return history;
}

}  // namespace

TEST_CASE("A reply cut by an exception, a cancel or a full context leaves the conversation in step with its session") {
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
  const std::vector<int> history = chat.history();
  const Reply next = chat.ask("Again", [](std::string_view, bool) {});
  CHECK(next.generation.tokens == fresh_greedy_reply(with_user_turn(history, "Again"), kMaxNew));
}

TEST_CASE("A reply that fills the context ends the conversation cleanly; a restart is a fresh conversation") {
  const GenerationConfig greedy{.sampling = {.temperature = 0.0f}, .stop_ids = {}};  // only <turn|> stops
  const int prompt_size = static_cast<int>(with_user_turn({2}, "Hi").size());
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

TEST_CASE("Objects that keep a reference refuse temporaries") {
  STATIC_REQUIRE_FALSE(std::is_constructible_v<Session<TinyE2B>, Weights<TinyE2B>>);
  STATIC_REQUIRE(std::is_constructible_v<Session<TinyE2B>, const Weights<TinyE2B>&>);
  STATIC_REQUIRE_FALSE(std::is_constructible_v<Conversation<TinyE2B>, Session<TinyE2B>, const Tokenizer&, const GenerationConfig&,
                                               ConversationOptions>);
  STATIC_REQUIRE_FALSE(std::is_constructible_v<Conversation<TinyE2B>, Session<TinyE2B>&, Tokenizer, const GenerationConfig&,
                                               ConversationOptions>);
  STATIC_REQUIRE_FALSE(std::is_constructible_v<Generator<TinyE2B>, Session<TinyE2B>, const SamplingOptions&, std::vector<int>>);
  STATIC_REQUIRE_FALSE(std::is_constructible_v<StreamDecoder, Tokenizer>);
  STATIC_REQUIRE_FALSE(std::is_constructible_v<ChatFormat, Tokenizer>);
}

TEST_CASE("A model directory loads in one call, its tokenizer checked against its vocabulary") {
  test::TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 2});
  const std::filesystem::path demo = std::filesystem::path(GEMMA4_SOURCE_DIR) / "examples/data/demo-tokenizer.json";
  std::filesystem::copy_file(demo, dir / "tokenizer.json");
  const Model<TinyE2B> model(dir.path(), {.format = WeightFormat::kInt8});
  CHECK(model.weights.report().format == WeightFormat::kInt8);
  CHECK(model.generation.stop_ids == std::vector<int>{1, 106, 50});
  CHECK(model.tokenizer.vocab_size() == 1024);

  // An added token beyond the model's vocabulary (as <image_soft_token>, id 262144, of the
  // Gemma 3 tokenizer is beyond Gemma 4's) is refused at load, not mid-run.
  nlohmann::json json = nlohmann::json::parse(test::read_file(demo));
  json["added_tokens"].push_back({{"id", 1024}, {"content", "<image_soft_token>"}, {"special", true}, {"normalized", false},
                                  {"lstrip", false}, {"rstrip", false}, {"single_word", false}});
  test::write_file(dir / "tokenizer.json", json.dump());
  CHECK_THROWS_WITH(Model<TinyE2B>(dir.path()),
                    Contains("added token 1024 \"<image_soft_token>\" lies outside the model's vocabulary of 1024 ids"));
}
