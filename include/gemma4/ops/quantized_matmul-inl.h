// Matrix products with int8 / int4 weights (layouts in weights/quantize.hpp) and
// activations quantized on the fly to int8, one scale per token. All integer sums are
// exact, so every way of multiplying the bytes (IntDot) gives the same bits: AVX-512
// VNNI where the CPU has it, 16-bit pairs (PMADDWD) on other x86 targets, and plain
// shifts and multiplies everywhere else; the tests hold the chosen one to the last.
//
// For a token t with activations x ~ q_t * s_t and a row with weights w ~ (u - o) * d,
// u the stored unsigned value and o its offset (128 for int8, 8 for int4):
//   dot = d * s_t * (sum(u * q_t) - o * sum(q_t)),
// with o * sum(q_t) kept per token (int8) or per 32-column group (int4, whose d
// varies per group). Unsigned weights times signed activations is what VPDPBUSD multiplies.

#ifndef GEMMA4_OPS_QUANTIZED_MATMUL_INL_H_
#define GEMMA4_OPS_QUANTIZED_MATMUL_INL_H_
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "gemma4/ops/packed_matrix.hpp"
#include "gemma4/ops/quantized_activations.hpp"

namespace gemma4 {

// Row blocks per pass of QuantizedMatMul's kernels, for a weight format and token count.
// A thread's range of blocks in whole passes runs no narrower pass.
inline constexpr std::size_t kInt8DecodePass = 4, kInt8PrefillPass = 3, kInt4DecodePass = 1, kInt4PrefillPass = 2;
// Tokens per prefill tile: with the pass above, the accumulators and weight vectors of a
// tile fill AVX-512's 32 registers without spilling.
inline constexpr std::size_t kInt8PrefillTokens = 6, kInt4PrefillTokens = 3;
constexpr std::size_t quantized_pass_blocks(WeightFormat format, std::size_t tokens) {
  if (format == WeightFormat::kInt8) return tokens == 1 ? kInt8DecodePass : kInt8PrefillPass;
  return tokens == 1 ? kInt4DecodePass : kInt4PrefillPass;
}

}  // namespace gemma4
#endif  // GEMMA4_OPS_QUANTIZED_MATMUL_INL_H_

#if defined(GEMMA4_OPS_QUANTIZED_MATMUL_TOGGLE) == defined(HWY_TARGET_TOGGLE)
#ifdef GEMMA4_OPS_QUANTIZED_MATMUL_TOGGLE
#undef GEMMA4_OPS_QUANTIZED_MATMUL_TOGGLE
#else
#define GEMMA4_OPS_QUANTIZED_MATMUL_TOGGLE
#endif

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace gemma4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// At most one row block (16 rows) per vector; narrower targets take several passes.
using DQ = hn::CappedTag<std::int32_t, kRowBlock>;
using VQ = hn::Vec<DQ>;
using DQF = hn::Rebind<float, DQ>;
using VQF = hn::Vec<DQF>;

// How the kernels multiply a lane's 4 unsigned weight bytes by 4 signed activation bytes.
enum class IntDot {
  kPortable,  // shifts and 32-bit multiplies, on every target
  kPairs,     // bytes widened to 16 bits, multiplied and added in pairs (PMADDWD on x86)
  kVnni,      // VPDPBUSD (AVX-512 VNNI)
};

// Whether the CPU has AVX-512 VNNI (VPDPBUSD). Highway 1.0.3 chooses its AVX3_DL target
// only when the CPU also has the VEX-coded AVX-VNNI, which Zen 4 lacks: there
// -march=native gives the AVX3 target with __AVX512VNNI__ defined, and a runtime-dispatch
// build's AVX3 code (compiled without VNNI in its flags) asks the CPU once. VPDPBUSD is
// inline asm, which needs no compiler flag.
#if HWY_TARGET == HWY_AVX3_DL || (HWY_TARGET == HWY_AVX3 && defined(__AVX512VNNI__))
HWY_INLINE bool HaveVnni() { return true; }
#elif HWY_TARGET == HWY_AVX3
HWY_INLINE bool HaveVnni() {
  static const bool have = __builtin_cpu_supports("avx512vnni");
  return have;
}
#else
HWY_INLINE bool HaveVnni() { return false; }
#endif

