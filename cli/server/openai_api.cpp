#include "openai_api.hpp"

#include <cmath>
#include <functional>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "gemma4/grammar/json_schema.hpp"
#include "gemma4/tokenizer/utf8.hpp"

namespace gemma4::server {

std::string ApiError::type() const {
  switch (status_) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413:
    case 400: return "invalid_request_error";
    case 429: return "rate_limit_error";
    case 503: return "unavailable_error";
    default: return status_ >= 500 ? "server_error" : "invalid_request_error";
  }
}

std::string ApiError::json() const {
  JsonValue error = {{"message", what()}, {"type", type()}, {"code", code_}};
  error["param"] = param_.empty() ? JsonValue(nullptr) : JsonValue(param_);
  return JsonValue{{"error", error}}.dump(-1, ' ', false, JsonValue::error_handler_t::replace);
}

void bad_request(const std::string& param, const std::string& message) { throw ApiError(400, "invalid_request_error", message, param); }

JsonValue parse_body(std::string_view body) {
  try {
    JsonValue json = JsonValue::parse(body);
    if (!json.is_object()) bad_request("", "the request body must be a JSON object");
    return json;
  } catch (const JsonValue::exception& e) {  // a syntax error, or a number out of range
    bad_request("", fmt::format("the request body is not valid JSON: {}", e.what()));
  }
}

namespace {

// A request object's fields, each taken once by its reader; what is left is unknown.
class Fields {
 public:
  explicit Fields(const JsonValue& object) : object_(object) {}

