// SIMD kernels of the forward pass, written once with Highway and compiled for each
// target model/passes.hpp builds in (its foreach_target pass includes this file through
// the forward pass).
// Weights arrive as f32 or bf16 (as stored in the checkpoint); activations are f32.
// Lengths need not be multiples of the vector width: element-wise kernels run on
// Highway's Transform (which handles the partial last vector), the others finish with
// a scalar tail.

#ifndef GEMMA4_OPS_OPS_INL_H_
#define GEMMA4_OPS_OPS_INL_H_
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "gemma4/base/tensor.hpp"

namespace gemma4 {
// What a softmax divided by: its largest input and the sum of exp(x - max).
struct SoftmaxSums {
  float max;
  float sum;
};
}  // namespace gemma4
#endif  // GEMMA4_OPS_OPS_INL_H_

#if defined(GEMMA4_OPS_OPS_TOGGLE) == defined(HWY_TARGET_TOGGLE)
#ifdef GEMMA4_OPS_OPS_TOGGLE
#undef GEMMA4_OPS_OPS_TOGGLE
#else
#define GEMMA4_OPS_OPS_TOGGLE
#endif

// GCC 12 misreads the scalar tail loop of Highway 1.0.3's Transform when it inlines it
// (-Waggressive-loop-optimizations: "iteration 4611686018427387903 invokes undefined
// behavior", an index it can never reach); the warning is about that header's lines.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#endif
#include "hwy/contrib/algo/transform-inl.h"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace gemma4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

HWY_INLINE VF LoadF32(DF df, const float* p) { return hn::LoadU(df, p); }
HWY_INLINE VF LoadF32(DF df, const hwy::bfloat16_t* p) {
  const hn::Rebind<hwy::bfloat16_t, DF> dbf;
  return hn::PromoteTo(df, hn::LoadU(dbf, p));
}
HWY_INLINE float ToF32(float v) { return v; }
HWY_INLINE float ToF32(hwy::bfloat16_t v) { return hwy::F32FromBF16(v); }

// Calls f with the tensor's elements as const float* or const hwy::bfloat16_t*: one
// branch per call on the stored dtype, never per element. The loader has widened F16.
template <typename F>
HWY_INLINE decltype(auto) WithElements(const TensorView& t, F&& f) {
  if (t.dtype == DType::kBF16) return f(reinterpret_cast<const hwy::bfloat16_t*>(t.data));
  return f(reinterpret_cast<const float*>(t.data));
}

HWY_INLINE float ReduceSum(DF df, VF v) { return hn::GetLane(hn::SumOfLanes(df, v)); }

// out[t * out_stride] = dot(row, x[t * x_stride, :]) for kTokens tokens at once: each
// weight vector is loaded (and widened) once and used for every token, which is what
// makes prefill a matrix-matrix product. The summation order of each dot product does
// not depend on kTokens, so a token's result is the same bit for bit whether it runs in
// a prefill block or alone in a decode step.
template <size_t kTokens, typename WT>
HWY_INLINE void RowTimesTokens(const WT* HWY_RESTRICT row, size_t cols, const float* HWY_RESTRICT x, size_t x_stride,
                               float* HWY_RESTRICT out, size_t out_stride) {
  const DF df;
  const size_t N = hn::Lanes(df);
  // Two chains per token: a lone token (decode) still has two FMAs in flight. Loops over
  // arrays of vectors are unrolled, or GCC at -O2 keeps the arrays in memory.
  VF even[kTokens], odd[kTokens];
  HWY_UNROLL(16)
  for (size_t t = 0; t < kTokens; ++t) even[t] = odd[t] = hn::Zero(df);
  const size_t vectors = cols / N;
  size_t i = 0;
  for (size_t v = 0; v + 2 <= vectors; v += 2, i += 2 * N) {
    const VF w0 = LoadF32(df, row + i), w1 = LoadF32(df, row + i + N);
    HWY_UNROLL(16)
    for (size_t t = 0; t < kTokens; ++t) {
      even[t] = hn::MulAdd(w0, hn::LoadU(df, x + t * x_stride + i), even[t]);
      odd[t] = hn::MulAdd(w1, hn::LoadU(df, x + t * x_stride + i + N), odd[t]);
    }
  }
  if (vectors % 2 != 0) {
    const VF w0 = LoadF32(df, row + i);
    HWY_UNROLL(16)
    for (size_t t = 0; t < kTokens; ++t) even[t] = hn::MulAdd(w0, hn::LoadU(df, x + t * x_stride + i), even[t]);
    i += N;
  }
  HWY_UNROLL(16)
  for (size_t t = 0; t < kTokens; ++t) {
    float total = ReduceSum(df, hn::Add(even[t], odd[t]));
    for (size_t j = i; j < cols; ++j) total += ToF32(row[j]) * x[t * x_stride + j];
    out[t * out_stride] = total;
  }
}

