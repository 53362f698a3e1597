// gemma4 serve's OpenAI side without HTTP: request bodies read or refused by name, stop
// strings however the text is split, and replies turned into content, reasoning and tool
// calls from real token ids (the toy model never calls a tool, so its end-to-end test
// cannot show a parsed call: this one does).
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "gemma4/chat/stop_strings.hpp"
#include "gemma4/grammar/matcher.hpp"
#include "openai_api.hpp"
#include "reply_builder.hpp"
#include "support.hpp"

using namespace gemma4;
using namespace gemma4::server;
using gemma4::test::demo_tokenizer;
using Catch::Matchers::Contains;

namespace {

// The status and message of the ApiError `body` gets.
std::pair<int, std::string> refusal(const std::string& body) {
  try {
    parse_chat_request(body);
  } catch (const ApiError& e) {
    return {e.status(), e.what()};
  }
  return {0, "accepted"};
}

struct Built {
  std::string content, reasoning, streamed;
  std::vector<ToolCall> calls;
  JsonValue call_deltas = JsonValue::array();  // delta.tool_calls entries, as streamed
  bool stopped = false;
};

// A reply of `text` (encoded as the model would write it) through a ReplyBuilder.
Built build_reply(const std::string& text, std::vector<std::string> stops = {}) {
  ReplyBuilder reply(demo_tokenizer(), /*chat=*/true, std::move(stops), "chatcmpl-1");
  Built out;
  const auto on_delta = [&](std::string_view piece, bool thought) {
    if (!thought) out.streamed += piece;
  };
  const auto take_deltas = [&] {
    for (JsonValue& delta : reply.take_call_deltas()) out.call_deltas.push_back(std::move(delta));
  };
  for (const int id : demo_tokenizer().encode(text, {.add_bos = false})) {
    reply.push(id, on_delta);
    take_deltas();
  }
  reply.finish(on_delta);
  take_deltas();
  out.content = reply.content();
  out.reasoning = reply.reasoning();
  out.calls = reply.calls();
  out.stopped = reply.stopped_by_string();
  return out;
}

}  // namespace

TEST_CASE("A chat request is read field by field") {
  const GenerationRequest r = parse_chat_request(R"({
    "model": "m", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "f", "arguments": "{\"z\": 1, \"a\": 2}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "ok"}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "stream": true, "stream_options": {"include_usage": true}, "max_completion_tokens": 12,
    "temperature": 0.5, "top_p": 0.9, "top_k": 20, "min_p": 0.05, "seed": 3, "stop": ["END", "\n\n"],
    "frequency_penalty": 0, "presence_penalty": 0, "n": 1, "logprobs": false, "user": "u1",
    "chat_template_kwargs": {"enable_thinking": true}, "response_format": {"type": "text"}})");
  CHECK(r.model == "m");
  REQUIRE(r.messages.size() == 4);
  CHECK(r.messages[2].tool_calls[0].arguments.dump() == R"({"z":1,"a":2})");  // parsed from the SDK's JSON text, order kept
  CHECK(r.tools.size() == 1);
  CHECK((r.stream && r.include_usage && r.thinking));
  CHECK(r.max_tokens == 12);
  CHECK(r.stop == std::vector<std::string>{"END", "\n\n"});
  const SamplingOptions s = r.sampling.over({});
  CHECK((s.temperature == 0.5f && s.top_p == 0.9f && s.top_k == 20 && s.min_p == 0.05f && s.seed == 3));
  CHECK(r.sampling.over({.temperature = 0.25f, .top_k = 5}).top_k == 20);

  const GenerationRequest defaults = parse_chat_request(R"({"messages": [{"role": "user", "content": "Hi"}]})");
  CHECK(defaults.sampling.over({.temperature = 0.25f, .top_k = 5}).temperature == 0.25f);  // generation_config.json's
  CHECK(!defaults.max_tokens);

  const GenerationRequest none = parse_chat_request(R"({"messages": [{"role": "user", "content": "Hi"}], "tool_choice": "none",
    "tools": [{"type": "function", "function": {"name": "f"}}]})");
  CHECK(none.tools.empty());
}

TEST_CASE("response_format: json_object and json_schema become a grammar for the reply") {
  const std::string hi = R"("messages": [{"role": "user", "content": "Hi"}])";
  CHECK(parse_chat_request("{" + hi + R"(, "response_format": {"type": "text"}})").grammar == nullptr);
  const GenerationRequest object = parse_chat_request("{" + hi + R"(, "response_format": {"type": "json_object"}})");
  REQUIRE(object.grammar != nullptr);
  const GenerationRequest schema = parse_chat_request("{" + hi + R"(, "response_format": {"type": "json_schema", "json_schema": {"name": "n",
      "strict": true, "schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}})");
  REQUIRE(schema.grammar != nullptr);
  const auto whole = [](const Grammar& g, std::string_view text) {
    GrammarMatcher m(g);
    GrammarState s = m.start();
    return m.advance(s, text) && s.can_end;
  };
  CHECK(whole(*object.grammar, R"({"a": [1]})"));
  CHECK_FALSE(whole(*object.grammar, "[1]"));
  CHECK(whole(*schema.grammar, R"({"n": 5})"));
  CHECK_FALSE(whole(*schema.grammar, R"({"n": "5"})"));
}

