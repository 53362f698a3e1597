#pragma once
// The text-model configuration: one plain aggregate whose fields are the Hugging Face
// `text_config` fields of spec section 1, each tagged with its config.json name.
// Boost.PFR walks it to print it, to write config.json and to compare it with one.

#include <concepts>
#include <string_view>

#include "gemma4/detail/fixed_string.hpp"

namespace gemma4 {

// One config.json field: a value whose type also carries the field's JSON name. A plain
// aggregate (no constructors), so Boost.PFR can count and walk the config's fields.
template <typename T, detail::FixedString kName>
struct HfField {
  using value_type = T;
  static constexpr std::string_view name = kName.view();

  T value;

  constexpr operator T() const { return value; }
};

// Where full-attention layers sit: layer l is full when (l + 1) is a multiple of
// `full_every`, and the last layer is always full (spec section 2). HF stores the
// expanded list as `layer_types`.
struct LayerPattern {
  int full_every;
};

struct Rope {
  std::string_view rope_type;  // "default" or "proportional"
  double rope_theta;
  double partial_rotary_factor;  // 1.0 means every dimension pair rotates
};

// HF `rope_parameters`, keyed by layer type.
struct RopeParameters {
  Rope sliding_attention;
  Rope full_attention;
};

struct ModelConfig {
  HfField<int, "vocab_size"> vocab_size;
  HfField<int, "hidden_size"> hidden_size;
  HfField<int, "intermediate_size"> intermediate_size;
  HfField<int, "num_hidden_layers"> num_hidden_layers;
  HfField<int, "num_attention_heads"> num_attention_heads;
  HfField<int, "num_key_value_heads"> num_key_value_heads;
  HfField<int, "head_dim"> head_dim;                // sliding layers
  HfField<int, "global_head_dim"> global_head_dim;  // full layers
  HfField<LayerPattern, "layer_types"> layer_types;
  HfField<int, "sliding_window"> sliding_window;
  HfField<int, "num_kv_shared_layers"> num_kv_shared_layers;
  HfField<bool, "use_double_wide_mlp"> use_double_wide_mlp;
  HfField<int, "hidden_size_per_layer_input"> hidden_size_per_layer_input;
  HfField<int, "vocab_size_per_layer_input"> vocab_size_per_layer_input;
  HfField<double, "rms_norm_eps"> rms_norm_eps;
  HfField<std::string_view, "hidden_activation"> hidden_activation;
  HfField<double, "final_logit_softcapping"> final_logit_softcapping;  // 0: none
  HfField<bool, "tie_word_embeddings"> tie_word_embeddings;
  HfField<int, "max_position_embeddings"> max_position_embeddings;
  HfField<RopeParameters, "rope_parameters"> rope_parameters;
  HfField<bool, "attention_k_eq_v"> attention_k_eq_v;
  HfField<bool, "enable_moe_block"> enable_moe_block;
  HfField<int, "bos_token_id"> bos_token_id;
  HfField<int, "pad_token_id"> pad_token_id;
};

inline constexpr RopeParameters kGemma4Rope = {
    .sliding_attention = {.rope_type = "default", .rope_theta = 10'000.0, .partial_rotary_factor = 1.0},
    .full_attention = {.rope_type = "proportional", .rope_theta = 1'000'000.0, .partial_rotary_factor = 0.25},
};

// The fields E2B and E4B share (spec section 1). Shape fields are 0 here: each variant
// sets them, and a forgotten one fails the variant's is_supported_topology static_assert.
inline constexpr ModelConfig kGemma4EFamily = {
    .vocab_size = {262'144},
    .hidden_size = {0},
    .intermediate_size = {0},
    .num_hidden_layers = {0},
    .num_attention_heads = {8},
    .num_key_value_heads = {0},
    .head_dim = {256},
    .global_head_dim = {512},
    .layer_types = {LayerPattern{0}},
    .sliding_window = {512},
    .num_kv_shared_layers = {0},
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

// What Hugging Face's Gemma4TextConfig assumes for a field absent from config.json. It
// differs from the E family only in these fields (its softcap default is None: 0 here).
inline constexpr ModelConfig kHfDefaults = [] {
  ModelConfig c = kGemma4EFamily;
  c.hidden_size.value = 2304;
  c.intermediate_size.value = 9216;
  c.num_hidden_layers.value = 30;
  c.num_key_value_heads.value = 4;
  c.layer_types.value = LayerPattern{6};
  c.final_logit_softcapping.value = 0.0;
  return c;
}();

}  // namespace gemma4
