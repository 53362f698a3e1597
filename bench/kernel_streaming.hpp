#pragma once
// How close the decode matmul kernels come to a plain read on their own: one token
// through every quantized matrix of a model, each matrix split over the pool as a
// session splits it, against a read of the same bytes with the same split. Decode
// efficiency also pays for attention, norms and the hand-offs between loops; this ratio
// is the part the kernels lose by themselves. The two passes alternate; medians.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "bench_util.hpp"
#include "gemma4/ops/matmul-inl.h"
#include "gemma4/parallel/thread_pool.hpp"
#include "machine_limits.hpp"

namespace gemma4::bench {

struct KernelStreaming {
  double kernel_s = 0, read_s = 0;  // per token (one pass over all matrices)
  double bytes = 0;                 // bytes of all matrices
};

inline KernelStreaming kernel_streaming(std::span<const QuantizedMatrix* const> matrices, ThreadPool& pool, int runs) {
  namespace ops = gemma4::HWY_NAMESPACE;
  std::size_t max_rows = 0, max_cols = 0;
  KernelStreaming result;
  for (const QuantizedMatrix* m : matrices) {
    max_rows = std::max(max_rows, m->rows());
    max_cols = std::max(max_cols, m->cols());
    result.bytes += static_cast<double>(m->bytes());
  }
  std::vector<float> x(max_cols), out(max_rows);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  QuantizedActivations a;
  a.reserve(1, max_cols);
  std::vector<std::uint32_t> sinks(static_cast<std::size_t>(pool.size()));
  std::vector<WeightMatrix> weights(matrices.begin(), matrices.end());

  // The session's own matmul entry point, one token.
  const auto kernels = [&] {
    ops::WithChosenIntDot([&]<ops::IntDot kDot>() {
      for (const WeightMatrix& m : weights) ops::ParallelMatMul<kDot, 1>(pool, {&m}, x.data(), 1, {out.data()}, a);
    });
  };
  // The same row blocks' share of each matrix's bytes (whole lines), in four streams as
  // the kernels read them.
  const auto reads = [&] {
    for (const QuantizedMatrix* m : matrices) {
      const std::size_t blocks = m->rows() / kRowBlock, lines = (m->bytes() + 63) / 64;
      pool.parallel_for(blocks, [&](int thread, std::size_t begin, std::size_t end) {
        const std::size_t first = begin * lines / blocks * 64, last = std::min(m->bytes(), end * lines / blocks * 64);
        sinks[static_cast<std::size_t>(thread)] ^=
            read_streams<4>(reinterpret_cast<const std::uint32_t*>(m->weights() + first), (last - first) / 4);
      }, quantized_pass_blocks(m->format(), 1));
    }
  };
  std::vector<double> kernel_times, read_times;
  for (int run = 0; run < runs; ++run) {
    kernel_times.push_back(seconds_of(kernels));
    read_times.push_back(seconds_of(reads));
  }
  volatile std::uint32_t sink = sinks[0];
  (void)sink;
  result.kernel_s = median(kernel_times);
  result.read_s = median(read_times);
  return result;
}

}  // namespace gemma4::bench