TEST_CASE("tools become a grammar for the calls: waiting for <|tool_call>, or from the first token when a call is required") {
  const std::string hi = R"("messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "function", "function": {"name": "f",
      "parameters": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}, "required": ["n"]}}}])";
  const GenerationRequest automatic = parse_chat_request("{" + hi + "}");
  REQUIRE(automatic.grammar != nullptr);
  CHECK(automatic.grammar_start == ConstraintStart::kOnTrigger);
  CHECK(automatic.unchecked_tools.empty());
  const GenerationRequest required = parse_chat_request("{" + hi + R"(, "tool_choice": "required"})");
  CHECK(required.tool_choice.mode == ToolChoice::Mode::kRequired);
  CHECK(required.grammar_start == ConstraintStart::kNow);
  const GenerationRequest loose = parse_chat_request(R"({"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "function",
      "function": {"name": "f", "parameters": {"type": "object", "properties": {"n": {"allOf": [{"type": "integer"}]}}}}}]})");
  REQUIRE(loose.unchecked_tools.size() == 1);
  CHECK_THAT(loose.unchecked_tools[0], Contains("'allOf'"));
  const auto [code, message] = refusal(R"({"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "function", "function": {"name": "a b"}}]})");
  CHECK(code == 400);
  CHECK_THAT(message, Contains("tool \"a b\"") && Contains("letters, digits"));
}

TEST_CASE("A field the server does not support is refused by name, never ignored") {
  const auto refused = [](const std::string& body, int status, const std::string& words) {
    const auto [code, message] = refusal(body);
    CHECK(code == status);
    CHECK_THAT(message, Contains(words));
  };
  const std::string hi = R"("messages": [{"role": "user", "content": "Hi"}])";
  refused("{" + hi + R"(, "temprature": 1})", 400, "\"temprature\"");
  refused("{" + hi + R"(, "n": 3})", 400, "\"n\" must be 1");
  refused("{" + hi + R"(, "logprobs": true})", 400, "logprobs");
  refused("{" + hi + R"(, "presence_penalty": 0.2})", 400, "presence_penalty");
  refused("{" + hi + R"(, "tool_choice": "required"})", 400, "\"required\" needs \"tools\"");
  refused("{" + hi + R"(, "tool_choice": "any"})", 400, "\"tool_choice\" must be");
  refused("{" + hi + R"(, "tool_choice": {"type": "function", "function": {"name": "g"}}})", 400, "not among");
  refused("{" + hi + R"(, "response_format": {"type": "xml"}})", 400, "\"response_format\" must be");
  refused("{" + hi + R"(, "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "string", "pattern": "x"}}}})", 400,
          "response_format: #: the keyword 'pattern' is not supported");
  refused("{" + hi + R"(, "response_format": {"type": "json_schema", "json_schema": {"name": "a", "scheme": {}}}})", 400, "\"scheme\"");
  refused("{" + hi + R"(, "response_format": {"type": "json_object"}, "chat_template_kwargs": {"enable_thinking": true}})", 400,
          "with tools or enable_thinking is not supported");
  refused("{" + hi + R"(, "max_tokens": 0})", 400, "max_tokens");
  refused("{" + hi + R"(, "max_tokens": 1.5})", 400, "must be an integer");
  refused("{" + hi + R"(, "stop": ""})", 400, "empty");
  refused("{" + hi + R"(, "stream_options": {"include_usage": true}})", 400, "needs \"stream\"");
  refused("{" + hi + R"(, "chat_template_kwargs": {"add_vision": true}})", 400, "add_vision");
  refused(R"({"messages": "Hi"})", 400, "non-empty array");
  refused(R"({"messages": [{"role": "robot", "content": "Hi"}]})", 400, "unknown role");
  refused(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", 400, "text model only");
  refused(R"({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}]})", 400, "JSON object");
  refused(R"([1, 2])", 400, "JSON object");
  refused("{\"messages\": [{\"role\": \"user\", \"content\": \"\xC3\x28\"}]}", 400, "not valid JSON");
  CHECK(parse_chat_request("{" + hi + R"(, "temperature": -1})").sampling.temperature == -1.0f);  // range: checked with the defaults
  CHECK_THROWS_AS(parse_chat_request("{" + hi + R"(, "temperature": -1})").sampling.over({}), ApiError);
}

