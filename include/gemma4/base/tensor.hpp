#pragma once
// A view of one tensor's elements in a stored dtype: in a mapped file, or in a copy the
// loader widened from f16. Vectors (norm weights, scalars) are [n, 1].

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "gemma4/base/dtype.hpp"

namespace gemma4 {

struct TensorView {
  const std::byte* data = nullptr;
  DType dtype = DType::kF32;
  std::array<std::int64_t, 2> shape{};  // [rows, cols]; a vector is [n, 1]

  std::size_t size() const { return static_cast<std::size_t>(shape[0] * shape[1]); }
  std::span<const std::byte> bytes() const { return {data, size() * dtype_size(dtype)}; }
  float at(std::size_t i) const { return load_element(data, dtype, i); }
};

}  // namespace gemma4
