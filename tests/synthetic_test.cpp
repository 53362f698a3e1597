// Synthetic checkpoints: exact layout, reproducibility and trained-model conditioning.

#include <catch2/catch.hpp>

#include <cmath>

#include "gemma4/tiny.hpp"
#include "gemma4/weights/synthetic_checkpoint.hpp"
#include "support.hpp"

using namespace gemma4;
using namespace gemma4::test;

namespace {

struct Stats {
  double mean, stddev, min, max;
};

Stats stats(const TensorView& t) {
  double sum = 0, sum_sq = 0, lo = INFINITY, hi = -INFINITY;
  for (std::size_t i = 0; i < t.size(); ++i) {
    const double v = t.at(i);
    sum += v;
    sum_sq += v * v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const double n = static_cast<double>(t.size());
  return {sum / n, std::sqrt(std::max(0.0, sum_sq / n - (sum / n) * (sum / n))), lo, hi};
}

}  // namespace

TEST_CASE("synthetic weights are conditioned like a trained model", "[synthetic]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.dtype = DType::kF32, .seed = 3});
  const Weights<TinyE2B> w(dir.path());
  for (const LayerFacts& f : kLayers<TinyE2B>) {
    const LayerWeights& layer = w.layers[f.index];
    INFO("layer " << f.index);
    const Stats scalar = stats(layer.layer_scalar);
    CHECK(scalar.min > 0.5);
    CHECK(scalar.max < 1.0);
    const Stats q_norm = stats(layer.q_norm);
    const double inv_sqrt_d = 1.0 / std::sqrt(f.head_dim);
    CHECK(q_norm.min >= 0.85 * inv_sqrt_d);
    CHECK(q_norm.max <= 1.15 * inv_sqrt_d);
    for (const TensorView* norm : std::initializer_list<const TensorView*>{&layer.input_layernorm, &layer.post_attention_layernorm, &layer.pre_feedforward_layernorm,
                                   &layer.post_feedforward_layernorm, &layer.post_per_layer_input_norm}) {
      const Stats s = stats(*norm);
      CHECK(s.min >= 0.85);
      CHECK(s.max <= 1.15);
    }
    for (const TensorView* proj : std::initializer_list<const TensorView*>{&layer.q_proj, &layer.o_proj, &layer.gate_proj, &layer.down_proj, &layer.per_layer_projection}) {
      const Stats s = stats(*proj);
      const double want = 1.0 / std::sqrt(static_cast<double>(proj->shape[1]));
      CHECK(std::abs(s.stddev / want - 1.0) < 0.05);
      CHECK(std::abs(s.mean) < 0.1 * want);
    }
  }
  const Stats embed = stats(w.global.embed_tokens);
  CHECK(std::abs(embed.stddev * std::sqrt(TinyE2B::config.hidden_size.value) - 1.0) < 0.05);
}

TEST_CASE("the same seed writes the same bytes, another seed other bytes", "[synthetic]") {
  TempDir a, b, c;
  write_synthetic_checkpoint(TinyE4B::config, a.path(), {.seed = 9});
  write_synthetic_checkpoint(TinyE4B::config, b.path(), {.seed = 9});
  write_synthetic_checkpoint(TinyE4B::config, c.path(), {.seed = 10});
  CHECK(read_file(a / "model.safetensors") == read_file(b / "model.safetensors"));
  CHECK(read_file(a / "model.safetensors") != read_file(c / "model.safetensors"));
  CHECK(read_file(a / "config.json") == read_file(c / "config.json"));
}

TEST_CASE("config.json and generation_config.json follow the published layout", "[synthetic]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path());
  const auto config = nlohmann::json::parse(read_file(dir / "config.json"));
  CHECK(config["architectures"][0] == "Gemma4ForConditionalGeneration");
  CHECK(config["model_type"] == "gemma4");
  CHECK(config["text_config"]["model_type"] == "gemma4_text");
  CHECK(config["text_config"]["layer_types"].size() == 35);
  CHECK(config["text_config"]["layer_types"][4] == "full_attention");
  const auto generation = nlohmann::json::parse(read_file(dir / "generation_config.json"));
  CHECK(generation["eos_token_id"] == nlohmann::json({1, 106, 50}));
}

TEST_CASE("bf16 and f16 conversions round to nearest even", "[synthetic]") {
  CHECK(f32_to_bf16(1.0f) == 0x3f80);
  CHECK(bf16_to_f32(f32_to_bf16(1.00390625f)) == 1.0f);      // halfway, rounds to even
  CHECK(bf16_to_f32(f32_to_bf16(1.01171875f)) == 1.015625f); // halfway, rounds up to even
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  CHECK(bf16_to_f32(f32_to_bf16(39.1918f)) == 39.25f);  // E2B's embed scale in bf16 (spec section 3)
  for (float v : {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 3.0517578e-05f, 0.33325195f}) {
    CHECK(f16_to_f32(f32_to_f16(v)) == v);
  }
  CHECK(f32_to_f16(1e6f) == 0x7c00);
  CHECK(f16_to_f32(f32_to_f16(1.0f + 1.0f / 2048)) == 1.0f);  // halfway, rounds to even
  CHECK(std::isnan(f16_to_f32(f32_to_f16(NAN))));
}
