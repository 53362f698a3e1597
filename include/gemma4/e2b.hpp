#pragma once
// Gemma 4 E2B (google/gemma-4-E2B, -E2B-it): the variant and its facts, checked at
// compile time against spec sections 1-2.

#include "gemma4/config/model_config.hpp"
#include "gemma4/config/topology.hpp"
#include "gemma4/model/session.hpp"
#include "gemma4/weights/load.hpp"

namespace gemma4 {

struct E2B {
  static constexpr std::string_view name = "e2b";
  static constexpr ModelConfig config = {
      .vocab_size = {262'144},
      .hidden_size = {1536},
      .intermediate_size = {6144},
      .num_hidden_layers = {35},
      .num_attention_heads = {8},
      .num_key_value_heads = {1},
      .head_dim = {256},
      .global_head_dim = {512},
      .layer_types = {LayerPattern{5}},
      .sliding_window = {512},
      .num_kv_shared_layers = {20},
      .use_double_wide_mlp = {true},
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
