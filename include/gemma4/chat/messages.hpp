#pragma once
// A chat as data, in the OpenAI-style message format that Gemma 4's chat template takes:
// messages with a role (system/developer/user/assistant/tool), text content, the model's
// reasoning, its tool calls; and tools declared as {"type":"function","function":{name,
// description, parameters (JSON schema)}}. Values are nlohmann::ordered_json so that keys
// keep their order, as Python dicts do: the template sorts keys case-insensitively and a
// tie keeps the given order.
//
// messages_from_json / tools_from_json read the wire format with an error naming the
// message and field at fault. Text only: image, audio and video parts are refused.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "gemma4/base/json.hpp"
#include "gemma4/error.hpp"

namespace gemma4 {

enum class Role { kSystem, kDeveloper, kUser, kAssistant, kTool };

// The name the template compares and writes ("assistant" is written as "model").
inline std::string_view role_name(Role role) {
  switch (role) {
    case Role::kSystem: return "system";
    case Role::kDeveloper: return "developer";
    case Role::kUser: return "user";
    case Role::kAssistant: return "assistant";
    case Role::kTool: return "tool";
  }
  return "?";
}

struct ToolCall {
  std::string id{};        // optional; a tool message names the call it answers by it
  std::string name{};
  JsonValue arguments = JsonValue::object();  // an object; null renders as no arguments

  // The argument called `key`; an Error naming the call and the arguments it has if
  // there is none (JsonValue::at would throw nlohmann's exception instead).
  const JsonValue& argument(std::string_view key) const {
    std::vector<std::string_view> keys;
    if (arguments.is_object()) {
      if (const auto it = arguments.find(key); it != arguments.end()) return *it;
      for (const auto& item : arguments.items()) keys.push_back(item.key());
    }
    fail(ErrorKind::kInvalidArgument, "tool call {} ({}): no argument \"{}\"; it has: {}", id, name, key,
         keys.empty() ? std::string("none") : fmt::format("{}", fmt::join(keys, ", ")));
  }
};

struct Message {
  Role role = Role::kUser;
  // Text; a tool message's result may also be a number or boolean. Null: no content.
  JsonValue content = nullptr;
  std::string reasoning{};           // the model's thought channel (reasoning_content)
  std::vector<ToolCall> tool_calls{};  // assistant messages
  std::string tool_call_id{};        // tool messages: the call answered
  std::string name{};                // tool messages: the tool, when there is no id
};

// A declared tool: the OpenAI form, {"type": "function", "function": {"name": ...,
// "description": ..., "parameters": ...}}; another shape is an Error naming `where`.
struct Tool {
  Tool(JsonValue json, std::string_view where = "tool") : declaration(std::move(json)) {  // implicit: {json} reads as a tool
    const bool wrapped = declaration.is_object() && declaration.contains("function") && declaration["function"].is_object();
    if (!wrapped || !declaration["function"].contains("name") || !declaration["function"]["name"].is_string()) {
      fail(ErrorKind::kInvalidArgument, "{}: {{\"type\": \"function\", \"function\": {{\"name\": ..., \"description\": ..., \"parameters\": ...}}}} expected", where);
    }
    const JsonValue& function = declaration["function"];
    if (function.contains("parameters") && !function["parameters"].is_object()) {
      fail(ErrorKind::kInvalidArgument, "{}: \"parameters\" must be a JSON schema object", where);
    }
  }
  // nlohmann::json has sorted the parameters' keys already: the prompt would list them
  // out of the order written. Parse into JsonValue instead.
  Tool(const nlohmann::json&, std::string_view = {}) = delete;

