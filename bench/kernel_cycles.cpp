// Core cycles per 64 bytes of weights of each quantized kernel (per token for prefill),
// weights in cache, for every integer dot this build's target has. The measured column
// of bench/mca/kernel_table.py's table, whose estimates come from llvm-mca over the inner
// loops of these same functions (the script compiles this file to assembly).
//   gemma4_bench_kernel_cycles [--runs N]
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "bench_util.hpp"
#include "gemma4/ops/quantized_matmul-inl.h"

namespace gemma4::bench {
namespace ops = gemma4::HWY_NAMESPACE;
using ops::IntDot;

// One tile function over every row block of w and every whole tile of tokens.
template <std::size_t kR, std::size_t kT, typename Tile>
void all_tiles(const QuantizedMatrix& w, const QuantizedActivations& a, float* out, Tile tile) {
  for (std::size_t b = 0; b + kR <= w.rows() / kRowBlock; b += kR) {
    for (std::size_t t = 0; t + kT <= a.tokens; t += kT) tile.template operator()<kR, kT>(w, b, a, t, out);
  }
}

// The decode and prefill kernels as QuantizedMatMul<kDot> runs them, one named function
// each (extern "C", so the script finds its assembly): gemma4_kernel_<kernel>_<dot>.
template <IntDot kDot>
struct Kernels {
  static constexpr bool kMatrixTiles = kDot == IntDot::kI8mm;
  static constexpr std::size_t kInt4PrefillTokens = kMatrixTiles ? kInt4MatrixTokens : gemma4::kInt4PrefillTokens;
  static void int8_decode(const QuantizedMatrix& w, const QuantizedActivations& a, float* out) {
    all_tiles<kInt8DecodePass, 1>(w, a, out, []<std::size_t kR, std::size_t kT>(auto&&... args) { ops::Int8Tile<kR, kT, kDot>(args...); });
  }
  static void int4_decode(const QuantizedMatrix& w, const QuantizedActivations& a, float* out) {
    all_tiles<kInt4Pass, 1>(w, a, out, []<std::size_t kR, std::size_t kT>(auto&&... args) { ops::Int4Tile<kR, kT, kDot>(args...); });
  }
  static void int8_prefill(const QuantizedMatrix& w, const QuantizedActivations& a, float* out) {
    all_tiles<kInt8PrefillPass, kInt8PrefillTokens>(w, a, out, []<std::size_t kR, std::size_t kT>(auto&&... args) {
#if GEMMA4_ARM_DOT
      if constexpr (kMatrixTiles) return ops::Int8MatrixTile<kR, kT>(args...);
#endif
      ops::Int8Tile<kR, kT, kDot>(args...);
    });
  }
  static void int4_prefill(const QuantizedMatrix& w, const QuantizedActivations& a, float* out) {
    all_tiles<kInt4Pass, kInt4PrefillTokens>(w, a, out, []<std::size_t kR, std::size_t kT>(auto&&... args) {
#if GEMMA4_ARM_DOT
      if constexpr (kMatrixTiles) return ops::Int4MatrixTile<kR, kT>(args...);
#endif
      ops::Int4Tile<kR, kT, kDot>(args...);
    });
  }
};

}  // namespace gemma4::bench

using gemma4::QuantizedActivations;
using gemma4::QuantizedMatrix;
#define GEMMA4_KERNEL(kernel, dot)                                                                                \
  extern "C" HWY_NOINLINE void gemma4_kernel_##kernel##_##dot(const QuantizedMatrix& w, const QuantizedActivations& a, \
                                                               float* out) {                                          \
    gemma4::bench::Kernels<gemma4::bench::IntDot::k##dot>::kernel(w, a, out);                                     \
  }
#define GEMMA4_KERNELS(dot)        \
  GEMMA4_KERNEL(int8_decode, dot)  \
  GEMMA4_KERNEL(int4_decode, dot)  \
  GEMMA4_KERNEL(int8_prefill, dot) \
  GEMMA4_KERNEL(int4_prefill, dot)
GEMMA4_KERNELS(Portable)
#if GEMMA4_INT_DOT_PAIRS
GEMMA4_KERNELS(Pairs)
#endif
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
GEMMA4_KERNELS(Vnni)
#endif
#if GEMMA4_ARM_DOT
GEMMA4_KERNELS(Sdot)
GEMMA4_KERNELS(I8mm)
#endif

