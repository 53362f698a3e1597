// Tool calls valid by construction: the grammar of a tool set's calls in Gemma 4's argument
// syntax (against the template's own rendering and the parser), a grammar waiting for its
// trigger, and the toy model forced to call tools through a Conversation (plain and
// speculative).
#include <catch2/catch.hpp>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "gemma4/app/conversation.hpp"
#include "gemma4/chat/prompt_renderer.hpp"
#include "gemma4/chat/tool_call_grammar.hpp"
#include "gemma4/chat/tool_call_parser.hpp"
#include "gemma4/model/drafter.hpp"
#include "gemma4/tiny.hpp"
#include "support.hpp"

using namespace gemma4;
using namespace gemma4::test;
using Catch::Matchers::Contains;

namespace {


const std::vector<Tool> kTools = tools_from_json(JsonValue::parse(R"([
  {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {
      "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
      "City": {"type": "string", "description": "the city"},
      "days": {"type": "integer", "minimum": 1},
      "window": {"type": "object", "properties": {"to": {"type": "number"}, "from": {"type": "number"}}, "required": ["from"]},
      "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
      "note": {"type": "string", "nullable": true}},
     "required": ["City", "unit"]}}},
  {"type": "function", "function": {"name": "ping"}},
  {"type": "function", "function": {"name": "set.mode", "parameters": {"type": "object",
    "properties": {"on": {"type": "boolean"}, "level": {"enum": [1, 2.5, null]}, "preset": {"const": {"b": 1, "A": ["x"]}}},
    "required": ["on", "level"]}}}
])"));

// Where `segments` (text runs and control tokens, as PromptText holds them) leave the
// grammar's matcher: control tokens are its token symbols, text is bytes.
bool matches(const Grammar& grammar, const std::vector<PromptText::Segment>& segments) {
  GrammarMatcher matcher(grammar);
  GrammarState state = matcher.start(), next;
  for (const PromptText::Segment& s : segments) {
    if (!s.control) {
      if (!matcher.advance(state, s.text)) return false;
      continue;
    }
    const auto token = std::find(grammar.tokens.begin(), grammar.tokens.end(), s.text);
    if (token == grammar.tokens.end() || !matcher.advance(state, kFirstTokenSymbol + static_cast<GrammarSymbol>(token - grammar.tokens.begin()), next)) {
      return false;
    }
    state = next;
  }
  return state.can_end;
}

// `text` cut into segments at Gemma's tool-syntax control tokens, as the model writes them.
std::vector<PromptText::Segment> segments_of(std::string_view text) {
  PromptText out;
  while (!text.empty()) {
    std::size_t next = text.size();
    std::string_view found;
    for (const std::string_view token : {control_token::kToolCallStart, control_token::kToolCallEnd, control_token::kQuote}) {
      const std::size_t at = text.find(token);
      if (at < next) next = at, found = token;
    }
    out.text(text.substr(0, next));
    if (found.empty()) break;
    out.control(found);
    text.remove_prefix(next + found.size());
  }
  return out.segments();
}

// The call as the chat template renders it in an assistant turn.
std::vector<PromptText::Segment> rendered_call(const ToolCall& call) {
  const std::vector<Message> messages = {{.role = Role::kUser, .content = "hi"}, {.role = Role::kAssistant, .content = "", .tool_calls = {call}}};
  const PromptText prompt = render_prompt(ChatTemplate{}, messages, kTools, {});
  const auto& all = prompt.segments();
  const auto start = std::find_if(all.begin(), all.end(), [](const auto& s) { return s.control && s.text == control_token::kToolCallStart; });
  const auto end = std::find_if(start, all.end(), [](const auto& s) { return s.control && s.text == control_token::kToolCallEnd; });
  REQUIRE(end != all.end());
  return {start, end + 1};
}

}  // namespace

