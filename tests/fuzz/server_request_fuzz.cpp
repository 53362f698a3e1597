// libFuzzer target: any request body through gemma4 serve's parsers (chat, completion,
// tokenize, detokenize) and an accepted chat request on through the prompt renderer and
// the sampling settings: a request or an ApiError (a 400 for the client), never a crash,
// a hang or another exception, which the server would answer with a 500.

#include <cstdint>
#include <string_view>

#include "gemma4/chat/prompt_renderer.hpp"
#include "openai_api.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace gemma4::server;
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  try {
    const GenerationRequest request = parse_chat_request(body);
    (void)request.sampling.over({});
    try {
      (void)gemma4::render_prompt({}, request.messages, request.tools, {.thinking = request.thinking}).str();
    } catch (const gemma4::Error&) {  // the server answers 400 for what the template refuses
    }
  } catch (const ApiError&) {
  }
  try {
    (void)parse_completion_request(body);
  } catch (const ApiError&) {
  }
  try {
    (void)parse_tokenize_request(body);
  } catch (const ApiError&) {
  }
  try {
    (void)parse_detokenize_request(body);
  } catch (const ApiError&) {
  }
  return 0;
}
