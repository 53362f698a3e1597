#pragma once
// Tool calls valid by construction: the grammar of the calls the declared tools allow,
//
//   <|tool_call>call:NAME{ARGUMENTS}<tool_call|>
//
// with NAME one of the functions and ARGUMENTS what its `parameters` schema allows, in
// Gemma 4's argument syntax (grammar/json_schema.hpp, JsonSchemaOptions::Syntax::kGemmaArguments),
// so that every call parses with chat/tool_call_parser.hpp.
//
//   gemma4::ToolCallGrammar calls = gemma4::tool_call_grammar(tools);           // ToolChoice{}: the model decides
//   gemma4::GrammarConstraint constraint(std::move(calls.grammar), vocabulary, calls.start);
//
// With the model deciding (ToolChoice::kAuto) the text is free until it writes
// <|tool_call>; then the call follows the grammar to its <tool_call|>, and the text is free
// again. A forced choice (kRequired, kFunction) constrains from the first token: one call or
// more, then the reply may only end.
//
// Parameter schemas are written for the model to read: keywords that only narrow a value
// (minimum, pattern, format, ...) are left unchecked, and a function whose schema uses a
// keyword the compiler does not know gets arguments checked for syntax only, listed in
// ToolCallGrammar::unchecked rather than refused (a client's tools keep working).

#include <algorithm>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "gemma4/chat/messages.hpp"
#include "gemma4/chat/prompt_text.hpp"
#include "gemma4/chat/tool_call_parser.hpp"
#include "gemma4/error.hpp"
#include "gemma4/grammar/gbnf.hpp"
#include "gemma4/grammar/grammar_constraint.hpp"
#include "gemma4/grammar/json_schema.hpp"

namespace gemma4 {

struct ToolChoice {
  enum class Mode : std::uint8_t {
    kAuto,      // the model calls a tool or not
    kRequired,  // the reply is calls, to any of the tools
    kFunction,  // the reply is calls to `function`
  };
  Mode mode = Mode::kAuto;
  std::string function{};  // kFunction: the tool to call
};

struct ToolCallGrammar {
  Grammar grammar;
  ConstraintStart start = ConstraintStart::kOnTrigger;  // what GrammarConstraint needs for the choice
  std::vector<std::string> unchecked;                   // why a function's arguments are checked for syntax only
};

// The GBNF of the calls `tools` allow under `choice`; `unchecked` collects the functions
// whose schemas could not be compiled. Errors for no tools, a choice naming no declared
// function, and a function name the call syntax cannot carry.
inline std::string tool_call_gbnf(std::span<const Tool> tools, const ToolChoice& choice, std::vector<std::string>& unchecked) {
  if (tools.empty()) fail(ErrorKind::kInvalidArgument, "tool calls: no tools declared");
  constexpr JsonSchemaOptions kArguments{.syntax = JsonSchemaOptions::Syntax::kGemmaArguments, .ignore_narrowing = true};
  std::string names, rules;
  for (std::size_t i = 0; i < tools.size(); ++i) {
    const std::string_view name = tools[i].name();
    if (choice.mode == ToolChoice::Mode::kFunction && name != choice.function) continue;
    const bool writable = !name.empty() && std::all_of(name.begin(), name.end(), is_tool_name_char);  // what the parser reads as a name
    if (!writable) fail(ErrorKind::kInvalidArgument, "tool \"{}\": a call can only name a function of letters, digits, '_', '-' and '.'", name);
    const std::string arguments = fmt::format("tool{}-arguments", i);
    const JsonValue& function = tools[i].declaration.at("function");
    const auto parameters = function.find("parameters");
    std::string compiled;
    if (parameters == function.end()) {
      compiled = arguments + " ::= \"{\" \"}\"\n";
    } else {
      try {
        compiled = json_schema_rules(*parameters, arguments, fmt::format("tool \"{}\" parameters", name), kArguments);
        // On its own first, so that what it cannot compile (an enum value that is not UTF-8) is this tool's alone.
        (void)parse_gbnf(fmt::format("root ::= {}\n{}{}", arguments, compiled, json_schema_basics(kArguments.syntax)), "tool parameters");
      } catch (const Error& e) {
        unchecked.push_back(fmt::format("{} (its arguments are checked for syntax only)", e.what()));
        compiled = arguments + " ::= gemma-object\n";
      }
    }
    rules += compiled;
    names += fmt::format("{}\"{}\" {}", names.empty() ? "" : " | ", name, arguments);
  }
  if (names.empty()) fail(ErrorKind::kInvalidArgument, "tool calls: \"{}\" is not one of the declared tools", choice.function);
  const bool forced = choice.mode != ToolChoice::Mode::kAuto;
  return fmt::format("root ::= {}\ncall ::= {} \"call:\" ({}) {}\n{}{}", forced ? "call+" : "call", control_token::kToolCallStart, names,
                     control_token::kToolCallEnd, rules, json_schema_basics(JsonSchemaOptions::Syntax::kGemmaArguments));
}

inline ToolCallGrammar tool_call_grammar(std::span<const Tool> tools, const ToolChoice& choice = {}) {
  ToolCallGrammar out{};
  out.grammar = parse_gbnf(tool_call_gbnf(tools, choice, out.unchecked), "tool calls");
  out.start = choice.mode == ToolChoice::Mode::kAuto ? ConstraintStart::kOnTrigger : ConstraintStart::kNow;
  return out;
}

}  // namespace gemma4
