// The one matmul entry point of the forward pass (and of the benchmarks): any number of
// linear layers that share their input, in one parallel loop. For int8/int4 the input is
// quantized once per call; the stacked row blocks (rows, for dense weights) of all the
// layers are split between the threads in whole kernel passes. Shapes are checked here.

#ifndef GEMMA4_OPS_MATMUL_INL_H_
#define GEMMA4_OPS_MATMUL_INL_H_
#include <algorithm>
#include <array>
#include <cstddef>

#include "gemma4/error.hpp"
#include "gemma4/quant/weight_matrix.hpp"
#include "gemma4/parallel/thread_pool.hpp"

namespace gemma4 {

// f(first, end) over `rows` independent rows of `width` floats, split between the
// threads in pieces of at least kRowWorkFloats: a prefill chunk's norms and activations
// take all threads, decode's few rows stay on the caller, where a hand-off would cost
// more than the work.
inline constexpr std::size_t kRowWorkFloats = 16384;
// A matmul call of fewer multiply-adds than this (a toy model's layers) runs on the
// caller alone: waking a worker and waiting for it costs more than the work.
inline constexpr std::size_t kParallelMatMulMacs = std::size_t{1} << 17;
template <typename F>
void for_rows(ThreadPool& pool, std::size_t rows, std::size_t width, const F& f) {
  pool.parallel_for(rows, [&](int, std::size_t first, std::size_t end) { f(first, end); },
                    std::max<std::size_t>(1, kRowWorkFloats / width));
}

}  // namespace gemma4
#endif  // GEMMA4_OPS_MATMUL_INL_H_

#if defined(GEMMA4_OPS_MATMUL_TOGGLE) == defined(HWY_TARGET_TOGGLE)
#ifdef GEMMA4_OPS_MATMUL_TOGGLE
#undef GEMMA4_OPS_MATMUL_TOGGLE
#else
#define GEMMA4_OPS_MATMUL_TOGGLE
#endif

#include "gemma4/ops/ops-inl.h"
#include "gemma4/ops/quantized_matmul-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace gemma4 {
namespace HWY_NAMESPACE {

// x [n, cols] quantized into `activations` (scratch reserved for n x cols) for matmuls
// with weights of `format` (int8/int4), the rows split between the threads.
inline void QuantizeInput(ThreadPool& pool, const float* x, std::size_t n, std::size_t cols, WeightFormat format,
                          QuantizedActivations& activations) {
  activations.shape(n, cols, format);
  for_rows(pool, n, cols, [&](std::size_t first, std::size_t end) { QuantizeActivationRows(x, first, end, activations); });
}

// Rows [first_row, end_row) of out [n, rows of w] = x [n, cols] times w: from x for
// dense weights, from x as QuantizeInput left it in `activations` for int8/int4 ones,
// whose row range must be whole row blocks, multiplied with dot product kDot.
template <IntDot kDot>
HWY_INLINE void MatMulRows(const WeightMatrix& w, std::size_t first_row, std::size_t end_row, const float* x, std::size_t n,
                           const QuantizedActivations& activations, float* out) {
  if (const QuantizedMatrix* quantized = quantized_matrix(w)) {
    return QuantizedMatMul<kDot>(*quantized, activations, first_row / kRowBlock, end_row / kRowBlock, out);
  }
  MatMul(std::get<TensorView>(w), first_row, end_row, x, n, out);
}

// outs[i] [n, rows of ws[i]] = x [n, cols] times ws[i] for layers with the same cols.
// activations: scratch for the quantized input, reserved for n tokens of cols columns.
// Dense and int8/int4 layers may be mixed, but not int8 with int4: their inputs are
// quantized in groups of different widths (ops/quantized_activations.hpp). An int8/int4
// layer sets the pass width of the split.
template <IntDot kDot, std::size_t kCount>
void ParallelMatMul(ThreadPool& pool, const std::array<const WeightMatrix*, kCount>& ws, const float* x, std::size_t n,
                    const std::array<float*, kCount>& outs, QuantizedActivations& activations) {
  const std::size_t cols = matrix_cols(*ws[0]);
  std::array<std::size_t, kCount + 1> stack{};  // stack[i]: the first unit (row block, or row if dense) of ws[i]
  std::array<std::size_t, kCount> unit_rows{};
  const QuantizedMatrix* first_quantized = nullptr;
  for (std::size_t i = 0; i < kCount; ++i) {
    if (matrix_cols(*ws[i]) != cols) {
      fail(ErrorKind::kInvalidArgument, "matmul: layers sharing an input have {} and {} columns", cols, matrix_cols(*ws[i]));
    }
    const QuantizedMatrix* quantized = quantized_matrix(*ws[i]);
    if (first_quantized == nullptr) first_quantized = quantized;
    if (quantized != nullptr && quantized->format() != first_quantized->format()) {
      fail(ErrorKind::kInvalidArgument, "matmul: layers sharing an input are {} and {}", weight_format_name(first_quantized->format()),
           weight_format_name(quantized->format()));
    }
    unit_rows[i] = quantized != nullptr ? kRowBlock : 1;
    stack[i + 1] = stack[i] + matrix_rows(*ws[i]) / unit_rows[i];
  }
  if (first_quantized != nullptr) QuantizeInput(pool, x, n, cols, first_quantized->format(), activations);
  const std::size_t units = stack[kCount];
  const bool too_small = units * (first_quantized != nullptr ? kRowBlock : 1) * cols * n < kParallelMatMulMacs;
  const std::size_t grain = too_small ? units : first_quantized != nullptr ? quantized_pass_blocks(first_quantized->format(), n) : 1;
  pool.parallel_for(units, [&](int, std::size_t begin, std::size_t end) {
    for (std::size_t i = 0; i < kCount; ++i) {
      const std::size_t first = std::max(begin, stack[i]), last = std::min(end, stack[i + 1]);
      if (first < last) MatMulRows<kDot>(*ws[i], (first - stack[i]) * unit_rows[i], (last - stack[i]) * unit_rows[i], x, n, activations, outs[i]);
    }
  }, grain);
}

}  // namespace HWY_NAMESPACE
}  // namespace gemma4
HWY_AFTER_NAMESPACE();

#endif  // toggle
