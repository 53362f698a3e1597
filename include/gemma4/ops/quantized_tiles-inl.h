// The int8 and int4 tiles of the integer matrix products (ops/quantized_matmul-inl.h
// runs them): out[t, r] for a few row blocks and tokens at a time, with whichever dot
// product (ops/int_dot-inl.h) the pass was compiled for. Every target runs these;
// ARM's USMMLA matrix tiles are in ops/arm_matrix_tiles-inl.h.
//
// For a token t with activations x ~ q_t * s_t and a row with weights w ~ (u - o) * d,
// u the stored unsigned value and o its offset (128 for int8, 8 for int4), over a group
// of columns where s_t and d are constant:
//   dot = d * s_t * (sum(u * q_t) - o * sum(q_t)).
// int8: s_t varies per activation group (kInt8ActivationGroup columns), d per row; int4:
// d per 32-column group, s_t per token (ops/quantized_activations.hpp). Each group's integer sum is
// exact, and the groups add up in f32 in column order. Unsigned weights times signed
// activations is what VPDPBUSD multiplies.
#ifndef GEMMA4_OPS_QUANTIZED_TILES_INL_H_
#define GEMMA4_OPS_QUANTIZED_TILES_INL_H_
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "gemma4/quant/quantized_matrix.hpp"
#include "gemma4/ops/quantized_activations.hpp"

namespace gemma4 {

// A tile of several tokens does so much arithmetic per weight line that the core no
// longer runs far enough ahead of its loads for the hardware prefetchers to hide memory
// latency: a pass over 4 tokens streamed its weights at the speed of reading them plus
// computing, 1.2-1.8 times a decode step's time. Tiles fetch their lines this far ahead
// of each read stream themselves (int8 reads four streams per thread, int4 one).
// `locality` is __builtin_prefetch's: 3 into every cache level, 2 into L2 and beyond.
// The best distance depends on the core: on an Intel host with VNNI, int4 decode into L1
// read at 0.66 of a plain read 4 KiB ahead (the distance tuned on Zen 5) and 0.86 2 KiB
// ahead, into L2 0.90 3 KiB ahead and within 0.03 of that from 2 to 4 KiB; int8 decode,
// 0.92 without fetching ahead (as on Zen 5, where it gained nothing), read at 0.97 2 KiB
// ahead into L2. Passes of several tokens did best into L1 (bench/README.md).
struct PrefetchDistance {
  std::size_t bytes;
  int locality;
};
inline constexpr PrefetchDistance kInt8DecodePrefetch{2048, 2}, kInt8PassPrefetch{1024, 3};
inline constexpr PrefetchDistance kInt4DecodePrefetch{3072, 2}, kInt4PassPrefetch{2048, 3};

}  // namespace gemma4
#endif  // GEMMA4_OPS_QUANTIZED_TILES_INL_H_

#if defined(GEMMA4_OPS_QUANTIZED_TILES_TOGGLE) == defined(HWY_TARGET_TOGGLE)
#ifdef GEMMA4_OPS_QUANTIZED_TILES_TOGGLE
#undef GEMMA4_OPS_QUANTIZED_TILES_TOGGLE
#else
#define GEMMA4_OPS_QUANTIZED_TILES_TOGGLE
#endif

#include "gemma4/ops/int_dot-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace gemma4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// sum[r][t] += exact(r, t) times token (token + t)'s scale of activation group g, exact(r,
// t) being the group's exact integer sum for row block r and token t: every int8 tile's
// epilogue of a group.
template <std::size_t kR, std::size_t kT, class Exact>
HWY_INLINE void AddScaledActivations(const QuantizedActivations& a, std::size_t token, std::size_t g, const Exact& exact,
                                     VQF (&sum)[kR][kT]) {
  const DQF df;
  HWY_UNROLL(16)
  for (std::size_t t = 0; t < kT; ++t) {
    const VQF scale = hn::Set(df, a.scale_of(token + t, g));
    HWY_UNROLL(16)
    for (std::size_t r = 0; r < kR; ++r) sum[r][t] = hn::MulAdd(hn::ConvertTo(df, exact(r, t)), scale, sum[r][t]);
  }
}

// Writes the f32 sums of an int8 tile, times their rows' scales.
template <std::size_t kR, std::size_t kT>
HWY_INLINE void StoreInt8Sums(const QuantizedMatrix& w, std::size_t block, std::size_t lane, std::size_t token,
                              const VQF (&sum)[kR][kT], float* HWY_RESTRICT out) {
  const DQF df;
  HWY_UNROLL(16)
  for (std::size_t r = 0; r < kR; ++r) {
    const std::size_t row = (block + r) * kRowBlock + lane;
    const VQF row_scale = hn::LoadU(df, w.row_scales() + row);
    HWY_UNROLL(16)
    for (std::size_t t = 0; t < kT; ++t) hn::StoreU(hn::Mul(sum[r][t], row_scale), df, out + (token + t) * w.rows() + row);
  }
}