// out[t, r] = sum_c w[r, c] * x[t, c] for rows [first_row, end_row) of a linear layer
// (weights [rows, cols], row = output feature) over `tokens` inputs [tokens, cols];
// out is [tokens, rows]. A row's result does not depend on the row range.
template <typename WT>
HWY_NOINLINE void MatMul(const WT* HWY_RESTRICT w, size_t rows, size_t cols, size_t first_row, size_t end_row,
                         const float* HWY_RESTRICT x, size_t tokens, float* HWY_RESTRICT out) {
  constexpr size_t kBlock = 4;
  size_t t = 0;
  for (; t + kBlock <= tokens; t += kBlock) {
    for (size_t r = first_row; r < end_row; ++r) {
      RowTimesTokens<kBlock>(w + r * cols, cols, x + t * cols, cols, out + t * rows + r, rows);
    }
  }
  for (; t < tokens; ++t) {
    for (size_t r = first_row; r < end_row; ++r) RowTimesTokens<1>(w + r * cols, cols, x + t * cols, cols, out + t * rows + r, rows);
  }
}

HWY_INLINE void MatMul(const TensorView& w, size_t first_row, size_t end_row, const float* x, size_t tokens, float* out) {
  WithElements(w, [&](const auto* elements) {
    MatMul(elements, static_cast<size_t>(w.shape[0]), static_cast<size_t>(w.shape[1]), first_row, end_row, x, tokens, out);
  });
}

HWY_INLINE float SumOfSquares(const float* HWY_RESTRICT x, size_t n) {
  const DF df;
  const size_t N = hn::Lanes(df);
  VF sum = hn::Zero(df);
  size_t i = 0;
  for (; i < n - n % N; i += N) {
    const VF v = hn::LoadU(df, x + i);
    sum = hn::MulAdd(v, v, sum);
  }
  float total = ReduceSum(df, sum);
  for (; i < n; ++i) total += x[i] * x[i];
  return total;
}

// out = x * (mean(x^2) + eps)^-0.5 * w. Gemma 4 multiplies by w itself (not 1 + w).
// out may alias x.
template <typename WT>
HWY_INLINE void RMSNorm(const float* x, const WT* HWY_RESTRICT w, size_t n, float eps, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const float inv = 1.0f / std::sqrt(SumOfSquares(x, n) / static_cast<float>(n) + eps);
  const VF vinv = hn::Set(df, inv);
  size_t i = 0;
  for (; i < n - n % N; i += N) hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(df, x + i), vinv), LoadF32(df, w + i)), df, out + i);
  for (; i < n; ++i) out[i] = x[i] * inv * ToF32(w[i]);
}

// x *= a
HWY_INLINE void Scale(float* x, size_t n, float a) {
  hn::Transform(DF(), x, n, [a](auto d, auto v) HWY_ATTR { return hn::Mul(v, hn::Set(d, a)); });
}

// RMSNorm without a weight (Gemma 4's v_norm); in place.
HWY_INLINE void RMSNormPlain(float* x, size_t n, float eps) {
  Scale(x, n, 1.0f / std::sqrt(SumOfSquares(x, n) / static_cast<float>(n) + eps));
}

// RMSNorm of each of `count` consecutive rows of length n, in place, with one weight.
HWY_INLINE void RMSNormRows(float* x, size_t count, size_t n, const TensorView& w, float eps) {
  WithElements(w, [&](const auto* weight) {
    for (size_t r = 0; r < count; ++r) RMSNorm(x + r * n, weight, n, eps, x + r * n);
  });
}

// gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
template <class D, class V>
HWY_INLINE V GeluTanh(D df, V x) {
  const V inner = hn::Mul(hn::Set(df, 0.7978845608028654f), hn::MulAdd(hn::Mul(hn::Set(df, 0.044715f), x), hn::Mul(x, x), x));
  return hn::Mul(hn::Mul(hn::Set(df, 0.5f), x), hn::Add(hn::Set(df, 1.0f), hn::Tanh(df, inner)));
}

