// Matrix products with int8 / int4 weights (layouts in quant/layout.hpp) and
// activations quantized on the fly to int8, a scale per kInt8ActivationGroup columns for
// int8 weights and per token for int4 (ops/quantized_activations.hpp): which tiles
// (ops/quantized_tiles-inl.h, ops/arm_matrix_tiles-inl.h) cover a matrix, and how many
// row blocks and tokens each takes. All integer sums are exact, so every dot product
// (ops/int_dot-inl.h) gives the same bits; the tests hold the chosen one to the last.
#ifndef GEMMA4_OPS_QUANTIZED_MATMUL_INL_H_
#define GEMMA4_OPS_QUANTIZED_MATMUL_INL_H_
#include <cstddef>

#include "gemma4/quant/quantized_matrix.hpp"
#include "gemma4/ops/quantized_activations.hpp"

namespace gemma4 {

// Row blocks per pass of QuantizedMatMul's kernels, for a weight format and token count.
// A thread's range of blocks in whole passes runs no narrower pass.
// int4 tiles take a panel (quant/layout.hpp), whatever the tokens.
inline constexpr std::size_t kInt8DecodePass = 4, kInt8PrefillPass = 3, kInt4Pass = Int4Layout::kPanelBlocks;
// Tokens per prefill tile: with the pass above, the integer sums and weight vectors of a
// tile fill AVX-512's 32 registers (int4: kInt4PrefillTokens below); int8's f32 sums,
// used once per activation group, may wait in memory (3 blocks x 4 tokens, whose sums
// all fit, was 3% slower on AVX2). ARM's matrix tiles (USMMLA) take tokens in pairs.
inline constexpr std::size_t kInt8PrefillTokens = 6, kInt4MatrixTokens = 4;
// Passes of up to kShortPassTokens tokens (decode, and verifying up to 4 drafts) are
// bound by memory like decode: they take decode's row blocks per pass, and all their
// tokens in one tile.
inline constexpr std::size_t kShortPassTokens = 5;
constexpr std::size_t quantized_pass_blocks(WeightFormat format, std::size_t tokens) {
  if (format == WeightFormat::kInt8) return tokens <= kShortPassTokens ? kInt8DecodePass : kInt8PrefillPass;
  return kInt4Pass;
}

}  // namespace gemma4
#endif  // GEMMA4_OPS_QUANTIZED_MATMUL_INL_H_

#if defined(GEMMA4_OPS_QUANTIZED_MATMUL_TOGGLE) == defined(HWY_TARGET_TOGGLE)
#ifdef GEMMA4_OPS_QUANTIZED_MATMUL_TOGGLE
#undef GEMMA4_OPS_QUANTIZED_MATMUL_TOGGLE
#else
#define GEMMA4_OPS_QUANTIZED_MATMUL_TOGGLE
#endif

#include "gemma4/ops/arm_matrix_tiles-inl.h"
#include "gemma4/ops/int_dot-inl.h"
#include "gemma4/ops/quantize_activations-inl.h"
#include "gemma4/ops/quantized_tiles-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace gemma4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Tokens per int4 tile of a pass longer than kShortPassTokens (a prefill, a batch of
// several sequences). One chain leaves room for 6: a panel's 2 x 6 integer and 2 x 6
// float accumulators and its weight vectors in 32 registers, each weight line serving 6
// tokens. On an Intel host with VNNI, prefill of 512 tokens went from 142 to 174 tok/s
// (E2B) and 63-73 to 87-88 (E4B), and a batched step of 8 E2B sequences from 1.93 to
// 1.64-1.67 decode steps (3 tokens a tile before; 7 measured no better). Two chains fit 3.
// The 16-bit pairs (one chain) take 6 on AVX2 too, whose 16 registers then spill some:
// measured as fast as 3 or faster.
template <IntDot kDot>
inline constexpr std::size_t kInt4PrefillTokens = kOneInt4Chain<kDot, kInt4Pass, 2> ? 6 : 3;


// The last n < kT tokens of row blocks kR in one tile of n, so a short pass (verifying
// a few drafts) multiplies each weight vector it loads by all of its tokens.
template <std::size_t kR, std::size_t kT, typename Tile>
HWY_INLINE void LeftoverTokens(const QuantizedMatrix& w, const QuantizedActivations& a, std::size_t block, std::size_t token,
                               std::size_t n, float* HWY_RESTRICT out, Tile tile) {
  if constexpr (kT > 1) {
    if (n == kT - 1) return tile.template operator()<kR, kT - 1>(w, block, a, token, out);
    LeftoverTokens<kR, kT - 1>(w, a, block, token, n, out, tile);
  }
}

