// Generation and chat end to end on tiny-e2b with the demo tokenizer (the real Gemma
// tokenizer, trimmed to the tiny vocabulary, control tokens under their Gemma 4 names).
#include <algorithm>

#include <catch2/catch.hpp>

#include "gemma4/chat/conversation.hpp"
#include "gemma4/tiny.hpp"
#include "gemma4/weights/synthetic.hpp"
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
  CHECK(std::count(ids.begin(), ids.end(), kGemma4ChatTokens.turn_end) == 2);

  std::vector<int> plain;
  format.append_start(plain, "", /*thinking=*/false);
  CHECK(plain == std::vector<int>{kGemma4ChatTokens.bos});

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

TEST_CASE("Thought blocks are hidden, reported apart, and dropped from the history") {
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
    if (std::find(tokens.begin(), tokens.end() - 1, kGemma4ChatTokens.channel_start) == tokens.end() - 1) continue;

    CHECK(visible == reply.answer);
    CHECK(hidden == reply.thought);
    const std::vector<int> history = chat.history();
    CHECK(std::find(history.begin(), history.end(), kGemma4ChatTokens.channel_start) == history.end());
    // The cache holds the thought, the history does not: the next turn starts over.
    const Reply next = chat.ask("Go on.", [](std::string_view, bool) {});
    std::vector<int> expected = history;
    ChatFormat format(model().tokenizer);
    format.append_turn(expected, Role::kUser, "Go on.");
    format.append_generation_prompt(expected);
    CHECK(next.generation.stats.prompt_tokens == static_cast<int>(expected.size()));
    return;
  }
  FAIL("no seed below 400 opened the thought channel");
}