  // The field's value, or nullptr when it is absent or null (OpenAI clients send nulls).
  const JsonValue* take(const char* key) {
    taken_.push_back(key);
    const auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  void refuse_unknown() const {
    for (const auto& [key, value] : object_.items()) {
      if (std::find(taken_.begin(), taken_.end(), key) == taken_.end()) {
        bad_request(key, fmt::format("unknown or unsupported field \"{}\"", key));
      }
    }
  }

 private:
  const JsonValue& object_;
  std::vector<std::string> taken_;
};

bool boolean(const JsonValue& v, const char* key) {
  if (!v.is_boolean()) bad_request(key, fmt::format("\"{}\" must be true or false", key));
  return v.get<bool>();
}

double number(const JsonValue& v, const char* key) {
  if (!v.is_number()) bad_request(key, fmt::format("\"{}\" must be a number", key));
  return v.get<double>();
}

long long integer(const JsonValue& v, const char* key, long long min, long long max) {
  const auto out_of_range = [&] { bad_request(key, fmt::format("\"{}\" must be in [{}, {}], got {}", key, min, max, v.dump())); };
  if (v.is_number_unsigned()) {
    const unsigned long long u = v.get<unsigned long long>();  // JSON's non-negative integers
    if (u > static_cast<unsigned long long>(max) || (min > 0 && u < static_cast<unsigned long long>(min))) out_of_range();
    return static_cast<long long>(u);
  }
  if (v.is_number_integer()) {
    if (v.get<long long>() < min || v.get<long long>() > max) out_of_range();
    return v.get<long long>();
  }
  // 12.0 is 12; a double converts only when in range (2^63 as a double is not).
  if (!v.is_number_float() || std::nearbyint(v.get<double>()) != v.get<double>()) bad_request(key, fmt::format("\"{}\" must be an integer", key));
  const double value = v.get<double>();
  if (!(value >= static_cast<double>(min) && value < static_cast<double>(max))) out_of_range();
  return static_cast<long long>(value);
}

// object[key] if it is a string, else "".
std::string string_or_empty(const JsonValue& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

const std::string& string(const JsonValue& v, const char* key) {
  if (!v.is_string()) bad_request(key, fmt::format("\"{}\" must be a string", key));
  return v.get_ref<const std::string&>();
}

// The fields generation requests of both kinds share.
void read_common(Fields& f, GenerationRequest& r) {
  if (const auto* v = f.take("model")) r.model = string(*v, "model");
  if (const auto* v = f.take("stream")) r.stream = boolean(*v, "stream");
  if (const auto* v = f.take("stream_options")) {
    if (!v->is_object()) bad_request("stream_options", "\"stream_options\" must be an object");
    Fields options(*v);
    if (const auto* u = options.take("include_usage")) r.include_usage = boolean(*u, "include_usage");
    options.refuse_unknown();
    if (!r.stream) bad_request("stream_options", "\"stream_options\" needs \"stream\": true");
  }
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (const auto* v = f.take(key)) r.max_tokens = static_cast<int>(integer(*v, key, 1, std::numeric_limits<int>::max()));
  }
  SamplingRequest& s = r.sampling;
  const auto real = [&](const char* key, std::optional<float>& out) {
    if (const auto* v = f.take(key)) out = static_cast<float>(number(*v, key));
  };
  real("temperature", s.temperature);
  real("top_p", s.top_p);
  real("min_p", s.min_p);
  real("repetition_penalty", s.repetition_penalty);
  if (const auto* v = f.take("top_k")) s.top_k = static_cast<int>(integer(*v, "top_k", 0, std::numeric_limits<int>::max()));
  if (const auto* v = f.take("seed")) {
    s.seed = static_cast<std::uint64_t>(integer(*v, "seed", std::numeric_limits<long long>::min(), std::numeric_limits<long long>::max()));
  }
  if (const auto* v = f.take("stop")) {
    if (v->is_string()) {
      r.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      for (const JsonValue& s : *v) r.stop.push_back(string(s, "stop"));
    } else {
      bad_request("stop", "\"stop\" must be a string or an array of strings");
    }
    constexpr std::size_t kMaxStops = 16;
    if (r.stop.size() > kMaxStops) bad_request("stop", fmt::format("at most {} stop strings, got {}", kMaxStops, r.stop.size()));
    for (const std::string& stop : r.stop) {
      if (stop.empty()) bad_request("stop", "a stop string is empty");
    }
  }
  // The sampler has a repetition penalty, not OpenAI's additive ones: zero is no penalty.
  for (const char* key : {"frequency_penalty", "presence_penalty"}) {
    if (const auto* v = f.take(key); v && number(*v, key) != 0) {
      bad_request(key, fmt::format("\"{}\" is not supported (use \"repetition_penalty\", e.g. 1.1)", key));
    }
  }
  if (const auto* v = f.take("n"); v && integer(*v, "n", 1, std::numeric_limits<int>::max()) != 1) bad_request("n", "\"n\" must be 1: one choice per request");
  if (const auto* v = f.take("user")) string(*v, "user");  // the caller's end-user id: nothing to do with it here
}

void refuse_true(Fields& f, const char* key, const char* why) {
  if (const auto* v = f.take(key); v && !(v->is_boolean() && !v->get<bool>())) bad_request(key, fmt::format("\"{}\" is not supported: {}", key, why));
}

// OpenAI clients send a call's arguments as JSON text; the template writes an object.
void parse_call_arguments(std::vector<Message>& messages) {
  for (std::size_t i = 0; i < messages.size(); ++i) {
    for (ToolCall& call : messages[i].tool_calls) {
      if (!call.arguments.is_string()) continue;
      const std::string& text = call.arguments.get_ref<const std::string&>();
      JsonValue parsed = JsonValue::parse(text, nullptr, /*allow_exceptions=*/false);
      if (!parsed.is_object()) bad_request("messages", fmt::format("message {}: tool call \"{}\": \"arguments\" must be a JSON object", i, call.name));
      call.arguments = std::move(parsed);
    }
  }
}

// response_format: text (nothing to constrain), json_object, or json_schema {name, schema,
// description, strict}; a 400 for anything else, for a schema the compiler refuses (it
// names the keyword), and beside tools or thinking, whose syntax the grammar would have to
// allow too.
std::shared_ptr<const Grammar> response_grammar(const JsonValue& format, const GenerationRequest& r) {
  constexpr const char* kForm = "\"response_format\" must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or"
                                " {\"type\": \"json_schema\", \"json_schema\": {\"name\": ..., \"schema\": {...}}}";
  if (!format.is_object()) bad_request("response_format", kForm);
  Fields f(format);
  const JsonValue* type = f.take("type");
  if (type == nullptr || !type->is_string() || (*type != "text" && *type != "json_object" && *type != "json_schema")) bad_request("response_format", kForm);
  if (*type == "text") {
    f.refuse_unknown();
    return nullptr;
  }
  if (!r.tools.empty() || r.thinking) {
    bad_request("response_format", "\"response_format\" with tools or enable_thinking is not supported: the grammar would have to allow their syntax");
  }
  JsonValue schema = {{"type", "object"}};
  if (*type == "json_schema") {
    const JsonValue* spec = f.take("json_schema");
    if (spec == nullptr || !spec->is_object()) bad_request("response_format", kForm);
    Fields s(*spec);
    for (const char* annotation : {"name", "description", "strict"}) s.take(annotation);
    const JsonValue* given = s.take("schema");
    s.refuse_unknown();
    schema = given != nullptr ? *given : JsonValue(true);  // no schema: any JSON value
  }
  f.refuse_unknown();
  try {
    return std::make_shared<const Grammar>(json_schema_grammar(schema, "response_format"));
  } catch (const Error& e) {
    bad_request("response_format", e.what());
  }
}

}  // namespace

SamplingOptions SamplingRequest::over(SamplingOptions s) const {
  if (temperature) s.temperature = *temperature;
  if (top_p) s.top_p = *top_p;
  if (min_p) s.min_p = *min_p;
  if (repetition_penalty) s.repetition_penalty = *repetition_penalty;
  if (top_k) s.top_k = *top_k;
  if (seed) s.seed = *seed;
  try {
    s.validate();
  } catch (const Error& e) {
    bad_request("", e.what());
  }
  return s;
}

GenerationRequest parse_chat_request(std::string_view body) {
  const JsonValue json = parse_body(body);
  Fields f(json);
  GenerationRequest r;
  read_common(f, r);
  const JsonValue* messages = f.take("messages");
  if (!messages || !messages->is_array() || messages->empty()) bad_request("messages", "\"messages\" must be a non-empty array");
  try {
    r.messages = messages_from_json(*messages);
    if (const auto* v = f.take("tools")) r.tools = tools_from_json(*v);
  } catch (const Error& e) {
    bad_request("messages", e.what());
  }
  parse_call_arguments(r.messages);
  for (const Message& m : r.messages) {
    if (m.content.is_string() && !utf8::is_valid(m.content.get_ref<const std::string&>())) bad_request("messages", "a message is not valid UTF-8");
  }
  if (const auto* v = f.take("tool_choice")) {
    if (*v == "none") {
      r.tools.clear();  // nothing declared, nothing to call
    } else if (*v == "required") {
      if (r.tools.empty()) bad_request("tool_choice", "\"tool_choice\": \"required\" needs \"tools\"");
      r.tool_choice.mode = ToolChoice::Mode::kRequired;
    } else if (v->is_object() && string_or_empty(*v, "type") == "function" && v->contains("function") && (*v)["function"].is_object() &&
               (*v)["function"].contains("name") && (*v)["function"]["name"].is_string()) {
      const std::string& name = (*v)["function"]["name"].get_ref<const std::string&>();
      if (std::none_of(r.tools.begin(), r.tools.end(), [&](const Tool& t) { return t.name() == name; })) {
        bad_request("tool_choice", fmt::format("\"tool_choice\" names \"{}\", which is not among \"tools\"", name));
      }
      r.tool_choice = {.mode = ToolChoice::Mode::kFunction, .function = name};
    } else if (*v != "auto") {
      bad_request("tool_choice", "\"tool_choice\" must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
  }
  if (!r.tools.empty()) {
    try {
      ToolCallGrammar calls = tool_call_grammar(r.tools, r.tool_choice);
      r.grammar = std::make_shared<const Grammar>(std::move(calls.grammar));
      r.grammar_start = calls.start;
      r.unchecked_tools = std::move(calls.unchecked);
    } catch (const Error& e) {
      bad_request("tools", e.what());
    }
  }
  if (const auto* v = f.take("parallel_tool_calls"); v && !boolean(*v, "parallel_tool_calls")) {
    bad_request("parallel_tool_calls", "\"parallel_tool_calls\": false is not supported (a reply may hold several calls)");
  }
  if (const auto* v = f.take("chat_template_kwargs")) {
    if (!v->is_object()) bad_request("chat_template_kwargs", "\"chat_template_kwargs\" must be an object");
    Fields kwargs(*v);
    if (const auto* t = kwargs.take("enable_thinking")) r.thinking = boolean(*t, "enable_thinking");
    kwargs.refuse_unknown();
  }
  if (const auto* v = f.take("response_format")) {
    if (auto grammar = response_grammar(*v, r)) r.grammar = std::move(grammar);  // "text": the tools' grammar, if any, stays
  }
  refuse_true(f, "logprobs", "no log probabilities are returned");
  if (f.take("top_logprobs")) bad_request("top_logprobs", "\"top_logprobs\" is not supported");
  f.refuse_unknown();
  return r;
}

GenerationRequest parse_completion_request(std::string_view body) {
  const JsonValue json = parse_body(body);
  Fields f(json);
  GenerationRequest r{.chat = false};
  read_common(f, r);
  const JsonValue* prompt = f.take("prompt");
  if (!prompt || !prompt->is_string()) bad_request("prompt", "\"prompt\" must be a string");
  r.prompt = prompt->get<std::string>();
  if (!utf8::is_valid(r.prompt)) bad_request("prompt", "\"prompt\" is not valid UTF-8");
  refuse_true(f, "echo", "the reply never repeats the prompt");
  if (f.take("logprobs")) bad_request("logprobs", "\"logprobs\" is not supported");
  if (f.take("suffix")) bad_request("suffix", "\"suffix\" is not supported");
  if (const auto* v = f.take("best_of"); v && integer(*v, "best_of", 1, 1) != 1) bad_request("best_of", "\"best_of\" must be 1");
  f.refuse_unknown();
  return r;
}

TokenizeRequest parse_tokenize_request(std::string_view body) {
  const JsonValue json = parse_body(body);
  Fields f(json);
  TokenizeRequest r;
  const JsonValue* content = f.take("content");
  if (!content) bad_request("content", "\"content\" (the text to tokenize) is missing");
  r.content = string(*content, "content");
  if (!utf8::is_valid(r.content)) bad_request("content", "\"content\" is not valid UTF-8");
  if (const auto* v = f.take("add_special")) r.add_special = boolean(*v, "add_special");
  f.refuse_unknown();
  return r;
}

std::vector<int> parse_detokenize_request(std::string_view body) {
  const JsonValue json = parse_body(body);
  Fields f(json);
  const JsonValue* tokens = f.take("tokens");
  if (!tokens || !tokens->is_array()) bad_request("tokens", "\"tokens\" must be an array of token ids");
  std::vector<int> ids;
  for (const JsonValue& id : *tokens) ids.push_back(static_cast<int>(integer(id, "tokens", 0, std::numeric_limits<int>::max())));
  f.refuse_unknown();
  return ids;
}

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kToolCalls: return "tool_calls";
  }
  return "stop";
}

JsonValue Usage::json() const {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}}};
}

JsonValue tool_calls_json(const std::vector<ToolCall>& calls) {
  JsonValue out = JsonValue::array();
  for (std::size_t i = 0; i < calls.size(); ++i) {
    out.push_back({{"index", i},
                   {"id", calls[i].id},
                   {"type", "function"},
                   {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments.dump()}}}});
  }
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Every byte of the longer is read whatever matches; the lengths are compared last.
  const std::size_t n = std::max(a.size(), b.size());
  unsigned char differ = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    differ |= static_cast<unsigned char>(x ^ y);
  }
  return differ == 0 && a.size() == b.size();
}

}  // namespace gemma4::server
