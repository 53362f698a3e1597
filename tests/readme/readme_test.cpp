// The README's C++ snippets, copied out of README.md at build time (extract_snippets.cpp,
// which turns gemma4::E2B into gemma4::TinyE2B), compiled and run on the trained toy pair:
// each test case declares what a snippet uses, runs it, then checks what it did.

#include <catch2/catch.hpp>

#include <set>
#include <sstream>
#include <string>

#include "gemma4/tiny.hpp"
#include "readme_snippets.inc"
#include "support.hpp"

namespace {

using namespace gemma4;
using test::kToyAssistant;
using test::kToyTarget;

// Runs a test case in a scratch directory, the way a user runs a snippet next to their files.
class InScratchDirectory {
 public:
  InScratchDirectory() : previous_(std::filesystem::current_path()) { std::filesystem::current_path(scratch_.path()); }
  ~InScratchDirectory() { std::filesystem::current_path(previous_); }
  InScratchDirectory(const InScratchDirectory&) = delete;
  InScratchDirectory& operator=(const InScratchDirectory&) = delete;

 private:
  test::TempDir scratch_;
  std::filesystem::path previous_;
};

const Model<TinyE2B>& readme_toy_model() {
  static const Model<TinyE2B> model(kToyTarget);
  return model;
}

}  // namespace

TEST_CASE("README: every C++ snippet has a test here", "[readme]") {
  std::set<std::string> snippets;
  std::istringstream names(README_SNIPPETS);
  for (std::string name; std::getline(names, name, ',');) snippets.insert(name);
  const std::set<std::string> tested = {"load_packed", "sampling", "batch", "grammar", "constrained_tool_calls", "speculative", "tool_loop"};
  CHECK(snippets == tested);
}

TEST_CASE("README: loading a packed model directory", "[readme]") {
  InScratchDirectory scratch;
  // What `gemma4 convert --weights int4` writes, here for the toy model.
  convert_checkpoint<TinyE2B>(kToyTarget, "e2b-it-int4", {.format = WeightFormat::kInt4});
#define README_SNIPPET_load_packed
#include "readme_snippets.inc"
#undef README_SNIPPET_load_packed
  CHECK(model.weights.report().packed_model);
  CHECK(model.weights.report().format == WeightFormat::kInt4);
  CHECK(model.tokenizer.vocab_size() == readme_toy_model().tokenizer.vocab_size());
}

TEST_CASE("README: setting sampling from C++", "[readme]") {
  const auto& model = readme_toy_model();
  Session<TinyE2B> session(model.weights, {.max_context = 512});
#define README_SNIPPET_sampling
#include "readme_snippets.inc"
#undef README_SNIPPET_sampling
  std::string first;
  const Reply reply = chat.ask("Tell me about the fox.", [&](std::string_view text, bool) { first += text; });
  CHECK_FALSE(reply.answer.empty());
  // The same seed and temperature again give the same answer.
  Session<TinyE2B> again(model.weights, {.max_context = 512});
  Conversation<TinyE2B> same(again, model, {.sampling = SamplingOptions{.temperature = 0.7f, .seed = 42}});
  CHECK(same.ask("Tell me about the fox.", [](std::string_view, bool) {}).answer == reply.answer);
  const std::vector<int> prompt = model.tokenizer.encode("The fox");
  CHECK_FALSE(generator.generate(prompt, 8, [](int) { return true; }).tokens.empty());
}

TEST_CASE("README: a batch of sequences", "[readme]") {
  const auto& model = readme_toy_model();
  Session<TinyE2B> session(model.weights, {.max_context = 512});
  const std::vector<int> prompt_ids = model.tokenizer.encode("The fox");
  const SamplingOptions sampling{.temperature = 0};
  const std::vector<int> stop_ids = model.generation.stop_ids;
  int tokens_seen = 0;
  const auto on_token = [&](int, int) {
    ++tokens_seen;
    return true;
  };
#define README_SNIPPET_batch
#include "readme_snippets.inc"
#undef README_SNIPPET_batch
  const GenerationResult& result = generator.result(slot);
  CHECK_FALSE(result.tokens.empty());
  CHECK(tokens_seen == static_cast<int>(result.tokens.size()) - (result.stop == StopReason::kStopToken));  // not the stop id
  // The batch gives the sequence what greedy decoding alone gives.
  Session<TinyE2B> alone(model.weights, {.max_context = 512});
  Generator<TinyE2B> plain(alone, sampling, stop_ids);
  CHECK(plain.generate(prompt_ids, 256, [](int) { return true; }).tokens == result.tokens);
}

