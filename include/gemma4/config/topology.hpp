#pragma once
// The topology rules of spec section 2 as constexpr functions of a ModelConfig:
// which layers are full attention, which share another layer's KV cache and whose,
// each layer's head dim and FFN width. Evaluated at compile time for the compiled
// variants (see e2b.hpp), so the forward pass never looks them up per token.

#include <algorithm>
#include <array>
#include <cstddef>

#include "gemma4/config/model_config.hpp"

namespace gemma4 {

enum class AttentionType { kSliding, kFull };

// The four kinds of layer. Kernels and layer code are specialised by kind, never by index.
struct LayerKind {
  AttentionType attention;
  bool kv_shared;  // reads its donor's KV cache, has no k/v projections of its own

  friend constexpr bool operator==(LayerKind, LayerKind) = default;
};

constexpr bool is_full_attention(const ModelConfig& c, int layer) {
  return (layer + 1) % c.layer_types.value.full_every == 0 || layer == c.num_hidden_layers - 1;
}

constexpr AttentionType attention_type(const ModelConfig& c, int layer) {
  return is_full_attention(c, layer) ? AttentionType::kFull : AttentionType::kSliding;
}

constexpr int first_kv_shared_layer(const ModelConfig& c) {
  return c.num_hidden_layers - c.num_kv_shared_layers;
}

constexpr bool is_kv_shared(const ModelConfig& c, int layer) { return layer >= first_kv_shared_layer(c); }

constexpr LayerKind layer_kind(const ModelConfig& c, int layer) {
  return {attention_type(c, layer), is_kv_shared(c, layer)};
}

// The last layer of attention type `type` with its own KV cache; -1 when there is none.
// KV-shared layers read it, and so does an assistant (config/assistant.hpp).
constexpr int last_own_cache_layer(const ModelConfig& c, AttentionType type) {
  for (int d = first_kv_shared_layer(c) - 1; d >= 0; --d) {
    if (attention_type(c, d) == type) return d;
  }
  return -1;
}

// The layer whose keys/values `layer` attends over: itself, or for a KV-shared layer the
// last non-shared layer of the same attention type. -1 when no such layer exists.
constexpr int kv_donor(const ModelConfig& c, int layer) {
  return is_kv_shared(c, layer) ? last_own_cache_layer(c, attention_type(c, layer)) : layer;
}

constexpr int head_dim(const ModelConfig& c, AttentionType type) {
  return type == AttentionType::kFull ? c.global_head_dim.value : c.head_dim.value;
}

constexpr int head_dim(const ModelConfig& c, int layer) { return head_dim(c, attention_type(c, layer)); }

constexpr int ffn_width(const ModelConfig& c, LayerKind kind) {
  return c.use_double_wide_mlp && kind.kv_shared ? 2 * c.intermediate_size : c.intermediate_size.value;
}

constexpr int ffn_width(const ModelConfig& c, int layer) { return ffn_width(c, layer_kind(c, layer)); }

// Layers that own a KV cache are numbered 0.. in layer order; a shared layer uses its
// donor's number.
constexpr int kv_cache_slot(const ModelConfig& c, int layer) {
  const int donor = kv_donor(c, layer);
  int slot = 0;
  for (int l = 0; l < donor; ++l) slot += is_kv_shared(c, l) ? 0 : 1;
  return slot;
}

constexpr int num_kv_caches(const ModelConfig& c) { return first_kv_shared_layer(c); }

// The Gemma 4 E-model structure this library implements. Checked by static_assert for
// every compiled variant, and at run time for a config read from disk.
constexpr bool is_supported_topology(const ModelConfig& c) {
  if (c.hidden_size <= 0 || c.num_hidden_layers <= 0 || c.vocab_size <= 0) return false;
  if (c.num_attention_heads <= 0 || c.num_key_value_heads <= 0) return false;
  if (c.num_attention_heads % c.num_key_value_heads != 0) return false;
  if (c.head_dim <= 0 || c.global_head_dim <= 0 || c.head_dim % 2 != 0 || c.global_head_dim % 2 != 0) return false;
  if (c.layer_types.value.full_every <= 0 || c.sliding_window <= 0) return false;
  if (c.num_kv_shared_layers < 0 || first_kv_shared_layer(c) <= 0) return false;
  if (c.hidden_size_per_layer_input <= 0 || c.vocab_size_per_layer_input <= 0) return false;
  if (c.attention_k_eq_v || c.enable_moe_block || !c.tie_word_embeddings) return false;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    if (kv_donor(c, l) < 0) return false;
  }
  return true;
}

// Grouped-query attention: query head h reads kv head h / (heads / kv_heads).
constexpr int kv_head_of(int query_head, int num_heads, int num_kv_heads) {
  return query_head / (num_heads / num_kv_heads);
}

// The first key position a query at `query_pos` sees. Causal; a sliding layer also
// requires key_pos > query_pos - window, so a key exactly `window` back is excluded.
constexpr int first_visible_position(int query_pos, AttentionType type, int window) {
  return type == AttentionType::kSliding ? std::max(0, query_pos - window + 1) : 0;
}

// Everything the loader and the forward pass need to know about one layer.
struct LayerFacts {
  int index;
  LayerKind kind;
  int kv_donor;
  int kv_cache_slot;
  int head_dim;
  int ffn_width;
  bool per_layer_input;  // has the PLE gate and projection (not in an assistant)
};

constexpr LayerFacts layer_facts(const ModelConfig& c, int layer) {
  return {layer, layer_kind(c, layer), kv_donor(c, layer), kv_cache_slot(c, layer), head_dim(c, layer),
          ffn_width(c, layer), c.hidden_size_per_layer_input > 0};
}

// A compiled variant: a type with a constexpr `config` and a `name`.
template <typename V>
concept Variant = requires {
  { V::config } -> std::convertible_to<const ModelConfig&>;
  { V::name } -> std::convertible_to<std::string_view>;
};

template <Variant V>
inline constexpr int kNumLayers = V::config.num_hidden_layers;

// Per-layer facts of a compiled variant, computed once at compile time.
template <Variant V>
inline constexpr std::array<LayerFacts, kNumLayers<V>> kLayers = [] {
  std::array<LayerFacts, kNumLayers<V>> layers{};
  for (int l = 0; l < kNumLayers<V>; ++l) layers[l] = layer_facts(V::config, l);
  return layers;
}();

}  // namespace gemma4