TEST_CASE("tool-call grammar: every call the template writes for allowed arguments, and nothing the schema forbids", "[grammar][tools]") {
  const ToolCallGrammar calls = tool_call_grammar(kTools);
  CHECK(calls.start == ConstraintStart::kOnTrigger);
  CHECK(calls.unchecked.empty());
  const auto call = [](std::string name, const char* arguments) { return ToolCall{.name = std::move(name), .arguments = JsonValue::parse(arguments)}; };
  for (const ToolCall& allowed : {call("get_weather", R"({"City": "Paris", "unit": "celsius"})"),
                                  call("get_weather", R"({"City": "a <b> | c \" <|x", "unit": "fahrenheit", "days": 3, "window": {"from": -1.5, "to": 2e3},
                                                         "tags": ["x", ""], "note": null})"),
                                  call("get_weather", R"({"City": "", "unit": "celsius", "days": 0, "tags": [], "note": "n"})"),
                                  call("ping", "{}"), call("set.mode", R"({"on": true, "level": 2.5})"), call("set.mode", R"({"on": false, "level": null})"),
                                  call("set.mode", R"({"on": false, "level": 1, "preset": {"b": 1, "A": ["x"]}})")}) {
    INFO(allowed.name << " " << allowed.arguments.dump());
    const std::vector<PromptText::Segment> rendered = rendered_call(allowed);
    CHECK(matches(calls.grammar, rendered));
    // ... and the parser reads back the arguments.
    ToolCallParser parser;
    std::string text;
    for (const PromptText::Segment& segment : rendered) text += segment.text;
    parser.push(text);
    parser.finish();
    REQUIRE(parser.calls().size() == 1);
    CHECK(nlohmann::json(parser.calls()[0].arguments) == nlohmann::json(allowed.arguments));  // in any key order
  }
  const auto refused = [&](const std::string& text) {
    INFO(text);
    CHECK_FALSE(matches(calls.grammar, segments_of(text)));
  };
  const std::string q(control_token::kQuote);
  refused("<|tool_call>call:get_weather{unit:" + q + "celsius" + q + "}<tool_call|>");                            // City is required
  refused("<|tool_call>call:get_weather{City:" + q + "P" + q + ",unit:" + q + "kelvin" + q + "}<tool_call|>");    // not in the enum
  refused("<|tool_call>call:get_weather{unit:" + q + "celsius" + q + ",City:" + q + "P" + q + "}<tool_call|>");   // the template's order
  refused("<|tool_call>call:get_weather{City:" + q + "P" + q + ",unit:" + q + "celsius" + q + ",x:1}<tool_call|>");  // not a property
  refused("<|tool_call>call:get_weather{City:" + q + "P" + q + ",unit:" + q + "celsius" + q + ",days:1.5}<tool_call|>");
  refused("<|tool_call>call:get_weather{City:\"P\",unit:" + q + "celsius" + q + "}<tool_call|>");              // JSON quotes
  refused("<|tool_call>call:get_weather{City:" + q + "P" + q + ", unit:" + q + "celsius" + q + "}<tool_call|>");  // a blank
  refused("<|tool_call>call:get_time{}<tool_call|>");                                                             // not declared
  refused("<|tool_call>call:ping{a:1}<tool_call|>");
  refused("<|tool_call>call:ping{}");
  // The closing quote spelled in text is not a quote, and may not appear inside a string.
  CHECK_FALSE(matches(calls.grammar, {{true, "<|tool_call>"}, {false, "call:get_weather{City:<|\"|>P<|\"|>,unit:"}}));
  PromptText spelled;
  spelled.control(control_token::kToolCallStart);
  spelled.text("call:get_weather{City:");
  spelled.control(control_token::kQuote);
  spelled.text("a<|\"|>b");
  CHECK_FALSE(matches(calls.grammar, spelled.segments()));

  // A forced choice: calls from the first token, one or more, to the named tool only.
  const ToolCallGrammar forced = tool_call_grammar(kTools, {.mode = ToolChoice::Mode::kFunction, .function = "ping"});
  CHECK(forced.start == ConstraintStart::kNow);
  CHECK(matches(forced.grammar, segments_of("<|tool_call>call:ping{}<tool_call|><|tool_call>call:ping{}<tool_call|>")));
  CHECK_FALSE(matches(forced.grammar, segments_of("<|tool_call>call:set.mode{on:true,level:1}<tool_call|>")));
  CHECK_FALSE(matches(forced.grammar, segments_of("")));
}

