#pragma once
// Gemma 4's chat prompt, rendered natively: for every case it supports, the same text the
// official Jinja template of the given revision renders (tests/chat_template_test.cpp holds
// the parity cases, rendered with @huggingface/jinja from the published templates). The
// comments name the template construct each step mirrors.
//
//   const PromptText prompt = render_prompt(chat_template, messages, tools, {.thinking = true});
//   std::vector<int> ids = prompt.ids(tokenizer);
//
// Not rendered, with a clear error instead: media parts (text-only library), tools or tool
// turns with the first-release template (its tool format differs and was soon replaced),
// tool-call arguments given as a string with the July 2026 template (the template raises).
//
// Numbers are written as JavaScript prints them, as @huggingface/jinja does: a whole
// number given as a float (1.0) prints as 1, where Python's Jinja prints 1.0. Null
// arguments print as "null" (July 2026) or as nothing (earlier, as @huggingface/jinja).

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "gemma4/chat/chat_template.hpp"
#include "gemma4/chat/messages.hpp"
#include "gemma4/chat/prompt_text.hpp"
#include "gemma4/error.hpp"

namespace gemma4 {

struct RenderOptions {
  bool thinking = false;               // enable_thinking
  bool add_generation_prompt = true;   // add_generation_prompt
  bool preserve_thinking = false;      // preserve_thinking (July 2026): reasoning before earlier tool calls kept
};

namespace detail {

// Jinja's trim: whitespace both ends (ASCII and the Unicode spaces Python and JS agree on).
inline std::string_view trim_whitespace(std::string_view s) {
  const auto space_at = [&](std::size_t i, bool backward) -> std::size_t {  // bytes of a space ending/starting at i
    static constexpr std::string_view kSpaces[] = {"\u00a0", "\u1680", "\u2000", "\u2001", "\u2002", "\u2003", "\u2004", "\u2005", "\u2006",
                                                   "\u2007", "\u2008", "\u2009", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"};
    const char c = backward ? s[i - 1] : s[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') return 1;
    for (const std::string_view space : kSpaces) {
      if (backward ? s.substr(0, i).ends_with(space) : s.substr(i).starts_with(space)) return space.size();
    }
    return 0;
  };
  std::size_t begin = 0, end = s.size();
  while (begin < end) {
    const std::size_t n = space_at(begin, false);
    if (n == 0) break;
    begin += n;
  }
  while (end > begin) {
    const std::size_t n = space_at(end, true);
    if (n == 0) break;
    end -= n;
  }
  return s.substr(begin, end - begin);
}

// strip_thinking: every <|channel> ... <channel|> block dropped, then trimmed.
inline std::string strip_thinking(std::string_view text) {
  std::string out;
  std::size_t from = 0;
  while (true) {
    const std::size_t close = text.find(control_token::kChannelEnd, from);
    const std::string_view part = text.substr(from, close == std::string_view::npos ? std::string_view::npos : close - from);
    out += part.substr(0, part.find(control_token::kChannelStart));
    if (close == std::string_view::npos) break;
    from = close + control_token::kChannelEnd.size();
  }
  return std::string(trim_whitespace(out));
}

// A number as JavaScript's Number.prototype.toString writes it (shortest round trip).
inline std::string javascript_number(double value) {
  if (value == 0) return "0";
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  char buffer[64];
  const auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, std::abs(value), std::chars_format::scientific);
  const std::string_view sci(buffer, static_cast<std::size_t>(end - buffer));  // d[.ddd]e±xx
  const std::size_t e = sci.find('e');
  std::string digits(sci.substr(0, e));
  std::erase(digits, '.');
  const int n = std::stoi(std::string(sci.substr(e + 1))) + 1;  // the decimal point sits after n digits
  const int k = static_cast<int>(digits.size());
  std::string out = value < 0 ? "-" : "";
  if (k <= n && n <= 21) {
    out += digits + std::string(static_cast<std::size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out += digits.substr(0, static_cast<std::size_t>(n)) + "." + digits.substr(static_cast<std::size_t>(n));
  } else if (-6 < n && n <= 0) {
    out += "0." + std::string(static_cast<std::size_t>(-n), '0') + digits;
  } else {
    out += digits.substr(0, 1);
    if (k > 1) out += "." + digits.substr(1);
    out += fmt::format("e{}{}", n - 1 >= 0 ? "+" : "-", std::abs(n - 1));
  }
  return out;
}

// dictsort: keys compared case-insensitively; equal ones keep their order.
inline std::vector<const JsonValue::object_t::value_type*> sorted_items(const JsonValue& object) {
  std::vector<const JsonValue::object_t::value_type*> items;
  for (const auto& item : object.get_ref<const JsonValue::object_t&>()) items.push_back(&item);
  std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return dictsort_less(a->first, b->first); });
  return items;
}

// Jinja truthiness of a JSON value (absent counts as null).
inline bool truthy(const JsonValue* value) {
  if (value == nullptr || value->is_null()) return false;
  if (value->is_boolean()) return value->get<bool>();
  if (value->is_number()) return value->get<double>() != 0;
  if (value->is_string() || value->is_array() || value->is_object()) return !value->empty();
  return true;
}

inline const JsonValue* field(const JsonValue& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// `value['type'] | upper`; an absent type is the empty string.
inline std::string upper_type(const JsonValue& value) {
  const JsonValue* type = field(value, "type");
  std::string out = type != nullptr && type->is_string() ? type->get<std::string>() : std::string();
  for (char& c : out) c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  return out;
}

class Renderer {
 public:
  Renderer(const ChatTemplate& chat_template, RenderOptions options, PromptText& out)
      : template_(chat_template), options_(options), out_(out) {}

  bool at_least(TemplateRevision revision) const { return template_.revision >= revision; }

  void quoted(std::string_view s) {
    out_.control(control_token::kQuote);
    out_.text(s);
    out_.control(control_token::kQuote);
  }

  // format_argument(argument, escape_keys)
  void argument(const JsonValue& value, bool escape_keys) {
    if (value.is_null()) {
      if (at_least(TemplateRevision::kJuly2026)) out_.text("null");
    } else if (value.is_string()) {
      quoted(value.get_ref<const std::string&>());
    } else if (value.is_boolean()) {
      out_.text(value.get<bool>() ? "true" : "false");
    } else if (value.is_object()) {
      out_.text("{");
      bool first = true;
      for (const auto* item : sorted_items(value)) {
        if (!std::exchange(first, false)) out_.text(",");
        escape_keys ? quoted(item->first) : out_.text(item->first);
        out_.text(":");
        argument(item->second, escape_keys);
      }
      out_.text("}");
    } else if (value.is_array()) {
      out_.text("[");
      for (std::size_t i = 0; i < value.size(); ++i) {
        if (i > 0) out_.text(",");
        argument(value[i], escape_keys);
      }
      out_.text("]");
    } else if (value.is_number_float()) {
      out_.text(javascript_number(value.get<double>()));
    } else {
      out_.text(value.dump());
    }
  }

  void quoted_list(const JsonValue& list) {
    if (!list.is_array()) fail(ErrorKind::kInvalidArgument, "a tool's \"required\" must be a list of names, not {}", list.dump());
    out_.text("[");
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (i > 0) out_.text(",");
      quoted(list[i].is_string() ? list[i].get<std::string>() : list[i].dump());
    }
    out_.text("]");
  }

  // format_parameters(properties, required, filter_keys)
  void parameters(const JsonValue& properties, bool filter_keys) {
    static constexpr std::string_view kSchemaKeys[] = {"description", "type", "properties", "required", "nullable"};
    // Before the nested-schemas revision every level filtered the schema keywords.
    filter_keys = filter_keys || !at_least(TemplateRevision::kNestedSchemas);
    bool first = true;
    for (const auto* item : sorted_items(properties)) {
      const std::string& key = item->first;
      const JsonValue& value = item->second;
      if (filter_keys && std::find(std::begin(kSchemaKeys), std::end(kSchemaKeys), key) != std::end(kSchemaKeys)) continue;
      if (!std::exchange(first, false)) out_.text(",");
      out_.text(key + ":{");
      bool add_comma = false;
      const auto comma = [&] {
        if (std::exchange(add_comma, true)) out_.text(",");
      };
      if (const JsonValue* description = field(value, "description"); truthy(description)) {
        out_.text("description:");
        quoted(description->is_string() ? description->get<std::string>() : description->dump());
        add_comma = true;
      }
      const std::string type = upper_type(value);
      if (type == "STRING") {
        if (const JsonValue* values = field(value, "enum"); truthy(values)) {
          comma();
          out_.text("enum:");
          argument(*values, true);
        }
      } else if (type == "ARRAY") {
        if (const JsonValue* items = field(value, "items"); items != nullptr && items->is_object() && !items->empty()) {
          comma();
          array_items(*items);
        }
      }
      if (truthy(field(value, "nullable"))) {
        comma();
        out_.text("nullable:true");
      }
      if (type == "OBJECT") {
        const JsonValue* nested = field(value, "properties");
        comma();
        out_.text("properties:{");
        if (nested != nullptr && nested->is_object()) {
          parameters(*nested, false);
        } else {
          parameters(value, true);
        }
        out_.text("}");
        if (const JsonValue* required = field(value, "required"); truthy(required)) {
          comma();
          out_.text("required:");
          quoted_list(*required);
        }
      }
      comma();
      out_.text("type:");
      quoted(type);
      out_.text("}");
    }
  }

  // The `items:{...}` of an array parameter.
  void array_items(const JsonValue& items) {
    out_.text("items:{");
    bool first = true;
    for (const auto* item : sorted_items(items)) {
      const std::string& key = item->first;
      const JsonValue& value = item->second;
      if (value.is_null()) continue;
      if (!std::exchange(first, false)) out_.text(",");
      if (key == "properties") {
        out_.text("properties:{");
        if (value.is_object()) parameters(value, false);
        out_.text("}");
      } else if (key == "required") {
        out_.text("required:");
        quoted_list(value);
      } else if (key == "type") {
        out_.text("type:");
        if (value.is_string()) {
          argument(upper_type(items), true);
        } else {
          JsonValue upper = JsonValue::array();
          for (const JsonValue& t : value) upper.push_back(upper_type(JsonValue{{"type", t}}));
          argument(upper, true);
        }
      } else {
        out_.text(key + ":");
        argument(value, true);
      }
    }
    out_.text("}");
  }

  // format_function_declaration(tool)
  void declaration(const Tool& tool) {
    const JsonValue& function = tool.declaration.at("function");
    const JsonValue* description = field(function, "description");
    out_.text(fmt::format("declaration:{}{{description:", tool.name()));
    quoted(description != nullptr && description->is_string() ? description->get<std::string>() : std::string());
    const JsonValue* params = field(function, "parameters");
    if (truthy(params)) {
      out_.text(",parameters:{");
      if (const JsonValue* properties = field(*params, "properties"); truthy(properties)) {
        out_.text("properties:{");
        if (properties->is_object()) parameters(*properties, false);
        out_.text("},");
      }
      if (const JsonValue* required = field(*params, "required"); truthy(required)) {
        out_.text("required:");
        quoted_list(*required);
        out_.text(",");
      }
      if (truthy(field(*params, "type"))) {
        out_.text("type:");
        quoted(upper_type(*params));
        out_.text("}");
      }
    }
    if (const JsonValue* response = field(function, "response")) {
      out_.text(",response:{");
      if (const JsonValue* response_description = field(*response, "description"); truthy(response_description)) {
        out_.text("description:");
        quoted(response_description->is_string() ? response_description->get<std::string>() : response_description->dump());
        out_.text(",");
      }
      if (upper_type(*response) == "OBJECT") {
        out_.text("type:");
        quoted("OBJECT");
        out_.text("}");
      }
    }
    out_.text("}");
  }

  // format_tool_response_block(tool_name, response), for a result that is not a mapping
  // (the template's mapping form is reachable only through Gemma-native tool_responses).
  void tool_response(std::string_view name, const JsonValue& response) {
    out_.control(control_token::kToolResponseStart);
    out_.text(fmt::format("response:{}{{value:", name));
    argument(response, false);
    out_.text("}");
    out_.control(control_token::kToolResponseEnd);
  }

  void tool_call(const ToolCall& call) {
    out_.control(control_token::kToolCallStart);
    out_.text(fmt::format("call:{}{{", call.name));
    if (call.arguments.is_object()) {
      bool first = true;
      for (const auto* item : sorted_items(call.arguments)) {
        if (!std::exchange(first, false)) out_.text(",");
        out_.text(item->first + ":");
        argument(item->second, false);
      }
    } else if (call.arguments.is_string() && !at_least(TemplateRevision::kJuly2026)) {
      out_.text(call.arguments.get_ref<const std::string&>());  // written as given
    } else if (!call.arguments.is_null()) {
      fail(ErrorKind::kInvalidArgument, "tool call \"{}\": arguments must be a JSON object, not {}", call.name, call.arguments.type_name());
    }
    out_.text("}");
    out_.control(control_token::kToolCallEnd);
  }

  void open_turn(std::string_view role) {
    out_.control(control_token::kTurnStart);
    out_.text(fmt::format("{}\n", role));
  }
  void close_turn() {
    out_.control(control_token::kTurnEnd);
    out_.text("\n");
  }

  void render(std::span<const Message> messages, std::span<const Tool> tools) {
    if (!at_least(TemplateRevision::kToolTurns)) refuse_tools(messages, tools);
    out_.control(control_token::kBos);
    const bool leading_system = !messages.empty() && (messages[0].role == Role::kSystem || messages[0].role == Role::kDeveloper);
    if (options_.thinking || !tools.empty() || leading_system) {
      open_turn("system");
      if (options_.thinking) {
        out_.control(control_token::kThink);
        if (at_least(TemplateRevision::kToolTurns)) out_.text("\n");
      }
      if (leading_system) {
        out_.text(trim_whitespace(text_of(messages[0], 0)));
        messages = messages.subspan(1);
      }
      for (const Tool& tool : tools) {
        out_.control(control_token::kToolStart);
        declaration(tool);
        out_.control(control_token::kToolEnd);
      }
      close_turn();
    }
    at_least(TemplateRevision::kToolTurns) ? render_turns(messages) : render_first_release_turns(messages);
    if (!options_.add_generation_prompt) return;
    if (previous_ != Written::kToolResponse && previous_ != Written::kToolCall) {
      open_turn("model");
      if (template_.empty_thought_when_off && !options_.thinking) {
        out_.control(control_token::kChannelStart);
        out_.text("thought\n");
        out_.control(control_token::kChannelEnd);
      }
    } else if (previous_ == Written::kToolResponse && options_.thinking && at_least(TemplateRevision::kJuly2026)) {
      out_.control(control_token::kChannelStart);  // the post-tool thought cue
      out_.text("thought\n");
    }
  }

 private:
  // ns.prev_message_type, as far as the generation prompt looks at it.
  enum class Written { kNone, kToolCall, kToolResponse };

  static std::string_view text_of(const Message& message, std::size_t index) {
    if (message.content.is_null()) return {};
    if (!message.content.is_string()) fail(ErrorKind::kInvalidArgument, "message {}: content must be a string", index);
    return message.content.get_ref<const std::string&>();
  }

  void refuse_tools(std::span<const Message> messages, std::span<const Tool> tools) const {
    const bool tool_turns = std::any_of(messages.begin(), messages.end(), [](const Message& m) { return m.role == Role::kTool || !m.tool_calls.empty(); });
    if (!tools.empty() || tool_turns) {
      fail(ErrorKind::kUnsupported, "{}: the first-release chat template's tool format is not rendered; give the model a newer chat_template.jinja",
           template_.source);
    }
  }

  // The first release: every message a turn of its own, reasoning never replayed.
  void render_first_release_turns(std::span<const Message> messages) {
    for (std::size_t i = 0; i < messages.size(); ++i) {
      const Message& message = messages[i];
      const bool model = message.role == Role::kAssistant;
      open_turn(model ? "model" : role_name(message.role));
      out_.text(model ? strip_thinking(text_of(message, i)) : std::string(trim_whitespace(text_of(message, i))));
      close_turn();
      previous_ = Written::kNone;
    }
  }

  void render_turns(std::span<const Message> messages) {
    std::optional<std::size_t> last_user;
    for (std::size_t i = 0; i < messages.size(); ++i) {
      if (messages[i].role == Role::kUser) last_user = i;
    }
    std::optional<Role> previous_role;  // of the previous non-tool message
    for (std::size_t i = 0; i < messages.size(); ++i) {
      const Message& message = messages[i];
      if (message.role == Role::kTool) continue;  // written inside the model turn that called it
      previous_ = Written::kNone;
      const bool model = message.role == Role::kAssistant;
      if (!(model && previous_role == Role::kAssistant)) open_turn(model ? "model" : role_name(message.role));

      const bool calls = !message.tool_calls.empty();
      const bool after_last_user = !last_user || i > *last_user;
      const bool replay_reasoning = at_least(TemplateRevision::kJuly2026) ? after_last_user || (options_.preserve_thinking && calls)
                                                                          : after_last_user && calls;
      if (!message.reasoning.empty() && replay_reasoning) {
        out_.control(control_token::kChannelStart);
        out_.text(fmt::format("thought\n{}\n", message.reasoning));
        out_.control(control_token::kChannelEnd);
      }
      for (const ToolCall& call : message.tool_calls) tool_call(call);
      if (calls) previous_ = Written::kToolCall;

      bool responses = false;
      for (std::size_t k = i + 1; calls && k < messages.size() && messages[k].role == Role::kTool; ++k) {
        tool_response(tool_name(message, messages[k], k), messages[k].content);
        responses = true;
        previous_ = Written::kToolResponse;
      }

      const std::string content = model ? strip_thinking(text_of(message, i)) : std::string(trim_whitespace(text_of(message, i)));
      out_.text(content);
      const bool has_content = at_least(TemplateRevision::kNestedSchemas) ? !content.empty() : !text_of(message, i).empty();

      std::optional<Role> next_role;  // of the next non-tool message
      for (std::size_t j = i + 1; j < messages.size() && !next_role; ++j) {
        if (messages[j].role != Role::kTool) next_role = messages[j].role;
      }
      if (previous_ == Written::kToolCall && !responses) {
        out_.control(control_token::kToolResponseStart);  // the model's results come next
      } else if (at_least(TemplateRevision::kJuly2026)) {
        const bool continues_into_next = model && next_role == Role::kAssistant && (!calls || responses);
        if (!continues_into_next && !(responses && !has_content && !next_role)) close_turn();
      } else if (!(responses && !has_content)) {
        close_turn();
      }
      previous_role = message.role;
    }
  }

  // The tool a result belongs to: the call whose id it names, else its own name.
  std::string tool_name(const Message& caller, const Message& result, std::size_t index) const {
    if (result.content.is_array() || result.content.is_object()) {
      fail(ErrorKind::kInvalidArgument, "message {}: a tool result is text or a number (the template cannot write {}: give it as JSON text)", index,
           result.content.type_name());
    }
    std::string name = result.name.empty() ? "unknown" : result.name;
    // The template compares ids even when both are missing (None == None), so an id-less
    // result takes the last call's name.
    for (const ToolCall& call : caller.tool_calls) {
      if (call.id == result.tool_call_id) name = call.name;
    }
    return name;
  }

  const ChatTemplate& template_;
  RenderOptions options_;
  PromptText& out_;
  Written previous_ = Written::kNone;
};

}  // namespace detail

inline PromptText render_prompt(const ChatTemplate& chat_template, std::span<const Message> messages, std::span<const Tool> tools = {},
                                RenderOptions options = {}) {
  PromptText out;
  detail::Renderer(chat_template, options, out).render(messages, tools);
  return out;
}

}  // namespace gemma4
