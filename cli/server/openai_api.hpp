#pragma once
// The OpenAI API's side of `gemma4 serve`: request bodies read into what to generate
// (every field is understood or refused with a 400 naming it, never ignored), and the
// JSON of responses, stream chunks and errors. No HTTP and no model here: the fuzz target
// and the unit tests use it on its own.

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/chat/messages.hpp"
#include "gemma4/chat/tool_call_grammar.hpp"
#include "gemma4/grammar/grammar.hpp"
#include "gemma4/sampling/sampling_options.hpp"

namespace gemma4::server {

// An error a client gets as {"error": {"message", "type", "code", "param"}} with `status`.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string code, const std::string& message, std::string param = {})
      : std::runtime_error(message), status_(status), code_(std::move(code)), param_(std::move(param)) {}
  int status() const { return status_; }
  const std::string& code() const { return code_; }
  const std::string& param() const { return param_; }
  // The OpenAI error type of the status: invalid_request_error, authentication_error...
  std::string type() const;
  std::string json() const;

 private:
  int status_;
  std::string code_, param_;
};

// 400 invalid_request_error for `param`.
[[noreturn]] void bad_request(const std::string& param, const std::string& message);

// Sampling settings a request sets; the rest come from generation_config.json.
struct SamplingRequest {
  std::optional<float> temperature, top_p, min_p, repetition_penalty;
  std::optional<int> top_k;
  std::optional<std::uint64_t> seed;

  // `defaults` with what the request sets; a 400 naming a setting out of range.
  SamplingOptions over(SamplingOptions defaults) const;
};

// A POST /v1/chat/completions or /v1/completions body.
struct GenerationRequest {
  bool chat = true;
  std::optional<std::string> model{};
  // Chat: the messages and tools, rendered by the model's chat template.
  std::vector<Message> messages{};
  std::vector<Tool> tools{};
  bool thinking = false;                     // chat_template_kwargs.enable_thinking
  ToolChoice tool_choice{};                  // "required" or a function: the reply is calls
  // What the reply must be: response_format's JSON (grammar/json_schema.hpp), or with tools,
  // the calls they allow (chat/tool_call_grammar.hpp), waiting for <|tool_call> unless forced.
  std::shared_ptr<const Grammar> grammar{};
  ConstraintStart grammar_start = ConstraintStart::kNow;
  std::vector<std::string> unchecked_tools{};  // why some tools' arguments are checked for syntax only
  // Completion: the raw text after <bos>.
  std::string prompt{};

  bool stream = false, include_usage = false;
  std::optional<int> max_tokens{};  // unset: up to the end of the context
  SamplingRequest sampling{};
  std::vector<std::string> stop{};
};

// Parse a body; ApiError (400) for malformed JSON, a wrong type, an unknown or
// unsupported field, or a value out of range.
GenerationRequest parse_chat_request(std::string_view body);
GenerationRequest parse_completion_request(std::string_view body);

// POST /tokenize {"content": text, "add_special": bool} and POST /detokenize {"tokens": [ids]}.
struct TokenizeRequest {
  std::string content;
  bool add_special = true;
};
TokenizeRequest parse_tokenize_request(std::string_view body);
std::vector<int> parse_detokenize_request(std::string_view body);

// A body as JSON with its keys in the order written, or a 400.
JsonValue parse_body(std::string_view body);

// The finish_reason of a reply: "stop", "length" or "tool_calls".
enum class FinishReason { kStop, kLength, kToolCalls };
const char* finish_reason_name(FinishReason reason);

struct Usage {
  int prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  JsonValue json() const;
};

// The tool calls of a reply as the API writes them: ids, type, arguments as JSON text.
JsonValue tool_calls_json(const std::vector<ToolCall>& calls);

// Equal in time whatever the bytes (an API key must not leak through timing).
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace gemma4::server