// Prefetches `lines` cache lines from `first` + kAhead.bytes, those that lie before the
// end of w's bytes (why: see PrefetchDistance).
template <PrefetchDistance kAhead>
HWY_INLINE void PrefetchAhead(const QuantizedMatrix& w, const void* first, std::size_t lines) {
  const std::uintptr_t end = reinterpret_cast<std::uintptr_t>(w.packed().data() + w.packed().size());
  const std::uintptr_t ahead = reinterpret_cast<std::uintptr_t>(first) + kAhead.bytes;
  for (std::size_t i = 0; i < lines; ++i) {
    if (ahead + 64 * i < end) __builtin_prefetch(reinterpret_cast<const void*>(ahead + 64 * i), 0, kAhead.locality);
  }
}

// out[t, 16b + r] for kR row blocks from `block` and kT tokens from `token`; int8 weights,
// activations in groups of a.group columns (a multiple of 4).
template <std::size_t kR, std::size_t kT, IntDot kDot>
HWY_INLINE void Int8Tile(const QuantizedMatrix& w, std::size_t block, const QuantizedActivations& a, std::size_t token,
                         float* HWY_RESTRICT out) {
  const DQ d;
  const DQF df;
  const std::size_t N = hn::Lanes(d), quads = w.cols() / 4, group_quads = a.group / 4;
  const auto* tiles = reinterpret_cast<const std::int32_t*>(w.weights()) + block * quads * kRowBlock;
  const std::int8_t* x[kT];
  HWY_UNROLL(16)
  for (std::size_t t = 0; t < kT; ++t) x[t] = a.q.data() + (token + t) * a.cols;
  for (std::size_t lane = 0; lane < kRowBlock; lane += N) {
    VQF sum[kR][kT];
    ZeroAll(df, sum);
    for (std::size_t g = 0; g < a.groups; ++g) {
      // Each chain starts at the weights' offset times the group's activations, so it
      // ends at the exact sum (signed weights have no offset).
      VQ acc[kR][kT];
      HWY_UNROLL(16)
      for (std::size_t r = 0; r < kR; ++r) {
        HWY_UNROLL(16)
        for (std::size_t t = 0; t < kT; ++t) acc[r][t] = hn::Set(d, kSignedWeights<kDot> ? 0 : -128 * a.sum_of(token + t, g));
      }
      const std::size_t end = std::min(quads, (g + 1) * group_quads);
      for (std::size_t q = g * group_quads; q < end; ++q) {
        VQ weights[kR];
        HWY_UNROLL(16)
        for (std::size_t r = 0; r < kR; ++r) {
          PrefetchAhead<kT == 1 ? kInt8DecodePrefetch : kInt8PassPrefetch>(w, tiles + (r * quads + q) * kRowBlock, 1);
          weights[r] = hn::LoadU(d, tiles + (r * quads + q) * kRowBlock + lane);
          if constexpr (kSignedWeights<kDot>) weights[r] = hn::Xor(weights[r], hn::Set(d, static_cast<std::int32_t>(0x80808080u)));
        }
        HWY_UNROLL(16)
        for (std::size_t t = 0; t < kT; ++t) {
          const VQ xq = hn::Set(d, LoadQuad(x[t] + 4 * q));
          HWY_UNROLL(16)
          for (std::size_t r = 0; r < kR; ++r) acc[r][t] = DotQuads<kDot>(acc[r][t], weights[r], xq);
        }
      }
      AddScaledActivations(a, token, g, [&](std::size_t r, std::size_t t) { return acc[r][t]; }, sum);
    }
    StoreInt8Sums(w, block, lane, token, sum, out);
  }
}

// Group g's scales for the rows from `lane` of block r of a panel as f32: the low (g
// even) or high (g odd) bf16 halves of the scale words (Int4Layout).
HWY_INLINE VQF Int4GroupScales(const QuantizedMatrix& w, const Int4Layout::Place& place, std::size_t r, std::size_t g,
                               std::size_t lane) {
  const DQ d;
  const auto* line = w.weights() + place.scale_line(g) + r * Int4Layout::kTileBytes;
  const VQ words = hn::LoadU(d, reinterpret_cast<const std::int32_t*>(line) + lane);
  const VQ bits = g % 2 == 0 ? hn::ShiftLeft<16>(words) : hn::And(words, hn::Set(d, static_cast<std::int32_t>(0xFFFF0000u)));
  return hn::BitCast(DQF(), bits);
}

