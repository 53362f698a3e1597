#pragma once
// The test variants tiny-e2b and tiny-e4b: the real topology (layer count, pattern,
// KV sharing, double-wide MLP) at small dims, every other field as the real variant.
// They are what correctness tests run on; the real shapes are for loading and speed.

#include "gemma4/config/e2b.hpp"
#include "gemma4/config/e4b.hpp"

namespace gemma4 {

namespace detail {
constexpr ModelConfig shrink(ModelConfig c, int num_kv_heads) {
  c.vocab_size.value = 1024;
  c.vocab_size_per_layer_input.value = 1024;
  c.hidden_size.value = 128;
  c.intermediate_size.value = 256;
  c.num_key_value_heads.value = num_kv_heads;
  c.head_dim.value = 32;
  c.global_head_dim.value = 64;
  c.hidden_size_per_layer_input.value = 32;
  c.sliding_window.value = 16;
  return c;
}
}  // namespace detail

struct TinyE2B {
  static constexpr std::string_view name = "tiny-e2b";
  static constexpr ModelConfig config = detail::shrink(E2B::config, /*num_kv_heads=*/1);
};

struct TinyE4B {
  static constexpr std::string_view name = "tiny-e4b";
  static constexpr ModelConfig config = detail::shrink(E4B::config, /*num_kv_heads=*/2);
};

static_assert(is_supported_topology(TinyE2B::config) && is_supported_topology(TinyE4B::config),
              "gemma4: tiny variants break the topology rules");
static_assert(kv_donor(TinyE2B::config, 20) == 13 && kv_donor(TinyE2B::config, 24) == 14,
              "gemma4: tiny-e2b keeps E2B's donors");
static_assert(ffn_width(TinyE2B::config, 20) == 512 && ffn_width(TinyE2B::config, 14) == 256,
              "gemma4: tiny-e2b keeps E2B's double-wide MLP");
static_assert(kv_donor(TinyE4B::config, 30) == 22 && kv_donor(TinyE4B::config, 35) == 23,
              "gemma4: tiny-e4b keeps E4B's donors");

}  // namespace gemma4
