// Constrained decoding: GBNF compiled to byte grammars, the matcher, token masks against a
// brute-force check over the whole real vocabulary, and generation that follows a grammar
// (plain and speculative).
#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gemma4/chat/tool_call_grammar.hpp"
#include "gemma4/grammar/gbnf.hpp"
#include "gemma4/grammar/grammar_constraint.hpp"
#include "gemma4/grammar/json_schema.hpp"
#include "gemma4/model/batch_generator.hpp"
#include "gemma4/model/drafter.hpp"
#include "gemma4/model/generate.hpp"
#include "gemma4/tiny.hpp"
#include "real_tokenizer.hpp"
#include "small_tokenizer.hpp"
#include "support.hpp"

using namespace gemma4;
using namespace gemma4::test;

namespace {

// Whether `text` is a whole sentence of `grammar`.
bool matches(const Grammar& grammar, std::string_view text) {
  GrammarMatcher matcher(grammar);
  GrammarState state = matcher.start();
  return matcher.advance(state, text) && state.can_end;
}

// Whether `text` can start a sentence of `grammar`.
bool is_prefix(const Grammar& grammar, std::string_view text) {
  GrammarMatcher matcher(grammar);
  GrammarState state = matcher.start();
  return matcher.advance(state, text);
}

constexpr const char* kJsonGrammar = R"(
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null")
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws     ::= | " " | "\n" [ \t]{0,20}
)";

constexpr const char* kPersonGrammar = R"(
root ::= "{\"name\": \"" name "\", \"age\": " age ", \"pets\": [" (pet (", " pet){0,2})? "]}"
name ::= [A-Z] [a-z]{1,10}
age  ::= [1-9] [0-9]?
pet  ::= "\"cat\"" | "\"dog\"" | "\"émeu\"" | "\"🐟\""
)";

}  // namespace

TEST_CASE("GBNF: literals, classes, groups and repetitions match what they say", "[grammar]") {
  const Grammar g = parse_gbnf(R"(
    # a comment
    root ::= "a" [b-d]+ ("x" | "yz")? digit{2,3} tail* "!"   # another
    digit ::= [0-9]
    tail ::= [^a-z!0-9] | "é"
  )");
  CHECK(matches(g, "ab42!"));
  CHECK(matches(g, "abcdyz123!"));
  CHECK(matches(g, "abx12AB\xC3\xA9!"));
  CHECK(matches(g, "ab12\xE2\x82\xAC!"));  // U+20AC is outside [a-z!]
  CHECK_FALSE(matches(g, "a42!"));         // [b-d]+ needs one
  CHECK_FALSE(matches(g, "ab4!"));         // two digits at least
  CHECK_FALSE(matches(g, "ab1234!"));      // three at most
  CHECK_FALSE(matches(g, "ab12q!"));
  CHECK_FALSE(matches(g, "ab42"));
  CHECK(is_prefix(g, "ab42"));
  CHECK(is_prefix(g, "ab12\xE2\x82"));     // a token may end inside a character
  CHECK_FALSE(is_prefix(g, "ab12\xE2\x28"));

  const Grammar escapes = parse_gbnf(R"(root ::= "\x41\u00e9\U0001F41F\n\t\"\\" [\]\-\^]{3})");
  CHECK(matches(escapes, "A\xC3\xA9\xF0\x9F\x90\x9F\n\t\"\\]-^"));

  const Grammar exact = parse_gbnf("root ::= \"ab\"{3} [0-9]{2,}");
  CHECK(matches(exact, "ababab12"));
  CHECK(matches(exact, "ababab12345"));
  CHECK_FALSE(matches(exact, "ababab1"));
  CHECK_FALSE(matches(exact, "abab12"));

  const Grammar empty_ok = parse_gbnf("root ::= \"x\"?");
  CHECK(matches(empty_ok, ""));
  CHECK(matches(empty_ok, "x"));

  const Grammar json = parse_gbnf(kJsonGrammar);
  CHECK(matches(json, R"({"a": [1, 2.5e3, -0.5, "x\n\u00e9"], "b": {"c": null}, "d": true})"));
  CHECK(matches(json, "{}"));
  CHECK_FALSE(matches(json, R"({"a": 01})"));
  CHECK_FALSE(matches(json, R"({"a": [1,]})"));
  CHECK_FALSE(matches(json, R"({"a" 1})"));
}

