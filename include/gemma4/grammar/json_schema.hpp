#pragma once
// JSON Schema to a grammar: the JSON documents a schema allows, as GBNF (grammar/gbnf.hpp).
//
//   gemma4::Grammar g = gemma4::json_schema_grammar(nlohmann::ordered_json::parse(text), "schema.json");
//
// Supported: `type` (object, array, string, number, integer, boolean, null, or a list of
// them), `properties` with `required` (properties come in the schema's order, optional ones
// may be left out; no others), `enum`, `const`, `items`, `minItems`, `maxItems` (at most
// 1000), `anyOf`, `$ref` to `#/$defs/NAME` or `#/definitions/NAME` (recursion allowed), and
// OpenAPI's `nullable` (Gemma's chat template writes it), which allows null too.
// Annotations (`title`, `description`, `default`, `examples`, `$schema`, `$id`, `$comment`)
// are ignored; `additionalProperties` may only be false, what the grammar does anyway. Any
// other keyword is an error naming it and where it is: a schema is never silently widened.
// Whitespace between tokens is at most one space or a newline and 20 indents, so that a
// model cannot spend its budget on blanks; integers have at most 16 digits and exponents
// 2, so that every number a reader parses is a finite double.
//
// The same schemas compile to Gemma 4's tool-call argument syntax (JsonSchemaOptions::
// Syntax::kGemmaArguments, what chat/tool_call_parser.hpp reads and the chat template
// writes): strings between <|"|> tokens (any text that does not spell <|"|>), bare keys,
// no blanks, properties and object keys in the template's order (dictsort). A tool's
// declaration is written for the model to read, not for a validator: with
// `ignore_narrowing`, keywords that only narrow a value (minimum, pattern, format,
// minLength, ...) are left unchecked instead of refused.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "gemma4/base/json.hpp"
#include "gemma4/error.hpp"
#include "gemma4/grammar/gbnf.hpp"

namespace gemma4 {

struct JsonSchemaOptions {
  enum class Syntax : std::uint8_t {
    kJson,            // JSON text
    kGemmaArguments,  // Gemma 4's tool-call argument syntax
  };
  Syntax syntax = Syntax::kJson;
  bool ignore_narrowing = false;  // leave minimum, pattern, format, ... unchecked instead of refusing them
};

namespace detail {

class JsonSchemaCompiler {
 public:
  JsonSchemaCompiler(const nlohmann::ordered_json& schema, std::string_view source, JsonSchemaOptions options)
      : root_schema_(schema), source_(source), options_(options), gemma_(options.syntax == JsonSchemaOptions::Syntax::kGemmaArguments),
        prefix_(gemma_ ? "gemma-" : "json-") {}

  // The GBNF rules of the values `schema` allows, the top one named `name` and the others
  // after it; the basic rules (basics()) they use are left out.
  std::string rules(std::string_view name) {
    rule_prefix_ = fmt::format("{}-", name);
    const std::string top = rule_for(root_schema_, "#");
    std::string out = fmt::format("{} ::= {}\n", name, top);
    for (const auto& [rule, body] : rules_) out += rule + " ::= " + body + "\n";
    return out;
  }

  static std::string_view basics(JsonSchemaOptions::Syntax syntax) { return syntax == JsonSchemaOptions::Syntax::kJson ? kJsonBasics : kGemmaBasics; }

