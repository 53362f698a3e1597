#pragma once
// What a matmul reads for a linear layer [rows, cols], said explicitly: dense bf16/f32
// elements (used in place from the checkpoint's mapping, or widened from f16 at load),
// or a packed int8/int4 matrix (quant/quantized_matrix.hpp). ops/matmul-inl.h takes either.

#include <cstddef>
#include <variant>

#include "gemma4/base/tensor.hpp"
#include "gemma4/quant/quantized_matrix.hpp"

namespace gemma4 {

using WeightMatrix = std::variant<TensorView, const QuantizedMatrix*>;

inline std::size_t matrix_rows(const WeightMatrix& m) {
  if (const auto* quantized = std::get_if<const QuantizedMatrix*>(&m)) return (*quantized)->rows();
  return static_cast<std::size_t>(std::get<TensorView>(m).shape[0]);
}

inline std::size_t matrix_cols(const WeightMatrix& m) {
  if (const auto* quantized = std::get_if<const QuantizedMatrix*>(&m)) return (*quantized)->cols();
  return static_cast<std::size_t>(std::get<TensorView>(m).shape[1]);
}

// The int8/int4 matrix, or null for dense elements.
inline const QuantizedMatrix* quantized_matrix(const WeightMatrix& m) {
  const auto* quantized = std::get_if<const QuantizedMatrix*>(&m);
  return quantized != nullptr ? *quantized : nullptr;
}

}  // namespace gemma4
