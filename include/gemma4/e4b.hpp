#pragma once
// Gemma 4 E4B (google/gemma-4-E4B, -E4B-it): the variant and its facts, checked at
// compile time against spec sections 1-2.

#include "gemma4/config/model_config.hpp"
#include "gemma4/config/topology.hpp"
#include "gemma4/model/session.hpp"
#include "gemma4/weights/load.hpp"

namespace gemma4 {

struct E4B {
  static constexpr std::string_view name = "e4b";
  static constexpr ModelConfig config = {
      .vocab_size = {262'144},
      .hidden_size = {2560},
      .intermediate_size = {10240},
      .num_hidden_layers = {42},
      .num_attention_heads = {8},
      .num_key_value_heads = {2},
      .head_dim = {256},
      .global_head_dim = {512},
      .layer_types = {LayerPattern{6}},
      .sliding_window = {512},
      .num_kv_shared_layers = {18},
      .use_double_wide_mlp = {false},
      .hidden_size_per_layer_input = {256},
      .vocab_size_per_layer_input = {262'144},
      .rms_norm_eps = {1e-6},
      .hidden_activation = {"gelu_pytorch_tanh"},
      .final_logit_softcapping = {30.0},
      .tie_word_embeddings = {true},
      .max_position_embeddings = {131'072},
      .rope_parameters = {kGemma4Rope},
      .attention_k_eq_v = {false},
      .enable_moe_block = {false},
      .bos_token_id = {2},
      .pad_token_id = {0},
  };
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
