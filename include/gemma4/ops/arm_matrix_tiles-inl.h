// ARM's USMMLA matrix tiles (Armv8.6 i8mm) for passes of several tokens: 2 rows x 8
// columns of weights times 2 tokens x 8 columns in one instruction, twice USDOT's
// products. Compiled for Highway's NEON target on aarch64 only (GEMMA4_ARM_DOT);
// ops/quantized_matmul-inl.h uses them with IntDot::kI8mm.
#ifndef GEMMA4_OPS_ARM_MATRIX_TILES_INL_H_
#define GEMMA4_OPS_ARM_MATRIX_TILES_INL_H_
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "gemma4/quant/quantized_matrix.hpp"
#include "gemma4/ops/quantized_activations.hpp"

#endif  // GEMMA4_OPS_ARM_MATRIX_TILES_INL_H_

#if defined(GEMMA4_OPS_ARM_MATRIX_TILES_TOGGLE) == defined(HWY_TARGET_TOGGLE)
#ifdef GEMMA4_OPS_ARM_MATRIX_TILES_TOGGLE
#undef GEMMA4_OPS_ARM_MATRIX_TILES_TOGGLE
#else
#define GEMMA4_OPS_ARM_MATRIX_TILES_TOGGLE
#endif

#include "gemma4/ops/int_dot-inl.h"
#include "gemma4/ops/quantized_tiles-inl.h"
#include "hwy/highway.h"

// Only NEON on aarch64 has them: other targets compile nothing here (an empty
// HWY_BEFORE_NAMESPACE region is a clang warning).
#if GEMMA4_ARM_DOT
HWY_BEFORE_NAMESPACE();
namespace gemma4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// USMMLA multiplies 2 rows x 8 columns of unsigned weights by 2 tokens x 8 columns of
// signed activations into a 2 x 2 block of sums: twice USDOT's products per instruction.
// Two vectors of 4 rows' quads interleave into 2 rows x 8 columns; the sums unzip back
// into one vector of rows per token, where the kernels' epilogues take over unchanged.
using D64 = hn::Repartition<std::int64_t, DQ>;

HWY_INLINE VQ MatrixMulAdd(VQ acc, VQ w, VQ x) { return ArmDotAccumulate<ArmDot::kUsmmla>(acc, w, x); }

// Columns [c, c + 8) of tokens t and t + 1, as USMMLA's second operand.
HWY_INLINE VQ TokenPair(const QuantizedActivations& a, std::size_t t, std::size_t c) {
  const D64 d64;
  std::int64_t first, second;
  std::memcpy(&first, a.q.data() + t * a.cols + c, 8);
  std::memcpy(&second, a.q.data() + (t + 1) * a.cols + c, 8);
  return hn::BitCast(DQ(), hn::InterleaveLower(d64, hn::Set(d64, first), hn::Set(d64, second)));
}

// Rows [0, 4) of sums for the tokens of a pair: from {rows 0-1, rows 2-3} x {t, t + 1}.
HWY_INLINE VQ FirstOfPair(VQ rows01, VQ rows23) { return hn::ConcatEven(DQ(), rows23, rows01); }
HWY_INLINE VQ SecondOfPair(VQ rows01, VQ rows23) { return hn::ConcatOdd(DQ(), rows23, rows01); }

// acc[r][h][p] += rows[r][h] (rows 0-1 or 2-3 of block r, 8 columns from c) times the
// same columns of tokens token + 2p and token + 2p + 1.
template <std::size_t kR, std::size_t kTokenPairs>
HWY_INLINE void MatrixStep(const VQ (&rows)[kR][2], const QuantizedActivations& a, std::size_t token, std::size_t c,
                           VQ (&acc)[kR][2][kTokenPairs]) {
  HWY_UNROLL(16)
  for (std::size_t p = 0; p < kTokenPairs; ++p) {
    const VQ x = TokenPair(a, token + 2 * p, c);
    HWY_UNROLL(16)
    for (std::size_t r = 0; r < kR; ++r) {
      acc[r][0][p] = MatrixMulAdd(acc[r][0][p], rows[r][0], x);
      acc[r][1][p] = MatrixMulAdd(acc[r][1][p], rows[r][1], x);
    }
  }
}

