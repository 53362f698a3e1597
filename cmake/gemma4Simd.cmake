# gemma4_target_simd(<target> NATIVE|DISPATCH): compile <target> (which links
# gemma4::gemma4) so that its forward pass runs at speed.
#   NATIVE    for the CPU that builds it (-march=native): the smallest, fastest binary.
#   DISPATCH  for any x86-64 CPU: the forward pass for Highway's scalar, SSE4, AVX2 and
#             AVX3 targets, the best the CPU has chosen at run time (GEMMA4_DYNAMIC_DISPATCH).
# Without a build type it also optimises (-O2): an unoptimised forward pass is two orders
# of magnitude slower. Without either, a plain target compiles for Highway's baseline of
# the compiler's default flags (SSE2, scalar code on x86-64), which session.hpp warns of.
function(gemma4_target_simd target mode)
  if(mode STREQUAL "NATIVE")
    target_compile_options(${target} PRIVATE -march=native)
  elseif(mode STREQUAL "DISPATCH")
    target_compile_definitions(${target} PRIVATE GEMMA4_DYNAMIC_DISPATCH=1 "HWY_DISABLED_TARGETS=(HWY_SSSE3|HWY_AVX3_DL)")
  else()
    message(FATAL_ERROR "gemma4_target_simd(${target} ${mode}): the mode is NATIVE or DISPATCH")
  endif()
  get_property(multi_config GLOBAL PROPERTY GENERATOR_IS_MULTI_CONFIG)
  if(NOT multi_config AND NOT CMAKE_BUILD_TYPE)
    target_compile_options(${target} PRIVATE -O2)
  endif()
endfunction()
