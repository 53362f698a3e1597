// Matrix products with int8 / int4 weights (layouts in weights/quantize.hpp) and
// activations quantized on the fly to int8, one scale per token. All integer sums are
// exact, so every way of multiplying the bytes (IntDot) gives the same bits: AVX-512
// VNNI where the CPU has it, 16-bit pairs (PMADDWD) on other x86 targets, SDOT or the
// i8mm instructions (USDOT, USMMLA) on ARM cores that have them, and plain shifts and
// multiplies everywhere else; the tests hold the chosen one to the last.
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

#include "gemma4/base/cpu_features.hpp"
#include "gemma4/ops/packed_matrix.hpp"
#include "gemma4/ops/quantized_activations.hpp"

namespace gemma4 {

// Row blocks per pass of QuantizedMatMul's kernels, for a weight format and token count.
// A thread's range of blocks in whole passes runs no narrower pass.
// int4 tiles take a panel (packed_matrix.hpp), whatever the tokens.
inline constexpr std::size_t kInt8DecodePass = 4, kInt8PrefillPass = 3, kInt4Pass = Int4Layout::kPanelBlocks;
// Tokens per prefill tile: with the pass above, the accumulators and weight vectors of a
// tile fill AVX-512's 32 registers without spilling (int4: kInt4PrefillTokens below).
// ARM's matrix tiles (USMMLA) take tokens in pairs.
inline constexpr std::size_t kInt8PrefillTokens = 6, kInt4MatrixTokens = 4;
// Passes of up to kShortPassTokens tokens (decode, and verifying up to 4 drafts) are
// bound by memory like decode: they take decode's row blocks per pass, and all their
// tokens in one tile.
inline constexpr std::size_t kShortPassTokens = 5;
// A tile of several tokens does so much arithmetic per weight line that the core no
// longer runs far enough ahead of its loads for the hardware prefetchers to hide memory
// latency: a pass over 4 tokens streamed its weights at the speed of reading them plus
// computing, 1.2-1.8 times a decode step's time. Such tiles fetch their lines this far
// ahead of each read stream themselves (int8 short passes read four streams per thread,
// int4 one). int8 decode, one token, streams as fast without; int4 decode, two blocks
// of a panel per tile, streams faster with it (bench/README.md).
inline constexpr std::size_t kInt8PrefetchBytes = 1024, kInt4PrefetchBytes = 4096;
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

#include "hwy/cache_control.h"
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
  kSdot,      // SDOT (Armv8.2 dotprod), signed bytes: the weights' offset is taken out first
  kI8mm,      // USDOT, and USMMLA's 2 x 2 matrix tiles for prefill (Armv8.6 i8mm)
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

// ARM's dot-product instructions are inline asm, like VPDPBUSD: one aarch64 binary
// built for plain Armv8.0 uses what the CPU reports at run time (cpu_features.hpp), with
// no -march flag and no per-function target attributes.
#undef GEMMA4_ARM_DOT  // set again for each target this file is compiled for
#if HWY_TARGET == HWY_NEON && HWY_ARCH_ARM_A64
#define GEMMA4_ARM_DOT 1

// One of ARM's "Vd.4S += Vn.16B op Vm.16B" instructions, or with kLane >= 0 its "by
// element" form, which takes the 4 bytes of lane kLane of Vm for every lane. The
// assembler takes their mnemonics only if -march names the extension (SDOT only from
// Armv8.2 on, whatever .arch_extension says), so they are written as encodings, the
// register fields filled in from symbols numbering v0..v31 (bench/mca turns them back
// into mnemonics).
enum class ArmDot : std::uint32_t { kSdot = 0x4e809400, kUsdot = 0x4e809c00, kUsmmla = 0x4e80ac00 };
template <ArmDot kOp, int kLane = -1>
HWY_INLINE VQ ArmDotAccumulate(VQ acc, VQ n, VQ m) {
  static_assert(kLane < 4 && (kLane < 0 || kOp != ArmDot::kUsmmla));
  constexpr std::uint32_t kByElement = kOp == ArmDot::kSdot ? 0x4f80e000 : 0x4f80f000;
  constexpr std::uint32_t kEncoding =
      kLane < 0 ? static_cast<std::uint32_t>(kOp) : kByElement | (kLane & 1) << 21 | (kLane >> 1) << 11;
  asm(".irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n\t"
      ".set .Lgemma4_v\\n, \\n\n\t.endr\n\t"
      ".inst %c3 | (.Lgemma4_%2 << 16) | (.Lgemma4_%1 << 5) | .Lgemma4_%0"
      : "+w"(acc.raw)
      : "w"(n.raw), "w"(m.raw), "i"(kEncoding));
  return acc;
}
#else
#define GEMMA4_ARM_DOT 0
#endif

HWY_INLINE IntDot ChosenIntDot() {
  if (HaveVnni()) return IntDot::kVnni;
#if GEMMA4_ARM_DOT
  if (arm_features().i8mm) return IntDot::kI8mm;
  if (arm_features().dotprod) return IntDot::kSdot;
#endif
  return kPairsTarget ? IntDot::kPairs : IntDot::kPortable;
}

inline const char* IntDotName(IntDot dot) {
  switch (dot) {
    case IntDot::kVnni: return "AVX-512 VNNI";
    case IntDot::kPairs: return "16-bit pairs";
    case IntDot::kSdot: return "SDOT";
    case IntDot::kI8mm: return "USDOT+USMMLA";
    case IntDot::kPortable: return "portable";
  }
  return "?";
}

// SDOT multiplies signed bytes by signed bytes: int8 weights flip their top bit (u - 128)
// and int4 nibbles (0..15) are taken as they are, so no offset is subtracted afterwards.
template <IntDot kDot>
inline constexpr bool kSignedWeights = kDot == IntDot::kSdot;

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
  static_assert(GEMMA4_ARM_DOT || (kDot != IntDot::kSdot && kDot != IntDot::kI8mm), "ARM instructions on another target");
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
#if GEMMA4_ARM_DOT
  if constexpr (kDot == IntDot::kSdot) return ArmDotAccumulate<ArmDot::kSdot>(acc, w, x);
  if constexpr (kDot == IntDot::kI8mm) return ArmDotAccumulate<ArmDot::kUsdot>(acc, w, x);
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

// Writes out[token, row + i] for the N rows from `row`, from their integer sums.
template <bool kSigned>
HWY_INLINE void StoreInt8Sums(const QuantizedMatrix& w, std::size_t row, const QuantizedActivations& a, std::size_t token,
                              VQ sums, float* HWY_RESTRICT out) {
  const DQ d;
  const DQF df;
  const VQ exact = kSigned ? sums : hn::Sub(sums, hn::Set(d, 128 * a.sum[token]));
  const VQF scale = hn::Mul(hn::LoadU(df, w.row_scales() + row), hn::Set(df, a.scale[token]));
  hn::StoreU(hn::Mul(hn::ConvertTo(df, exact), scale), df, out + token * w.rows() + row);
}

// Prefetches `lines` cache lines from `first` + kDistance, those that lie before the end of
// w's bytes (why: see kInt8PrefetchBytes).
template <std::size_t kDistance>
HWY_INLINE void PrefetchAhead(const QuantizedMatrix& w, const void* first, std::size_t lines) {
  const std::uintptr_t end = reinterpret_cast<std::uintptr_t>(w.packed().data() + w.packed().size());
  const std::uintptr_t ahead = reinterpret_cast<std::uintptr_t>(first) + kDistance;
  for (std::size_t i = 0; i < lines; ++i) {
    if (ahead + 64 * i < end) hwy::Prefetch(reinterpret_cast<const std::uint8_t*>(ahead + 64 * i));
  }
}

// out[t, 16b + r] for kR row blocks from `block` and kT tokens from `token`; int8 weights.
template <std::size_t kR, std::size_t kT, IntDot kDot>
HWY_INLINE void Int8Tile(const QuantizedMatrix& w, std::size_t block, const QuantizedActivations& a, std::size_t token,
                         float* HWY_RESTRICT out) {
  const DQ d;
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
      for (std::size_t r = 0; r < kR; ++r) {
        if constexpr (kT > 1) PrefetchAhead<kInt8PrefetchBytes>(w, tiles + (r * quads + q) * kRowBlock, 1);
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
    HWY_UNROLL(16)
    for (std::size_t r = 0; r < kR; ++r) {
      HWY_UNROLL(16)
      for (std::size_t t = 0; t < kT; ++t) {
        StoreInt8Sums<kSignedWeights<kDot>>(w, (block + r) * kRowBlock + lane, a, token + t, acc[r][t], out);
      }
    }
  }
}

// Group g's scales for the rows from `lane` of block r of a panel as f32: the low (g
// even) or high (g odd) bf16 halves of the scale words (Int4Layout).
HWY_INLINE VQF Int4GroupScales(const QuantizedMatrix& w, const Int4Layout::Place& place, std::size_t r, std::size_t g,
                               std::size_t lane) {
  const DQ d;
  const auto* line = w.weights() + place.scale_pairs(g) + r * Int4Layout::kTileBytes;
  const VQ words = hn::LoadU(d, reinterpret_cast<const std::int32_t*>(line) + lane);
  const VQ bits = g % 2 == 0 ? hn::ShiftLeft<16>(words) : hn::And(words, hn::Set(d, static_cast<std::int32_t>(0xFFFF0000u)));
  return hn::BitCast(DQF(), bits);
}

// PrefetchAhead for group g of a panel: its scale lines (g even) and its tiles. Tiles call
// it in their first pass over the lanes only (the one pass of AVX-512): later passes
// (4 on NEON) read lines the first brought in.
HWY_INLINE void PrefetchInt4Group(const QuantizedMatrix& w, const Int4Layout::Place& place, std::size_t g) {
  using L = Int4Layout;
  const std::size_t skipped = g % 2 * place.blocks * (L::kTileBytes + L::kGroupBytes);  // the even group's part
  const std::size_t lines = place.blocks * (g % 2 == 0 ? 1 + L::kTilesPerGroup : L::kTilesPerGroup);
  PrefetchAhead<kInt4PrefetchBytes>(w, w.weights() + place.unit(g) + skipped, lines);
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

// Writes the f32 sums of an int4 tile, scaled by their tokens' scales.
template <std::size_t kR, std::size_t kT>
HWY_INLINE void StoreInt4Sums(const QuantizedMatrix& w, std::size_t block, std::size_t lane, const QuantizedActivations& a,
                              std::size_t token, const VQF (&sum)[kR][kT], float* HWY_RESTRICT out) {
  const DQF df;
  HWY_UNROLL(16)
  for (std::size_t r = 0; r < kR; ++r) {
    const std::size_t row = (block + r) * kRowBlock + lane;
    HWY_UNROLL(16)
    for (std::size_t t = 0; t < kT; ++t) {
      hn::StoreU(hn::Mul(sum[r][t], hn::Set(df, a.scale[token + t])), df, out + (token + t) * w.rows() + row);
    }
  }
}

// Each byte's high nibble, 0..15.
HWY_INLINE VQ HighNibbles(VQ packed) {
  const hn::RebindToUnsigned<DQ> du;
  return hn::BitCast(DQ(), hn::And(hn::ShiftRight<4>(hn::BitCast(du, packed)), hn::Set(du, 0x0F0F0F0Fu)));
}

// A token's activations for one int4 group, as the kernels multiply them: generic dots
// broadcast each quad from memory as it is needed; ARM's dot products pick a quad out of
// a vector by lane (SDOT/USDOT by element), so the group's 32 bytes are loaded once, not
// as 8 separate broadcasts.
template <IntDot kDot>
inline constexpr bool kDotByLane = GEMMA4_ARM_DOT && (kDot == IntDot::kSdot || kDot == IntDot::kI8mm);
struct GroupActivations {
  const std::int8_t* x;
  VQ quads[2];  // with kDotByLane: the group's quads 0-3 and 4-7
};
template <IntDot kDot>
HWY_INLINE GroupActivations LoadGroupActivations(const std::int8_t* x) {
  const DQ d;
  static_assert(!kDotByLane<kDot> || kInt4Group == 2 * 4 * hn::MaxLanes(d));
  if constexpr (kDotByLane<kDot>) {
    const auto* quads = reinterpret_cast<const std::int32_t*>(x);
    return {x, {hn::LoadU(d, quads), hn::LoadU(d, quads + 4)}};
  }
  return {x, {hn::Zero(d), hn::Zero(d)}};
}
// acc += w times quad kQuad of the group.
template <std::size_t kQuad, IntDot kDot>
HWY_INLINE VQ DotGroupQuad(VQ acc, VQ w, const GroupActivations& x) {
#if GEMMA4_ARM_DOT
  if constexpr (kDotByLane<kDot>) {
    constexpr ArmDot kOp = kDot == IntDot::kSdot ? ArmDot::kSdot : ArmDot::kUsdot;
    return ArmDotAccumulate<kOp, kQuad % 4>(acc, w, x.quads[kQuad / 4]);
  }
#endif
  return DotQuads<kDot>(acc, w, hn::Set(DQ(), LoadQuad(x.x + 4 * kQuad)));
}

// How an int4 tile sums a group's high nibbles. Most dots multiply them in place (16 times
// their value, no shift per tile) in a chain of their own, divided by 16 once per group.
// With VNNI, a tile of several rows or tokens shifts them down into the low nibbles'
// chain instead, which starts at the group's offset. That halves the accumulators and
// drops the per-group reduction: passes over 4 tokens 3-11% faster, prefill 2.5-4.5%
// (bench/README.md). Decode too, with a panel's two blocks: two chains of 8 VPDPBUSD
// per group (one block's, alone, was slower than two chains).
template <IntDot kDot, std::size_t kR, std::size_t kT>
inline constexpr bool kOneInt4Chain = kDot == IntDot::kVnni && kR * kT > 1;

// Tokens per int4 tile of a pass longer than kShortPassTokens (a prefill, a batch of
// several sequences). One chain leaves room for 6: a panel's 2 x 6 integer and 2 x 6
// float accumulators and its weight vectors in 32 registers, each weight line serving 6
// tokens. On an Intel host with VNNI, prefill of 512 tokens went from 142 to 174 tok/s
// (E2B) and 63-73 to 87-88 (E4B), and a batched step of 8 E2B sequences from 1.93 to
// 1.64-1.67 decode steps (3 tokens a tile before; 7 measured no better). Two chains fit 3.
template <IntDot kDot>
inline constexpr std::size_t kInt4PrefillTokens = kOneInt4Chain<kDot, kInt4Pass, 2> ? 6 : 3;

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
    high[r] = kSignedWeights<kDot> || kOneChain ? HighNibbles(packed)
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
// each broadcast activation serves both blocks (packed_matrix.hpp). A token gets the
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
        for (std::size_t t = 0; t < kT; ++t) low_acc[r][t] = kOneChain ? hn::Set(d, group_offset[t * groups + g]) : hn::Zero(d);
      }
      const auto* tiles = reinterpret_cast<const std::int32_t*>(w.weights() + place.tiles(g)) + lane;
      if (lane == 0) PrefetchInt4Group(w, place, g);
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
          return low_acc[r][t];
        } else {
          // The high chain is an exact multiple of 16 (unless shifted down for SDOT), so the
          // arithmetic shift is exact.
          const VQ high_sum = kSignedWeights<kDot> ? high_acc[r][t] : hn::ShiftRight<4>(high_acc[r][t]);
          return hn::Add(hn::Add(low_acc[r][t], high_sum), hn::Set(d, group_offset[t * groups + g]));
        }
      }, sum);
    }
    StoreInt4Sums(w, block, lane, a, token, sum, out);
  }
}