TEST_CASE("Completion, tokenize and detokenize requests") {
  const GenerationRequest r = parse_completion_request(R"({"prompt": "Once", "max_tokens": 4, "echo": false})");
  CHECK((!r.chat && r.prompt == "Once" && r.max_tokens == 4));
  CHECK_THROWS_WITH(parse_completion_request(R"({"prompt": ["a", "b"]})"), Contains("must be a string"));
  CHECK_THROWS_WITH(parse_completion_request(R"({"prompt": "a", "echo": true})"), Contains("echo"));
  CHECK(parse_tokenize_request(R"({"content": "hi", "add_special": false})").add_special == false);
  CHECK(parse_detokenize_request(R"({"tokens": [2, 5]})") == std::vector<int>{2, 5});
  CHECK_THROWS_WITH(parse_detokenize_request(R"({"tokens": [-1]})"), Contains("tokens"));
}

TEST_CASE("Errors are OpenAI's JSON; keys compare in constant time") {
  const JsonValue e = JsonValue::parse(ApiError(404, "model_not_found", "no such model", "model").json());
  CHECK(e["error"]["type"] == "not_found_error");
  CHECK(e["error"]["code"] == "model_not_found");
  CHECK(e["error"]["param"] == "model");
  CHECK(constant_time_equal("Bearer k", "Bearer k"));
  CHECK_FALSE(constant_time_equal("Bearer k", "Bearer kk"));
  CHECK_FALSE(constant_time_equal("", "x"));
}

TEST_CASE("Stop strings end the text however it is split, and are never given out") {
  for (std::size_t cut = 1; cut < 12; ++cut) {
    StopStrings stops({"<END>", "xyz"});
    const std::string text = "abc <EN no <END> more";
    std::string out;
    for (std::size_t i = 0; i < text.size() && !stops.stopped(); i += cut) out += stops.push(text.substr(i, cut));
    out += stops.finish();
    CHECK(out == "abc <EN no ");
    CHECK(stops.stopped());
  }
  StopStrings held({"<END>"});
  CHECK(held.push("ends with <EN") == "ends with ");
  CHECK(held.finish() == "<EN");  // never became a stop string
  CHECK_THROWS(StopStrings({""}));
}

TEST_CASE("A reply's tool call, thought and text come apart, with ids and arguments as the API writes them") {
  const Built plain = build_reply("Hello there.");
  CHECK(plain.content == "Hello there.");
  CHECK(plain.calls.empty());

  const Built call = build_reply("<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>,days:2}<tool_call|>");
  REQUIRE(call.calls.size() == 1);
  CHECK(call.calls[0].name == "get_weather");
  CHECK(call.calls[0].id == "call-chatcmpl-1-0");
  CHECK(call.content.empty());
  const JsonValue json = tool_calls_json(call.calls);
  CHECK(json[0]["type"] == "function");
  CHECK(json[0]["function"]["arguments"] == R"({"city":"Paris","days":2})");

  // Streamed: each call's id and name first, then its arguments in pieces, which put
  // together are the JSON of the parsed arguments.
  const Built streamed = build_reply("Sure.<|tool_call>call:get_weather{city:<|\"|>Par \"is\"\\ é\n<|\"|>,days:[2,-1.5e3],"
                                     "<|\"|>odd key<|\"|>:{a:true,b:null}}<tool_call|><|tool_call>call:ping{}<tool_call|>");
  REQUIRE(streamed.calls.size() == 2);
  std::vector<std::string> names(2), arguments(2);
  std::vector<int> pieces(2);
  for (const JsonValue& delta : streamed.call_deltas) {
    const std::size_t i = delta.at("index").get<std::size_t>();
    REQUIRE(i < 2);
    if (delta.contains("id")) {
      CHECK(delta["id"] == streamed.calls[i].id);
      CHECK(delta["type"] == "function");
      names[i] = delta["function"]["name"];
    }
    const std::string piece = delta["function"]["arguments"];
    arguments[i] += piece;
    pieces[i] += !piece.empty();
  }
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(names[i] == streamed.calls[i].name);
    CHECK(nlohmann::json::parse(arguments[i]) == nlohmann::json(streamed.calls[i].arguments));
  }
  CHECK(pieces[0] > 5);  // as the call was written, not at its end
  CHECK(streamed.content == "Sure.");

  const Built thought = build_reply("<|channel>thought\nThink.\nMore.\n<channel|>Answer.");
  CHECK(thought.reasoning == "Think.\nMore.");  // as the template writes reasoning_content back
  CHECK(thought.content == "Answer.");

  const Built broken = build_reply("<|tool_call>call:f{oops");  // shown as written: nothing is lost
  CHECK(broken.calls.empty());
  CHECK(broken.content == "<|tool_call>call:f{oops");

  const Built stopped = build_reply("one two three", {" two"});
  CHECK(stopped.content == "one");
  CHECK(stopped.streamed == "one");
  CHECK(stopped.stopped);
}
