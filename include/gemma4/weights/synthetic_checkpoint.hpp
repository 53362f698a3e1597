#pragma once
// Synthetic checkpoints in the exact Hugging Face layout (spec section 5), with random
// weights conditioned like a trained model's so that tests can be precise:
//   - norm weights near 1, q_norm/k_norm near head_dim^-0.5 (the attention scale is
//     1.0; with q/k norms near 1 a random 35-layer net is chaotic enough that f32
//     rounding alone moves logits by more than 1e-2),
//   - linear weights and embeddings uniform with standard deviation 1/sqrt(fan_in),
//   - layer_scalar in (0.5, 1).
// Values depend only on (seed, tensor name), not on dtype order or sharding.

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <boost/pfr.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "gemma4/config/assistant.hpp"
#include "gemma4/config/config_json.hpp"
#include "gemma4/config/topology.hpp"
#include "gemma4/weights/assistant_weights.hpp"
#include "gemma4/weights/checkpoint.hpp"
#include "gemma4/weights/model_weights.hpp"
#include "gemma4/weights/safetensors_writer.hpp"

namespace gemma4 {

struct SynthOptions {
  DType dtype = DType::kBF16;
  std::uint64_t seed = 0;
  int shards = 1;  // more than 1: model-0000i-of-0000K.safetensors plus the index
  // true: the published multimodal layout (prefix model.language_model., a few vision
  // and audio tensors); false: a text-only Gemma4ForCausalLM save (prefix model.).
  bool multimodal = true;
  // Also write the k/v/k_norm tensors that KV-shared layers never use, as older
  // transformers versions save them.
  bool shared_layer_kv = true;
  // A residual stream that keeps its history (layer_scalar near 1, sublayer outputs
  // scaled by post-norm weights near 0.3) instead of a chaotic random net. Rounding
  // weights to bf16 then moves the output distribution about as little as it moves a
  // trained model's (KL ~1e-4 nats, against ~1e-3 to 4e-3 without): what the quality
  // guard of the int8/int4 formats needs to measure them and not the net's chaos.
  bool trained_like = false;
};

namespace detail {

constexpr std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

constexpr std::uint64_t hash_name(std::string_view s, std::uint64_t seed) {
  std::uint64_t h = 0xcbf29ce484222325ull ^ seed;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return h;
}

// Uniform values in center + [-half_width, half_width), reproducible from any offset:
// element i is a pure function of (key, i), so chunks can be generated independently.
struct UniformValues {
  std::uint64_t key;
  float center;
  float half_width;

