// The runner of the test binaries. GEMMA4_SIMD_TARGET=<Highway target name>, as ctest
// sets it for the runtime-dispatch build, runs every test on that target; exit code 77
// (ctest: skipped) when the binary or the CPU lacks it.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <fmt/format.h>

#include "hwy/targets.h"

int main(int argc, char* argv[]) {
  if (const char* name = std::getenv("GEMMA4_SIMD_TARGET")) {
    std::int64_t target = 0;
    for (std::int64_t t = HWY_TARGETS; t != 0; t &= t - 1) {
      if (std::string_view(hwy::TargetName(t & -t)) == name) target = t & -t;
    }
    if (target == 0) {
      fmt::print("SKIPPED: this test binary holds no SIMD target {}\n", name);
      return 77;
    }
    if ((hwy::SupportedTargets() & target) == 0) {
      fmt::print("SKIPPED: this CPU cannot run SIMD target {}\n", name);
      return 77;
    }
    hwy::SetSupportedTargetsForTest(target);
    fmt::print("every test runs on SIMD target {}\n", name);
  }
  return Catch::Session().run(argc, argv);
}