TEST_CASE("GBNF: '.' and classes cover exactly the Unicode scalar values, every encoding checked", "[grammar]") {
  const Grammar any = parse_gbnf("root ::= .");
  const Grammar range = parse_gbnf(R"(root ::= [\u00e0-\u0800\U0001F000-\U0001F0FF])");
  const Grammar negated = parse_gbnf(R"(root ::= [^\u00e0-\u0800])");
  GrammarMatcher any_m(any), range_m(range), negated_m(negated);
  const auto whole = [](GrammarMatcher& m, const std::string& text) {
    GrammarState s = m.start();
    return m.advance(s, text) && s.can_end;
  };
  for (std::uint32_t cp = 0; cp <= 0x10FFFF; cp += (cp < 0x20000 ? 1 : 97)) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    GrammarSequence bytes;
    append_utf8(cp, bytes);
    std::string text;
    for (const GrammarElement& e : bytes) text.push_back(static_cast<char>(e.lo));
    const bool in_first = cp >= 0xE0 && cp <= 0x800, in_range = in_first || (cp >= 0x1F000 && cp <= 0x1F0FF);
    INFO("U+" << std::hex << cp);
    REQUIRE(whole(any_m, text));
    REQUIRE(whole(range_m, text) == in_range);
    REQUIRE(whole(negated_m, text) == !in_first);
  }
  // Not characters: overlong forms, surrogates, above U+10FFFF, a lone continuation byte.
  for (const char* bad : {"\xC0\xAF", "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\x80", "\xFF"}) {
    INFO(fmt::format("{:02X}", fmt::join(std::string_view(bad), " ")));
    CHECK_FALSE(is_prefix(any, bad));
  }
}

TEST_CASE("GBNF: a grammar that cannot work is refused, naming the problem and where", "[grammar][errors]") {
  const auto refused = [](const std::string& text, const std::string& message) {
    INFO(text);
    CHECK_THROWS_WITH(parse_gbnf(text, "g.gbnf"), Catch::Contains(message));
  };
  refused("", "the grammar is empty");
  refused("# only a comment\n", "the grammar is empty");
  refused("start ::= \"a\"", "no rule 'root'");
  refused("root ::= a", "rule 'a' is used but never defined");
  refused("root ::= \"a\"\nroot ::= \"b\"", "g.gbnf:2:1: rule 'root' is defined twice");
  refused("root ::= root \"a\" | \"b\"", "rule 'root' is left-recursive");
  refused("root ::= x\nx ::= y? root \"a\" | \"b\"\ny ::= \"c\"", "is left-recursive");
  refused("root ::= \"a\" root", "rule 'root' can never end");
  refused("root ::= \"abc", "a string literal is never closed");
  refused("root ::= [abc", "a character class is never closed");
  refused("root ::= (\"a\" | \"b\"", "'(' is never closed");
  refused("root ::= \"a\" )", "')' without a matching '('");
  refused("root ::= \"\\q\"", "g.gbnf:1:12: unknown escape '\\q'");
  refused("root ::= \"\\x4\"", "expected 2 hexadecimal digits");
  refused("root ::= \"\\uD800\"", "U+D800 is not a Unicode scalar value");
  refused("root ::= [z-a]", "is reversed");
  refused("root ::= [^\\x00-\\U0010FFFF]", "matches nothing");
  refused("root ::= \"a\"{3,2}", "the repetition {3,2} is reversed");
  refused("root ::= \"a\"{1001}", "a repetition count above 1000");
  refused("root ::= \"x0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"{1000,1000}",
          "expands to more than 100000 elements");
  refused("root ::= \"a\" {x}", "expected a repetition count");
  refused("root ::= \"a\" @", "g.gbnf:1:14: unexpected '@'");
  refused("root = \"a\"", "expected '::=' after rule name 'root'");
  refused("root ::= \"\xC3\x28\"", "g.gbnf is not valid UTF-8: byte 10");
}