  void operator()(std::size_t first, std::span<float> out) const {
    for (std::size_t i = 0; i < out.size(); ++i) {
      std::uint64_t state = key + 0x9e3779b97f4a7c15ull * (first + i);
      const auto bits = splitmix64(state) >> 40;                     // 24 random bits
      const float unit = static_cast<float>(bits) * (2.0f / 16777216.0f) - 1.0f;  // [-1, 1)
      out[i] = center + half_width * unit;
    }
  }
};

// How a tensor of this slot is initialised. Slot names come from model_weights.hpp.
inline UniformValues initial_values(std::string_view slot, const std::vector<std::int64_t>& shape, std::uint64_t key,
                                   bool trained_like) {
  if (trained_like && slot == "layer_scalar") return {key, 0.98f, 0.02f};
  if (trained_like && slot.starts_with("post_")) return {key, 0.3f, 0.03f};
  if (slot == "layer_scalar") return {key, 0.75f, 0.24f};
  if (slot.ends_with("q_norm.weight") || slot.ends_with("k_norm.weight")) {
    return {key, 1.0f / std::sqrt(static_cast<float>(shape[0])), 0.1f / std::sqrt(static_cast<float>(shape[0]))};
  }
  if (shape.size() == 1) return {key, 1.0f, 0.1f};  // norm weights
  // Uniform on [-a, a] has standard deviation a / sqrt(3).
  return {key, 0.0f, std::sqrt(3.0f / static_cast<float>(shape[1]))};
}

inline std::vector<TensorToWrite> plan_tensors(const ModelConfig& c, const SynthOptions& o) {
  const std::string prefix(o.multimodal ? kMultimodalPrefix : kTextOnlyPrefix);
  std::vector<TensorToWrite> plan;
  auto add = [&](const std::string& name, std::string_view slot, std::vector<std::int64_t> shape) {
    const auto full = prefix + name;
    auto values = initial_values(slot, shape, hash_name(full, o.seed), o.trained_like);
    plan.push_back({full, std::move(shape), o.dtype, values});
  };
  const LayerFacts no_layer{};
  boost::pfr::for_each_field(GlobalWeights{}, [&](const auto& slot) {
    using S = std::remove_cvref_t<decltype(slot)>;
    add(std::string(S::name), S::name, expected_shape<S>(c, no_layer));
  });
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    // A KV-shared layer's unused k/v weights have the shapes of an unshared layer.
    LayerFacts facts = layer_facts(c, l);
    boost::pfr::for_each_field(LayerWeights{}, [&](const auto& slot) {
      using S = std::remove_cvref_t<decltype(slot)>;
      if (holds<S>(facts) || o.shared_layer_kv) add(layer_tensor_name(l, S::name), S::name, expected_shape<S>(c, facts));
    });
  }
  if (o.multimodal) {
    // Stand-ins for the vision and audio towers, which a text model must skip.
    for (std::string_view name : {"model.vision_tower.encoder.layers.0.mlp.up_proj.weight",
                                  "model.embed_vision.embedding_projection.weight",
                                  "model.audio_tower.layers.0.feed_forward.weight",
                                  "model.embed_audio.embedding_projection.weight"}) {
      plan.push_back({std::string(name), {8, 16}, o.dtype, UniformValues{hash_name(name, o.seed), 0.0f, 0.1f}});
    }
  }
  return plan;
}

inline nlohmann::ordered_json synthetic_config_json(const ModelConfig& c, const SynthOptions& o) {
  nlohmann::ordered_json text = to_json(c);
  text["model_type"] = "gemma4_text";
  text["eos_token_id"] = 1;
  const char* dtype = o.dtype == DType::kBF16 ? "bfloat16" : o.dtype == DType::kF16 ? "float16" : "float32";
  if (!o.multimodal) {
    text["architectures"] = {"Gemma4ForCausalLM"};
    text["dtype"] = dtype;
    return text;
  }
  nlohmann::ordered_json config;
  config["architectures"] = {"Gemma4ForConditionalGeneration"};
  config["model_type"] = "gemma4";
  config["dtype"] = dtype;
  config["text_config"] = text;
  config["vision_config"] = {{"model_type", "gemma4_vision"}};
  config["audio_config"] = {{"model_type", "gemma4_audio"}};
  config["tie_word_embeddings"] = true;
  return config;
}

inline void write_json(const std::filesystem::path& path, const nlohmann::ordered_json& j) {
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) fail(ErrorKind::kIo, "cannot write {}", path.string());
}

}  // namespace detail

// Writes a complete model directory: config.json, generation_config.json and the
// weights (one file, or `shards` files plus model.safetensors.index.json).
inline void write_synthetic_checkpoint(const ModelConfig& c, const std::filesystem::path& dir, const SynthOptions& o = {}) {
  if (!is_supported_topology(c)) fail(ErrorKind::kInvalidArgument, "write_synthetic_checkpoint: the config breaks the Gemma 4 topology rules");
  if (o.shards < 1) fail(ErrorKind::kInvalidArgument, "write_synthetic_checkpoint: shards must be at least 1, got {}", o.shards);
  std::filesystem::create_directories(dir);
  const auto plan = detail::plan_tensors(c, o);

  detail::write_json(dir / "config.json", detail::synthetic_config_json(c, o));
  detail::write_json(dir / "generation_config.json",
                     {{"bos_token_id", c.bos_token_id.value}, {"eos_token_id", {1, 106, 50}}, {"pad_token_id", c.pad_token_id.value}});
  if (o.shards == 1) {
    write_safetensors(dir / kSingleFileName, plan);
    return;
  }
  // Split the tensor list into `shards` consecutive runs of about equal bytes.
  std::size_t total = 0;
  for (const auto& t : plan) total += t.byte_size();
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total}};
  std::vector<std::vector<TensorToWrite>> shards(static_cast<std::size_t>(o.shards));
  std::size_t written = 0;
  for (const auto& t : plan) {
    const auto shard = std::min<std::size_t>(shards.size() - 1, written * shards.size() / std::max<std::size_t>(total, 1));
    shards[shard].push_back(t);
    written += t.byte_size();
  }
  for (std::size_t s = 0; s < shards.size(); ++s) {
    const std::string file = fmt::format("model-{:05}-of-{:05}.safetensors", s + 1, shards.size());
    for (const auto& t : shards[s]) index["weight_map"][t.name] = file;
    write_safetensors(dir / file, shards[s]);
  }
  detail::write_json(dir / kIndexFileName, index);
}