 private:
  static constexpr const char* kJsonBasics = R"(ws ::= | " " | "\n" [ \t]{0,20}
json-string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\""
json-integer ::= "-"? ("0" | [1-9] [0-9]{0,15})
json-number ::= json-integer ("." [0-9]+)? ([eE] [-+]? [0-9]{1,2})?
json-boolean ::= "true" | "false"
json-null ::= "null"
json-value ::= json-object | json-array | json-string | json-number | json-boolean | json-null
json-object ::= "{" ws ( json-string ws ":" ws json-value ( ws "," ws json-string ws ":" ws json-value )* )? ws "}"
json-array ::= "[" ws ( json-value ( ws "," ws json-value )* )? ws "]"
)";
  // gemma-text: any text without <|"|> spelled in it (which the parser would take for the
  // closing quote), one rule per prefix of "<|\"|>" matched so far.
  static constexpr const char* kGemmaBasics = R"g(ws ::= ""
gemma-string ::= <|"|> gemma-text <|"|>
gemma-text ::= "" | [^<] gemma-text | "<" gemma-text-1
gemma-text-1 ::= "" | [^<|] gemma-text | "<" gemma-text-1 | "|" gemma-text-2
gemma-text-2 ::= "" | [^<"] gemma-text | "<" gemma-text-1 | "\"" gemma-text-3
gemma-text-3 ::= "" | [^<|] gemma-text | "<" gemma-text-1 | "|" gemma-text-4
gemma-text-4 ::= "" | [^<>] gemma-text | "<" gemma-text-1
gemma-integer ::= "-"? ("0" | [1-9] [0-9]{0,15})
gemma-number ::= gemma-integer ("." [0-9]+)? ([eE] [-+]? [0-9]{1,2})?
gemma-boolean ::= "true" | "false"
gemma-null ::= "null"
gemma-value ::= gemma-object | gemma-array | gemma-string | gemma-number | gemma-boolean | gemma-null
gemma-key ::= [^:,{}[\]<]+
gemma-object ::= "{" ( gemma-key ":" gemma-value ( "," gemma-key ":" gemma-value )* )? "}"
gemma-array ::= "[" ( gemma-value ( "," gemma-value )* )? "]"
)g";
  // Keywords that only narrow a value of a type the grammar already bounds.
  static constexpr std::string_view kNarrowing[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
                                                    "maxLength", "pattern", "format", "uniqueItems", "minProperties", "maxProperties"};
  static constexpr int kMaxItems = 1000;

  [[noreturn]] void error(std::string_view where, std::string_view what) const { fail(ErrorKind::kInvalidArgument, "{}: {}: {}", source_, where, what); }