namespace {

Grammar schema(const char* text) { return json_schema_grammar(nlohmann::ordered_json::parse(text), "s.json"); }

// A tool's arguments: nested objects, an array of objects, enums, numbers and free strings.
constexpr const char* kTripSchema = R"({
  "type": "object",
  "properties": {
    "city": {"type": "string"},
    "unit": {"enum": ["celsius", "fahrenheit"]},
    "days": {"type": "integer"},
    "window": {"type": "object", "properties": {"from": {"type": "number"}, "to": {"type": "number"}}, "required": ["from"]},
    "stops": {"type": "array", "items": {"$ref": "#/$defs/stop"}, "maxItems": 2},
    "confirmed": {"type": "boolean"}
  },
  "required": ["city", "unit", "days"],
  "$defs": {"stop": {"type": "object", "properties": {"name": {"type": "string"}, "kind": {"const": "port"}}, "required": ["name", "kind"]}}
})";

}  // namespace

TEST_CASE("JSON Schema: each supported keyword allows exactly its documents", "[grammar][json-schema]") {
  const Grammar trip = schema(kTripSchema);
  CHECK(matches(trip, R"({"city": "Oslo", "unit": "celsius", "days": 3})"));
  CHECK(matches(trip, R"({"city":"Oslo","unit":"fahrenheit","days":-2,"window":{"from":1.5,"to":2e3},"stops":[{"name":"A","kind":"port"}],"confirmed":true})"));
  CHECK(matches(trip, "{\n  \"city\": \"x\",\n  \"unit\": \"celsius\",\n  \"days\": 0,\n  \"stops\": []\n}"));
  CHECK_FALSE(matches(trip, R"({"city": "Oslo", "days": 3})"));                                // a required property missing
  CHECK_FALSE(matches(trip, R"({"city": "Oslo", "unit": "kelvin", "days": 3})"));              // not in the enum
  CHECK_FALSE(matches(trip, R"({"city": "Oslo", "unit": "celsius", "days": 3.5})"));           // not an integer
  CHECK_FALSE(matches(trip, R"({"unit": "celsius", "city": "Oslo", "days": 3})"));             // the schema's order
  CHECK_FALSE(matches(trip, R"({"city": "Oslo", "unit": "celsius", "days": 3, "x": 1})"));     // no other properties
  CHECK_FALSE(matches(trip, R"({"city": "O", "unit": "celsius", "days": 3, "window": {"to": 1}})"));
  CHECK_FALSE(matches(trip, R"({"city": "O", "unit": "celsius", "days": 3, "stops": [{"name": "A", "kind": "city"}]})"));
  CHECK_FALSE(matches(trip, R"({"city":"O","unit":"celsius","days":3,"stops":[{"name":"A","kind":"port"},{"name":"B","kind":"port"},{"name":"C","kind":"port"}]})"));

  const Grammar counted = schema(R"({"type": "array", "items": {"type": ["integer", "null"]}, "minItems": 2, "maxItems": 3})");
  CHECK_FALSE(matches(counted, "[1]"));
  CHECK(matches(counted, "[1, null]"));
  CHECK(matches(counted, "[1,2,null]"));
  CHECK_FALSE(matches(counted, "[1,2,3,4]"));
  const Grammar any_of = schema(R"({"anyOf": [{"type": "string"}, {"const": {"a": [1, true]}}]})");
  CHECK(matches(any_of, R"("x")"));
  CHECK(matches(any_of, R"({"a":[1,true]})"));
  CHECK_FALSE(matches(any_of, "1"));
  const Grammar tree = schema(R"({"$ref": "#/definitions/node", "definitions": {"node": {"type": "object",
      "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/definitions/node"}}}, "required": ["v"]}}})");
  CHECK(matches(tree, R"({"v": 1, "kids": [{"v": 2}, {"v": 3, "kids": [{"v": 4, "kids": []}]}]})"));
  CHECK_FALSE(matches(tree, R"({"v": 1, "kids": [{"kids": []}]})"));
  const Grammar free = schema(R"({"title": "anything", "description": "no constraint"})");
  CHECK(matches(free, R"([{"a": null}, "b", -1.5e-3, false])"));
  const Grammar all_optional = schema(R"({"type": "object", "properties": {"a": {"type": "null"}, "b": {"type": "null"}}, "additionalProperties": false})");
  for (const char* text : {"{}", R"({"a": null})", R"({"b": null})", R"({"a": null, "b": null})"}) CHECK(matches(all_optional, text));
  CHECK_FALSE(matches(all_optional, R"({, "b": null})"));
  CHECK_FALSE(matches(all_optional, R"({"b": null, "a": null})"));
  const Grammar quoted = schema(R"({"type": "object", "properties": {"say \"hi\"\\": {"const": "é\n"}}, "required": ["say \"hi\"\\"]})");
  CHECK(matches(quoted, R"({"say \"hi\"\\": "é\n"})"));
}

