// Core cycles per 64 bytes of weights of each quantized kernel (per token for tiles of several),
// weights in cache, for every integer dot this build's target has. The measured column
// of bench/mca/kernel_table.py's table, whose estimates come from llvm-mca over the inner
// loops of these same functions (the script compiles this file to assembly).
//   gemma4_bench_kernel_cycles [--runs N]
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <type_traits>
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

// The kernels as QuantizedMatMul<kDot> runs them, one named function each (extern "C",
// so the script finds its assembly): gemma4_kernel_<kernel>_<dot>.
template <IntDot kDot>
struct Kernels {
  static constexpr bool kMatrixTiles = kDot == IntDot::kI8mm;
  static constexpr std::size_t kInt4PrefillTokens = kMatrixTiles ? kInt4MatrixTokens : ops::kInt4PrefillTokens<kDot>;
  static constexpr std::size_t kVerifyTokens = 4;  // verifying 3 drafts

  // The tile of a format, as QuantizedMatMul<kDot> picks it: USMMLA's matrix tiles for an
  // even number of tokens with i8mm.
  template <WeightFormat kFormat>
  static constexpr auto kTile = []<std::size_t kR, std::size_t kT>(auto&&... args) {
#if GEMMA4_ARM_DOT
    if constexpr (kMatrixTiles && kT % 2 == 0) {
      if constexpr (kFormat == WeightFormat::kInt8) return ops::Int8MatrixTile<kR, kT>(args...);
      else return ops::Int4MatrixTile<kR, kT>(args...);
    }
#endif
    if constexpr (kFormat == WeightFormat::kInt8) ops::Int8Tile<kR, kT, kDot>(args...);
    else ops::Int4Tile<kR, kT, kDot>(args...);
  };

  static void int8_decode(const QuantizedMatrix& w, const QuantizedActivations& a, float* out) {
    all_tiles<kInt8DecodePass, 1>(w, a, out, kTile<WeightFormat::kInt8>);
  }
  static void int4_decode(const QuantizedMatrix& w, const QuantizedActivations& a, float* out) {
    all_tiles<kInt4Pass, 1>(w, a, out, kTile<WeightFormat::kInt4>);
  }
  static void int8_prefill(const QuantizedMatrix& w, const QuantizedActivations& a, float* out) {
    all_tiles<kInt8PrefillPass, kInt8PrefillTokens>(w, a, out, kTile<WeightFormat::kInt8>);
  }
  static void int4_prefill(const QuantizedMatrix& w, const QuantizedActivations& a, float* out) {
    all_tiles<kInt4Pass, kInt4PrefillTokens>(w, a, out, kTile<WeightFormat::kInt4>);
  }
  static void int4_verify(const QuantizedMatrix& w, const QuantizedActivations& a, float* out) {
    all_tiles<kInt4Pass, kVerifyTokens>(w, a, out, kTile<WeightFormat::kInt4>);
  }

  // What one iteration of each kernel's innermost loop reads and serves: vectors of
  // weights (one per row block and quad, int8, two quads per matrix tile; one per block
  // and 8-column tile, int4, four tiles to a group) and tokens. bench/mca/kernel_table.py
  // reads these from the assembly to turn llvm-mca's cycles per iteration into cycles per
  // 64 bytes.
  struct LoopShape {
    std::size_t weight_vectors, tokens;
  };
  static constexpr LoopShape kInt8Decode{kInt8DecodePass, 1}, kInt4Decode{kInt4Pass * Int4Layout::kTilesPerGroup, 1},
      kInt8Prefill{kInt8PrefillPass * (kMatrixTiles ? 2 : 1), kInt8PrefillTokens},
      kInt4Prefill{kInt4Pass * Int4Layout::kTilesPerGroup, kInt4PrefillTokens},
      kInt4Verify{kInt4Pass * Int4Layout::kTilesPerGroup, kVerifyTokens};
};

}  // namespace gemma4::bench

using gemma4::QuantizedActivations;
using gemma4::QuantizedMatrix;
// A kernel's function and its loop shape (gemma4_loop_<kernel>_<dot>: weight vectors,
// tokens), both for the script.
#define GEMMA4_KERNEL(kernel, Kernel, dot)                                                                                  \
  extern "C" HWY_NOINLINE void gemma4_kernel_##kernel##_##dot(const QuantizedMatrix& w, const QuantizedActivations& a, \
                                                               float* out) {                                          \
    gemma4::bench::Kernels<gemma4::bench::IntDot::k##dot>::kernel(w, a, out);                                         \
  }                                                                                                                   \
  extern "C" const std::size_t gemma4_loop_##kernel##_##dot[2] = {                                                    \
      gemma4::bench::Kernels<gemma4::bench::IntDot::k##dot>::k##Kernel.weight_vectors,                                \
      gemma4::bench::Kernels<gemma4::bench::IntDot::k##dot>::k##Kernel.tokens};
