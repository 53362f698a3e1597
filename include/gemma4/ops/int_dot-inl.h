// How the integer kernels multiply bytes (ops/quantized_matmul-inl.h): a lane's 4
// unsigned weight bytes times 4 signed activation bytes, summed into 32 bits. Every way
// (IntDot) gives the same exact sums: AVX-512 VNNI where the CPU has it, 16-bit pairs
// (PMADDWD; PMADDUBSW for int4) on other x86 targets, SDOT or the i8mm instructions
// (USDOT, USMMLA) on ARM cores that have them, 16-bit products (SMULL) on those that do
// not, and plain shifts and multiplies everywhere else. Which ones a target can run, and
// which the CPU runs best (ChosenIntDot), is decided here; what the CPU reports is asked
// in base/cpu_features.hpp.
#ifndef GEMMA4_OPS_INT_DOT_INL_H_
#define GEMMA4_OPS_INT_DOT_INL_H_
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "gemma4/base/cpu_features.hpp"
#include "gemma4/quant/weight_format.hpp"

#endif  // GEMMA4_OPS_INT_DOT_INL_H_

#if defined(GEMMA4_OPS_INT_DOT_TOGGLE) == defined(HWY_TARGET_TOGGLE)
#ifdef GEMMA4_OPS_INT_DOT_TOGGLE
#undef GEMMA4_OPS_INT_DOT_TOGGLE
#else
#define GEMMA4_OPS_INT_DOT_TOGGLE
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
  kInt16,     // bytes widened to 16 bits, multiplied and added in pairs (PMADDWD on x86,
              // int4 nibbles times bytes by PMADDUBSW; SMULL and SADDLP on ARM)
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
HWY_INLINE bool HaveVnni() { return x86_features().avx512_vnni; }
#else
HWY_INLINE bool HaveVnni() { return false; }
#endif

// x86 has no 8-bit multiply but a fast 16-bit multiply-add of pairs, which beats 32-bit
// multiplies by far (gemma4_bench_model's kernel/read column). ARM without a dot product
// (Armv8.0 cores: Cortex-A53, A57, A72) multiplies bytes into 16 bits (SMULL) and adds
// them in pairs (SADDLP, ADDP). The scalar and emulated targets keep the portable path.
#undef GEMMA4_INT_DOT_INT16  // set again for each target this file is compiled for
#if HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL || \
    (HWY_TARGET == HWY_NEON && HWY_ARCH_ARM_A64)
#define GEMMA4_INT_DOT_INT16 1
inline constexpr bool kInt16Target = true;
#else
#define GEMMA4_INT_DOT_INT16 0
inline constexpr bool kInt16Target = false;
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
  return kInt16Target ? IntDot::kInt16 : IntDot::kPortable;
}

// f.template operator()<kDot>() for kDot = ChosenIntDot(): the one place where the CPU's
// dot product becomes a compile-time parameter. A session's passes choose once
// (model/forward-inl.h, model/draft-inl.h) and every kernel below them is compiled for
// that dot; only the dots this target can run are instantiated.
template <class F>
HWY_INLINE decltype(auto) WithChosenIntDot(F&& f) {
#if HWY_TARGET == HWY_AVX3_DL || (HWY_TARGET == HWY_AVX3 && defined(__AVX512VNNI__))
  return f.template operator()<IntDot::kVnni>();  // the target's flags promise it
#else
  switch (ChosenIntDot()) {
#if HWY_TARGET == HWY_AVX3
    case IntDot::kVnni: return f.template operator()<IntDot::kVnni>();
#endif
#if GEMMA4_ARM_DOT
    case IntDot::kI8mm: return f.template operator()<IntDot::kI8mm>();
    case IntDot::kSdot: return f.template operator()<IntDot::kSdot>();
#endif
    default: return f.template operator()<kInt16Target ? IntDot::kInt16 : IntDot::kPortable>();
  }
#endif
}

inline const char* IntDotName(IntDot dot) {
  switch (dot) {
    case IntDot::kVnni: return "AVX-512 VNNI";
    case IntDot::kInt16: return "16-bit pairs";
    case IntDot::kSdot: return "SDOT";
    case IntDot::kI8mm: return "USDOT+USMMLA";
    case IntDot::kPortable: return "portable";
  }
  return "?";
}

// SDOT and ARM's 16-bit products multiply signed bytes by signed bytes: int8 weights flip
// their top bit (u - 128) and int4 nibbles (0..15) are taken as they are, so no offset is
// subtracted afterwards.
template <IntDot kDot>
inline constexpr bool kSignedWeights = kDot == IntDot::kSdot || (HWY_ARCH_ARM_A64 && kDot == IntDot::kInt16);

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

