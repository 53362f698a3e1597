// Gemma 4 tool calls: what the renderer writes, the streaming parser reads back, however
// the text is split; hostile output is reported as malformed with its raw text.
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "gemma4/chat/prompt_renderer.hpp"
#include "gemma4/chat/tool_call_parser.hpp"

using namespace gemma4;
using Catch::Matchers::Contains;

namespace {

// The text of an assistant turn holding `calls`, as the template renders it.
std::string rendered_calls(const std::vector<ToolCall>& calls) {
  const std::vector<Message> messages = {{.role = Role::kAssistant, .tool_calls = calls}};
  const std::string text = render_prompt({}, messages, {}, {.add_generation_prompt = false}).str();
  const std::string open = "<bos><|turn>model\n";
  REQUIRE(text.starts_with(open));
  REQUIRE(text.ends_with("<|tool_response>"));
  return text.substr(open.size(), text.size() - open.size() - std::string_view("<|tool_response>").size());
}

// Messages and tools come from order-keeping JSON; nlohmann::json, which sorts keys,
// would silently reorder a tool's parameters in the prompt, so it does not compile.
template <typename Json>
constexpr bool kReadsChat = requires(const Json& j) {
  tools_from_json(j);
  messages_from_json(j);
};
static_assert(kReadsChat<JsonValue> && !kReadsChat<nlohmann::json>);
static_assert(std::is_constructible_v<Tool, JsonValue> && !std::is_constructible_v<Tool, nlohmann::json>);

// Equal as JSON, whatever the key order (the parser keeps the model's, which is sorted).
bool same_json(const JsonValue& a, const JsonValue& b) { return nlohmann::json::parse(a.dump()) == nlohmann::json::parse(b.dump()); }

struct Parsed {
  std::string shown;
  std::vector<ToolCall> calls;
  std::vector<MalformedToolCall> malformed;
  std::vector<StreamedToolCall> streamed;
};

// Feeds `text` cut at the given byte positions.
Parsed parse_in_pieces(std::string_view text, std::vector<std::size_t> cuts) {
  ToolCallParser parser;
  Parsed out;
  std::size_t from = 0;
  cuts.push_back(text.size());
  for (const std::size_t cut : cuts) {
    out.shown += parser.push(text.substr(from, cut - from));
    from = cut;
  }
  out.shown += parser.finish();
  out.calls = parser.calls();
  out.malformed = parser.malformed();
  out.streamed = parser.streamed();
  return out;
}

const std::vector<ToolCall> kCalls = {
    {.name = "get_weather", .arguments = {{"city", "Zürich"}, {"days", 3}, {"detailed", true}}},
    {.name = "search_files",
     .arguments = JsonValue::parse(R"({"folder": "C:\\a {b} [c], d: e", "patterns": ["*.txt", "", "x,y"], "limits": {"max": 10, "ratio": -2.5,
       "none": null, "nested": {"deep": [[1], [2, [3]]]}}, "empty": {}, "list": []})")},
    {.name = "now", .arguments = JsonValue::object()},
};

}  // namespace

TEST_CASE("A rendered tool call parses back to the same call") {
  for (const ToolCall& call : kCalls) {
    INFO(call.name);
    const Parsed parsed = parse_in_pieces(rendered_calls({call}), {});
    REQUIRE(parsed.calls.size() == 1);
    CHECK(parsed.malformed.empty());
    CHECK(parsed.shown.empty());
    CHECK(parsed.calls[0].name == call.name);
    CHECK(same_json(parsed.calls[0].arguments, call.arguments));
  }
}

TEST_CASE("Consecutive calls and the text around them, split at every position, parse the same") {
  const std::string text = "Let me check. " + rendered_calls(kCalls) + " Done <|tool";
  const Parsed whole = parse_in_pieces(text, {});
  REQUIRE(whole.calls.size() == 3);
  CHECK(whole.shown == "Let me check.  Done <|tool");  // a marker's start at the end is shown at finish
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    for (const std::size_t second : {cut, std::min(text.size(), cut + 1), std::min(text.size(), cut + 7)}) {
      const Parsed parsed = parse_in_pieces(text, {cut, second});
      REQUIRE(parsed.shown == whole.shown);
      REQUIRE(parsed.calls.size() == 3);
      for (std::size_t i = 0; i < 3; ++i) REQUIRE(same_json(parsed.calls[i].arguments, kCalls[i].arguments));
      REQUIRE(parsed.malformed.empty());
      // As streamed: the name, and arguments whose JSON text is the parsed arguments'.
      REQUIRE(parsed.streamed.size() == 3);
      for (std::size_t i = 0; i < 3; ++i) {
        REQUIRE(parsed.streamed[i].name == kCalls[i].name);
        REQUIRE(nlohmann::json::parse(parsed.streamed[i].arguments) == nlohmann::json::parse(kCalls[i].arguments.dump()));
      }
    }
  }
  // One byte at a time.
  std::vector<std::size_t> every;
  for (std::size_t i = 1; i < text.size(); ++i) every.push_back(i);
  const Parsed bytewise = parse_in_pieces(text, every);
  CHECK(bytewise.shown == whole.shown);
  CHECK(bytewise.calls.size() == 3);
}

