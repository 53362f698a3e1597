// What the CPU can do beyond what Highway's targets tell apart, asked once: the integer
// dot products the int8/int4 kernels choose among (ops/int_dot-inl.h).
// ARM: beyond the Armv8.0 baseline the binary was built for. The one place with calls
// that differ between systems: Linux and Android (bionic has had getauxval since API
// level 18) report the kernel's HWCAP bits; elsewhere only what the compiler was told
// (-march) counts, e.g. Apple silicon, whose default target already has the dot product.
// x86: AVX-512 VNNI, which Highway 1.0.3 folds into its AVX3_DL target only together with
// the VEX-coded AVX-VNNI that Zen 4 lacks.
#ifndef GEMMA4_BASE_CPU_FEATURES_HPP_
#define GEMMA4_BASE_CPU_FEATURES_HPP_

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace gemma4 {

struct ArmFeatures {
  bool dotprod = false;  // SDOT/UDOT (Armv8.2 +dotprod: Cortex-A55, A76 and later, Apple M1)
  bool i8mm = false;     // USDOT, SMMLA/USMMLA (Armv8.6 +i8mm: Cortex-A510, A710, X2 and later, Apple M2)
};

inline ArmFeatures detect_arm_features() {
  ArmFeatures f;
#if defined(__ARM_FEATURE_DOTPROD)
  f.dotprod = true;
#endif
#if defined(__ARM_FEATURE_MATMUL_INT8)
  f.i8mm = true;
#endif
#if defined(__aarch64__) && defined(__linux__)
  constexpr unsigned long kHwcapAsimdDotProduct = 1ul << 20, kHwcap2I8mm = 1ul << 13;  // <asm/hwcap.h>
  f.dotprod = f.dotprod || (getauxval(AT_HWCAP) & kHwcapAsimdDotProduct) != 0;
  f.i8mm = f.i8mm || (getauxval(AT_HWCAP2) & kHwcap2I8mm) != 0;
#endif
  return f;
}

inline const ArmFeatures& arm_features() {
  static const ArmFeatures features = detect_arm_features();
  return features;
}

struct X86Features {
  bool avx512_vnni = false;  // VPDPBUSD on 512-bit vectors (Ice Lake, Sapphire Rapids, Zen 4)
};

inline const X86Features& x86_features() {
#if defined(__x86_64__) || defined(__i386__)
  static const X86Features features{.avx512_vnni = __builtin_cpu_supports("avx512vnni") != 0};
#else
  static const X86Features features;
#endif
  return features;
}

}  // namespace gemma4
#endif  // GEMMA4_BASE_CPU_FEATURES_HPP_