// Int8Tile with USMMLA for an even kT; the quads come in pairs (w.cols() % 8 == 0, so
// every activation group holds whole pairs).
template <std::size_t kR, std::size_t kT>
HWY_INLINE void Int8MatrixTile(const QuantizedMatrix& w, std::size_t block, const QuantizedActivations& a,
                               std::size_t token, float* HWY_RESTRICT out) {
  static_assert(kT % 2 == 0);
  const DQ d;
  const DQF df;
  const std::size_t N = hn::Lanes(d), quads = w.cols() / 4, group_quads = a.group / 4;
  const auto* tiles = reinterpret_cast<const std::int32_t*>(w.weights()) + block * quads * kRowBlock;
  for (std::size_t lane = 0; lane < kRowBlock; lane += N) {
    VQF sum[kR][kT];
    ZeroAll(df, sum);
    for (std::size_t g = 0; g < a.groups; ++g) {
      VQ acc[kR][2][kT / 2];  // [block][rows 0-1 or 2-3][token pair]
      HWY_UNROLL(16)
      for (auto& halves : acc) ZeroAll(d, halves);
      const std::size_t end = std::min(quads, (g + 1) * group_quads);
      for (std::size_t q = g * group_quads; q < end; q += 2) {
        VQ rows[kR][2];
        HWY_UNROLL(16)
        for (std::size_t r = 0; r < kR; ++r) {
          PrefetchAhead<kInt8PassPrefetch>(w, tiles + (r * quads + q) * kRowBlock, 2);
          const VQ first = hn::LoadU(d, tiles + (r * quads + q) * kRowBlock + lane);
          const VQ second = hn::LoadU(d, tiles + (r * quads + q + 1) * kRowBlock + lane);
          rows[r][0] = hn::InterleaveLower(d, first, second);
          rows[r][1] = hn::InterleaveUpper(d, first, second);
        }
        MatrixStep(rows, a, token, 4 * q, acc);
      }
      AddScaledActivations(a, token, g, [&](std::size_t r, std::size_t t) {
        const std::size_t p = t / 2;
        const VQ pair_sum = t % 2 == 0 ? FirstOfPair(acc[r][0][p], acc[r][1][p]) : SecondOfPair(acc[r][0][p], acc[r][1][p]);
        return hn::Sub(pair_sum, hn::Set(d, 128 * a.sum_of(token + t, g)));
      }, sum);
    }
    StoreInt8Sums(w, block, lane, token, sum, out);
  }
}

// Int4Tile with USMMLA for an even kT. A tile's low nibbles hold columns 8o..8o+3 and its
// high ones 8o+4..8o+7, so interleaving them gives each row 8 consecutive columns.
template <std::size_t kR, std::size_t kT>
HWY_INLINE void Int4MatrixTile(const QuantizedMatrix& w, std::size_t block, const QuantizedActivations& a,
                               std::size_t token, float* HWY_RESTRICT out) {
  static_assert(kT % 2 == 0);
  const DQ d;
  const DQF df;
  const std::size_t N = hn::Lanes(d), groups = w.cols() / kInt4Group;
  const Int4Layout::Place place = w.int4_place(block);
  const std::int32_t* group_offset = a.group_offset.data() + token * groups;
  const VQ low_nibbles = hn::Set(d, 0x0F0F0F0F);
  for (std::size_t lane = 0; lane < kRowBlock; lane += N) {
    VQF sum[kR][kT];
    ZeroAll(df, sum);
    for (std::size_t g = 0; g < groups; ++g) {
      VQ acc[kR][2][kT / 2];
      HWY_UNROLL(16)
      for (auto& halves : acc) ZeroAll(d, halves);
      const auto* tiles = reinterpret_cast<const std::int32_t*>(w.weights() + place.tiles(g)) + lane;
      if (lane == 0) PrefetchInt4Group<kT>(w, place, g);
      HWY_UNROLL(16)
      for (std::size_t i = 0; i < Int4Layout::kTilesPerGroup; ++i) {
        const std::size_t o = g * Int4Layout::kTilesPerGroup + i;
        VQ rows[kR][2];
        HWY_UNROLL(16)
        for (std::size_t r = 0; r < kR; ++r) {
          const VQ packed = hn::LoadU(d, tiles + r * kInt4BlockStride + i * kRowBlock);
          const VQ low = hn::And(packed, low_nibbles), high = HighNibbles(packed);
          rows[r][0] = hn::InterleaveLower(d, low, high);
          rows[r][1] = hn::InterleaveUpper(d, low, high);
        }
        MatrixStep(rows, a, token, 8 * o, acc);
      }
      AddScaledGroup(w, place, g, lane, [&](std::size_t r, std::size_t t) {
        const std::size_t p = t / 2;
        const VQ pair_sum = t % 2 == 0 ? FirstOfPair(acc[r][0][p], acc[r][1][p]) : SecondOfPair(acc[r][0][p], acc[r][1][p]);
        return hn::Add(pair_sum, hn::Set(d, group_offset[t * groups + g]));
      }, sum);
    }
    StoreInt4Sums(w, block, lane, a, token, sum, out);
  }
}
}  // namespace HWY_NAMESPACE
}  // namespace gemma4
HWY_AFTER_NAMESPACE();
#endif  // GEMMA4_ARM_DOT

#endif  // toggle
