// libFuzzer target: any model output through the tool-call parser, fed in pieces of a
// size the first byte picks, and any JSON as chat messages (or {"messages", "tools"})
// through the prompt renderer: calls, malformed calls or gemma4::Error, never a crash,
// a hang or a call whose arguments cannot be written back.

#include <cstdint>
#include <string_view>

#include "gemma4/chat/prompt_renderer.hpp"
#include "gemma4/chat/tool_call_parser.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  gemma4::ToolCallParser parser;
  const std::size_t step = size > 0 ? data[0] % 16 + 1 : 1;
  for (std::size_t at = 0; at < size; at += step) parser.push(text.substr(at, step));
  parser.finish();
  for (const gemma4::ToolCall& call : parser.calls()) {
    const std::vector<gemma4::Message> messages = {{.role = gemma4::Role::kAssistant, .tool_calls = {call}}};
    (void)gemma4::render_prompt({}, messages).str();
  }

  const auto json = gemma4::JsonValue::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return 0;
  try {
    const bool whole = json.is_object();
    const std::vector<gemma4::Message> messages = gemma4::messages_from_json(whole ? json.value("messages", gemma4::JsonValue()) : json);
    const std::vector<gemma4::Tool> tools = whole && json.contains("tools") ? gemma4::tools_from_json(json["tools"]) : std::vector<gemma4::Tool>{};
    for (const bool thinking : {false, true}) (void)gemma4::render_prompt({}, messages, tools, {.thinking = thinking}).str();
  } catch (const gemma4::Error&) {
  }
  return 0;
}