TEST_CASE("tool-call grammar: unknown keywords leave a tool checked for syntax only; what cannot work is an error", "[grammar][tools][errors]") {
  const std::vector<Tool> loose = tools_from_json(JsonValue::parse(R"([{"type": "function", "function": {"name": "f",
      "parameters": {"type": "object", "properties": {"x": {"oneOf": [{"type": "string"}]}}}}}])"));
  const ToolCallGrammar calls = tool_call_grammar(loose);
  REQUIRE(calls.unchecked.size() == 1);
  CHECK_THAT(calls.unchecked[0], Contains("tool \"f\" parameters") && Contains("'oneOf'") && Contains("syntax only"));
  CHECK(matches(calls.grammar, segments_of("<|tool_call>call:f{anything:[1,<|\"|>s<|\"|>,{b:null}]}<tool_call|>")));
  CHECK_FALSE(matches(calls.grammar, segments_of("<|tool_call>call:f{x}<tool_call|>")));

  CHECK_THROWS_WITH(tool_call_grammar({}), Contains("no tools declared"));
  CHECK_THROWS_WITH(tool_call_grammar(kTools, {.mode = ToolChoice::Mode::kFunction, .function = "nope"}), Contains("\"nope\" is not one of the declared tools"));
  const std::vector<Tool> spaced = tools_from_json(JsonValue::parse(R"([{"type": "function", "function": {"name": "get weather"}}])"));
  CHECK_THROWS_WITH(tool_call_grammar(spaced), Contains("tool \"get weather\"") && Contains("letters, digits"));
}

TEST_CASE("a grammar waiting for its trigger leaves the text free around what it constrains", "[grammar][tools]") {
  const Tokenizer tokenizer = Tokenizer::from_file(kToyTarget / "tokenizer.json");
  const TokenTrie vocabulary(tokenizer);
  const int start = *tokenizer.added_token_id(control_token::kToolCallStart), end = *tokenizer.added_token_id(control_token::kToolCallEnd);
  GrammarConstraint constraint(tool_call_grammar(kTools).grammar, vocabulary, ConstraintStart::kOnTrigger);
  const std::size_t vocab = static_cast<std::size_t>(vocabulary.vocab_size());
  std::vector<float> logits(vocab, 1.0f);
  const auto allowed = [&] { return static_cast<std::size_t>(std::count(logits.begin(), logits.end(), 1.0f)); };
  const auto feed = [&](std::string_view text) {
    for (const int id : tokenizer.encode(text, {.add_bos = false})) constraint.accept(id);
  };
  CHECK(constraint.waiting());
  REQUIRE(constraint.apply(logits, {}));
  CHECK(allowed() == vocab);  // free text
  feed("the cat");            // any text, and the end of a call that never began
  constraint.accept(end);
  CHECK(constraint.waiting());
  constraint.accept(start);
  CHECK_FALSE(constraint.waiting());
  CHECK_FALSE(constraint.can_end());
  REQUIRE(constraint.apply(logits, {}));
  CHECK(allowed() < vocab / 4);
  CHECK(logits[static_cast<std::size_t>(start)] != 1.0f);
  CHECK_THROWS_WITH(constraint.accept(tokenizer.encode("x", {.add_bos = false}).front()), Contains("is not allowed here"));
  feed("call:ping{}");
  std::fill(logits.begin(), logits.end(), 1.0f);
  REQUIRE(constraint.apply(logits, {}));
  CHECK(allowed() == 1);  // only the end of the call
  CHECK(logits[static_cast<std::size_t>(end)] == 1.0f);
  constraint.accept(end);
  CHECK(constraint.waiting());  // free again
  constraint.reset();
  CHECK(constraint.waiting());

  CHECK_THROWS_WITH(GrammarConstraint(parse_gbnf("root ::= \"a\" <|tool_call>"), vocabulary, ConstraintStart::kOnTrigger),
                    Contains("must start with exactly one special token"));
  CHECK_THROWS_WITH(GrammarConstraint(parse_gbnf("root ::= <|tool_call> | <|\"|>"), vocabulary, ConstraintStart::kOnTrigger),
                    Contains("must start with exactly one special token"));
  CHECK_THROWS_WITH(GrammarConstraint(parse_gbnf("root ::= <|no_such_token>"), vocabulary), Contains("no special token <|no_such_token>"));
  CHECK_THROWS_WITH(parse_gbnf("root ::= <|tool_call"), Contains("1:10") && Contains("never closed with '>'"));
}