// x86 has no 8-bit multiply but a fast 16-bit multiply-add of pairs, which beats 32-bit
// multiplies by far (gemma4_bench_model's kernel/read column). The scalar and emulated
// targets keep the portable path, and ARM does until it gets its own dot product.
#undef GEMMA4_INT_DOT_PAIRS  // set again for each target this file is compiled for
#if HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
#define GEMMA4_INT_DOT_PAIRS 1
inline constexpr bool kPairsTarget = true;
#else
#define GEMMA4_INT_DOT_PAIRS 0
inline constexpr bool kPairsTarget = false;
#endif

HWY_INLINE IntDot ChosenIntDot() {
  if (HaveVnni()) return IntDot::kVnni;
  return kPairsTarget ? IntDot::kPairs : IntDot::kPortable;
}

inline const char* IntDotName(IntDot dot) {
  switch (dot) {
    case IntDot::kVnni: return "AVX-512 VNNI";
    case IntDot::kPairs: return "16-bit pairs";
    case IntDot::kPortable: return "portable";
  }
  return "?";
}

HWY_INLINE std::int32_t LoadQuad(const std::int8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Sets every vector of a tile's accumulators to zero.
template <class D, std::size_t kR, std::size_t kT>
HWY_INLINE void ZeroAll(D d, hn::Vec<D> (&tile)[kR][kT]) {
  HWY_UNROLL(16)
  for (auto& row : tile) {
    HWY_UNROLL(16)
    for (auto& v : row) v = hn::Zero(d);
  }
}

// acc[i] += sum over j < 4 of byte j of w[i] (unsigned) * byte j of x[i] (signed).
template <IntDot kDot>
HWY_INLINE VQ DotQuads(VQ acc, VQ w, VQ x) {
  const DQ d;
  const hn::RebindToUnsigned<DQ> du;
  const auto wu = hn::BitCast(du, w);
#if HWY_TARGET == HWY_AVX3_DL || HWY_TARGET == HWY_AVX3
  if constexpr (kDot == IntDot::kVnni) {
    // Inline asm, not _mm512_dpbusd_epi32: with the intrinsic GCC 12 copies every
    // accumulator to a new register around each VPDPBUSD and spills a tile's worth of
    // them, which halves the kernels' speed; "+v" updates the accumulator in place.
    asm("vpdpbusd %2, %1, %0" : "+v"(acc.raw) : "v"(w.raw), "v"(x.raw));
    return acc;
  }
#endif
#if GEMMA4_INT_DOT_PAIRS
  if constexpr (kDot == IntDot::kPairs) {
    // Bytes 0 and 2 of each lane as two 16-bit values, then bytes 1 and 3: weights zero-
    // and activations sign-extended; each product fits 16 x 16 -> 32 bits exactly.
    const hn::Repartition<std::int16_t, DQ> d16;
    const auto even_bytes = hn::Set(du, 0x00FF00FFu);
    const auto w_even = hn::BitCast(d16, hn::And(wu, even_bytes));
    const auto w_odd = hn::BitCast(d16, hn::And(hn::ShiftRight<8>(wu), even_bytes));
    const auto x16 = hn::BitCast(d16, x);
    const auto x_even = hn::ShiftRight<8>(hn::ShiftLeft<8>(x16));
    const auto x_odd = hn::ShiftRight<8>(x16);
    VQ sum0 = hn::Zero(d), sum1 = hn::Zero(d);
    sum0 = hn::ReorderWidenMulAccumulate(d, w_even, x_even, sum0, sum1);
    sum0 = hn::ReorderWidenMulAccumulate(d, w_odd, x_odd, sum0, sum1);
    return hn::Add(acc, hn::RearrangeToOddPlusEven(sum0, sum1));
  }
#endif
  const auto byte = hn::Set(du, 0xFFu);
  acc = hn::Add(acc, hn::Mul(hn::BitCast(d, hn::And(wu, byte)), hn::ShiftRight<24>(hn::ShiftLeft<24>(x))));
  acc = hn::Add(acc, hn::Mul(hn::BitCast(d, hn::And(hn::ShiftRight<8>(wu), byte)), hn::ShiftRight<24>(hn::ShiftLeft<16>(x))));
  acc = hn::Add(acc, hn::Mul(hn::BitCast(d, hn::And(hn::ShiftRight<16>(wu), byte)), hn::ShiftRight<24>(hn::ShiftLeft<8>(x))));
  return hn::Add(acc, hn::Mul(hn::BitCast(d, hn::ShiftRight<24>(wu)), hn::ShiftRight<24>(x)));
}

// Quantizes tokens [first, end) of x [tokens, a.cols] per token to int8 (absmax / 127)
// into the same rows of a, with the sums the kernels subtract for the weights'
// offsets. Threads may fill disjoint ranges of tokens.
inline HWY_NOINLINE void QuantizeActivationRows(const float* HWY_RESTRICT x, std::size_t first, std::size_t end,
                                                QuantizedActivations& a) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<std::int8_t, decltype(df)> d8;
  const std::size_t cols = a.cols, N = hn::Lanes(df), groups = cols / kInt4Group;
  for (std::size_t t = first; t < end; ++t) {
    const float* row = x + t * cols;
    std::int8_t* q = a.q.data() + t * cols;
    const std::size_t vector_end = cols - cols % N;
    auto vmax = hn::Zero(df);
    for (std::size_t i = 0; i < vector_end; i += N) vmax = hn::Max(vmax, hn::Abs(hn::LoadU(df, row + i)));
    float absmax = hn::GetLane(hn::MaxOfLanes(df, vmax));
    for (std::size_t i = vector_end; i < cols; ++i) absmax = std::max(absmax, std::fabs(row[i]));
    const float inverse = absmax > 0.0f ? 127.0f / absmax : 0.0f;
    a.scale[t] = absmax / 127.0f;
    const auto vinv = hn::Set(df, inverse);
    for (std::size_t i = 0; i < vector_end; i += N) {
      hn::StoreU(hn::DemoteTo(d8, hn::NearestInt(hn::Mul(hn::LoadU(df, row + i), vinv))), d8, q + i);
    }
    for (std::size_t i = vector_end; i < cols; ++i) q[i] = static_cast<std::int8_t>(std::lrint(row[i] * inverse));
    std::int32_t total = 0;
    for (std::size_t g = 0; g < groups; ++g) {
      std::int32_t s = 0;
      for (std::size_t c = 0; c < kInt4Group; ++c) s += q[g * kInt4Group + c];
      a.group_offset[t * groups + g] = -8 * s;
      total += s;
    }
    for (std::size_t c = groups * kInt4Group; c < cols; ++c) total += q[c];
    a.sum[t] = total;
  }
}

