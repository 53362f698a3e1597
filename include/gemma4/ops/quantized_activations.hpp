#pragma once
// The input of an int8/int4 matmul (ops/quantized_matmul-inl.h): activations quantized
// to int8 per token, with the sums the kernels subtract for the weights' offsets.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gemma4/quant/weight_format.hpp"

namespace gemma4 {

// One matmul input [tokens, cols], quantized per token.
struct QuantizedActivations {
  std::size_t tokens = 0, cols = 0;
  std::vector<std::int8_t> q;            // [tokens, cols]
  std::vector<float> scale;              // [tokens]: x ~ q * scale
  std::vector<std::int32_t> sum;         // [tokens]: sum of q over all columns
  std::vector<std::int32_t> group_offset;  // [tokens, cols / 32]: -8 * sum of q per int4 group

  // Sizes the buffers once, so quantizing never allocates.
  void reserve(std::size_t max_tokens, std::size_t max_cols) {
    q.resize(max_tokens * max_cols);
    scale.resize(max_tokens);
    sum.resize(max_tokens);
    group_offset.resize(max_tokens * (max_cols / kInt4Group + 1));
  }
  std::size_t bytes() const { return q.size() + (scale.size() + sum.size() + group_offset.size()) * 4; }
};

}  // namespace gemma4
