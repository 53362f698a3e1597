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

#include "gemma4/error.hpp"
#include "gemma4/weights/checkpoint.hpp"

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
    if (!std::isfinite(temperature) || temperature < 0) fail("temperature must be finite and >= 0, got {}", temperature);
    if (top_k < 0) fail("top-k must be >= 0, got {}", top_k);
    if (!(top_p > 0 && top_p <= 1)) fail("top-p must be in (0, 1], got {}", top_p);
    if (!(min_p >= 0 && min_p < 1)) fail("min-p must be in [0, 1), got {}", min_p);
    if (!std::isfinite(repetition_penalty) || repetition_penalty <= 0) {
      fail("repetition penalty must be finite and > 0, got {}", repetition_penalty);
    }
  }
};

struct GenerationConfig {
  SamplingOptions sampling;
  std::vector<int> stop_ids;  // generation ends when any of these is sampled
};

namespace detail {
inline std::vector<int> ids_of(const nlohmann::json& value, const std::string& where) {
  if (value.is_number_integer()) return {value.get<int>()};
  if (value.is_array() && !value.empty() && std::all_of(value.begin(), value.end(), [](const auto& v) { return v.is_number_integer(); })) {
    return value.get<std::vector<int>>();
  }
  fail("{}: eos_token_id must be an id or a list of ids, got {}", where, value.dump());
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
    try {
      SamplingOptions& s = config.sampling;
      s.temperature = j.value("temperature", s.temperature);
      s.top_k = j.value("top_k", s.top_k);
      s.top_p = j.value("top_p", s.top_p);
      s.min_p = j.contains("min_p") && !j["min_p"].is_null() ? j["min_p"].get<float>() : s.min_p;
      s.repetition_penalty = j.value("repetition_penalty", s.repetition_penalty);
      if (!j.value("do_sample", true)) s.temperature = 0.0f;
      if (j.contains("eos_token_id")) config.stop_ids = detail::ids_of(j["eos_token_id"], where);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: {}", where, e.what());
    }
    try {
      config.sampling.validate();
    } catch (const Error& e) {
      fail("{}: {}", where, e.what());
    }
  }
  if (config.stop_ids.empty()) {
    const nlohmann::json model = read_model_config(dir);
    const nlohmann::json& text = model.contains("text_config") ? model["text_config"] : model;
    const nlohmann::json& eos = text.contains("eos_token_id") ? text["eos_token_id"] : model.value("eos_token_id", nlohmann::json());
    if (eos.is_null()) fail("{}: no eos_token_id in generation_config.json or config.json: cannot tell when to stop", dir.string());
    config.stop_ids = detail::ids_of(eos, (dir / "config.json").string());
  }
  return config;
}

}  // namespace gemma4
