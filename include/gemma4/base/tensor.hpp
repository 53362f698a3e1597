#pragma once
// A view of one loaded tensor, as the kernels read it: elements in a stored dtype (in a
// mapped file or a widened copy), or for a matrix converted at load time its packed
// int8/int4 form (ops/packed_matrix.hpp).

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "gemma4/base/dtype.hpp"

namespace gemma4 {

class QuantizedMatrix;

struct TensorView {
  const std::byte* data = nullptr;
  DType dtype = DType::kF32;
  DType stored_dtype = DType::kF32;     // as in the checkpoint, before any widening
  std::array<std::int64_t, 2> shape{};  // [rows, cols]; a vector is [n, 1]
  // Set when the matrix was converted to int8/int4 at load time: matmuls use this, and
  // `data` stays readable (from the file) for row lookups such as the embedding.
  const QuantizedMatrix* quantized = nullptr;

  std::size_t size() const { return static_cast<std::size_t>(shape[0] * shape[1]); }
  std::span<const std::byte> bytes() const { return {data, size() * dtype_size(dtype)}; }
  float at(std::size_t i) const { return load_element(data, dtype, i); }
};

}  // namespace gemma4