#define GEMMA4_KERNELS(dot)                     \
  GEMMA4_KERNEL(int8_decode, Int8Decode, dot)   \
  GEMMA4_KERNEL(int4_decode, Int4Decode, dot)   \
  GEMMA4_KERNEL(int8_prefill, Int8Prefill, dot) \
  GEMMA4_KERNEL(int4_prefill, Int4Prefill, dot) \
  GEMMA4_KERNEL(int4_verify, Int4Verify, dot)
GEMMA4_KERNELS(Portable)
#if GEMMA4_INT_DOT_INT16
GEMMA4_KERNELS(Int16)
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

// Core cycles per second, from a chain of dependent multiplies (3 cycles each on every
// x86 core since Core 2 and Zen; an add chain is no clock on cores whose renamer folds
// add-immediates, as Golden Cove's does), or of adds on ARM, timed right after each
// kernel run: the clock that run had, turbo and a shared machine's slow-downs included.
double cycles_per_second() {
  constexpr std::uint64_t kSteps = 20'000'000;
  std::uint64_t x = 1;
#if defined(__x86_64__)
  constexpr double kCyclesPerStep = 3;
#else
  constexpr double kCyclesPerStep = 1;
#endif
  const double s = seconds_of([&] {
    for (std::uint64_t i = 0; i < kSteps / 4; ++i) {
#if defined(__x86_64__)
      asm volatile("imul %0, %0\n\timul %0, %0\n\timul %0, %0\n\timul %0, %0" : "+r"(x));
#elif defined(__aarch64__)
      asm volatile("add %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1" : "+r"(x));
#else
#error "no dependent chain for this architecture"
#endif
    }
  });
  return static_cast<double>(kSteps) * kCyclesPerStep / s;
}

struct Case {
  const char* kernel;
  WeightFormat format;
};

int run(int runs) {
  // 192 rows (12 row blocks: whole passes of 4, 3 and 2) x 128 columns: 24 KiB of int8,
  // in L1 as llvm-mca assumes, with inner loops of 32 quads.
  constexpr std::size_t kRows = 192, kCols = 128;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> weights(kRows * kCols), x(12 * kCols), out(12 * kRows);
  for (float& v : weights) v = normal(rng) * 0.05f;
  for (float& v : x) v = normal(rng);
  struct Dot {
    const char* name;
    bool available;
    KernelFn fns[5];
    std::size_t tokens[5];  // per tile
  };
#define GEMMA4_DOT(dot, available)                                                                                             \
  Dot{#dot,                                                                                                                    \
      available,                                                                                                               \
      {gemma4_kernel_int8_decode_##dot, gemma4_kernel_int4_decode_##dot, gemma4_kernel_int8_prefill_##dot,                     \
       gemma4_kernel_int4_prefill_##dot, gemma4_kernel_int4_verify_##dot},                                                     \
      {gemma4_loop_int8_decode_##dot[1], gemma4_loop_int4_decode_##dot[1], gemma4_loop_int8_prefill_##dot[1],                  \
       gemma4_loop_int4_prefill_##dot[1], gemma4_loop_int4_verify_##dot[1]}}
  const std::vector<Dot> dots = {
      GEMMA4_DOT(Portable, true),
#if GEMMA4_INT_DOT_INT16
      GEMMA4_DOT(Int16, true),
#endif
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
      GEMMA4_DOT(Vnni, ops::HaveVnni()),
#endif
#if GEMMA4_ARM_DOT
      GEMMA4_DOT(Sdot, arm_features().dotprod),
      GEMMA4_DOT(I8mm, arm_features().i8mm),
#endif
  };
  fmt::print("target {}, about {:.2f} GHz (dependent chain); cycles per 64 bytes of weights (per token for several), in L1, "
             "median of {}:\n", hwy::TargetName(HWY_TARGET), cycles_per_second() / 1e9, runs);
  fmt::print("{:<14}", "kernel");
  for (const Dot& dot : dots) fmt::print("{:>10}", dot.name);
  fmt::print("\n");
  const Case cases[] = {{"int8_decode", WeightFormat::kInt8},
                        {"int4_decode", WeightFormat::kInt4},
                        {"int8_prefill", WeightFormat::kInt8},
                        {"int4_prefill", WeightFormat::kInt4},
                        {"int4_verify", WeightFormat::kInt4}};
  static_assert(std::size(cases) == std::extent_v<decltype(Dot::fns)>);
  for (std::size_t k = 0; k < std::size(cases); ++k) {
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
      const std::size_t tokens = dot.tokens[k];
      QuantizedActivations a;
      a.reserve(tokens, kCols);
      ops::QuantizeActivations(x.data(), tokens, kCols, c.format, a);
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