namespace {

struct ToyChat {
  Weights<TinyE2B> weights{kToyTarget};
  Tokenizer tokenizer = Tokenizer::from_file(kToyTarget / "tokenizer.json");
  TokenTrie vocabulary{tokenizer};
};

ToyChat& toy() {
  static ToyChat chat;
  return chat;
}

// Tools whose calls the toy can finish: it writes stories, and never learned to close a
// free string with <|"|> (kTools' strings are tested above), so strings here are enums.
const std::vector<Tool> kForecastTools = tools_from_json(JsonValue::parse(R"([
  {"type": "function", "function": {"name": "get_forecast", "parameters": {"type": "object", "properties": {
      "city": {"enum": ["Paris", "Oslo"]}, "days": {"type": "integer"}, "hourly": {"type": "boolean"},
      "window": {"type": "object", "properties": {"from": {"type": "number"}}, "required": ["from"]}},
    "required": ["city", "days", "hourly"]}}},
  {"type": "function", "function": {"name": "ping"}}
])"));

// Arguments the schema allows, checked as values (the grammar's work, seen from outside).
void check_forecast_arguments(const JsonValue& a) {
  CHECK((a.at("city") == "Paris" || a.at("city") == "Oslo"));
  CHECK(a.at("days").is_number_integer());
  CHECK(a.at("hourly").is_boolean());
  if (a.contains("window")) CHECK(a["window"].at("from").is_number());
  for (const auto& [key, value] : a.items()) CHECK(std::string(" city days hourly window ").find(" " + key + " ") != std::string::npos);
}

}  // namespace

// [slow-emulated]: 40 replies of up to 200 tokens.
TEST_CASE("the toy model, never taught to call tools, forced to: every call parses and fits its schema", "[grammar][tools][toy][slow-emulated]") {
  const auto choice = GENERATE(ToolChoice{.mode = ToolChoice::Mode::kRequired}, ToolChoice{.mode = ToolChoice::Mode::kFunction, .function = "get_forecast"});
  int complete = 0;
  constexpr int kSeeds = 20;
  for (std::uint64_t seed = 1; seed <= kSeeds; ++seed) {
    Session<TinyE2B> session(toy().weights, {.max_context = 1024});
    Conversation<TinyE2B> chat(session, toy().tokenizer, {.sampling = {.temperature = 1.0f, .top_k = 0, .seed = seed}},
                               {.max_new_tokens = 200, .tools = kForecastTools});
    CHECK(chat.constrain_tool_calls(toy().vocabulary).empty());
    chat.force_tool_call(choice);
    const Reply reply = chat.ask("What is the weather in Paris?", [](std::string_view, bool) {});
    INFO("seed " << seed << ": " << (reply.malformed_calls.empty() ? "" : reply.malformed_calls[0].raw));
    CHECK(reply.answer.empty());  // nothing but calls
    if (reply.generation.stop == StopReason::kMaxTokens) continue;  // digits may run past the budget
    ++complete;
    CHECK(reply.malformed_calls.empty());
    REQUIRE_FALSE(reply.tool_calls.empty());
    for (const ToolCall& call : reply.tool_calls) {
      if (choice.mode == ToolChoice::Mode::kFunction) CHECK(call.name == "get_forecast");
      if (call.name == "get_forecast") check_forecast_arguments(call.arguments);
      if (call.name == "ping") CHECK(call.arguments.empty());
    }
  }
  INFO(complete << " of " << kSeeds << " complete");
  CHECK(complete >= kSeeds * 3 / 4);
}