namespace gemma4::bench {

using KernelFn = void (*)(const QuantizedMatrix&, const QuantizedActivations&, float*);

// Core cycles per second, from a chain of dependent integer adds (one cycle each on
// every core this runs on), timed right after each kernel run: the clock that run had,
// turbo and a shared machine's slow-downs included.
double cycles_per_second() {
  constexpr std::uint64_t kAdds = 20'000'000;
  std::uint64_t x = 0;
  const double s = seconds_of([&] {
    for (std::uint64_t i = 0; i < kAdds / 4; ++i) {
#if defined(__x86_64__)
      asm volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
#elif defined(__aarch64__)
      asm volatile("add %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1" : "+r"(x));
#else
#error "no add chain for this architecture"
#endif
    }
  });
  return static_cast<double>(kAdds) / s;
}

struct Case {
  const char* kernel;
  WeightFormat format;
  std::size_t tokens;  // per tile
};

int run(int runs) {
  // 64 rows x 1024 columns: 64 KiB of int8 (L2 everywhere), a whole number of passes and
  // tiles, and inner loops long enough that a tile's set-up costs little.
  constexpr std::size_t kRows = 64, kCols = 1024;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> weights(kRows * kCols), x(12 * kCols), out(12 * kRows);
  for (float& v : weights) v = normal(rng) * 0.05f;
  for (float& v : x) v = normal(rng);
  struct Dot {
    const char* name;
    bool available;
    KernelFn fns[4];
    std::size_t int4_prefill_tokens;
  };
#define GEMMA4_DOT(dot, available)                                                                              \
  Dot{#dot, available, {gemma4_kernel_int8_decode_##dot, gemma4_kernel_int4_decode_##dot, gemma4_kernel_int8_prefill_##dot, \
                        gemma4_kernel_int4_prefill_##dot},                                                  \
      Kernels<IntDot::k##dot>::kInt4PrefillTokens}
  const std::vector<Dot> dots = {
      GEMMA4_DOT(Portable, true),
#if GEMMA4_INT_DOT_PAIRS
      GEMMA4_DOT(Pairs, true),
#endif
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
      GEMMA4_DOT(Vnni, ops::HaveVnni()),
#endif
#if GEMMA4_ARM_DOT
      GEMMA4_DOT(Sdot, arm_features().dotprod),
      GEMMA4_DOT(I8mm, arm_features().i8mm),
#endif
  };
  fmt::print("target {}, about {:.2f} GHz (add chain); cycles per 64 bytes of weights (per token for prefill), in cache, "
             "median of {}:\n", hwy::TargetName(HWY_TARGET), cycles_per_second() / 1e9, runs);
  fmt::print("{:<14}", "kernel");
  for (const Dot& dot : dots) fmt::print("{:>10}", dot.name);
  fmt::print("\n");
  const Case cases[] = {{"int8_decode", WeightFormat::kInt8, 1},
                        {"int4_decode", WeightFormat::kInt4, 1},
                        {"int8_prefill", WeightFormat::kInt8, kInt8PrefillTokens},
                        {"int4_prefill", WeightFormat::kInt4, 0}};  // 0: the dot's own tile
  for (std::size_t k = 0; k < 4; ++k) {
    const Case& c = cases[k];
    QuantizedMatrix w(c.format, kRows, kCols);
    w.quantize_blocks(weights.data(), 0, kRows / kRowBlock);
    const double weight_bytes = static_cast<double>(kRows * kCols) / (c.format == WeightFormat::kInt8 ? 1 : 2);
    fmt::print("{:<14}", c.kernel);
    for (const Dot& dot : dots) {
      if (!dot.available) {
        fmt::print("{:>10}", "-");
        continue;
      }
      const std::size_t tokens = c.tokens ? c.tokens : dot.int4_prefill_tokens;
      QuantizedActivations a;
      a.reserve(tokens, kCols);
      ops::QuantizeActivations(x.data(), tokens, kCols, a);
      constexpr int kRepeats = 500;
      std::vector<double> cycles;
      for (int r = 0; r < runs; ++r) {
        const double s = seconds_of([&] {
          for (int i = 0; i < kRepeats; ++i) dot.fns[k](w, a, out.data());
        });
        cycles.push_back(s * cycles_per_second() / kRepeats / (weight_bytes / 64) / static_cast<double>(tokens));
      }
      fmt::print("{:>10.2f}", median(cycles));
    }
    fmt::print("\n");
  }
  return 0;
}

}  // namespace gemma4::bench

int main(int argc, char** argv) {
  CLI::App app{"Cycles per 64 bytes of weights of the quantized kernels, weights in cache"};
  int runs = 7;
  app.add_option("--runs", runs, "timed runs per kernel (the median is printed)")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  return gemma4::bench::run(runs);
}