  // A GBNF literal of `text`.
  static std::string literal(std::string_view text) {
    std::string out = "\"";
    for (const char c : text) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        out += fmt::format("\\x{:02X}", static_cast<unsigned>(c));
      } else {
        out += c;
      }
    }
    return out + "\"";
  }

  // GBNF matching `value` written in the target syntax.
  std::string value_literal(const nlohmann::ordered_json& value) const {
    if (!gemma_) return literal(value.dump());
    if (value.is_string()) return "<|\"|> " + literal(value.get<std::string>()) + " <|\"|>";
    if (value.is_array()) {
      std::string out = "\"[\"";
      for (std::size_t i = 0; i < value.size(); ++i) out += (i ? " \",\" " : " ") + value_literal(value[i]);
      return out + " \"]\"";
    }
    if (value.is_object()) {
      std::string out = "\"{\"";
      bool first = true;
      for (const std::string& key : gemma_order(value)) {
        out += (std::exchange(first, false) ? " " : " \",\" ") + key_literal(key) + " " + value_literal(value[key]);
      }
      return out + " \"}\"";
    }
    return literal(value.dump());
  }

  static std::vector<std::string> keys_of(const nlohmann::ordered_json& object) {
    std::vector<std::string> keys;
    for (const auto& [key, value] : object.items()) keys.push_back(key);
    return keys;
  }

  // An object's keys in the order the chat template writes them (dictsort).
  static std::vector<std::string> gemma_order(const nlohmann::ordered_json& object) {
    std::vector<std::string> keys = keys_of(object);
    std::stable_sort(keys.begin(), keys.end(), dictsort_less);
    return keys;
  }

  // GBNF matching a key and its ':' (with the blanks around it).
  std::string key_literal(const std::string& key) const {
    if (!gemma_) return literal(nlohmann::ordered_json(key).dump()) + " ws \":\" ws";
    const bool bare = !key.empty() && key.find_first_of(":,{}[]<") == std::string::npos;  // what the parser reads as a bare key
    return (bare ? literal(key) : "<|\"|> " + literal(key) + " <|\"|>") + " \":\"";
  }

  std::string add_rule(std::string body) {
    std::string name = fmt::format("{}{}", rule_prefix_, rules_.size());
    rules_.emplace_back(name, std::move(body));
    return name;
  }

  // A rule name (or a basic's) matching what `schema` at `where` allows.
  std::string rule_for(const nlohmann::ordered_json& schema, const std::string& where) {
    if (schema.is_boolean()) {
      if (schema.get<bool>()) return prefix_ + "value";
      error(where, "the schema false allows nothing");
    }
    if (!schema.is_object()) error(where, "a schema must be an object or a boolean");
    for (const auto& [key, value] : schema.items()) {
      static const std::vector<std::string_view> kKnown = {"type", "properties", "required", "enum", "const", "items", "minItems", "maxItems",
                                                           "anyOf", "$ref", "$defs", "definitions", "title", "description", "default",
                                                           "examples", "$schema", "$id", "$comment", "additionalProperties", "nullable"};
      const bool ignored = options_.ignore_narrowing && std::find(std::begin(kNarrowing), std::end(kNarrowing), key) != std::end(kNarrowing);
      if (!ignored && std::find(kKnown.begin(), kKnown.end(), key) == kKnown.end()) error(where, fmt::format("the keyword '{}' is not supported", key));
      if (key == "additionalProperties" && value != false && !options_.ignore_narrowing) {
        error(where, "additionalProperties may only be false (no other properties are generated)");
      }
      if (key == "nullable" && !value.is_boolean()) error(where + "/nullable", "must be true or false");
    }
    if (schema.value("nullable", false)) {
      nlohmann::ordered_json not_null = schema;
      not_null.erase("nullable");
      return add_rule(rule_for(not_null, where) + " | " + prefix_ + "null");
    }
    if (schema.contains("$ref")) return ref(schema["$ref"], where);
    if (schema.contains("const")) return add_rule(value_literal(schema["const"]));
    if (schema.contains("enum")) {
      const auto& values = schema["enum"];
      if (!values.is_array() || values.empty()) error(where + "/enum", "must be a non-empty array");
      std::string body;
      for (const auto& v : values) body += (body.empty() ? "" : " | ") + value_literal(v);
      return add_rule(body);
    }
    if (schema.contains("anyOf")) {
      const auto& options = schema["anyOf"];
      if (!options.is_array() || options.empty()) error(where + "/anyOf", "must be a non-empty array");
      std::string body;
      for (std::size_t i = 0; i < options.size(); ++i) body += (i ? " | " : "") + rule_for(options[i], fmt::format("{}/anyOf/{}", where, i));
      return add_rule(body);
    }
    if (!schema.contains("type")) {
      if (schema.contains("properties")) return object(schema, where);
      if (schema.contains("items")) return array(schema, where);
      return prefix_ + "value";
    }
    const auto& type = schema["type"];
    if (type.is_array()) {
      if (type.empty()) error(where + "/type", "an empty list of types allows nothing");
      std::string body;
      for (const auto& t : type) body += (body.empty() ? "" : " | ") + for_type(t, schema, where);
      return add_rule(body);
    }
    return for_type(type, schema, where);
  }

  std::string for_type(const nlohmann::ordered_json& type, const nlohmann::ordered_json& schema, const std::string& where) {
    if (!type.is_string()) error(where + "/type", "must be a string or a list of strings");
    const std::string t = type.get<std::string>();
    if (t == "object") return object(schema, where);
    if (t == "array") return array(schema, where);
    if (t == "string" || t == "number" || t == "integer" || t == "boolean" || t == "null") return prefix_ + t;
    error(where + "/type", fmt::format("unknown type '{}'", t));
  }

  std::string ref(const nlohmann::ordered_json& target, const std::string& where) {
    if (!target.is_string()) error(where + "/$ref", "must be a string");
    const std::string path = target.get<std::string>();
    if (const auto it = refs_.find(path); it != refs_.end()) return it->second;
    for (const std::string_view prefix : {"#/$defs/", "#/definitions/"}) {
      if (path.starts_with(prefix)) {
        const std::string name = path.substr(prefix.size());
        const auto defs = root_schema_.find(std::string(prefix.substr(2, prefix.size() - 3)));
        if (defs == root_schema_.end() || !defs->is_object() || !defs->contains(name)) error(where + "/$ref", fmt::format("'{}' is not in the schema", path));
        // Named before it is compiled, so that a recursive reference finds it.
        const std::string rule = add_rule("");
        refs_[path] = rule;
        const std::string body = rule_for((*defs)[name], path);
        for (auto& [n, b] : rules_) {
          if (n == rule) b = body;
        }
        return rule;
      }
    }
    error(where + "/$ref", fmt::format("'{}': only references within the document (#/$defs/NAME, #/definitions/NAME) are supported", path));
  }

  std::string object(const nlohmann::ordered_json& schema, const std::string& where) {
    if (!schema.contains("properties")) return prefix_ + "object";
    const auto& properties = schema["properties"];
    if (!properties.is_object()) error(where + "/properties", "must be an object");
    std::vector<std::string> required;
    if (schema.contains("required")) {
      const auto& r = schema["required"];
      if (!r.is_array()) error(where + "/required", "must be an array of property names");
      for (const auto& name : r) {
        if (!name.is_string() || !properties.contains(name.get<std::string>())) {
          error(where + "/required", fmt::format("{} is not one of the properties", name.dump()));
        }
        required.push_back(name.get<std::string>());
      }
    }
    // For property i on: `first[i]` when none came before it (no comma), `after[i]` when one did.
    struct Member {
      std::string pair;
      bool required;
    };
    std::vector<Member> members;
    for (const std::string& name : gemma_ ? gemma_order(properties) : keys_of(properties)) {
      const std::string value = rule_for(properties[name], where + "/properties/" + name);
      members.push_back({key_literal(name) + " " + value, std::find(required.begin(), required.end(), name) != required.end()});
    }
    std::string first = "", after = "";  // for i = members.size(): nothing left
    for (std::size_t i = members.size(); i-- > 0;) {
      const Member& m = members[i];
      const std::string rest_after = after.empty() ? "" : " " + after;
      const std::string new_after = add_rule(m.required ? "ws \",\" ws " + m.pair + rest_after : "(ws \",\" ws " + m.pair + ")?" + rest_after);
      const std::string with_this = m.pair + rest_after;
      const std::string new_first = add_rule(m.required ? with_this : with_this + (first.empty() ? " | " : " | " + first));
      first = new_first;
      after = new_after;
    }
    return add_rule("\"{\" ws " + (first.empty() ? "" : first + " ") + "ws \"}\"");
  }

  std::string array(const nlohmann::ordered_json& schema, const std::string& where) {
    const std::string item = schema.contains("items") ? rule_for(schema["items"], where + "/items") : prefix_ + "value";
    const auto count = [&](const char* key, int fallback) {
      if (!schema.contains(key)) return fallback;
      const auto& v = schema[key];
      if (!v.is_number_unsigned() || v.get<std::uint64_t>() > static_cast<std::uint64_t>(kMaxItems)) {
        error(where + "/" + key, fmt::format("must be a whole number up to {}", kMaxItems));
      }
      return static_cast<int>(v.get<std::uint64_t>());
    };
    const int min = count("minItems", 0), max = count("maxItems", -1);
    if (max >= 0 && max < min) error(where, fmt::format("maxItems {} is below minItems {}", max, min));
    if (max == 0) return add_rule("\"[\" ws \"]\"");
    const std::string more = fmt::format("(ws \",\" ws {}){{{},{}}}", item, std::max(min - 1, 0), max < 0 ? "" : std::to_string(max - 1));
    const std::string items = item + " " + more;
    return add_rule("\"[\" ws " + (min == 0 ? "(" + items + ")?" : items) + " ws \"]\"");
  }

  const nlohmann::ordered_json& root_schema_;
  std::string_view source_;
  JsonSchemaOptions options_;
  bool gemma_;           // options_.syntax is Gemma's argument syntax
  std::string prefix_;   // of the basic rules: "json-" or "gemma-"
  std::string rule_prefix_;  // of the rules made for the schema
  std::vector<std::pair<std::string, std::string>> rules_;  // name, body
  std::unordered_map<std::string, std::string> refs_;       // $ref path -> rule
};

}  // namespace detail