// acc[i] += sum over j < 4 of byte j of w[i] (unsigned, or u - 128 for kSignedWeights) *
// byte j of x[i] (signed).
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
#if GEMMA4_INT_DOT_INT16 && HWY_ARCH_ARM_A64
  if constexpr (kDot == IntDot::kInt16) {
    // Signed bytes times signed bytes into 16 bits (any two fit), two rows' lanes at a
    // time; each lane's 4 products then add up in pairs into 32 bits, and the pairs of
    // the two halves into one lane per row.
    const int8x16_t wb = vreinterpretq_s8_s32(w.raw), xb = vreinterpretq_s8_s32(x.raw);
    const int16x8_t low = vmull_s8(vget_low_s8(wb), vget_low_s8(xb)), high = vmull_high_s8(wb, xb);
    return VQ{vaddq_s32(acc.raw, vpaddq_s32(vpaddlq_s16(low), vpaddlq_s16(high)))};
  }
#elif GEMMA4_INT_DOT_INT16
  if constexpr (kDot == IntDot::kInt16) {
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

#if GEMMA4_INT_DOT_INT16 && HWY_ARCH_X86
// int4 nibbles (0..15) times signed activation bytes, with x86's PMADDUBSW: it multiplies
// unsigned by signed bytes and adds adjacent products into 16 bits, saturating, which
// int8 weights would reach (2 * 255 * 128 > 2^15) and nibbles never do. A group's 8 quads
// add up in those 16-bit lanes, at most 8 * 2 * 15 * 128 = 30720 < 2^15, so exactly;
// PMADDWD by ones then adds the pairs into 32 bits once per group. Two instructions a quad
// where DotQuads' widening takes eight. Highway 1.0.3 has no such ops.
//
// pairs (16-bit lanes) += the pair sums of w's nibbles times x's bytes.
HWY_INLINE VQ AddNibblePairs(VQ pairs, VQ w, VQ x) {
#if HWY_TARGET == HWY_SSE4
  return VQ{_mm_add_epi16(pairs.raw, _mm_maddubs_epi16(w.raw, x.raw))};
#elif HWY_TARGET == HWY_AVX2
  return VQ{_mm256_add_epi16(pairs.raw, _mm256_maddubs_epi16(w.raw, x.raw))};
#else
  return VQ{_mm512_add_epi16(pairs.raw, _mm512_maddubs_epi16(w.raw, x.raw))};
#endif
}
// Each 32-bit lane's two 16-bit pair sums, added.
HWY_INLINE VQ WidenNibblePairs(VQ pairs) {
#if HWY_TARGET == HWY_SSE4
  return VQ{_mm_madd_epi16(pairs.raw, _mm_set1_epi16(1))};
#elif HWY_TARGET == HWY_AVX2
  return VQ{_mm256_madd_epi16(pairs.raw, _mm256_set1_epi16(1))};
#else
  return VQ{_mm512_madd_epi16(pairs.raw, _mm512_set1_epi16(1))};
#endif
}
#endif

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
// acc += w times quad kQuad of the group; for x86's kInt16 (kPairChain), w's bytes are
// nibbles and acc holds 16-bit pair sums (AddNibblePairs).
template <std::size_t kQuad, IntDot kDot>
HWY_INLINE VQ DotGroupQuad(VQ acc, VQ w, const GroupActivations& x) {
#if GEMMA4_ARM_DOT
  if constexpr (kDotByLane<kDot>) {
    constexpr ArmDot kOp = kDot == IntDot::kSdot ? ArmDot::kSdot : ArmDot::kUsdot;
    return ArmDotAccumulate<kOp, kQuad % 4>(acc, w, x.quads[kQuad / 4]);
  }
#endif
  const VQ quad = hn::Set(DQ(), LoadQuad(x.x + 4 * kQuad));
#if GEMMA4_INT_DOT_INT16 && HWY_ARCH_X86
  if constexpr (kDot == IntDot::kInt16) return AddNibblePairs(acc, w, quad);
#endif
  return DotQuads<kDot>(acc, w, quad);
}

// A group's chain of DotGroupQuad calls, that is to end at its exact integer sum plus
// `offset`: most start at the offset; x86's 16-bit pairs start at zero and are widened at
// the end.
template <IntDot kDot>
inline constexpr bool kPairChain = HWY_ARCH_X86 && kDot == IntDot::kInt16;
template <IntDot kDot>
HWY_INLINE VQ GroupChainStart(std::int32_t offset) {
  return kPairChain<kDot> ? hn::Zero(DQ()) : hn::Set(DQ(), offset);
}
template <IntDot kDot>
HWY_INLINE VQ GroupChainSum(VQ chain, [[maybe_unused]] std::int32_t offset) {
#if GEMMA4_INT_DOT_INT16 && HWY_ARCH_X86
  if constexpr (kPairChain<kDot>) return hn::Add(WidenNibblePairs(chain), hn::Set(DQ(), offset));
#endif
  return chain;
}

}  // namespace HWY_NAMESPACE
}  // namespace gemma4
HWY_AFTER_NAMESPACE();

#endif  // toggle
