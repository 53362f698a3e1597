#pragma once
// Reading JSON files (config.json, generation_config.json, index files) and the numbers
// in them. nlohmann converts a number to whatever type is asked for, and a number out of
// that type's range (an id of 6.2e100, a top_k of 1e30) is undefined behaviour: every
// number the library reads from a file goes through json_integer or json_number, which
// check the kind and the range first.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string_view>

#include <nlohmann/json.hpp>

#include "gemma4/error.hpp"

namespace gemma4 {

// JSON whose objects keep their keys in the order written: what prompts render (a tool's
// parameters, a call's arguments), where nlohmann::json would sort them.
using JsonValue = nlohmann::ordered_json;

// A JSON file; Json = JsonValue keeps its keys in file order.
template <typename Json = nlohmann::json>
Json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::kMissingFile, "{}: missing or unreadable", path.string());
  try {
    return Json::parse(in);
  } catch (const typename Json::exception& e) {
    fail(ErrorKind::kBadFile, "{}: not valid JSON: {}", path.string(), e.what());
  }
}

// JSON text from a caller (tools, messages, a tool's result), keys in the order written;
// an Error naming `what` if it is not JSON.
inline JsonValue parse_json(std::string_view text, std::string_view what) {
  try {
    return JsonValue::parse(text);
  } catch (const JsonValue::exception& e) {
    fail(ErrorKind::kInvalidArgument, "{}: not valid JSON: {}", what, e.what());
  }
}

// config.json of a model directory, with an error naming the directory if it is not one.
inline nlohmann::json read_model_config(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) fail(ErrorKind::kMissingFile, "{}: not a model directory", dir.string());
  return read_json_file(dir / "config.json");
}

// Jinja's dictsort order of keys: case-insensitive (ASCII); sort stably to keep equal ones in order.
inline bool dictsort_less(std::string_view a, std::string_view b) {
  const auto lower = [](char c) { return static_cast<unsigned char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c); };  // std::string compares bytes unsigned
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [&](char x, char y) { return lower(x) < lower(y); });
}

// The value as a T when it is a JSON integer that T can hold exactly, else nothing.
template <std::integral T>
std::optional<T> json_integer_if(const nlohmann::json& value) {
  if (value.is_number_unsigned()) {
    const auto v = value.get<std::uint64_t>();
    if (v <= static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return static_cast<T>(v);
  } else if (value.is_number_integer()) {
    const auto v = value.get<std::int64_t>();
    if constexpr (std::is_signed_v<T>) {
      if (v >= std::numeric_limits<T>::min() && v <= std::numeric_limits<T>::max()) return static_cast<T>(v);
    } else if (v >= 0 && static_cast<std::uint64_t>(v) <= std::numeric_limits<T>::max()) {
      return static_cast<T>(v);
    }
  }
  return std::nullopt;
}

// The value as a T; an Error naming `what` for a non-integer or one out of T's range.
template <std::integral T>
T json_integer(const nlohmann::json& value, std::string_view what) {
  if (const auto v = json_integer_if<T>(value)) return *v;
  fail(ErrorKind::kBadFile, "{} must be an integer in [{}, {}], got {}", what, std::numeric_limits<T>::min(), std::numeric_limits<T>::max(),
       value.dump());
}

// The value as a finite T; an Error naming `what` for anything else.
template <std::floating_point T>
T json_number(const nlohmann::json& value, std::string_view what) {
  if (value.is_number()) {
    const double v = value.get<double>();
    if (std::isfinite(v) && std::fabs(v) <= std::numeric_limits<T>::max()) return static_cast<T>(v);
  }
  fail(ErrorKind::kBadFile, "{} must be a finite number, got {}", what, value.dump());
}

}  // namespace gemma4