// PrefetchAhead for group g of a panel in a tile of kT tokens: its scale lines (g even)
// and its tiles. Tiles call it in their first pass over the lanes only (the one pass of
// AVX-512): later passes (4 on NEON) read lines the first brought in.
template <std::size_t kT>
HWY_INLINE void PrefetchInt4Group(const QuantizedMatrix& w, const Int4Layout::Place& place, std::size_t g) {
  using L = Int4Layout;
  const std::size_t skipped = g % 2 * place.blocks * (L::kTileBytes + L::kGroupBytes);  // the even group's part
  const std::size_t lines = place.blocks * (g % 2 == 0 ? 1 + L::kTilesPerGroup : L::kTilesPerGroup);
  PrefetchAhead<kT == 1 ? kInt4DecodePrefetch : kInt4PassPrefetch>(w, w.weights() + place.unit(g) + skipped, lines);
}

// sum[r][t] += exact(r, t) times group g's scales, exact(r, t) being the group's exact
// integer sum for block r of a panel and token t: every int4 tile's epilogue of a group.
template <std::size_t kR, std::size_t kT, class Exact>
HWY_INLINE void AddScaledGroup(const QuantizedMatrix& w, const Int4Layout::Place& place, std::size_t g, std::size_t lane,
                               const Exact& exact, VQF (&sum)[kR][kT]) {
  const DQF df;
  HWY_UNROLL(16)
  for (std::size_t r = 0; r < kR; ++r) {
    const VQF group_scale = Int4GroupScales(w, place, r, g, lane);
    HWY_UNROLL(16)
    for (std::size_t t = 0; t < kT; ++t) sum[r][t] = hn::MulAdd(hn::ConvertTo(df, exact(r, t)), group_scale, sum[r][t]);
  }
}

// Writes the f32 sums of an int4 tile, scaled by their tokens' scales (one per token).
template <std::size_t kR, std::size_t kT>
HWY_INLINE void StoreInt4Sums(const QuantizedMatrix& w, std::size_t block, std::size_t lane, const QuantizedActivations& a,
                              std::size_t token, const VQF (&sum)[kR][kT], float* HWY_RESTRICT out) {
  const DQF df;
  HWY_UNROLL(16)
  for (std::size_t r = 0; r < kR; ++r) {
    const std::size_t row = (block + r) * kRowBlock + lane;
    HWY_UNROLL(16)
    for (std::size_t t = 0; t < kT; ++t) {
      hn::StoreU(hn::Mul(sum[r][t], hn::Set(df, a.scale_of(token + t, 0))), df, out + (token + t) * w.rows() + row);
    }
  }
}

// Each byte's high nibble, 0..15.
HWY_INLINE VQ HighNibbles(VQ packed) {
  const hn::RebindToUnsigned<DQ> du;
  return hn::BitCast(DQ(), hn::And(hn::ShiftRight<4>(hn::BitCast(du, packed)), hn::Set(du, 0x0F0F0F0Fu)));
}

// How an int4 tile sums a group's high nibbles. The portable dot multiplies them in place
// (16 times their value, no shift per tile) in a chain of their own, divided by 16 once
// per group; SDOT takes them shifted down. With VNNI, a tile of several rows or tokens
// shifts them down into the low nibbles' chain (GroupChainStart). That halves the
// accumulators and drops the per-group reduction: passes over 4 tokens 3-11% faster,
// prefill 2.5-4.5% (bench/README.md). Decode too, with a panel's two blocks: two chains of
// 8 VPDPBUSD per group (one block's, alone, was slower than two chains). The 16-bit
// dots always take one chain (x86's 16-bit sums hold a group, not a group times 16).
template <IntDot kDot, std::size_t kR, std::size_t kT>
inline constexpr bool kOneInt4Chain = (kDot == IntDot::kVnni && kR * kT > 1) || kDot == IntDot::kInt16;
template <IntDot kDot, std::size_t kR, std::size_t kT>
inline constexpr bool kInt4HighShifted = kSignedWeights<kDot> || kOneInt4Chain<kDot, kR, kT>;

// A panel's next block's tiles, from one block's, in the int32 units of a tile.
inline constexpr std::size_t kInt4BlockStride = Int4Layout::kGroupBytes / sizeof(std::int32_t);