TEST_CASE("JSON Schema: what is not supported is an error naming the keyword and where", "[grammar][json-schema][errors]") {
  const auto refused = [](const char* text, const std::string& message) {
    INFO(text);
    CHECK_THROWS_WITH(schema(text), Catch::Contains(message));
  };
  refused(R"({"type": "string", "pattern": "a+"})", "s.json: #: the keyword 'pattern' is not supported");
  refused(R"({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}})", "#/properties/n: the keyword 'minimum' is not supported");
  refused(R"({"oneOf": [{"type": "string"}]})", "the keyword 'oneOf' is not supported");
  refused(R"({"allOf": []})", "the keyword 'allOf' is not supported");
  refused(R"({"type": "object", "properties": {}, "additionalProperties": true})", "additionalProperties may only be false");
  refused(R"({"type": "date"})", "#/type: unknown type 'date'");
  refused(R"({"type": []})", "an empty list of types allows nothing");
  refused(R"({"enum": []})", "#/enum: must be a non-empty array");
  refused(R"({"type": "object", "properties": {"a": {}}, "required": ["b"]})", "#/required: \"b\" is not one of the properties");
  refused(R"({"$ref": "#/$defs/missing"})", "'#/$defs/missing' is not in the schema");
  refused(R"({"$ref": "https://example.com/s.json"})", "only references within the document");
  refused(R"({"type": "array", "maxItems": 5000})", "#/maxItems: must be a whole number up to 1000");
  refused(R"({"type": "array", "minItems": 3, "maxItems": 2})", "maxItems 2 is below minItems 3");
  refused(R"(false)", "the schema false allows nothing");
  refused(R"([1])", "a schema must be an object or a boolean");
  refused(R"({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}})", "can never end");
}

namespace {

// Every token's bit in the constraint's mask equals feeding its bytes to a fresh copy of
// the state, over a random walk through `grammar` of up to `steps` tokens.
// Returns how many states it checked.
int check_masks_by_brute_force(const Tokenizer& tokenizer, const TokenTrie& vocabulary, const char* text, int steps, std::uint64_t seed) {
  const Grammar grammar = parse_gbnf(text);
  GrammarConstraint constraint(parse_gbnf(text), vocabulary);
  std::mt19937_64 rng(seed);
  const int vocab = vocabulary.vocab_size();
  std::vector<float> logits(static_cast<std::size_t>(vocab));
  GrammarState scratch[2];
  // Whether the matcher takes every byte of `bytes` from `start`, without the trie or the DFA.
  const auto takes = [&](const GrammarState& start, std::string_view bytes) {
    const GrammarState* from = &start;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      if (!constraint.matcher().advance(*from, static_cast<std::uint8_t>(bytes[i]), scratch[i % 2])) return false;
      from = &scratch[i % 2];
    }
    return !bytes.empty();
  };
  int step = 0;
  for (; step < steps && constraint.can_continue(); ++step) {
    std::fill(logits.begin(), logits.end(), 0.0f);
    constraint.apply(logits, {});
    std::vector<int> allowed;
    int disagreements = 0;
    for (int id = 0; id < vocab; ++id) {
      bool expected = takes(constraint.state(), vocabulary.bytes(id));
      if (tokenizer.is_special(id)) {  // only a token the grammar names, where it names it
        const auto named = std::find(grammar.tokens.begin(), grammar.tokens.end(), tokenizer.token_text(id));
        expected = named != grammar.tokens.end() &&
                   constraint.matcher().advance(constraint.state(), kFirstTokenSymbol + static_cast<GrammarSymbol>(named - grammar.tokens.begin()), scratch[0]);
      }
      const bool masked_in = logits[static_cast<std::size_t>(id)] == 0.0f;
      if (expected != masked_in && disagreements++ < 5) FAIL_CHECK("step " << step << ": token " << id << " " << tokenizer.token_text(id) << " expected " << expected);
      if (expected) allowed.push_back(id);
    }
    REQUIRE(disagreements == 0);
    REQUIRE_FALSE(allowed.empty());
    // Single bytes half the time (most tokens are long words), so that walks get through
    // the grammar's structure and not only into its first free string.
    std::vector<int> single;
    for (const int id : allowed) {
      if (vocabulary.bytes(id).size() == 1) single.push_back(id);
    }
    const std::vector<int>& from = !single.empty() && rng() % 2 == 0 ? single : allowed;
    constraint.accept(from[std::uniform_int_distribution<std::size_t>(0, from.size() - 1)(rng)]);
  }
  return step;
}

}  // namespace

// [exhaustive]: 20 s here, too slow for the sanitizer build and qemu (the fuzz target and the
// other tests run the same code there).
TEST_CASE("token masks equal a byte-by-byte check of every token of the real Gemma vocabulary", "[grammar][tokenizer][exhaustive]") {
  const Tokenizer* tokenizer = real_tokenizer();
  if (tokenizer == nullptr) return;
  const TokenTrie vocabulary(*tokenizer);
  REQUIRE(tokenizer->bos_id());
  CHECK(vocabulary.bytes(*tokenizer->bos_id()).empty());  // control tokens never match text
  static const std::string trip = json_schema_to_gbnf(nlohmann::ordered_json::parse(kTripSchema));
  // Tool calls in Gemma 4's syntax, its control tokens played by Gemma 3's (this vocabulary's).
  static const std::string calls = [] {
    const std::vector<Tool> tools = tools_from_json(JsonValue::parse(fmt::format(
        R"([{{"type": "function", "function": {{"name": "plan_trip", "parameters": {}}}}}, {{"type": "function", "function": {{"name": "ping"}}}}])", kTripSchema)));
    std::vector<std::string> unchecked;
    std::string text = tool_call_gbnf(tools, {.mode = ToolChoice::Mode::kRequired}, unchecked);
    for (const auto& [gemma4_token, gemma3_token] : {std::pair{"<|tool_call>", "<start_of_turn>"}, {"<tool_call|>", "<end_of_turn>"}, {"<|\"|>", "<start_of_image>"}}) {
      for (std::size_t at; (at = text.find(gemma4_token)) != std::string::npos;) text.replace(at, std::string_view(gemma4_token).size(), gemma3_token);
    }
    return text;
  }();
  const auto [text, steps, seed] = GENERATE(table<const char*, int, std::uint64_t>({
      {kJsonGrammar, 30, 1},
      {kJsonGrammar, 30, 2},
      {kPersonGrammar, 30, 3},
      {trip.c_str(), 30, 4},
      {calls.c_str(), 40, 7},
      {calls.c_str(), 40, 8},
      {R"(root ::= ([a-z ]+ | "é" | "🐟" | [\u4e00-\u4e0f])+ "." )", 30, 5},
      {R"g(root ::= expr
          expr ::= term ([-+*/] term)*
          term ::= [0-9]+ | "(" expr ")")g", 30, 6},
  }));
  const int checked = check_masks_by_brute_force(*tokenizer, vocabulary, text, steps, seed);
  CHECK(checked >= 20);  // the walk got well into the grammar (252 states in all)
}

TEST_CASE("a stop token is allowed only where the grammar may end; a dead end is reported", "[grammar]") {
  const Tokenizer& tokenizer = demo_tokenizer();
  const TokenTrie vocabulary(tokenizer);
  const int stop = *tokenizer.added_token_id("<turn|>");
  GrammarConstraint constraint(parse_gbnf("root ::= \"ab\" \"c\"?"), vocabulary);
  std::vector<float> logits(static_cast<std::size_t>(vocabulary.vocab_size()), 1.0f);
  REQUIRE(constraint.apply(logits, std::vector<int>{stop}));
  CHECK(logits[static_cast<std::size_t>(stop)] == -std::numeric_limits<float>::infinity());
  for (const int id : tokenizer.encode("ab", {.add_bos = false})) constraint.accept(id);
  CHECK(constraint.can_end());
  std::fill(logits.begin(), logits.end(), 1.0f);
  REQUIRE(constraint.apply(logits, std::vector<int>{stop}));
  CHECK(logits[static_cast<std::size_t>(stop)] == 1.0f);
  CHECK_THROWS_WITH(constraint.accept(tokenizer.encode("x", {.add_bos = false}).front()), Catch::Contains("is not allowed here"));
  CHECK_THROWS_WITH(constraint.accept(vocabulary.vocab_size()), Catch::Contains("is not in the vocabulary"));
  // A model's vocabulary larger than the tokenizer's: the ids past it are forbidden; smaller: the row is what there is.
  std::vector<float> wider(static_cast<std::size_t>(vocabulary.vocab_size()) + 5, 1.0f);
  REQUIRE(constraint.apply(wider, std::vector<int>{stop}));
  CHECK(wider.back() == -std::numeric_limits<float>::infinity());
  CHECK(wider[static_cast<std::size_t>(stop)] == 1.0f);
  std::vector<float> narrower(static_cast<std::size_t>(stop) + 1, 1.0f);
  REQUIRE(constraint.apply(narrower, std::vector<int>{stop}));

  // A grammar no token of a vocabulary can continue: one without byte-fallback decoding
  // has no piece for U+10FFFF.
  nlohmann::json no_bytes = small_tokenizer_json();
  no_bytes["decoder"]["decoders"].erase(1);
  const Tokenizer small = Tokenizer::from_json_text(no_bytes.dump());
  const TokenTrie small_vocabulary(small);
  GrammarConstraint dead(parse_gbnf(R"(root ::= "a" "\U0010FFFF")"), small_vocabulary);
  std::vector<float> small_logits(static_cast<std::size_t>(small.vocab_size()), 1.0f);
  REQUIRE(dead.apply(small_logits, {}));
  dead.accept(small.encode("a", {.add_bos = false}).front());
  CHECK_FALSE(dead.apply(small_logits, {}));
}


// [slow-emulated]: 70 generations of up to 300 tokens; the grammar code has no SIMD in it.
TEST_CASE("the toy model forced through a grammar it never writes: every output is a whole sentence", "[grammar][toy][slow-emulated]") {
  const Weights<TinyE2B> weights(kToyTarget);
  const Tokenizer tokenizer = Tokenizer::from_file(kToyTarget / "tokenizer.json");
  const TokenTrie vocabulary(tokenizer);
  const auto [grammar_text, is_schema, seeds] = GENERATE(table<const char*, bool, int>({{kPersonGrammar, false, 20}, {kTripSchema, true, 50}}));
  const auto compile = [&, text = grammar_text, json = is_schema] { return json ? schema(text) : parse_gbnf(text); };  // clang 14: no bindings in lambdas
  const Grammar grammar = compile();
  GrammarConstraint constraint(compile(), vocabulary);
  const std::vector<int> prompt = tokenizer.encode("the cat sat on the mat");
  const std::vector<int> stops = {*tokenizer.added_token_id("<turn|>"), 1};
  int complete = 0;
  for (std::uint64_t seed = 1; seed <= static_cast<std::uint64_t>(seeds); ++seed) {
    Session<TinyE2B> session(weights, {.max_context = 1024});
    Generator<TinyE2B> generator(session, {.temperature = 1.0f, .top_k = 0, .seed = seed}, stops);
    generator.constrain(&constraint);
    const GenerationResult r = generator.generate(prompt, 300, [](int) { return true; });
    INFO("seed " << seed << ": " << tokenizer.decode(r.tokens));
    // A free string may run past the budget (the toy writes stories): then what it wrote
    // is the start of a sentence.
    if (r.stop != StopReason::kStopToken) {
      REQUIRE(r.stop == StopReason::kMaxTokens);
      CHECK(is_prefix(grammar, tokenizer.decode(r.tokens)));
      continue;
    }
    ++complete;
    const std::string text = tokenizer.decode(std::span(r.tokens).first(r.tokens.size() - 1));
    CHECK(matches(grammar, text));
    if (is_schema) CHECK(nlohmann::json::parse(text).at("unit").is_string());
  }
  INFO(complete << " of " << seeds << " complete");
  CHECK(complete >= seeds * 3 / 4);
}

TEST_CASE("under a grammar, speculative decoding gives plain decoding's tokens", "[grammar][toy][speculative][host-only]") {
  const Weights<TinyE2B> weights(kToyTarget);
  const Assistant<TinyE2BAssistant> assistant(kToyAssistant);
  const Tokenizer tokenizer = Tokenizer::from_file(kToyTarget / "tokenizer.json");
  const TokenTrie vocabulary(tokenizer);
  // Text the toy writes itself, so that drafts are often accepted, with a structure forced on it.
  GrammarConstraint constraint(parse_gbnf(R"(root ::= ([a-z]+ " ")+ "the " [a-z]+ "." )"), vocabulary);
  const std::vector<int> prompt = tokenizer.encode("the cat sat on the");
  const std::vector<int> stops = {*tokenizer.added_token_id("<turn|>"), 1};
  const auto sampling = GENERATE(SamplingOptions{.temperature = 0.0f}, SamplingOptions{.temperature = 0.8f, .top_k = 20, .seed = 9});
  const auto run = [&](bool speculative) {
    Session<TinyE2B> session(weights, {.max_context = 256, .prefill_chunk = 8});
    Generator<TinyE2B> generator(session, sampling, stops);
    generator.constrain(&constraint);
    if (!speculative) return generator.generate(prompt, 60, [](int) { return true; });
    Drafter<TinyE2BAssistant> drafter(assistant, session, {.max_drafts = 4});
    return generator.generate(prompt, 60, drafter, [](int) { return true; });
  };
  const GenerationResult plain = run(false), drafted = run(true);
  INFO(tokenizer.decode(plain.tokens));
  CHECK(drafted.tokens == plain.tokens);
  CHECK(drafted.stop == plain.stop);
  CHECK(drafted.stats.drafted > 0);
}

TEST_CASE("in a batch, each sequence follows its own grammar and gets the tokens it gets alone", "[grammar][toy][batch][host-only]") {
  const Weights<TinyE2B> weights(kToyTarget);
  const Tokenizer tokenizer = Tokenizer::from_file(kToyTarget / "tokenizer.json");
  const TokenTrie vocabulary(tokenizer);
  const std::vector<int> stops = {*tokenizer.added_token_id("<turn|>"), 1};
  const std::vector<int> prompt = tokenizer.encode("the cat sat on the mat");
  struct Request {
    const char* grammar;  // null: free text
    bool is_schema;
    SamplingOptions sampling;
  };
  const std::vector<Request> requests = {{kPersonGrammar, false, {.temperature = 1.0f, .top_k = 0, .seed = 3}},
                                         {nullptr, false, {.temperature = 0.0f}},
                                         {kTripSchema, true, {.temperature = 0.9f, .seed = 4}}};
  std::vector<std::unique_ptr<GrammarConstraint>> constraints;
  for (const Request& r : requests) {
    constraints.push_back(r.grammar == nullptr ? nullptr
                                               : std::make_unique<GrammarConstraint>(r.is_schema ? schema(r.grammar) : parse_gbnf(r.grammar), vocabulary));
  }
  const auto alone = [&](std::size_t i) {
    Session<TinyE2B> session(weights, {.max_context = 512});
    Generator<TinyE2B> generator(session, requests[i].sampling, stops);
    generator.constrain(constraints[i].get());
    return generator.generate(prompt, 300, [](int) { return true; });
  };
  Batch<TinyE2B> batch(weights, {.max_rows = 3});
  BatchGenerator<TinyE2B> generator(batch);
  std::vector<Session<TinyE2B>> sessions;
  sessions.reserve(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    sessions.emplace_back(weights, SessionOptions{.max_context = 512});
    REQUIRE(generator.join(sessions[i], prompt, requests[i].sampling, stops, 300, [](int, int) { return true; }, constraints[i].get()) ==
            static_cast<int>(i));
  }
  while (generator.step([](int, int) { return true; }) > 0) {
  }
  for (std::size_t i = 0; i < requests.size(); ++i) {
    INFO("sequence " << i);
    const GenerationResult batched = generator.result(static_cast<int>(i));
    const GenerationResult expected = alone(i);
    CHECK(batched.tokens == expected.tokens);
    CHECK(batched.stop == expected.stop);
    if (requests[i].grammar != nullptr) CHECK(batched.stop == StopReason::kStopToken);
  }
}