#if GEMMA4_ARM_DOT
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
template <std::size_t kR, std::size_t kPairs>
HWY_INLINE void MatrixStep(const VQ (&rows)[kR][2], const QuantizedActivations& a, std::size_t token, std::size_t c,
                           VQ (&acc)[kR][2][kPairs]) {
  HWY_UNROLL(16)
  for (std::size_t p = 0; p < kPairs; ++p) {
    const VQ x = TokenPair(a, token + 2 * p, c);
    HWY_UNROLL(16)
    for (std::size_t r = 0; r < kR; ++r) {
      acc[r][0][p] = MatrixMulAdd(acc[r][0][p], rows[r][0], x);
      acc[r][1][p] = MatrixMulAdd(acc[r][1][p], rows[r][1], x);
    }
  }
}

// Int8Tile with USMMLA for an even kT; the quads come in pairs (w.cols() % 8 == 0).
template <std::size_t kR, std::size_t kT>
HWY_INLINE void Int8MatrixTile(const QuantizedMatrix& w, std::size_t block, const QuantizedActivations& a,
                               std::size_t token, float* HWY_RESTRICT out) {
  static_assert(kT % 2 == 0);
  const DQ d;
  const std::size_t N = hn::Lanes(d), quads = w.cols() / 4;
  const auto* tiles = reinterpret_cast<const std::int32_t*>(w.weights()) + block * quads * kRowBlock;
  for (std::size_t lane = 0; lane < kRowBlock; lane += N) {
    VQ acc[kR][2][kT / 2];  // [block][rows 0-1 or 2-3][token pair]
    HWY_UNROLL(16)
    for (auto& halves : acc) ZeroAll(d, halves);
    for (std::size_t q = 0; q < quads; q += 2) {
      VQ rows[kR][2];
      HWY_UNROLL(16)
      for (std::size_t r = 0; r < kR; ++r) {
        PrefetchAhead<kInt8PrefetchBytes>(w, tiles + (r * quads + q) * kRowBlock, 2);
        const VQ first = hn::LoadU(d, tiles + (r * quads + q) * kRowBlock + lane);
        const VQ second = hn::LoadU(d, tiles + (r * quads + q + 1) * kRowBlock + lane);
        rows[r][0] = hn::InterleaveLower(d, first, second);
        rows[r][1] = hn::InterleaveUpper(d, first, second);
      }
      MatrixStep(rows, a, token, 4 * q, acc);
    }
    HWY_UNROLL(16)
    for (std::size_t r = 0; r < kR; ++r) {
      const std::size_t row = (block + r) * kRowBlock + lane;
      HWY_UNROLL(16)
      for (std::size_t p = 0; p < kT / 2; ++p) {
        const std::size_t t = token + 2 * p;
        StoreInt8Sums<false>(w, row, a, t, FirstOfPair(acc[r][0][p], acc[r][1][p]), out);
        StoreInt8Sums<false>(w, row, a, t + 1, SecondOfPair(acc[r][0][p], acc[r][1][p]), out);
      }
    }
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
      if (lane == 0) PrefetchInt4Group(w, place, g);
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
#endif  // GEMMA4_ARM_DOT

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

// Tile shapes: accumulators kR * kT (int8) or 2 * kR * kT (int4) plus kR weight
// vectors must fit the 32 vector registers of AVX-512, or the compiler spills.
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

// The same with the dot product the target and CPU do best (ChosenIntDot).
HWY_INLINE void QuantizedMatMul(const QuantizedMatrix& w, const QuantizedActivations& a, std::size_t first_block,
                                std::size_t end_block, float* HWY_RESTRICT out) {
  switch (ChosenIntDot()) {
#if HWY_TARGET == HWY_AVX3_DL || HWY_TARGET == HWY_AVX3
    case IntDot::kVnni: return QuantizedMatMul<IntDot::kVnni>(w, a, first_block, end_block, out);
#endif
#if GEMMA4_ARM_DOT
    case IntDot::kI8mm: return QuantizedMatMul<IntDot::kI8mm>(w, a, first_block, end_block, out);
    case IntDot::kSdot: return QuantizedMatMul<IntDot::kSdot>(w, a, first_block, end_block, out);
#endif
    default: return QuantizedMatMul<kPairsTarget ? IntDot::kPairs : IntDot::kPortable>(w, a, first_block, end_block, out);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gemma4
HWY_AFTER_NAMESPACE();

#endif  // toggle