// Tile i of an int4 group for kR row blocks of a panel and kT tokens: the low nibbles
// hold the tile's quad 2i, the high ones quad 2i + 1.
template <std::size_t i, IntDot kDot, std::size_t kR, std::size_t kT>
HWY_INLINE void Int4GroupTile(const std::int32_t* tiles, const GroupActivations (&xs)[kT], VQ (&low_acc)[kR][kT],
                              VQ (&high_acc)[kR][kT]) {
  constexpr bool kOneChain = kOneInt4Chain<kDot, kR, kT>;
  const DQ d;
  VQ low[kR], high[kR];
  HWY_UNROLL(16)
  for (std::size_t r = 0; r < kR; ++r) {
    const VQ packed = hn::LoadU(d, tiles + r * kInt4BlockStride + i * kRowBlock);
    low[r] = hn::And(packed, hn::Set(d, 0x0F0F0F0F));
    high[r] = kInt4HighShifted<kDot, kR, kT> ? HighNibbles(packed)
                                             : hn::And(packed, hn::Set(d, static_cast<std::int32_t>(0xF0F0F0F0u)));
  }
  HWY_UNROLL(16)
  for (std::size_t t = 0; t < kT; ++t) {
    HWY_UNROLL(16)
    for (std::size_t r = 0; r < kR; ++r) {
      low_acc[r][t] = DotGroupQuad<2 * i, kDot>(low_acc[r][t], low[r], xs[t]);
      VQ& high_chain = kOneChain ? low_acc[r][t] : high_acc[r][t];
      high_chain = DotGroupQuad<2 * i + 1, kDot>(high_chain, high[r], xs[t]);
    }
  }
}

// Int8Tile for int4 weights: an exact integer sum per 32-column group (kOneInt4Chain says
// how), scaled by the group's scale into an f32 sum per row. kR is 1 or a whole panel
// from its first block: decode and short passes then read one sequential stream, and
// each broadcast activation serves both blocks (quant/layout.hpp). A token gets the
// same bits in a prefill tile and alone.
template <std::size_t kR, std::size_t kT, IntDot kDot>
HWY_INLINE void Int4Tile(const QuantizedMatrix& w, std::size_t block, const QuantizedActivations& a, std::size_t token,
                         float* HWY_RESTRICT out) {
  constexpr bool kOneChain = kOneInt4Chain<kDot, kR, kT>;
  const DQ d;
  const DQF df;
  const std::size_t N = hn::Lanes(d), groups = w.cols() / kInt4Group;
  const Int4Layout::Place place = w.int4_place(block);
  const std::int8_t* x = a.q.data() + token * a.cols;
  const std::int32_t* group_offset = a.group_offset.data() + token * groups;
  for (std::size_t lane = 0; lane < kRowBlock; lane += N) {
    VQF sum[kR][kT];
    ZeroAll(df, sum);
    for (std::size_t g = 0; g < groups; ++g) {
      VQ low_acc[kR][kT], high_acc[kR][kT];
      ZeroAll(d, high_acc);
      HWY_UNROLL(16)
      for (std::size_t r = 0; r < kR; ++r) {
        HWY_UNROLL(16)
        for (std::size_t t = 0; t < kT; ++t) low_acc[r][t] = kOneChain ? GroupChainStart<kDot>(group_offset[t * groups + g]) : hn::Zero(d);
      }
      const auto* tiles = reinterpret_cast<const std::int32_t*>(w.weights() + place.tiles(g)) + lane;
      if (lane == 0) PrefetchInt4Group<kT>(w, place, g);
      GroupActivations xs[kT];
      HWY_UNROLL(16)
      for (std::size_t t = 0; t < kT; ++t) xs[t] = LoadGroupActivations<kDot>(x + t * a.cols + g * kInt4Group);
      static_assert(Int4Layout::kTilesPerGroup == 4);
      Int4GroupTile<0, kDot>(tiles, xs, low_acc, high_acc);
      Int4GroupTile<1, kDot>(tiles, xs, low_acc, high_acc);
      Int4GroupTile<2, kDot>(tiles, xs, low_acc, high_acc);
      Int4GroupTile<3, kDot>(tiles, xs, low_acc, high_acc);
      AddScaledGroup(w, place, g, lane, [&](std::size_t r, std::size_t t) {
        if constexpr (kOneChain) {
          return GroupChainSum<kDot>(low_acc[r][t], group_offset[t * groups + g]);
        } else {
          // Unless shifted down, the high chain is an exact multiple of 16, so the
          // arithmetic shift is exact.
          const VQ high_sum = kInt4HighShifted<kDot, kR, kT> ? high_acc[r][t] : hn::ShiftRight<4>(high_acc[r][t]);
          return hn::Add(hn::Add(low_acc[r][t], high_sum), hn::Set(d, group_offset[t * groups + g]));
        }
      }, sum);
    }
    StoreInt4Sums(w, block, lane, a, token, sum, out);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gemma4
HWY_AFTER_NAMESPACE();

#endif  // toggle
