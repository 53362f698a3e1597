#pragma once
// How the next token is chosen, and where the defaults come from: a model directory's
// generation_config.json when it has one (the published -it checkpoints do), else
// temperature 1.0, top-k 64, top-p 0.95 (Gemma's recommended settings).
// Errors: read_generation_config throws gemma4::Error naming the file and the field
// that is malformed or out of range, or saying that no stop id is known.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "gemma4/base/json.hpp"
#include "gemma4/error.hpp"

namespace gemma4 {

struct SamplingOptions {
  float temperature = 1.0f;         // 0: greedy (argmax)
  int top_k = 64;                   // keep the k most likely tokens; 0: all
  float top_p = 0.95f;              // keep the smallest set holding this much probability; 1: all
  float min_p = 0.0f;               // drop tokens below min_p x the top probability; 0: none
  float repetition_penalty = 1.0f;  // >1 discourages tokens already in the sequence; 1: off
  std::uint64_t seed = 0;           // same seed and settings: same tokens

  bool greedy() const { return temperature == 0.0f; }

  // Throws an Error naming the first setting out of range.
  void validate() const {
    if (!std::isfinite(temperature) || temperature < 0) fail(ErrorKind::kInvalidArgument, "temperature must be finite and >= 0, got {}", temperature);
    if (top_k < 0) fail(ErrorKind::kInvalidArgument, "top-k must be >= 0, got {}", top_k);
    if (!(top_p > 0 && top_p <= 1)) fail(ErrorKind::kInvalidArgument, "top-p must be in (0, 1], got {}", top_p);
    if (!(min_p >= 0 && min_p < 1)) fail(ErrorKind::kInvalidArgument, "min-p must be in [0, 1), got {}", min_p);
    if (!std::isfinite(repetition_penalty) || repetition_penalty <= 0) {
      fail(ErrorKind::kInvalidArgument, "repetition penalty must be finite and > 0, got {}", repetition_penalty);
    }
  }
};

struct GenerationConfig {
  SamplingOptions sampling{};
  std::vector<int> stop_ids{};  // generation ends when any of these is sampled
};

namespace detail {
inline std::vector<int> ids_of(const nlohmann::json& value, const std::string& where) {
  const std::string what = where + ": eos_token_id";
  if (!value.is_array()) return {json_integer<int>(value, what)};
  if (value.empty()) fail(ErrorKind::kBadFile, "{}: eos_token_id is an empty list", where);
  std::vector<int> ids;
  for (const auto& v : value) ids.push_back(json_integer<int>(v, what + " entry"));
  return ids;
}
}  // namespace detail

// Sampling defaults and stop ids of a model directory (spec section 6: [1, 106, 50] for
// Gemma 4). Without generation_config.json the stop ids are config.json's eos_token_id.
inline GenerationConfig read_generation_config(const std::filesystem::path& dir) {
  GenerationConfig config;
  const std::filesystem::path path = dir / "generation_config.json";
  if (std::filesystem::exists(path)) {
    const nlohmann::json j = read_json_file(path);
    const std::string where = path.string();
    if (!j.is_object()) fail(ErrorKind::kBadFile, "{}: not a JSON object", where);
    // A field that is absent or null keeps its default.
    const auto field = [&](const char* key) { return j.contains(key) && !j[key].is_null() ? &j[key] : nullptr; };
    const auto read_number = [&](const char* key, float& out) {
      if (const auto* v = field(key)) out = json_number<float>(*v, fmt::format("{}: {}", where, key));
    };
    SamplingOptions& s = config.sampling;
    read_number("temperature", s.temperature);
    read_number("top_p", s.top_p);
    read_number("min_p", s.min_p);
    read_number("repetition_penalty", s.repetition_penalty);
    if (const auto* v = field("top_k")) s.top_k = json_integer<int>(*v, where + ": top_k");
    if (const auto* v = field("do_sample")) {
      if (!v->is_boolean()) fail(ErrorKind::kBadFile, "{}: do_sample must be true or false, got {}", where, v->dump());
      if (!v->get<bool>()) s.temperature = 0.0f;
    }
    if (const auto* v = field("eos_token_id")) config.stop_ids = detail::ids_of(*v, where);
    try {
      config.sampling.validate();
    } catch (const Error& e) {
      fail(ErrorKind::kBadFile, "{}: {}", where, e.what());
    }
  }
  if (config.stop_ids.empty()) {
    const nlohmann::json model = read_model_config(dir);
    const nlohmann::json& text = model.contains("text_config") ? model["text_config"] : model;
    const nlohmann::json eos = text.contains("eos_token_id") ? text["eos_token_id"] : model.is_object() ? model.value("eos_token_id", nlohmann::json()) : nlohmann::json();
    if (eos.is_null()) fail(ErrorKind::kBadFile, "{}: no eos_token_id in generation_config.json or config.json: cannot tell when to stop", dir.string());
    config.stop_ids = detail::ids_of(eos, (dir / "config.json").string());
  }
  return config;
}

}  // namespace gemma4