TEST_CASE("constrained tool calls change nothing in a reply that makes none; forcing lasts one reply", "[grammar][tools][toy]") {
  const auto reply_text = [](bool constrained, bool speculative) {
    Session<TinyE2B> session(toy().weights, {.max_context = 512});
    Conversation<TinyE2B> chat(session, toy().tokenizer, {.sampling = {.temperature = 0.8f, .top_k = 20, .seed = 5}}, {.max_new_tokens = 40, .tools = kTools});
    if (constrained) chat.constrain_tool_calls(toy().vocabulary);
    const auto ignore = [](std::string_view, bool) {};
    if (!speculative) return chat.ask("the cat sat on the", ignore).answer;
    const Assistant<TinyE2BAssistant> assistant(kToyAssistant);
    Drafter<TinyE2BAssistant> drafter(assistant, session, {.max_drafts = 4});
    return chat.ask("the cat sat on the", drafter, ignore).answer;
  };
  const std::string free = reply_text(false, false);
  CHECK_FALSE(free.empty());
  CHECK(reply_text(true, false) == free);
  CHECK(reply_text(true, true) == free);

  Session<TinyE2B> session(toy().weights, {.max_context = 1024});
  Conversation<TinyE2B> chat(session, toy().tokenizer, {.sampling = {.temperature = 0.0f}}, {.max_new_tokens = 60, .tools = kTools});
  CHECK_THROWS_WITH(chat.force_tool_call({.mode = ToolChoice::Mode::kRequired}), Contains("constrain_tool_calls first"));
  chat.constrain_tool_calls(toy().vocabulary);
  CHECK_THROWS_WITH(chat.force_tool_call({.mode = ToolChoice::Mode::kFunction, .function = "nope"}), Contains("not one of the declared tools"));
  chat.force_tool_call({.mode = ToolChoice::Mode::kFunction, .function = "ping"});
  const Reply forced = chat.ask("the cat", [](std::string_view, bool) {});
  REQUIRE(forced.tool_calls.size() >= 1);
  CHECK(forced.tool_calls[0].name == "ping");
  const Reply after = chat.send_tool_results(std::vector<ToolResult>{{forced.tool_calls[0].id, "pong"}}, [](std::string_view, bool) {});
  CHECK(after.tool_calls.empty());  // free again: the toy writes text
}

TEST_CASE("a forced tool call decoded speculatively is the call plain decoding writes", "[grammar][tools][toy][speculative][host-only]") {
  const Assistant<TinyE2BAssistant> assistant(kToyAssistant);
  const auto sampling = GENERATE(SamplingOptions{.temperature = 0.0f}, SamplingOptions{.temperature = 0.8f, .top_k = 20, .seed = 9});
  const auto run = [&](bool speculative) {
    Session<TinyE2B> session(toy().weights, {.max_context = 512, .prefill_chunk = 8});
    Conversation<TinyE2B> chat(session, toy().tokenizer, {.sampling = sampling}, {.max_new_tokens = 60, .tools = kForecastTools});
    chat.constrain_tool_calls(toy().vocabulary);
    chat.force_tool_call({.mode = ToolChoice::Mode::kRequired});
    const auto ignore = [](std::string_view, bool) {};
    if (!speculative) return chat.ask("What is the weather in Paris?", ignore).generation;
    Drafter<TinyE2BAssistant> drafter(assistant, session, {.max_drafts = 4});
    return chat.ask("What is the weather in Paris?", drafter, ignore).generation;
  };
  const GenerationResult plain = run(false), drafted = run(true);
  INFO(toy().tokenizer.decode(plain.tokens));
  CHECK(drafted.tokens == plain.tokens);
  CHECK(drafted.stop == plain.stop);
  CHECK(drafted.stats.drafted > 0);
}
