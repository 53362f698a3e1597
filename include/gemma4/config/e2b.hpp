#pragma once
// Gemma 4 E2B (google/gemma-4-E2B, -E2B-it): the variant and its facts, checked at
// compile time against spec sections 1-2. Only the config: no kernels, no Highway.

#include "gemma4/config/model_config.hpp"
#include "gemma4/config/topology.hpp"

namespace gemma4 {

struct E2B {
  static constexpr std::string_view name = "e2b";
  static constexpr ModelConfig config = [] {
    ModelConfig c = kGemma4EFamily;
    c.hidden_size.value = 1536;
    c.intermediate_size.value = 6144;
    c.num_hidden_layers.value = 35;
    c.num_key_value_heads.value = 1;
    c.layer_types.value = LayerPattern{5};  // 4 sliding, 1 full
    c.num_kv_shared_layers.value = 20;
    c.use_double_wide_mlp.value = true;
    return c;
  }();
};

static_assert(is_supported_topology(E2B::config), "gemma4: E2B config breaks the topology rules");
static_assert(is_full_attention(E2B::config, 4) && is_full_attention(E2B::config, 34) &&
                  !is_full_attention(E2B::config, 33),
              "gemma4: E2B full-attention layers are 4, 9, ..., 34");
static_assert(first_kv_shared_layer(E2B::config) == 15, "gemma4: E2B layers 15..34 are KV-shared");
static_assert(kv_donor(E2B::config, 15) == 13 && kv_donor(E2B::config, 19) == 14 && kv_donor(E2B::config, 34) == 14,
              "gemma4: E2B donors are layer 13 (sliding) and 14 (full)");
static_assert(ffn_width(E2B::config, 14) == 6144 && ffn_width(E2B::config, 20) == 12288,
              "gemma4: E2B KV-shared layers use the double-wide MLP");
static_assert(head_dim(E2B::config, 14) == 512 && head_dim(E2B::config, 13) == 256,
              "gemma4: E2B head dim is 256 (sliding) / 512 (full)");
static_assert(num_kv_caches(E2B::config) == 15, "gemma4: E2B layers 0..14 own a KV cache");

}  // namespace gemma4