// The GBNF rules of the values `schema` allows, without the basic rules they use
// (json_schema_basics): the top rule is `name`, the others are named after it, so that
// several schemas' rules can share one grammar. `source` names the schema in errors.
inline std::string json_schema_rules(const nlohmann::ordered_json& schema, std::string_view name, std::string_view source,
                                     JsonSchemaOptions options = {}) {
  try {
    return detail::JsonSchemaCompiler(schema, source, options).rules(name);
  } catch (const nlohmann::json::exception& e) {  // a string of the schema that is not UTF-8
    fail(ErrorKind::kInvalidArgument, "{}: {}", source, e.what());
  }
}

// The basic rules (ws, json-string or gemma-string, ...) every schema's rules may use.
inline std::string_view json_schema_basics(JsonSchemaOptions::Syntax syntax) { return detail::JsonSchemaCompiler::basics(syntax); }

// The GBNF text of the JSON documents `schema` allows; `source` names it in errors.
inline std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema, std::string_view source = "schema", JsonSchemaOptions options = {}) {
  return json_schema_rules(schema, "root", source, options) + std::string(json_schema_basics(options.syntax));
}

inline Grammar json_schema_grammar(const nlohmann::ordered_json& schema, std::string_view source = "schema") {
  return parse_gbnf(json_schema_to_gbnf(schema, source), source);
}

// Compiles the JSON Schema file at `path`.
inline Grammar read_json_schema_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::kMissingFile, "{}: missing or unreadable JSON Schema file", path.string());
  nlohmann::ordered_json schema;
  try {
    schema = nlohmann::ordered_json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::kBadFile, "{}: not valid JSON: {}", path.string(), e.what());
  }
  return json_schema_grammar(schema, path.string());
}

}  // namespace gemma4