// All of x [tokens, cols].
inline void QuantizeActivations(const float* HWY_RESTRICT x, std::size_t tokens, std::size_t cols, QuantizedActivations& a) {
  a.tokens = tokens;
  a.cols = cols;
  QuantizeActivationRows(x, 0, tokens, a);
}

// out[t, 16b + r] for kR row blocks from `block` and kT tokens from `token`; int8 weights.
template <std::size_t kR, std::size_t kT, IntDot kDot>
HWY_INLINE void Int8Tile(const QuantizedMatrix& w, std::size_t block, const QuantizedActivations& a, std::size_t token,
                         float* HWY_RESTRICT out) {
  const DQ d;
  const DQF df;
  const std::size_t N = hn::Lanes(d), quads = w.cols() / 4;
  const auto* tiles = reinterpret_cast<const std::int32_t*>(w.weights()) + block * quads * kRowBlock;
  const std::int8_t* x[kT];
  HWY_UNROLL(16)
  for (std::size_t t = 0; t < kT; ++t) x[t] = a.q.data() + (token + t) * a.cols;
  for (std::size_t lane = 0; lane < kRowBlock; lane += N) {
    VQ acc[kR][kT];
    ZeroAll(d, acc);
    for (std::size_t q = 0; q < quads; ++q) {
      VQ weights[kR];
      HWY_UNROLL(16)
      for (std::size_t r = 0; r < kR; ++r) weights[r] = hn::LoadU(d, tiles + (r * quads + q) * kRowBlock + lane);
      HWY_UNROLL(16)
      for (std::size_t t = 0; t < kT; ++t) {
        const VQ xq = hn::Set(d, LoadQuad(x[t] + 4 * q));
        HWY_UNROLL(16)
        for (std::size_t r = 0; r < kR; ++r) acc[r][t] = DotQuads<kDot>(acc[r][t], weights[r], xq);
      }
    }
    HWY_UNROLL(16)
    for (std::size_t r = 0; r < kR; ++r) {
      const std::size_t row = (block + r) * kRowBlock + lane;
      const VQF row_scale = hn::LoadU(df, w.row_scales() + row);
      HWY_UNROLL(16)
      for (std::size_t t = 0; t < kT; ++t) {
        const VQ exact = hn::Sub(acc[r][t], hn::Set(d, 128 * a.sum[token + t]));
        const VQF scale = hn::Mul(row_scale, hn::Set(df, a.scale[token + t]));
        hn::StoreU(hn::Mul(hn::ConvertTo(df, exact), scale), df, out + (token + t) * w.rows() + row);
      }
    }
  }
}

