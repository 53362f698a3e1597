#pragma once
// How a model's linear layers are stored, chosen at load time (or by a packed model
// directory): as in the checkpoint, or quantized to int8 / int4 in the layouts of
// quant/layout.hpp; and which matrix shapes those layouts take.

#include <cstddef>
#include <optional>
#include <string_view>

namespace gemma4 {

enum class WeightFormat {
  kBF16,  // as stored in the checkpoint (bf16 for published ones), used in place
  kInt8,
  kInt4,
};

constexpr std::string_view weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::kBF16: return "bf16";
    case WeightFormat::kInt8: return "int8";
    case WeightFormat::kInt4: return "int4";
  }
  return "?";
}

inline std::optional<WeightFormat> parse_weight_format(std::string_view name) {
  for (WeightFormat f : {WeightFormat::kBF16, WeightFormat::kInt8, WeightFormat::kInt4}) {
    if (name == weight_format_name(f)) return f;
  }
  return std::nullopt;
}

inline constexpr std::size_t kRowBlock = 16;
inline constexpr std::size_t kInt4Group = 32;

// Whether a [rows, cols] matrix fits a packed layout.
constexpr bool packable(WeightFormat f, std::size_t rows, std::size_t cols) {
  if (f == WeightFormat::kBF16) return true;
  return rows % kRowBlock == 0 && cols % (f == WeightFormat::kInt4 ? kInt4Group : 4) == 0;
}

}  // namespace gemma4
