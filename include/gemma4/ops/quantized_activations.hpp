#pragma once
// The input of an int8/int4 matmul (ops/quantized_matmul-inl.h): activations quantized
// to int8 with a scale per group of columns, and the sums the kernels subtract for the
// weights' offsets.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gemma4/error.hpp"
#include "gemma4/quant/weight_format.hpp"

namespace gemma4 {

// Columns per activation scale for int8 weights. A token's activations have outliers,
// and one scale per token spent int8's levels on them: on a full-size synthetic E2B that
// was 79-84% of int8's KL against bf16. A scale per 128 columns takes that part down
// 1.8-2.0x for 8% of E2B int8's prefill speed here (a tile 5%; per 64, 2.4-2.5x for a
// tile's 10%: bench/README.md). int4 weights, whose own rounding dwarfs this, keep one
// scale per token (a group of all the columns).
inline constexpr std::size_t kInt8ActivationGroup = 128;

// Columns per activation scale for a matmul with weights of `format`.
constexpr std::size_t activation_group(WeightFormat format, std::size_t cols) {
  return format == WeightFormat::kInt8 ? kInt8ActivationGroup : cols;
}

// One matmul input [tokens, cols] for weights of `format`, quantized in groups of `group`
// columns (the last one may be shorter), with the sums only that format's kernels read.
struct QuantizedActivations {
  WeightFormat format = WeightFormat::kInt8;
  std::size_t tokens = 0, cols = 0, group = 0, groups = 0;
  std::vector<std::int8_t> q;              // [tokens, cols]
  std::vector<float> scale;                // [tokens, groups]: x ~ q * scale in group g
  std::vector<std::int32_t> group_sum;     // int8: [tokens, groups], sum of q over group g
  std::vector<std::int32_t> group_offset;  // int4: [tokens, cols / 32], -8 * sum of q per int4 group

  // Sizes the buffers once, so quantizing never allocates.
  void reserve(std::size_t max_tokens, std::size_t max_cols) {
    const std::size_t max_groups = max_cols / kInt8ActivationGroup + 1;
    q.resize(max_tokens * max_cols);
    scale.resize(max_tokens * max_groups);
    group_sum.resize(max_tokens * max_groups);
    group_offset.resize(max_tokens * (max_cols / kInt4Group + 1));
  }
  // Holds n tokens of c columns for weights of format f from now on; an error if reserved
  // for less.
  void shape(std::size_t n, std::size_t c, WeightFormat f) {
    format = f;
    tokens = n;
    cols = c;
    group = activation_group(f, c);
    groups = (c + group - 1) / group;
    if (q.size() < n * c || scale.size() < n * groups || group_offset.size() < n * (c / kInt4Group)) {
      fail(ErrorKind::kInvalidArgument, "matmul: activation scratch reserved for fewer than {} x {} values", n, c);
    }
  }
  std::size_t bytes() const { return q.size() + (scale.size() + group_sum.size() + group_offset.size()) * 4; }

  float scale_of(std::size_t token, std::size_t g) const { return scale[token * groups + g]; }
  std::int32_t sum_of(std::size_t token, std::size_t g) const { return group_sum[token * groups + g]; }
};

}  // namespace gemma4