TEST_CASE("Malformed tool-call output is reported with its raw text, never dropped") {
  struct Case {
    std::string text, reason;
  };
  const std::vector<Case> cases = {
      {"<|tool_call>call:f{a:<|\"|>x<|\"|>}", "unterminated"},
      {"<|tool_call>call:f{a:\"x\"}<tool_call|>", "not a <|\"|>string"},
      {"<|tool_call>call:f{a:<|\"|>x}<tool_call|>", "unterminated"},  // the end marker sits inside the open string
      {"<|tool_call>f{a:1}<tool_call|>", "\"call:\""},
      {"<|tool_call>call:{a:1}<tool_call|>", "no function name"},
      {"<|tool_call>call:f(a=1)<tool_call|>", "expected '{'"},
      {"<|tool_call>call:f{a:1}trailing<tool_call|>", "text after the arguments"},
      {"<|tool_call>call:f{a:1,}<tool_call|>", "empty key"},
      {"<|tool_call>call:f{a 1}<tool_call|>", "without ':'"},
      {"<|tool_call>call:f{a:[1 2]}<tool_call|>", "',' or ']'"},
      {"<|tool_call>call:f{a:<|\"|>\xC3<|\"|>}<tool_call|>", "UTF-8"},
      {"<|tool_call>call:f{a:" + std::string(200, '[') + "}<tool_call|>", "deeper than 64"},
  };
  for (const Case& c : cases) {
    INFO(c.text.substr(0, 80));
    const Parsed parsed = parse_in_pieces("before " + c.text + " after", {});
    CHECK(parsed.calls.empty());
    REQUIRE(parsed.malformed.size() == 1);
    CHECK_THAT(parsed.malformed[0].reason, Contains(c.reason));
    CHECK(parsed.malformed[0].raw.starts_with(c.text.substr(0, c.text.find("<tool_call|>"))));
    CHECK(parsed.shown.starts_with("before "));
  }
}

TEST_CASE("A huge tool call is cut at the limit, reported, and the output after it goes on") {
  const std::string huge = "<|tool_call>call:f{a:<|\"|>" + std::string(ToolCallParser::kMaxCallBytes + 100, 'x') + "<|\"|>}<tool_call|>";
  const Parsed parsed = parse_in_pieces(huge + "after<|tool_call>call:g{}<tool_call|>", {1000, 600000, huge.size() - 3});
  REQUIRE(parsed.malformed.size() == 1);
  CHECK_THAT(parsed.malformed[0].reason, Contains("longer than"));
  CHECK(parsed.malformed[0].raw.size() <= ToolCallParser::kMaxCallBytes + 20);
  CHECK(parsed.shown == "after");
  REQUIRE(parsed.calls.size() == 1);
  CHECK(parsed.calls[0].name == "g");
}

TEST_CASE("JSON text and a call's arguments fail as gemma4::Error, naming what is wrong") {
  CHECK_THROWS_MATCHES(parse_json("[{\"type\": ", "tools"), Error, Catch::Matchers::Predicate<Error>([](const Error& e) {
    return e.kind() == ErrorKind::kInvalidArgument && std::string(e.what()).starts_with("tools: not valid JSON");
  }));
  const JsonValue parsed = parse_json(R"({"b": 1, "a": 2})", "arguments");
  CHECK(parsed.begin().key() == "b");  // keys in the order written
  const ToolCall call{.id = "call_1", .name = "calculate", .arguments = parsed};
  CHECK(call.argument("a") == 2);
  CHECK_THROWS_WITH(call.argument("expression"), "tool call call_1 (calculate): no argument \"expression\"; it has: b, a");
  const ToolCall empty{.id = "call_2", .name = "now", .arguments = nullptr};
  CHECK_THROWS_WITH(empty.argument("zone"), "tool call call_2 (now): no argument \"zone\"; it has: none");
}
