#pragma once
// The machine's limits, measured in the run that compares against them: streaming
// memory read bandwidth over all threads, and the peak rates of the two instructions
// the matmuls use (f32 FMA for stored bf16/f32 weights; the 4-way int8 dot product,
// VPDPBUSD where the target has it, for int8/int4). One multiply-add counts as one op.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "bench_util.hpp"
#include "gemma4/ops/int_dot-inl.h"
#include "gemma4/parallel/thread_pool.hpp"
#include "hwy/aligned_allocator.h"
#include "hwy/highway.h"

namespace gemma4::bench {
namespace hn = hwy::HWY_NAMESPACE;
namespace ops = gemma4::HWY_NAMESPACE;

struct MachineLimits {
  double read_bytes_per_s = 0;
  double f32_fma_per_s = 0;
  double int8_dot_per_s = 0;  // int8 multiply-adds per second
};

// Reads words [0, count) of p as kStreams interleaved sequential streams (what does not
// split into whole steps per stream, after them in one), and returns their xor so that
// the loads are not dead code. Several streams keep more prefetchers busy, as a matmul
// over several row blocks does.
template <std::size_t kStreams>
std::uint32_t read_streams(const std::uint32_t* p, std::size_t count) {
  const hn::ScalableTag<std::uint32_t> d;
  const std::size_t N = hn::Lanes(d), step = 4 * N;
  const std::size_t length = count / kStreams / step * step;
  hn::Vec<decltype(d)> acc[kStreams][4];
  HWY_UNROLL(16)
  for (auto& stream : acc) {
    HWY_UNROLL(16)
    for (auto& a : stream) a = hn::Zero(d);
  }
  for (std::size_t i = 0; i < length; i += step) {
    HWY_UNROLL(16)
    for (std::size_t s = 0; s < kStreams; ++s) {
      HWY_UNROLL(16)
      for (std::size_t j = 0; j < 4; ++j) acc[s][j] = hn::Xor(acc[s][j], hn::LoadU(d, p + s * length + i + j * N));
    }
  }
  auto total = hn::Zero(d);
  HWY_UNROLL(16)
  for (auto& stream : acc) {
    HWY_UNROLL(16)
    for (auto& a : stream) total = hn::Xor(total, a);
  }
  std::size_t i = kStreams * length;
  for (; i + N <= count; i += N) total = hn::Xor(total, hn::LoadU(d, p + i));
  std::uint32_t rest = hn::GetLane(total);
  for (; i < count; ++i) rest ^= p[i];
  return rest;
}

// Reads a buffer far larger than the caches with every thread reading each range it
// takes (whole MiBs) with read_streams. The best of 1 and 4 streams counts.
inline double read_bandwidth(ThreadPool& pool, int runs) {
  const std::size_t bytes = std::size_t{1} << 30, words = bytes / sizeof(std::uint32_t);
  const auto buffer = hwy::AllocateAligned<std::uint32_t>(words);
  pool.parallel_for(words, [&](int, std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) buffer[i] = static_cast<std::uint32_t>(i);
  });
  std::vector<std::uint32_t> sinks(static_cast<std::size_t>(pool.size()));
  constexpr std::size_t kGrain = (std::size_t{1} << 20) / sizeof(std::uint32_t);
  const auto read = [&]<std::size_t kStreams>() {
    pool.parallel_for(words, [&](int thread, std::size_t begin, std::size_t end) {
      sinks[static_cast<std::size_t>(thread)] ^= read_streams<kStreams>(buffer.get() + begin, end - begin);
    }, kGrain);
  };
  std::vector<double> rates;
  for (int run = 0; run < runs; ++run) {
    const double one = seconds_of([&] { read.template operator()<1>(); });
    const double four = seconds_of([&] { read.template operator()<4>(); });
    rates.push_back(static_cast<double>(bytes) / std::min(one, four));
  }
  volatile std::uint32_t sink = sinks[0];
  (void)sink;
  return median(rates);
}