// Row blocks kR at a time, each block's weights reused by tokens kT at a time while
// they are in cache.
template <std::size_t kR, std::size_t kT, typename Tile>
HWY_INLINE void QuantizedBlocks(const QuantizedMatrix& w, const QuantizedActivations& a, std::size_t block,
                                float* HWY_RESTRICT out, Tile tile) {
  std::size_t t = 0;
  for (; t + kT <= a.tokens; t += kT) tile.template operator()<kR, kT>(w, block, a, t, out);
  LeftoverTokens<kR, kT>(w, a, block, t, a.tokens - t, out, tile);
}

// Tile shapes: 2 * kR * kT accumulators (integer and f32) plus kR weight vectors must
// fit the 32 vector registers of AVX-512, or the compiler spills.
template <std::size_t kR, std::size_t kT, typename Tile>
HWY_INLINE void QuantizedPanels(const QuantizedMatrix& w, const QuantizedActivations& a, std::size_t first_block,
                                std::size_t end_block, float* HWY_RESTRICT out, Tile tile) {
  std::size_t b = first_block;
  for (; b + kR <= end_block; b += kR) QuantizedBlocks<kR, kT>(w, a, b, out, tile);
  for (; b < end_block; ++b) QuantizedBlocks<1, kT>(w, a, b, out, tile);
}

// QuantizedPanels for int4, whose tiles of two blocks must start a panel: a range that
// starts inside one takes its second block alone first.
template <std::size_t kT, typename Tile>
HWY_INLINE void Int4Panels(const QuantizedMatrix& w, const QuantizedActivations& a, std::size_t first_block,
                           std::size_t end_block, float* HWY_RESTRICT out, Tile tile) {
  static_assert(kInt4Pass == 2);
  if (first_block % 2 != 0 && first_block < end_block) QuantizedBlocks<1, kT>(w, a, first_block++, out, tile);
  QuantizedPanels<kInt4Pass, kT>(w, a, first_block, end_block, out, tile);
}

// out[t, r] = sum_c w[r, c] x[t, c] for the rows of blocks [first_block, end_block) and
// every token of a; out is [tokens, rows]. The result of a row does not depend on the
// block range, so threads may split the blocks any way.
template <IntDot kDot>
HWY_NOINLINE void QuantizedMatMul(const QuantizedMatrix& w, const QuantizedActivations& a, std::size_t first_block,
                                  std::size_t end_block, float* HWY_RESTRICT out) {
  if (a.cols != w.cols() || a.format != w.format()) {
    fail(ErrorKind::kInvalidArgument, "matmul: activations of {} columns quantized for {} weights, for {} weights of {} columns", a.cols,
         weight_format_name(a.format), weight_format_name(w.format()), w.cols());
  }
#if GEMMA4_ARM_DOT
  if constexpr (kDot == IntDot::kI8mm) {
    // Prefill in matrix tiles, a token left over and decode with USDOT.
    if (a.tokens > 1 && w.format() == WeightFormat::kInt8 && w.cols() % 8 == 0) {
      const auto tile = []<std::size_t kR, std::size_t kT>(auto&&... args) {
        if constexpr (kT % 2 == 0) Int8MatrixTile<kR, kT>(args...);
        else Int8Tile<kR, kT, kDot>(args...);
      };
      return QuantizedPanels<kInt8PrefillPass, kInt8PrefillTokens>(w, a, first_block, end_block, out, tile);
    }
    if (a.tokens > 1 && w.format() == WeightFormat::kInt4) {
      const auto tile = []<std::size_t kR, std::size_t kT>(auto&&... args) {
        if constexpr (kT % 2 == 0) Int4MatrixTile<kR, kT>(args...);
        else Int4Tile<kR, kT, kDot>(args...);
      };
      return Int4Panels<kInt4MatrixTokens>(w, a, first_block, end_block, out, tile);
    }
  }
#endif
  if (w.format() == WeightFormat::kInt8) {
    // Short passes take four row blocks at a time: four read streams per thread, which
    // memory serves faster than one (gemma4_bench_model's kernel/read column).
    const auto tile = []<std::size_t kR, std::size_t kT>(auto&&... args) { Int8Tile<kR, kT, kDot>(args...); };
    a.tokens <= kShortPassTokens ? QuantizedPanels<kInt8DecodePass, kShortPassTokens>(w, a, first_block, end_block, out, tile)
                                 : QuantizedPanels<kInt8PrefillPass, kInt8PrefillTokens>(w, a, first_block, end_block, out, tile);
  } else {
    const auto tile = []<std::size_t kR, std::size_t kT>(auto&&... args) { Int4Tile<kR, kT, kDot>(args...); };
    a.tokens <= kShortPassTokens ? Int4Panels<kShortPassTokens>(w, a, first_block, end_block, out, tile)
                                 : Int4Panels<kInt4PrefillTokens<kDot>>(w, a, first_block, end_block, out, tile);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gemma4
HWY_AFTER_NAMESPACE();

#endif  // toggle
