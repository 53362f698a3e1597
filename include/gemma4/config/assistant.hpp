#pragma once
// The Gemma 4 assistants (MTP drafters, spec gemma4-assistant.md section 1): a 4-layer
// decoder that drafts tokens for one target model from the target's last hidden row and
// its KV cache. An assistant is a type like a target variant, whose `config` is its
// text_config, with `head` for the top-level config.json fields and `Target` for the
// model it drafts for. Whether the pair fits is checked at compile time.

#include <concepts>

#include "gemma4/config/e2b.hpp"
#include "gemma4/config/e4b.hpp"
#include "gemma4/config/model_config.hpp"
#include "gemma4/config/tiny.hpp"
#include "gemma4/config/topology.hpp"

namespace gemma4 {

// The assistant's own config.json fields, outside its text_config.
struct AssistantHead {
  HfField<int, "backbone_hidden_size"> backbone_hidden_size;  // the target's hidden size
  HfField<bool, "use_ordered_embeddings"> use_ordered_embeddings;
  HfField<int, "num_centroids"> num_centroids;
  HfField<int, "centroid_intermediate_top_k"> centroid_intermediate_top_k;
  HfField<bool, "tie_word_embeddings"> tie_word_embeddings;
};

template <typename A>
concept AssistantVariant = Variant<A> && Variant<typename A::Target> && requires {
  { A::head } -> std::convertible_to<const AssistantHead&>;
};

// The assistant's text config: the target's attention geometry (it reads the target's
// caches), its own width, 4 query-only layers (3 sliding, 1 full), no PLE, no softcap.
constexpr ModelConfig assistant_text_config(const ModelConfig& target, int hidden, int intermediate) {
  ModelConfig c = target;
  c.hidden_size.value = hidden;
  c.intermediate_size.value = intermediate;
  c.num_hidden_layers.value = 4;
  c.num_attention_heads.value = 4;
  c.layer_types.value = LayerPattern{4};
  c.num_kv_shared_layers.value = 4;
  c.use_double_wide_mlp.value = false;
  c.hidden_size_per_layer_input.value = 0;
  c.final_logit_softcapping.value = 0;
  return c;
}

// Which target cache an assistant layer of attention type `type` reads: the target's last
// layer of that type with its own cache (E2B: 13 sliding, 14 full).
constexpr int assistant_donor(const ModelConfig& target, AttentionType type) { return last_own_cache_layer(target, type); }

// Whether assistant (head, text) can draft for `target` with the kernels here.
constexpr bool pairs_with(const AssistantHead& head, const ModelConfig& text, const ModelConfig& target) {
  const auto same_rope = [](const Rope& a, const Rope& b) {
    return a.rope_type == b.rope_type && a.rope_theta == b.rope_theta && a.partial_rotary_factor == b.partial_rotary_factor;
  };
  const RopeParameters &r = text.rope_parameters.value, &t = target.rope_parameters.value;
  return head.backbone_hidden_size == target.hidden_size && head.use_ordered_embeddings && head.tie_word_embeddings &&
         head.num_centroids > 0 && text.vocab_size % head.num_centroids == 0 && head.centroid_intermediate_top_k > 0 &&
         head.centroid_intermediate_top_k <= head.num_centroids && text.vocab_size == target.vocab_size &&
         text.num_key_value_heads == target.num_key_value_heads && text.num_attention_heads % text.num_key_value_heads == 0 &&
         text.head_dim == target.head_dim && text.global_head_dim == target.global_head_dim &&
         text.sliding_window == target.sliding_window && same_rope(r.sliding_attention, t.sliding_attention) &&
         same_rope(r.full_attention, t.full_attention) && text.num_kv_shared_layers == text.num_hidden_layers &&
         text.hidden_size_per_layer_input == 0 && text.final_logit_softcapping == 0 &&
         assistant_donor(target, AttentionType::kSliding) >= 0 && assistant_donor(target, AttentionType::kFull) >= 0;
}

template <AssistantVariant A>
constexpr bool kFitsTarget = pairs_with(A::head, A::config, A::Target::config);

struct E2BAssistant {
  using Target = E2B;
  static constexpr std::string_view name = "e2b-assistant";
  static constexpr AssistantHead head = {{1536}, {true}, {2048}, {32}, {true}};
  static constexpr ModelConfig config = assistant_text_config(E2B::config, 256, 2048);
};

struct E4BAssistant {
  using Target = E4B;
  static constexpr std::string_view name = "e4b-assistant";
  static constexpr AssistantHead head = {{2560}, {true}, {2048}, {32}, {true}};
  static constexpr ModelConfig config = assistant_text_config(E4B::config, 256, 2048);
};

// Test pairs: 64 centroids of 16 ids over the tiny vocabulary of 1024, the 8 best kept.
struct TinyE2BAssistant {
  using Target = TinyE2B;
  static constexpr std::string_view name = "tiny-e2b-assistant";
  static constexpr AssistantHead head = {{128}, {true}, {64}, {8}, {true}};
  static constexpr ModelConfig config = assistant_text_config(TinyE2B::config, 32, 64);
};

struct TinyE4BAssistant {
  using Target = TinyE4B;
  static constexpr std::string_view name = "tiny-e4b-assistant";
  static constexpr AssistantHead head = {{128}, {true}, {64}, {8}, {true}};
  static constexpr ModelConfig config = assistant_text_config(TinyE4B::config, 32, 64);
};

static_assert(kFitsTarget<E2BAssistant> && kFitsTarget<E4BAssistant> && kFitsTarget<TinyE2BAssistant> && kFitsTarget<TinyE4BAssistant>,
              "gemma4: an assistant does not fit its target");
static_assert(assistant_donor(E2B::config, AttentionType::kSliding) == 13 && assistant_donor(E2B::config, AttentionType::kFull) == 14 &&
                  assistant_donor(E4B::config, AttentionType::kSliding) == 22 && assistant_donor(E4B::config, AttentionType::kFull) == 23,
              "gemma4: assistants read E2B's layers 13/14 and E4B's 22/23 (spec section 3)");
static_assert(head_dim(E2BAssistant::config, 2) == 256 && head_dim(E2BAssistant::config, 3) == 512,
              "gemma4: assistant layers 0-2 are sliding (D 256), layer 3 full (D 512)");

}  // namespace gemma4
