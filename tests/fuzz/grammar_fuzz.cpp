// libFuzzer target for grammars: any byte string as GBNF text (grammar/gbnf.hpp), or, when
// it starts with '{', as a JSON Schema (grammar/json_schema.hpp; compiled to JSON and to
// Gemma's argument syntax), or with '[', as the tools whose calls are constrained
// (chat/tool_call_grammar.hpp), compiles or raises gemma4::Error; a grammar that compiles
// is matched against the input itself and drives a constraint over a small vocabulary for
// a few tokens, each one allowed by the mask and accepted. Never a crash, a hang, or an
// unbounded allocation.

#include <cstdint>
#include <limits>
#include <string_view>
#include <vector>

#include "../small_tokenizer.hpp"
#include "gemma4/chat/tool_call_grammar.hpp"
#include "gemma4/grammar/gbnf.hpp"
#include "gemma4/grammar/grammar_constraint.hpp"
#include "gemma4/grammar/json_schema.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace gemma4;
  static const Tokenizer tokenizer = Tokenizer::from_json_text(test::small_tokenizer_json().dump());
  static const TokenTrie vocabulary(tokenizer);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    Grammar grammar;
    if (text.starts_with('{') || text.starts_with('[')) {
      const auto json = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (json.is_discarded()) return 0;
      if (text.starts_with('[')) {
        const Grammar calls = tool_call_grammar(tools_from_json(json), {.mode = ToolChoice::Mode::kRequired}).grammar;
        GrammarMatcher matcher(calls);
        GrammarState state = matcher.start();
        (void)matcher.advance(state, text);
        return 0;  // the small vocabulary has no tool-call tokens for a constraint
      }
      (void)parse_gbnf(json_schema_to_gbnf(json, "schema", {.syntax = JsonSchemaOptions::Syntax::kGemmaArguments, .ignore_narrowing = true}));
      grammar = json_schema_grammar(json);
    } else {
      grammar = parse_gbnf(text);
    }
    {
      GrammarMatcher matcher(grammar);
      GrammarState state = matcher.start();
      (void)matcher.advance(state, text);
    }
    GrammarConstraint constraint(std::move(grammar), vocabulary);
    std::vector<float> logits(static_cast<std::size_t>(vocabulary.vocab_size()));
    for (int step = 0; step < 8 && constraint.can_continue(); ++step) {
      std::fill(logits.begin(), logits.end(), 0.0f);
      if (!constraint.apply(logits, {})) break;
      std::size_t pick = static_cast<std::size_t>(step) * 7919 % logits.size();
      while (logits[pick] == -std::numeric_limits<float>::infinity()) pick = (pick + 1) % logits.size();
      if (!constraint.allows(static_cast<int>(pick))) __builtin_trap();  // the mask and allows() disagree
      constraint.accept(static_cast<int>(pick));
    }
  } catch (const Error&) {
  }
  return 0;
}