// Group g's scales for the rows from `lane` as f32: the low (g even) or high (g odd)
// bf16 halves of the scale words (Int4Layout).
HWY_INLINE VQF Int4GroupScales(const std::uint8_t* block, std::size_t g, std::size_t lane) {
  const DQ d;
  const VQ words = hn::LoadU(d, reinterpret_cast<const std::int32_t*>(block + Int4Layout::scale_pairs(g)) + lane);
  const VQ bits = g % 2 == 0 ? hn::ShiftLeft<16>(words) : hn::And(words, hn::Set(d, static_cast<std::int32_t>(0xFFFF0000u)));
  return hn::BitCast(DQF(), bits);
}

// Int8Tile for int4 weights: an exact integer sum per 32-column group, scaled by the
// group's scale into an f32 sum per row. The high nibbles are multiplied in place (16
// times their value, no shift per tile) in a chain of their own, divided by 16 once
// per group. Decode runs this with one block and one token, one sequential stream: it
// streams closer to a plain read than two or four blocks at once or software
// prefetching (gemma4_bench_model's kernel/read column; bench/README.md has the runs).
// A token gets the same bits in a prefill tile and alone.
template <std::size_t kR, std::size_t kT, IntDot kDot>
HWY_INLINE void Int4Tile(const QuantizedMatrix& w, std::size_t block, const QuantizedActivations& a, std::size_t token,
                         float* HWY_RESTRICT out) {
  const DQ d;
  const DQF df;
  const std::size_t N = hn::Lanes(d), groups = w.cols() / kInt4Group, block_bytes = Int4Layout::block_bytes(w.cols());
  const std::uint8_t* blocks = w.weights() + block * block_bytes;
  const std::size_t block_stride = block_bytes / sizeof(std::int32_t);  // in tiles' int32 units
  const std::int8_t* x = a.q.data() + token * a.cols;
  const std::int32_t* group_offset = a.group_offset.data() + token * groups;
  const VQ low_nibbles = hn::Set(d, 0x0F0F0F0F);
  const VQ high_nibbles = hn::Set(d, static_cast<std::int32_t>(0xF0F0F0F0u));
  for (std::size_t lane = 0; lane < kRowBlock; lane += N) {
    VQF sum[kR][kT];
    ZeroAll(df, sum);
    for (std::size_t g = 0; g < groups; ++g) {
      VQ low_acc[kR][kT], high_acc[kR][kT];
      HWY_UNROLL(16)
      for (std::size_t r = 0; r < kR; ++r) {
        HWY_UNROLL(16)
        for (std::size_t t = 0; t < kT; ++t) {
          low_acc[r][t] = hn::Set(d, group_offset[t * groups + g]);
          high_acc[r][t] = hn::Zero(d);
        }
      }
      const auto* tiles = reinterpret_cast<const std::int32_t*>(blocks + Int4Layout::tiles(g)) + lane;
      HWY_UNROLL(16)
      for (std::size_t i = 0; i < Int4Layout::kTilesPerGroup; ++i) {
        const std::size_t o = g * Int4Layout::kTilesPerGroup + i;  // the tile's 8 columns start at 8 * o
        VQ low[kR], high[kR];
        HWY_UNROLL(16)
        for (std::size_t r = 0; r < kR; ++r) {
          const VQ packed = hn::LoadU(d, tiles + r * block_stride + i * kRowBlock);
          low[r] = hn::And(packed, low_nibbles);
          high[r] = hn::And(packed, high_nibbles);
        }
        HWY_UNROLL(16)
        for (std::size_t t = 0; t < kT; ++t) {
          const VQ xl = hn::Set(d, LoadQuad(x + t * a.cols + 8 * o));
          const VQ xh = hn::Set(d, LoadQuad(x + t * a.cols + 8 * o + 4));
          HWY_UNROLL(16)
          for (std::size_t r = 0; r < kR; ++r) {
            low_acc[r][t] = DotQuads<kDot>(low_acc[r][t], low[r], xl);
            high_acc[r][t] = DotQuads<kDot>(high_acc[r][t], high[r], xh);
          }
        }
      }
      HWY_UNROLL(16)
      for (std::size_t r = 0; r < kR; ++r) {
        const VQF group_scale = Int4GroupScales(blocks + r * block_bytes, g, lane);
        HWY_UNROLL(16)
        for (std::size_t t = 0; t < kT; ++t) {
          // The high chain is an exact multiple of 16, so the arithmetic shift is exact.
          const VQ exact = hn::Add(low_acc[r][t], hn::ShiftRight<4>(high_acc[r][t]));
          sum[r][t] = hn::MulAdd(hn::ConvertTo(df, exact), group_scale, sum[r][t]);
        }
      }
    }
    HWY_UNROLL(16)
    for (std::size_t r = 0; r < kR; ++r) {
      const std::size_t row = (block + r) * kRowBlock + lane;
      HWY_UNROLL(16)
      for (std::size_t t = 0; t < kT; ++t) {
        hn::StoreU(hn::Mul(sum[r][t], hn::Set(df, a.scale[token + t])), df, out + (token + t) * w.rows() + row);
      }
    }
  }
}