// The peak loops run kChains independent accumulators per thread, so the rate is
// throughput-bound. Loops over arrays of vectors are unrolled, or GCC at -O2 keeps the
// arrays in memory and measures store forwarding instead. The work is kPieces pieces per
// thread, so that threads on faster cores take more of them, as in a matmul.
inline constexpr int kChains = 12;

template <typename Step>
double peak_rate(ThreadPool& pool, int runs, double ops_per_step, Step step) {
  constexpr std::size_t kSteps = std::size_t{1} << 20, kPieces = 32;
  const std::size_t pieces = kPieces * static_cast<std::size_t>(pool.size());
  std::vector<double> rates;
  for (int run = 0; run < runs; ++run) {
    const double seconds = seconds_of([&] {
      pool.parallel_for(pieces, [&](int, std::size_t begin, std::size_t end) { step(kSteps * (end - begin)); });
    });
    rates.push_back(ops_per_step * static_cast<double>(kSteps * pieces) / seconds);
  }
  return median(rates);
}

// f32 multiply-adds per second (FMA).
inline double f32_fma_rate(ThreadPool& pool, int runs) {
  const hn::ScalableTag<float> df;
  return peak_rate(pool, runs, static_cast<double>(kChains * hn::Lanes(df)), [](std::size_t steps) {
    const hn::ScalableTag<float> d;
    hn::Vec<decltype(d)> acc[kChains];
    HWY_UNROLL(16)
    for (int c = 0; c < kChains; ++c) acc[c] = hn::Set(d, static_cast<float>(c));
    const auto x = hn::Set(d, 0.999f), y = hn::Set(d, 1e-7f);
    for (std::size_t s = 0; s < steps; ++s) {
      HWY_UNROLL(16)
      for (auto& a : acc) a = hn::MulAdd(a, x, y);
    }
    auto total = acc[0];  // every chain feeds the result, so none is dead code
    HWY_UNROLL(16)
    for (int c = 1; c < kChains; ++c) total = hn::Add(total, acc[c]);
    volatile float sink = hn::GetLane(total);
    (void)sink;
  });
}

// `steps` rounds of kChains int8 dot products, as the quantized kernels multiply.
template <ops::IntDot kDot>
void int8_dots(std::size_t steps) {
  const ops::DQ d;
  // Each chain has its own activations and the weights change every step (one add per
  // kChains dots): with the same products in every chain, or the same every step, the
  // compiler computes the portable dot once and times additions only.
  ops::VQ acc[kChains], x[kChains];
  HWY_UNROLL(16)
  for (int c = 0; c < kChains; ++c) {
    acc[c] = hn::Set(d, c);
    x[c] = hn::Set(d, 0x01FF01FF + c);
  }
  const hn::RebindToUnsigned<decltype(d)> du;
  auto w = hn::Set(du, 0x01020304u);
  const auto w_step = hn::Set(du, 0x01010101u);
  for (std::size_t s = 0; s < steps; ++s) {
    w = hn::Add(w, w_step);
    HWY_UNROLL(16)
    for (int c = 0; c < kChains; ++c) acc[c] = ops::DotQuads<kDot>(acc[c], hn::BitCast(d, w), x[c]);
  }
  auto total = acc[0];
  HWY_UNROLL(16)
  for (int c = 1; c < kChains; ++c) total = hn::Add(total, acc[c]);
  volatile std::int32_t sink = hn::GetLane(total);
  (void)sink;
}

// int8 multiply-adds per second, with the instruction the quantized kernels use.
inline double int8_dot_rate(ThreadPool& pool, int runs) {
  const ops::DQ dq;
  return peak_rate(pool, runs, static_cast<double>(kChains * hn::Lanes(dq) * 4), [](std::size_t steps) {
    ops::WithChosenIntDot([&]<ops::IntDot kDot>() { int8_dots<kDot>(steps); });
  });
}

inline MachineLimits measure_machine(ThreadPool& pool, int runs) {
  return {read_bandwidth(pool, runs), f32_fma_rate(pool, runs), int8_dot_rate(pool, runs)};
}

}  // namespace gemma4::bench
