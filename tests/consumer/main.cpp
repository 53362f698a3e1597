#include <gemma4/e2b.hpp>

#include <fmt/format.h>

static_assert(gemma4::kv_donor(gemma4::E2B::config, 20) == 13);

// The SIMD target the consumer's forward pass is compiled for: CI checks that
// gemma4_target_simd() gave it the machine's, not the portable one.
int main() {
  fmt::print("{}: {} layers, {} own a KV cache; SIMD target {}\n", gemma4::E2B::name, gemma4::E2B::config.num_hidden_layers.value,
             gemma4::num_kv_caches(gemma4::E2B::config), hwy::TargetName(HWY_STATIC_TARGET));
}
