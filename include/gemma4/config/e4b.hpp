#pragma once
// Gemma 4 E4B (google/gemma-4-E4B, -E4B-it): the variant and its facts, checked at
// compile time against spec sections 1-2. Only the config: no kernels, no Highway.

#include "gemma4/config/model_config.hpp"
#include "gemma4/config/topology.hpp"

namespace gemma4 {

struct E4B {
  static constexpr std::string_view name = "e4b";
  static constexpr ModelConfig config = [] {
    ModelConfig c = kGemma4EFamily;
    c.hidden_size.value = 2560;
    c.intermediate_size.value = 10240;
    c.num_hidden_layers.value = 42;
    c.num_key_value_heads.value = 2;
    c.layer_types.value = LayerPattern{6};  // 5 sliding, 1 full
    c.num_kv_shared_layers.value = 18;
    return c;
  }();
};

static_assert(is_supported_topology(E4B::config), "gemma4: E4B config breaks the topology rules");
static_assert(is_full_attention(E4B::config, 5) && is_full_attention(E4B::config, 41) &&
                  !is_full_attention(E4B::config, 40),
              "gemma4: E4B full-attention layers are 5, 11, ..., 41");
static_assert(first_kv_shared_layer(E4B::config) == 24, "gemma4: E4B layers 24..41 are KV-shared");
static_assert(kv_donor(E4B::config, 24) == 22 && kv_donor(E4B::config, 29) == 23 && kv_donor(E4B::config, 41) == 23,
              "gemma4: E4B donors are layer 22 (sliding) and 23 (full)");
static_assert(ffn_width(E4B::config, 30) == 10240, "gemma4: E4B has no double-wide MLP");
static_assert(num_kv_caches(E4B::config) == 24, "gemma4: E4B layers 0..23 own a KV cache");

}  // namespace gemma4
