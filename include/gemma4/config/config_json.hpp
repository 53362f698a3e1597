#pragma once
// ModelConfig <-> config.json. Boost.PFR walks the config's fields; each field's type
// carries its JSON name, so there is no second list of names to keep in sync. Used to
// write config.json for synthetic checkpoints, to print a config, and to compare a
// checkpoint's config.json with a compiled variant field by field.

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <boost/pfr.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "gemma4/base/json.hpp"
#include "gemma4/config/model_config.hpp"
#include "gemma4/config/topology.hpp"
#include "gemma4/error.hpp"

namespace gemma4 {

namespace detail {

inline nlohmann::ordered_json field_to_json(int v, const ModelConfig&) { return v; }
inline nlohmann::ordered_json field_to_json(bool v, const ModelConfig&) { return v; }
inline nlohmann::ordered_json field_to_json(double v, const ModelConfig&) { return v; }
inline nlohmann::ordered_json field_to_json(std::string_view v, const ModelConfig&) { return std::string(v); }

inline nlohmann::ordered_json field_to_json(LayerPattern, const ModelConfig& c) {
  auto types = nlohmann::ordered_json::array();
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    types.push_back(is_full_attention(c, l) ? "full_attention" : "sliding_attention");
  }
  return types;
}

inline nlohmann::ordered_json rope_to_json(const Rope& r) {
  nlohmann::ordered_json j;
  if (r.partial_rotary_factor != 1.0) j["partial_rotary_factor"] = r.partial_rotary_factor;
  j["rope_theta"] = r.rope_theta;
  j["rope_type"] = std::string(r.rope_type);
  return j;
}

inline nlohmann::ordered_json field_to_json(const RopeParameters& r, const ModelConfig&) {
  return {{"full_attention", rope_to_json(r.full_attention)}, {"sliding_attention", rope_to_json(r.sliding_attention)}};
}

// JSON equality where numbers compare by value (10000 == 10000.0, 1e-06 == 1e-6).
template <typename A, typename B>
bool json_equal(const A& a, const B& b) {
  if (a.is_number() && b.is_number()) {
    const double x = a.template get<double>(), y = b.template get<double>();
    return x == y || std::abs(x - y) <= 1e-12 * std::max(std::abs(x), std::abs(y));
  }
  if (a.is_object() && b.is_object()) {
    if (a.size() != b.size()) return false;
    for (const auto& [key, value] : a.items()) {
      if (!b.contains(key) || !json_equal(value, b[key])) return false;
    }
    return true;
  }
  if (a.is_array() && b.is_array()) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!json_equal(a[i], b[i])) return false;
    }
    return true;
  }
  return a.dump() == b.dump();  // strings, booleans, null, or different types
}

// A readable rendering of a field value; a layer_types list is summarised by where
// its full-attention layers are rather than printed as 35 strings.
template <typename Json>
std::string describe(const Json& value) {
  const bool is_layer_list = value.is_array() && !value.empty() && value[0].is_string();
  if (!is_layer_list) return value.dump();
  std::vector<std::size_t> full;
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (!value[i].is_string()) return value.dump();
    if (value[i] == "full_attention") {
      full.push_back(i);
    } else if (value[i] != "sliding_attention") {
      return value.dump();
    }
  }
  return fmt::format("{} layers, full attention at [{}]", value.size(), fmt::join(full, ", "));
}

}  // namespace detail

// The config as config.json's text fields, in declaration order.
inline nlohmann::ordered_json to_json(const ModelConfig& c) {
  nlohmann::ordered_json j;
  boost::pfr::for_each_field(c, [&](const auto& field) {
    j[std::string(field.name)] = detail::field_to_json(field.value, c);
  });
  // HF writes "no softcap" as null (an assistant's config, HF's default), not as 0.
  if (c.final_logit_softcapping == 0) j["final_logit_softcapping"] = nullptr;
  return j;
}

// One line per field, "name: value".
inline std::string format_config(const ModelConfig& c) {
  std::string out;
  const nlohmann::ordered_json fields = to_json(c);
  for (const auto& [key, value] : fields.items()) out += fmt::format("  {}: {}\n", key, detail::describe(value));
  return out;
}

struct FieldMismatch {
  std::string field;
  std::string expected;
  std::string found;
};

// Every field of `expected` that `text_config` (the text part of a config.json)
// contradicts. A field absent from the file takes Hugging Face's default, as
// transformers would, and is reported as such when that default is wrong.
inline std::vector<FieldMismatch> compare_config(const ModelConfig& expected, const nlohmann::json& text_config) {
  ModelConfig defaults = kHfDefaults;
  // HF expands its default layer pattern over the file's layer count. An absurd count
  // is reported as a num_hidden_layers mismatch; it must not size anything here.
  constexpr std::int64_t kMaxLayers = 1024;
  if (const auto it = text_config.find("num_hidden_layers"); it != text_config.end()) {
    const auto layers = json_integer_if<std::int64_t>(*it);
    defaults.num_hidden_layers.value = layers && *layers >= 1 && *layers <= kMaxLayers ? static_cast<int>(*layers) : expected.num_hidden_layers;
  }
  const nlohmann::ordered_json want = to_json(expected);
  const nlohmann::ordered_json fallback = to_json(defaults);
  std::vector<FieldMismatch> mismatches;
  for (const auto& [key, value] : want.items()) {
    const auto it = text_config.find(key);
    if (it == text_config.end()) {
      if (!detail::json_equal(value, fallback[key])) {
        mismatches.push_back({key, detail::describe(value), "absent (HF default " + detail::describe(fallback[key]) + ")"});
      }
    } else if (!detail::json_equal(value, *it)) {
      mismatches.push_back({key, detail::describe(value), detail::describe(*it)});
    }
  }
  return mismatches;
}

inline std::string format_mismatches(const std::vector<FieldMismatch>& mismatches) {
  std::string out;
  for (const auto& m : mismatches) out += fmt::format("    {}: expected {}, found {}\n", m.field, m.expected, m.found);
  return out;
}

// config.json is either the multimodal wrapper (model_type "gemma4", text fields under
// "text_config") or a text-only config (model_type "gemma4_text").
inline const nlohmann::json& text_config_of(const nlohmann::json& config) {
  if (!config.is_object()) fail(ErrorKind::kBadFile, "config.json: not a JSON object");
  const auto model_type = config.find("model_type");
  const auto text = config.find("text_config");
  if (text != config.end()) {
    if (model_type != config.end() && *model_type != "gemma4") {
      fail(ErrorKind::kBadFile, "config.json: model_type is {}, expected \"gemma4\" for a config with text_config", model_type->dump());
    }
    if (!text->is_object()) fail(ErrorKind::kBadFile, "config.json: text_config is not an object");
    return *text;
  }
  if (model_type != config.end() && *model_type != "gemma4_text") {
    fail(ErrorKind::kBadFile, "config.json: model_type is {}; this library runs Gemma 4 text models (\"gemma4\" or \"gemma4_text\")",
         model_type->dump());
  }
  return config;
}

}  // namespace gemma4