// gate[i] = gelu_tanh(gate[i]) * other[i]
HWY_INLINE void GeluMul(float* HWY_RESTRICT gate, const float* HWY_RESTRICT other, size_t n) {
  hn::Transform1(DF(), gate, n, other, [](auto d, auto g, auto o) HWY_ATTR { return hn::Mul(GeluTanh(d, g), o); });
}

// x = cap * tanh(x / cap)
HWY_INLINE void Softcap(float* x, size_t n, float cap) {
  const float inverse = 1.0f / cap;
  hn::Transform(DF(), x, n, [cap, inverse](auto d, auto v) HWY_ATTR {
    return hn::Mul(hn::Set(d, cap), hn::Tanh(d, hn::Mul(v, hn::Set(d, inverse))));
  });
}

// Rotate-half RoPE over a whole head of length 2 * half: pair (i, i + half) turns by
// the angle whose cos/sin are given. Pairs with frequency 0 (cos 1, sin 0) stay exact.
HWY_INLINE void Rope(float* HWY_RESTRICT x, const float* HWY_RESTRICT cos, const float* HWY_RESTRICT sin, size_t half) {
  const DF df;
  const size_t N = hn::Lanes(df);
  float* HWY_RESTRICT y = x + half;
  size_t i = 0;
  for (; i < half - half % N; i += N) {
    const VF a = hn::LoadU(df, x + i), b = hn::LoadU(df, y + i);
    const VF c = hn::LoadU(df, cos + i), s = hn::LoadU(df, sin + i);
    hn::StoreU(hn::NegMulAdd(b, s, hn::Mul(a, c)), df, x + i);
    hn::StoreU(hn::MulAdd(a, s, hn::Mul(b, c)), df, y + i);
  }
  for (; i < half; ++i) {
    const float a = x[i], b = y[i];
    x[i] = a * cos[i] - b * sin[i];
    y[i] = b * cos[i] + a * sin[i];
  }
}

// x = softmax(x), in f32.
HWY_INLINE SoftmaxSums Softmax(float* x, size_t n) {
  const DF df;
  const size_t N = hn::Lanes(df);
  float max = -INFINITY;
  for (size_t i = 0; i < n; ++i) max = std::max(max, x[i]);
  const VF vmax = hn::Set(df, max);
  VF vsum = hn::Zero(df);
  size_t i = 0;
  for (; i < n - n % N; i += N) {
    const VF e = hn::Exp(df, hn::Sub(hn::LoadU(df, x + i), vmax));
    hn::StoreU(e, df, x + i);
    vsum = hn::Add(vsum, e);
  }
  float sum = ReduceSum(df, vsum);
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  Scale(x, n, 1.0f / sum);
  return {max, sum};
}

// out += x
HWY_INLINE void AddTo(const float* HWY_RESTRICT x, float* HWY_RESTRICT out, size_t n) {
  hn::Transform1(DF(), out, n, x, [](auto, auto o, auto v) HWY_ATTR { return hn::Add(o, v); });
}

// out[i] = t[first + i] * scale for i < n: one embedding row, widened to f32. A mapped
// table left F16 or misaligned in the file (the loader never copies the PLE table)
// takes the element-wise path; bf16 and f32 rows convert with SIMD.
HWY_INLINE void ScaledRow(const TensorView& t, size_t first, size_t n, float scale, float* HWY_RESTRICT out) {
  const bool aligned = reinterpret_cast<std::uintptr_t>(t.data) % dtype_size(t.dtype) == 0;
  if (t.dtype == DType::kF16 || !aligned) {
    for (size_t i = 0; i < n; ++i) out[i] = t.at(first + i) * scale;
    return;
  }
  WithElements(t, [&](const auto* elements) {
    const DF df;
    const size_t N = hn::Lanes(df);
    const auto* row = elements + first;
    const VF vscale = hn::Set(df, scale);
    size_t i = 0;
    for (; i < n - n % N; i += N) hn::StoreU(hn::Mul(LoadF32(df, row + i), vscale), df, out + i);
    for (; i < n; ++i) out[i] = ToF32(row[i]) * scale;
  });
}


}  // namespace HWY_NAMESPACE
}  // namespace gemma4
HWY_AFTER_NAMESPACE();

#endif  // toggle
