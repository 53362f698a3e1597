#pragma once
// Element types of checkpoint tensors and exact scalar conversions between them.

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace gemma4 {

// The dtypes the loader accepts for weights. Other safetensors dtypes are parsed (so
// their sizes can be checked) but rejected for model tensors.
enum class DType { kBF16, kF16, kF32 };

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kF32: return "F32";
  }
  return "?";
}

constexpr std::size_t dtype_size(DType t) { return t == DType::kF32 ? 4 : 2; }

constexpr std::optional<DType> weight_dtype_from_name(std::string_view name) {
  if (name == "BF16") return DType::kBF16;
  if (name == "F16") return DType::kF16;
  if (name == "F32") return DType::kF32;
  return std::nullopt;
}

// Byte size of one element for every dtype the safetensors format defines; 0 if unknown.
constexpr std::size_t safetensors_dtype_size(std::string_view name) {
  for (std::string_view n : {"BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2"}) {
    if (name == n) return 1;
  }
  for (std::string_view n : {"U16", "I16", "F16", "BF16"}) {
    if (name == n) return 2;
  }
  for (std::string_view n : {"U32", "I32", "F32"}) {
    if (name == n) return 4;
  }
  for (std::string_view n : {"U64", "I64", "F64"}) {
    if (name == n) return 8;
  }
  return 0;
}

inline float bf16_to_f32(std::uint16_t bits) { return std::bit_cast<float>(std::uint32_t{bits} << 16); }

// Round to nearest even, as PyTorch's .to(torch.bfloat16) does; NaN stays NaN.
inline std::uint16_t f32_to_bf16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40);
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

inline float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t{h & 0x8000u} << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1f;
  std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return std::bit_cast<float>(sign);
  // Subnormal half: normalise into a float.
  int shift = 0;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    ++shift;
  }
  return std::bit_cast<float>(sign | static_cast<std::uint32_t>(113 - shift) << 23 | ((mantissa & 0x3ffu) << 13));
}

// Round to nearest even; values beyond the f16 range become infinity.
inline std::uint16_t f32_to_f16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const std::uint16_t sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds past 65504
  if (abs < 0x38800000u) {                         // result is subnormal (or zero)
    const float scaled = std::bit_cast<float>(abs) * 16777216.0f;  // 2^24: one unit = smallest subnormal
    const auto units = static_cast<std::uint32_t>(scaled);
    const float rest = scaled - static_cast<float>(units);
    const std::uint32_t rounded = units + ((rest > 0.5f || (rest == 0.5f && (units & 1u))) ? 1u : 0u);
    return static_cast<std::uint16_t>(sign | rounded);
  }
  const std::uint32_t rounding = 0xfffu + ((abs >> 13) & 1u);
  return static_cast<std::uint16_t>(sign | ((abs - (112u << 23) + rounding) >> 13));
}

// Reads element i of a tensor stored in any weight dtype. For load-time and test code;
// hot loops use the SIMD kernels.
inline float load_element(const std::byte* data, DType dtype, std::size_t i) {
  if (dtype == DType::kF32) {
    float v;
    std::memcpy(&v, data + 4 * i, 4);
    return v;
  }
  std::uint16_t bits;
  std::memcpy(&bits, data + 2 * i, 2);
  return dtype == DType::kBF16 ? bf16_to_f32(bits) : f16_to_f32(bits);
}

}  // namespace gemma4