namespace detail {

// A permutation of [0, n) drawn from `seed` (Fisher-Yates).
inline std::vector<std::int64_t> random_permutation(std::size_t n, std::uint64_t seed) {
  std::vector<std::int64_t> p(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::int64_t>(i);
  std::uint64_t state = seed;
  for (std::size_t i = n; i > 1; --i) std::swap(p[i - 1], p[splitmix64(state) % i]);
  return p;
}

// An assistant's weight tensors (spec gemma4-assistant.md section 2), its token ordering aside.
template <AssistantVariant A>
std::vector<TensorToWrite> plan_assistant_tensors(const SynthOptions& o) {
  std::vector<TensorToWrite> plan;
  auto add = [&](const std::string& name, std::string_view slot, std::vector<std::int64_t> shape) {
    auto values = initial_values(slot, shape, hash_name(name, o.seed), o.trained_like);
    plan.push_back({name, std::move(shape), o.dtype, values});
  };
  const std::int64_t hidden = A::config.hidden_size, backbone = A::head.backbone_hidden_size;
  add("pre_projection.weight", "pre_projection.weight", {hidden, 2 * backbone});
  add("post_projection.weight", "post_projection.weight", {backbone, hidden});
  add("masked_embedding.centroids.weight", "masked_embedding.centroids.weight", {A::head.num_centroids, hidden});
  const std::string prefix(kTextOnlyPrefix);
  const LayerFacts no_layer{};
  boost::pfr::for_each_field(AssistantGlobalWeights{}, [&](const auto& slot) {
    using S = std::remove_cvref_t<decltype(slot)>;
    add(prefix + std::string(S::name), S::name, expected_shape<S>(A::config, no_layer));
  });
  for (const LayerFacts& facts : kLayers<A>) {
    boost::pfr::for_each_field(LayerWeights{}, [&](const auto& slot) {
      using S = std::remove_cvref_t<decltype(slot)>;
      if (holds<S>(facts)) add(prefix + layer_tensor_name(facts.index, S::name), S::name, expected_shape<S>(A::config, facts));
    });
  }
  return plan;
}

template <AssistantVariant A>
RawTensor token_ordering_tensor(std::uint64_t seed) {
  const std::vector<std::int64_t> ordering = random_permutation(static_cast<std::size_t>(A::config.vocab_size), seed ^ 0x6f72646572ull);
  const auto* bytes = reinterpret_cast<const std::byte*>(ordering.data());
  const std::size_t size = ordering.size() * sizeof(std::int64_t);
  return {{std::string(kTokenOrderingName), "I64", {A::config.vocab_size}, size}, {bytes, bytes + size}};
}

template <AssistantVariant A>
nlohmann::ordered_json synthetic_assistant_config_json(const SynthOptions& o) {
  nlohmann::ordered_json config;
  config["architectures"] = {"Gemma4AssistantForCausalLM"};
  config["model_type"] = kAssistantModelType;
  boost::pfr::for_each_field(A::head, [&](const auto& field) { config[std::string(field.name)] = field.value; });
  config["dtype"] = o.dtype == DType::kBF16 ? "bfloat16" : o.dtype == DType::kF16 ? "float16" : "float32";
  nlohmann::ordered_json text = to_json(A::config);
  text["model_type"] = "gemma4_text";
  config["text_config"] = text;
  return config;
}

}  // namespace detail

// Writes an assistant directory as published: config.json and model.safetensors with its
// 50 tensors. Options used: dtype, seed, trained_like.
template <AssistantVariant A>
void write_synthetic_assistant(const std::filesystem::path& dir, const SynthOptions& o = {}) {
  std::filesystem::create_directories(dir);
  detail::write_json(dir / "config.json", detail::synthetic_assistant_config_json<A>(o));
  write_safetensors(dir / kSingleFileName, detail::plan_assistant_tensors<A>(o), {detail::token_ordering_tensor<A>(o.seed)});
}

}  // namespace gemma4