TEST_CASE("README: output constrained by a grammar", "[readme]") {
  InScratchDirectory scratch;
  std::ofstream("answer.gbnf") << "root ::= (\"yes\" | \"no\") \".\"\n";
  const auto& model = readme_toy_model();
  Session<TinyE2B> session(model.weights, {.max_context = 512});
  Generator<TinyE2B> generator(session, {.seed = 3}, model.generation.stop_ids);
#define README_SNIPPET_grammar
#include "readme_snippets.inc"
#undef README_SNIPPET_grammar
  const std::vector<int> prompt = model.tokenizer.encode("Is the fox red?");
  const GenerationResult result = generator.generate(prompt, 16, [](int) { return true; });
  std::vector<int> text_tokens = result.tokens;
  if (result.stop == StopReason::kStopToken) text_tokens.pop_back();
  const std::string text = model.tokenizer.decode(text_tokens);
  CHECK((text == "yes." || text == "no."));
}

namespace {

// The city is an enum: the toy model, which never learnt calls, would write a free
// string on and on (valid, but cut by the token limit).
const char* const kReadmeTools = R"([{"type": "function", "function": {"name": "get_weather",
  "description": "The weather in a city", "parameters": {"type": "object",
  "properties": {"city": {"enum": ["Paris", "Rome"]}}, "required": ["city"]}}}])";

}  // namespace

TEST_CASE("README: tool calls valid by construction", "[readme]") {
  const auto& model = readme_toy_model();
  Session<TinyE2B> session(model.weights, {.max_context = 1024});
  const std::vector<Tool> tools = tools_from_json(JsonValue::parse(kReadmeTools));
#define README_SNIPPET_constrained_tool_calls
#include "readme_snippets.inc"
#undef README_SNIPPET_constrained_tool_calls
  const Reply reply = chat.ask("What is the weather in Paris?", [](std::string_view, bool) {});
  REQUIRE_FALSE(reply.tool_calls.empty());
  CHECK(reply.tool_calls[0].name == "get_weather");
  CHECK(reply.tool_calls[0].argument("city").is_string());
}

TEST_CASE("README: speculative decoding with the assistant", "[readme]") {
  const auto& model = readme_toy_model();
  Session<TinyE2B> session(model.weights, {.max_context = 512});
  Generator<TinyE2B> generator(session, {.temperature = 0}, model.generation.stop_ids);
  const std::filesystem::path assistant_dir = kToyAssistant;
  const std::vector<int> prompt = model.tokenizer.encode("The fox");
  const auto on_token = [](int) { return true; };
#define README_SNIPPET_speculative
#include "readme_snippets.inc"
#undef README_SNIPPET_speculative
  CHECK(result.stats.drafted > 0);
  Session<TinyE2B> alone(model.weights, {.max_context = 512});
  Generator<TinyE2B> plain(alone, {.temperature = 0}, model.generation.stop_ids);
  CHECK(plain.generate(prompt, 256, [](int) { return true; }).tokens == result.tokens);  // same tokens, fewer passes
}

TEST_CASE("README: the function-calling loop", "[readme]") {
  const auto& model = readme_toy_model();
  Session<TinyE2B> session(model.weights, {.max_context = 1024});
  const JsonValue tools_json = JsonValue::parse(kReadmeTools);
  std::string shown;
  const auto on_text = [&](std::string_view text, bool) { shown += text; };
  int calls_run = 0;
  const auto run = [&](const ToolCall& call) {
    ++calls_run;
    return fmt::format("clear skies in {}", call.argument("city").get<std::string>());  // text, as the template wants
  };
#define README_SNIPPET_tool_loop
#include "readme_snippets.inc"
#undef README_SNIPPET_tool_loop
  // The toy model answers in words without calling (it was trained on stories only), so
  // the loop ends at once; forcing its first call makes the loop's body run too.
  TokenTrie vocabulary(model.tokenizer);
  chat.constrain_tool_calls(vocabulary);
  chat.force_tool_call({.mode = ToolChoice::Mode::kRequired});
  reply = chat.ask("And in Rome?", on_text);
  REQUIRE_FALSE(reply.tool_calls.empty());
  std::vector<ToolResult> results;
  for (const ToolCall& call : reply.tool_calls) results.push_back({.call_id = call.id, .content = run(call)});
  reply = chat.send_tool_results(results, on_text);
  CHECK(calls_run >= 1);
  CHECK_FALSE(shown.empty());
}