  JsonValue declaration;
  std::string_view name() const { return declaration["function"]["name"].get_ref<const std::string&>(); }
};

namespace detail {

inline Role role_from_name(std::string_view name, std::size_t index) {
  for (const Role role : {Role::kSystem, Role::kDeveloper, Role::kUser, Role::kAssistant, Role::kTool}) {
    if (role_name(role) == name) return role;
  }
  if (name == "model") return Role::kAssistant;
  fail(ErrorKind::kInvalidArgument, "message {}: unknown role \"{}\" (system, developer, user, assistant or tool)", index, name);
}

inline std::string optional_string(const JsonValue& object, const char* key, std::string_view where) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return {};
  if (!it->is_string()) fail(ErrorKind::kInvalidArgument, "{}: \"{}\" must be a string", where, key);
  return it->get<std::string>();
}

// Content parts: text parts are taken as one string only when that is all there is,
// since the template trims each part on its own; media parts are refused.
inline JsonValue content_from_json(const JsonValue& content, Role role, std::string_view where) {
  if (content.is_null() || content.is_string()) return content;
  if (content.is_array()) {
    for (const JsonValue& part : content) {
      const std::string type = part.is_object() ? optional_string(part, "type", where) : std::string();
      if (type == "image" || type == "image_url" || type == "audio" || type == "input_audio" || type == "video") {
        fail(ErrorKind::kUnsupported, "{}: a {} part: this library runs the text model only", where, type);
      }
    }
    fail(ErrorKind::kUnsupported, "{}: content parts are not supported; give the content as one string", where);
  }
  if (role == Role::kTool && !content.is_object()) return content;
  fail(ErrorKind::kInvalidArgument, "{}: content must be a string{}", where,
       role == Role::kTool ? " or a number (the template cannot write an object: give it as JSON text)" : "");
}

inline ToolCall tool_call_from_json(const JsonValue& call, std::string_view where) {
  if (!call.is_object() || !call.contains("function") || !call["function"].is_object()) {
    fail(ErrorKind::kInvalidArgument, "{}: a tool call is {{\"function\": {{\"name\": ..., \"arguments\": {{...}}}}}}", where);
  }
  const JsonValue& function = call["function"];
  ToolCall out{.id = optional_string(call, "id", where), .name = optional_string(function, "name", where)};
  if (out.name.empty()) fail(ErrorKind::kInvalidArgument, "{}: a tool call without a function name", where);
  if (const auto it = function.find("arguments"); it != function.end()) out.arguments = *it;
  return out;
}

}  // namespace detail

// nlohmann::json holds an object's keys sorted, not in the order written, and prompts
// render them in that order (a tool's parameters, a call's arguments): these take
// gemma4::JsonValue (nlohmann::ordered_json), and nlohmann::json does not compile.
std::vector<Message> messages_from_json(const nlohmann::json&) = delete;
std::vector<Tool> tools_from_json(const nlohmann::json&) = delete;

inline std::vector<Message> messages_from_json(const JsonValue& json) {
  if (!json.is_array()) fail(ErrorKind::kInvalidArgument, "messages: a JSON array of messages expected");
  std::vector<Message> messages;
  for (std::size_t i = 0; i < json.size(); ++i) {
    const JsonValue& m = json[i];
    const std::string where = fmt::format("message {}", i);
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) fail(ErrorKind::kInvalidArgument, "{}: an object with a \"role\" expected", where);
    if (m.contains("tool_responses")) {
      fail(ErrorKind::kUnsupported, "{}: \"tool_responses\" on an assistant message; give each result as a role \"tool\" message", where);
    }
    Message message{.role = detail::role_from_name(m["role"].get<std::string>(), i)};
    if (const auto it = m.find("content"); it != m.end()) message.content = detail::content_from_json(*it, message.role, where);
    message.reasoning = detail::optional_string(m, "reasoning_content", where);
    if (message.reasoning.empty()) message.reasoning = detail::optional_string(m, "reasoning", where);
    if (const auto it = m.find("tool_calls"); it != m.end() && !it->is_null()) {
      if (!it->is_array()) fail(ErrorKind::kInvalidArgument, "{}: \"tool_calls\" must be an array", where);
      for (const JsonValue& call : *it) message.tool_calls.push_back(detail::tool_call_from_json(call, where));
    }
    message.tool_call_id = detail::optional_string(m, "tool_call_id", where);
    message.name = detail::optional_string(m, "name", where);
    messages.push_back(std::move(message));
  }
  return messages;
}

inline std::vector<Tool> tools_from_json(const JsonValue& json) {
  if (!json.is_array()) fail(ErrorKind::kInvalidArgument, "tools: a JSON array of tools expected");
  std::vector<Tool> tools;
  for (std::size_t i = 0; i < json.size(); ++i) tools.emplace_back(json[i], fmt::format("tool {}", i));
  return tools;
}

}  // namespace gemma4
