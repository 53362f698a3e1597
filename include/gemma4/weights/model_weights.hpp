#pragma once
// The model's tensors as named, shaped slots. Each slot's type carries its checkpoint
// name and its shape in symbolic dims; Boost.PFR walks these structs to bind, validate,
// print and write tensors, so this file is the single list of tensor names.

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "gemma4/config/model_config.hpp"
#include "gemma4/config/topology.hpp"
#include "gemma4/detail/fixed_string.hpp"
#include "gemma4/base/tensor.hpp"
#include "gemma4/quant/weight_matrix.hpp"

namespace gemma4 {

// Symbolic tensor dimensions; `dim_size` turns them into numbers for one layer.
enum class Dim {
  kOne,
  kVocab,
  kPleVocab,    // vocab_size_per_layer_input
  kHidden,
  kPle,         // hidden_size_per_layer_input (256)
  kPleAll,      // num_layers * 256: all layers' PLE vectors side by side
  kHeadDim,     // D of this layer: 256 sliding, 512 full
  kQueryWidth,  // num_heads * D
  kKvWidth,     // num_kv_heads * D
  kFfn,         // F of this layer
};

constexpr std::int64_t dim_size(Dim dim, const ModelConfig& c, const LayerFacts& layer) {
  switch (dim) {
    case Dim::kOne: return 1;
    case Dim::kVocab: return c.vocab_size;
    case Dim::kPleVocab: return c.vocab_size_per_layer_input;
    case Dim::kHidden: return c.hidden_size;
    case Dim::kPle: return c.hidden_size_per_layer_input;
    case Dim::kPleAll: return std::int64_t{c.num_hidden_layers} * c.hidden_size_per_layer_input;
    case Dim::kHeadDim: return layer.head_dim;
    case Dim::kQueryWidth: return std::int64_t{c.num_attention_heads} * layer.head_dim;
    case Dim::kKvWidth: return std::int64_t{c.num_key_value_heads} * layer.head_dim;
    case Dim::kFfn: return layer.ffn_width;
  }
  return 0;
}

// Which layers hold a tensor.
enum class Presence {
  kAlways,
  kOwnKvOnly,  // k_proj, v_proj, k_norm: only layers with their own KV cache
  kPerLayerInputOnly,  // the PLE gate and projection: not in an assistant's layers
};

// Where a tensor's bytes live while the model runs.
enum class Residency {
  kInMemory,  // faulted in at load time (LoadOptions::prefault)
  kOnDisk,    // left in the mapping, read a few rows at a time: the PLE table
};

// A matrix: its dense elements as loaded, read row by row for lookups (the embedding
// and PLE tables), and what matmuls read, the same elements or their int8/int4
// conversion. In a packed model there are no dense elements (data is null): lookups
// read rows of the packed matrix in `linear`.
struct MatrixView : TensorView {
  WeightMatrix linear;
};

template <detail::FixedString kName, Presence kPresence, Residency kResidency, Dim... kShape>
struct Slot : std::conditional_t<sizeof...(kShape) == 2, MatrixView, TensorView> {
  static_assert(sizeof...(kShape) == 1 || sizeof...(kShape) == 2, "gemma4: a weight is a vector or a matrix");
  static constexpr std::string_view name = kName.view();
  static constexpr Presence presence = kPresence;
  static constexpr Residency residency = kResidency;
  static constexpr std::array<Dim, sizeof...(kShape)> dims = {kShape...};
};

template <detail::FixedString kName, Dim... kShape>
using Weight = Slot<kName, Presence::kAlways, Residency::kInMemory, kShape...>;
template <detail::FixedString kName, Dim... kShape>
using OwnKvWeight = Slot<kName, Presence::kOwnKvOnly, Residency::kInMemory, kShape...>;
template <detail::FixedString kName, Dim... kShape>
using PerLayerInputWeight = Slot<kName, Presence::kPerLayerInputOnly, Residency::kInMemory, kShape...>;
template <detail::FixedString kName, Dim... kShape>
using OnDiskWeight = Slot<kName, Presence::kAlways, Residency::kOnDisk, kShape...>;

// Tensors outside the layers. Names follow the checkpoint prefix.
struct GlobalWeights {
  Weight<"embed_tokens.weight", Dim::kVocab, Dim::kHidden> embed_tokens;  // also the tied LM head
  OnDiskWeight<"embed_tokens_per_layer.weight", Dim::kPleVocab, Dim::kPleAll> embed_tokens_per_layer;
  Weight<"per_layer_model_projection.weight", Dim::kPleAll, Dim::kHidden> per_layer_model_projection;
  Weight<"per_layer_projection_norm.weight", Dim::kPle> per_layer_projection_norm;
  Weight<"norm.weight", Dim::kHidden> norm;
};

// Tensors of decoder layer l, named "layers.{l}." + slot name. Linear weights are [out, in].
struct LayerWeights {
  Weight<"input_layernorm.weight", Dim::kHidden> input_layernorm;
  Weight<"self_attn.q_proj.weight", Dim::kQueryWidth, Dim::kHidden> q_proj;
  OwnKvWeight<"self_attn.k_proj.weight", Dim::kKvWidth, Dim::kHidden> k_proj;
  OwnKvWeight<"self_attn.v_proj.weight", Dim::kKvWidth, Dim::kHidden> v_proj;
  Weight<"self_attn.o_proj.weight", Dim::kHidden, Dim::kQueryWidth> o_proj;
  Weight<"self_attn.q_norm.weight", Dim::kHeadDim> q_norm;
  OwnKvWeight<"self_attn.k_norm.weight", Dim::kHeadDim> k_norm;
  Weight<"post_attention_layernorm.weight", Dim::kHidden> post_attention_layernorm;
  Weight<"pre_feedforward_layernorm.weight", Dim::kHidden> pre_feedforward_layernorm;
  Weight<"mlp.gate_proj.weight", Dim::kFfn, Dim::kHidden> gate_proj;
  Weight<"mlp.up_proj.weight", Dim::kFfn, Dim::kHidden> up_proj;
  Weight<"mlp.down_proj.weight", Dim::kHidden, Dim::kFfn> down_proj;
  Weight<"post_feedforward_layernorm.weight", Dim::kHidden> post_feedforward_layernorm;
  PerLayerInputWeight<"per_layer_input_gate.weight", Dim::kPle, Dim::kHidden> per_layer_input_gate;
  PerLayerInputWeight<"per_layer_projection.weight", Dim::kHidden, Dim::kPle> per_layer_projection;
  PerLayerInputWeight<"post_per_layer_input_norm.weight", Dim::kHidden> post_per_layer_input_norm;
  Weight<"layer_scalar", Dim::kOne> layer_scalar;
};

// The tensors a forward pass reads for variant V: views into memory that the loaded
// model (Weights<V>, weights/load.hpp) owns. Data only: the engine (model/) needs
// nothing of how they were loaded.
template <Variant V>
struct ModelWeights {
  GlobalWeights global;
  std::array<LayerWeights, kNumLayers<V>> layers;
  float embedding_scale = 1.0f;  // sqrt(hidden_size) as the checkpoint's dtype rounds it
};

// Checkpoint name (after the prefix) of a slot in layer `layer`, or of a global slot.
inline std::string layer_tensor_name(int layer, std::string_view slot) { return fmt::format("layers.{}.{}", layer, slot); }

template <typename S>
std::vector<std::int64_t> expected_shape(const ModelConfig& c, const LayerFacts& layer) {
  std::vector<std::int64_t> shape;
  for (Dim d : S::dims) shape.push_back(dim_size(d, c, layer));
  return shape;
}

template <typename S>
constexpr bool holds(const LayerFacts& layer) {
  switch (S::presence) {
    case Presence::kAlways: return true;
    case Presence::kOwnKvOnly: return !layer.kind.kv_shared;
    case Presence::kPerLayerInputOnly: return layer.per_layer_input;
  }
  return false;
}

}  // namespace gemma4
