// Activations quantized on the fly to int8 for the integer kernels
// (ops/quantized_matmul-inl.h): a scale per group of columns, absmax / 127, and the sums
// the kernels subtract for the weights' offsets (ops/quantized_activations.hpp).
#ifndef GEMMA4_OPS_QUANTIZE_ACTIVATIONS_INL_H_
#define GEMMA4_OPS_QUANTIZE_ACTIVATIONS_INL_H_
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "gemma4/quant/weight_format.hpp"
#include "gemma4/ops/quantized_activations.hpp"

#endif  // GEMMA4_OPS_QUANTIZE_ACTIVATIONS_INL_H_

#if defined(GEMMA4_OPS_QUANTIZE_ACTIVATIONS_TOGGLE) == defined(HWY_TARGET_TOGGLE)
#ifdef GEMMA4_OPS_QUANTIZE_ACTIVATIONS_TOGGLE
#undef GEMMA4_OPS_QUANTIZE_ACTIVATIONS_TOGGLE
#else
#define GEMMA4_OPS_QUANTIZE_ACTIVATIONS_TOGGLE
#endif

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace gemma4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Quantizes tokens [first, end) of x [tokens, a.cols] to int8, each group of a.group
// columns with its own scale (absmax / 127), into the same rows of a, with the sums
// a.format's kernels subtract for the weights' offsets. Threads may fill disjoint ranges
// of tokens.
inline HWY_NOINLINE void QuantizeActivationRows(const float* HWY_RESTRICT x, std::size_t first, std::size_t end,
                                                QuantizedActivations& a) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<std::int8_t, decltype(df)> d8;
  const std::size_t cols = a.cols, N = hn::Lanes(df), int4_groups = cols / kInt4Group;
  for (std::size_t t = first; t < end; ++t) {
    std::int8_t* q = a.q.data() + t * cols;
    for (std::size_t g = 0; g < a.groups; ++g) {
      const std::size_t begin = g * a.group, width = std::min(a.group, cols - begin);
      const float* row = x + t * cols + begin;
      std::int8_t* out = q + begin;
      const std::size_t vector_end = width - width % N;
      auto vmax = hn::Zero(df);
      for (std::size_t i = 0; i < vector_end; i += N) vmax = hn::Max(vmax, hn::Abs(hn::LoadU(df, row + i)));
      float absmax = hn::GetLane(hn::MaxOfLanes(df, vmax));
      for (std::size_t i = vector_end; i < width; ++i) absmax = std::max(absmax, std::fabs(row[i]));
      const float inverse = absmax > 0.0f ? 127.0f / absmax : 0.0f;
      a.scale[t * a.groups + g] = absmax / 127.0f;
      const auto vinv = hn::Set(df, inverse);
      for (std::size_t i = 0; i < vector_end; i += N) {
        hn::StoreU(hn::DemoteTo(d8, hn::NearestInt(hn::Mul(hn::LoadU(df, row + i), vinv))), d8, out + i);
      }
      for (std::size_t i = vector_end; i < width; ++i) out[i] = static_cast<std::int8_t>(std::lrint(row[i] * inverse));
      if (a.format != WeightFormat::kInt8) continue;
      std::int32_t sum = 0;
      for (std::size_t i = 0; i < width; ++i) sum += out[i];
      a.group_sum[t * a.groups + g] = sum;
    }
    if (a.format != WeightFormat::kInt4) continue;
    for (std::size_t g = 0; g < int4_groups; ++g) {
      std::int32_t s = 0;
      for (std::size_t c = 0; c < kInt4Group; ++c) s += q[g * kInt4Group + c];
      a.group_offset[t * int4_groups + g] = -8 * s;
    }
  }
}

// All of x [tokens, cols], for weights of `format`.
inline void QuantizeActivations(const float* HWY_RESTRICT x, std::size_t tokens, std::size_t cols, WeightFormat format,
                                QuantizedActivations& a) {
  a.shape(tokens, cols, format);
  QuantizeActivationRows(x, 0, tokens, a);
}

}  // namespace HWY_NAMESPACE
}  // namespace gemma4
HWY_AFTER_NAMESPACE();

#endif  // toggle