// Row blocks kR at a time, each block's weights reused by tokens kT at a time while
// they are in cache.
template <std::size_t kR, std::size_t kT, typename Tile>
HWY_INLINE void QuantizedBlocks(const QuantizedMatrix& w, const QuantizedActivations& a, std::size_t block,
                                float* HWY_RESTRICT out, Tile tile) {
  std::size_t t = 0;
  for (; t + kT <= a.tokens; t += kT) tile.template operator()<kR, kT>(w, block, a, t, out);
  for (; t < a.tokens; ++t) tile.template operator()<kR, 1>(w, block, a, t, out);
}

// Tile shapes: accumulators kR * kT (int8) or 2 * kR * kT (int4) plus kR weight
// vectors must fit the 32 vector registers of AVX-512, or the compiler spills.
template <std::size_t kR, std::size_t kT, typename Tile>
HWY_INLINE void QuantizedPanels(const QuantizedMatrix& w, const QuantizedActivations& a, std::size_t first_block,
                                std::size_t end_block, float* HWY_RESTRICT out, Tile tile) {
  std::size_t b = first_block;
  for (; b + kR <= end_block; b += kR) QuantizedBlocks<kR, kT>(w, a, b, out, tile);
  for (; b < end_block; ++b) QuantizedBlocks<1, kT>(w, a, b, out, tile);
}

// out[t, r] = sum_c w[r, c] x[t, c] for the rows of blocks [first_block, end_block) and
// every token of a; out is [tokens, rows]. The result of a row does not depend on the
// block range, so threads may split the blocks any way.
template <IntDot kDot>
HWY_NOINLINE void QuantizedMatMul(const QuantizedMatrix& w, const QuantizedActivations& a, std::size_t first_block,
                                  std::size_t end_block, float* HWY_RESTRICT out) {
  if (w.format() == WeightFormat::kInt8) {
    // Decode (one token) takes four row blocks per pass: four read streams per thread,
    // which memory serves faster than one (gemma4_bench_model's kernel/read column).
    const auto tile = []<std::size_t kR, std::size_t kT>(auto&&... args) { Int8Tile<kR, kT, kDot>(args...); };
    a.tokens == 1 ? QuantizedPanels<kInt8DecodePass, 1>(w, a, first_block, end_block, out, tile)
                  : QuantizedPanels<kInt8PrefillPass, kInt8PrefillTokens>(w, a, first_block, end_block, out, tile);
  } else {
    const auto tile = []<std::size_t kR, std::size_t kT>(auto&&... args) { Int4Tile<kR, kT, kDot>(args...); };
    a.tokens == 1 ? QuantizedPanels<kInt4DecodePass, 1>(w, a, first_block, end_block, out, tile)
                  : QuantizedPanels<kInt4PrefillPass, kInt4PrefillTokens>(w, a, first_block, end_block, out, tile);
  }
}

// The same with the dot product the target and CPU do best (ChosenIntDot).
HWY_INLINE void QuantizedMatMul(const QuantizedMatrix& w, const QuantizedActivations& a, std::size_t first_block,
                                std::size_t end_block, float* HWY_RESTRICT out) {
#if HWY_TARGET == HWY_AVX3_DL || HWY_TARGET == HWY_AVX3
  if (HaveVnni()) return QuantizedMatMul<IntDot::kVnni>(w, a, first_block, end_block, out);
#endif
  QuantizedMatMul<kPairsTarget ? IntDot::kPairs : IntDot::kPortable>(w, a, first_block, end_block, out);
}

}  // namespace HWY_NAMESPACE
}  // namespace gemma4
HWY_AFTER_NAMESPACE();

#endif  // toggle
