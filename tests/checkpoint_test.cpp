// Loading model directories: every layout the published checkpoints use, and every
// way a directory can be broken.

#include <catch2/catch.hpp>

#include "gemma4/variants.hpp"
#include "gemma4/weights/synthetic_checkpoint.hpp"
#include "support.hpp"

using namespace gemma4;
using namespace gemma4::test;
using Catch::Matchers::Contains;

namespace {

// Writes a single-file checkpoint of `c` after `edit` has changed its tensor list.
template <typename Edit>
void write_edited(const ModelConfig& c, const std::filesystem::path& dir, Edit edit, const SynthOptions& o = {}) {
  std::filesystem::create_directories(dir);
  auto plan = detail::plan_tensors(c, o);
  edit(plan);
  detail::write_json(dir / "config.json", detail::synthetic_config_json(c, o));
  write_safetensors(dir / "model.safetensors", plan);
}

TensorToWrite* find_planned(std::vector<TensorToWrite>& plan, const std::string& name) {
  for (auto& t : plan) {
    if (t.name == name) return &t;
  }
  FAIL("no planned tensor " << name);
  return nullptr;
}

template <typename V>
std::string load_error(const std::filesystem::path& dir) {
  try {
    Weights<V> weights(dir);
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

std::size_t expected_tensor_count(const ModelConfig& c) {
  const std::size_t per_layer = boost::pfr::tuple_size_v<LayerWeights>;
  return boost::pfr::tuple_size_v<GlobalWeights> + per_layer * c.num_hidden_layers - 3 * c.num_kv_shared_layers;
}

template <typename V>
void check_loads(const SynthOptions& o) {
  TempDir dir;
  write_synthetic_checkpoint(V::config, dir.path(), o);
  const Weights<V> w(dir.path());
  const auto& r = w.report();
  CHECK(r.prefix == (o.multimodal ? "model.language_model." : "model."));
  CHECK(r.tensors_used == expected_tensor_count(V::config));
  CHECK(r.unknown.empty());
  CHECK(r.skipped.size() == (o.multimodal ? 4u : 0u) + (o.shared_layer_kv ? 3u * V::config.num_kv_shared_layers : 0u));
  const DType loaded = o.dtype == DType::kF16 ? DType::kF32 : o.dtype;  // F16 is widened
  CHECK(w.global.embed_tokens.dtype == loaded);
  CHECK(w.global.embed_tokens_per_layer.dtype == o.dtype);  // the PLE table is never copied
  CHECK((r.copied_bytes > 0) == (o.dtype == DType::kF16));
  CHECK(w.global.embed_tokens.shape == std::array<std::int64_t, 2>{V::config.vocab_size, V::config.hidden_size});
  for (const LayerFacts& f : kLayers<V>) {
    const LayerWeights& layer = w.layers[f.index];
    CHECK(layer.q_proj.shape[0] == V::config.num_attention_heads * f.head_dim);
    CHECK(layer.down_proj.shape[1] == f.ffn_width);
    CHECK((layer.k_proj.data == nullptr) == f.kind.kv_shared);
    CHECK(layer.layer_scalar.shape == std::array<std::int64_t, 2>{1, 1});
  }
}

}  // namespace

TEMPLATE_TEST_CASE("synthetic checkpoints load in every published layout", "[checkpoint]", TinyE2B, TinyE4B) {
  SynthOptions o;
  SECTION("bf16, one file, multimodal prefix, unused shared k/v present") {}
  SECTION("f32, sharded") {
    o.dtype = DType::kF32;
    o.shards = 3;
  }
  SECTION("f16 is widened to f32") { o.dtype = DType::kF16; }
  SECTION("text-only prefix, newer save without unused k/v") {
    o.multimodal = false;
    o.shared_layer_kv = false;
  }
  SECTION("more shards than a small model needs") { o.shards = 7; }
  check_loads<TestType>(o);
}

TEST_CASE("values survive loading exactly, whatever the sharding", "[checkpoint]") {
  TempDir one, three;
  write_synthetic_checkpoint(TinyE2B::config, one.path(), {.dtype = DType::kF32, .seed = 5});
  write_synthetic_checkpoint(TinyE2B::config, three.path(), {.dtype = DType::kF32, .seed = 5, .shards = 3});
  const Weights<TinyE2B> a(one.path()), b(three.path());
  for (int l : {0, 14, 34}) {
    const auto& x = a.layers[l].gate_proj;
    const auto& y = b.layers[l].gate_proj;
    REQUIRE(x.size() == y.size());
    CHECK(std::memcmp(x.data, y.data, x.bytes().size()) == 0);
  }
  // F16 loads as the F16-rounded value of the same draw.
  TempDir half;
  write_synthetic_checkpoint(TinyE2B::config, half.path(), {.dtype = DType::kF16, .seed = 5});
  const Weights<TinyE2B> h(half.path());
  for (std::size_t i = 0; i < 100; ++i) {
    CHECK(h.layers[3].up_proj.at(i) == f16_to_f32(f32_to_f16(a.layers[3].up_proj.at(i))));
  }
}

TEST_CASE("a missing or broken config.json is an error naming it", "[checkpoint][hostile]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path());
  SECTION("missing") {
    std::filesystem::remove(dir / "config.json");
    CHECK_THAT(load_error<TinyE2B>(dir.path()), Contains("config.json: missing or unreadable"));
  }
  SECTION("malformed JSON") {
    write_file(dir / "config.json", "{\"text_config\": {\"hidden_size\": 128,");
    CHECK_THAT(load_error<TinyE2B>(dir.path()), Contains("config.json: not valid JSON"));
  }
  SECTION("describes another variant") {
    CHECK_THAT(load_error<TinyE4B>(dir.path()), Contains("config.json does not describe tiny-e4b"));
    CHECK_THAT(load_error<TinyE4B>(dir.path()), Contains("num_hidden_layers: expected 42, found 35"));
  }
  SECTION("lies about a dimension") {
    auto config = nlohmann::json::parse(read_file(dir / "config.json"));
    config["text_config"]["intermediate_size"] = 512;
    write_file(dir / "config.json", config.dump());
    CHECK_THAT(load_error<TinyE2B>(dir.path()), Contains("intermediate_size: expected 256, found 512"));
  }
  CHECK_THAT(load_error<TinyE2B>(dir / "nonexistent"), Contains("not a model directory"));
}

TEST_CASE("missing weights files and broken indexes are errors naming the file", "[checkpoint][hostile]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.shards = 2});
  SECTION("no weights at all") {
    TempDir empty;
    std::filesystem::copy(dir / "config.json", empty / "config.json");
    CHECK_THAT(load_error<TinyE2B>(empty.path()), Contains("no model.safetensors and no model.safetensors.index.json"));
  }
  SECTION("missing shard") {
    std::filesystem::remove(dir / "model-00002-of-00002.safetensors");
    CHECK_THAT(load_error<TinyE2B>(dir.path()), Contains("shard 'model-00002-of-00002.safetensors' listed in the index is missing"));
  }
  SECTION("truncated shard") {
    std::filesystem::resize_file(dir / "model-00002-of-00002.safetensors", 1000);
    CHECK_THAT(load_error<TinyE2B>(dir.path()), Contains("model-00002-of-00002.safetensors"));
  }
  auto index = nlohmann::json::parse(read_file(dir / "model.safetensors.index.json"));
  const std::string tensor = "model.language_model.norm.weight";
  SECTION("index points at the wrong shard") {
    index["weight_map"][tensor] = index["weight_map"][tensor] == "model-00001-of-00002.safetensors"
                                      ? "model-00002-of-00002.safetensors"
                                      : "model-00001-of-00002.safetensors";
    write_file(dir / "model.safetensors.index.json", index.dump());
    CHECK_THAT(load_error<TinyE2B>(dir.path()), Contains("index puts tensor '" + tensor + "'"));
  }
  SECTION("index names a file outside the directory") {
    index["weight_map"][tensor] = "../model-00001-of-00002.safetensors";
    write_file(dir / "model.safetensors.index.json", index.dump());
    CHECK_THAT(load_error<TinyE2B>(dir.path()), Contains("is not a plain file name"));
  }
  SECTION("index without weight_map") {
    write_file(dir / "model.safetensors.index.json", R"({"metadata":{}})");
    CHECK_THAT(load_error<TinyE2B>(dir.path()), Contains("no \"weight_map\" object"));
  }
  SECTION("malformed index") {
    write_file(dir / "model.safetensors.index.json", "{");
    CHECK_THAT(load_error<TinyE2B>(dir.path()), Contains("model.safetensors.index.json: not valid JSON"));
  }
}

TEST_CASE("wrong tensors are errors naming the tensor, expected and found", "[checkpoint][hostile]") {
  TempDir dir;
  const std::string q5 = "model.language_model.layers.5.self_attn.q_proj.weight";
  SECTION("missing tensor") {
    write_edited(TinyE2B::config, dir.path(), [&](auto& plan) { std::erase_if(plan, [&](auto& t) { return t.name == q5; }); });
    CHECK_THAT(load_error<TinyE2B>(dir.path()), Contains(q5 + ": missing (expected [256, 128])"));
  }
  SECTION("wrong shape: a full layer's q_proj with the sliding head dim") {
    const std::string q4 = "model.language_model.layers.4.self_attn.q_proj.weight";
    write_edited(TinyE2B::config, dir.path(), [&](auto& plan) { find_planned(plan, q4)->shape = {256, 128}; });
    CHECK_THAT(load_error<TinyE2B>(dir.path()), Contains(q4 + ": shape [256, 128], expected [512, 128]"));
  }
  SECTION("wrong shape: a shared layer's MLP without double width") {
    const std::string up = "model.language_model.layers.20.mlp.up_proj.weight";
    write_edited(TinyE2B::config, dir.path(), [&](auto& plan) { find_planned(plan, up)->shape = {256, 128}; });
    CHECK_THAT(load_error<TinyE2B>(dir.path()), Contains(up + ": shape [256, 128], expected [512, 128]"));
  }
  SECTION("several problems are all listed") {
    write_edited(TinyE2B::config, dir.path(), [&](auto& plan) {
      std::erase_if(plan, [&](auto& t) { return t.name == q5 || t.name.ends_with("layers.7.layer_scalar"); });
    });
    const auto message = load_error<TinyE2B>(dir.path());
    CHECK_THAT(message, Contains("(2 problems)"));
    CHECK_THAT(message, Contains(q5));
    CHECK_THAT(message, Contains("layers.7.layer_scalar: missing (expected [1])"));
  }
  SECTION("unsupported dtype") {
    TempDir raw;
    const std::string header =
        R"({"model.norm.weight":{"dtype":"I32","shape":[128],"data_offsets":[0,512]}})";
    write_file(raw / "model.safetensors", safetensors_bytes(header, std::string(512, '\0')));
    auto text = to_json(TinyE2B::config);
    text["model_type"] = "gemma4_text";
    write_file(raw / "config.json", text.dump());
    CHECK_THAT(load_error<TinyE2B>(raw.path()), Contains("model.norm.weight: dtype I32, expected BF16, F16 or F32"));
  }
  SECTION("the same tensor in two shards") {
    write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.shards = 2});
    auto index = nlohmann::json::parse(read_file(dir / "model.safetensors.index.json"));
    const auto plan = detail::plan_tensors(TinyE2B::config, {});
    std::vector<TensorToWrite> copy = {plan.front()};
    write_safetensors(dir / "extra.safetensors", copy);
    index["weight_map"]["extra"] = "extra.safetensors";
    write_file(dir / "model.safetensors.index.json", index.dump());
    CHECK_THAT(load_error<TinyE2B>(dir.path()), Contains("tensor '" + plan.front().name + "' is stored twice"));
  }
}

TEST_CASE("tensors the text model does not know are reported, not used", "[checkpoint]") {
  TempDir dir;
  write_edited(TinyE2B::config, dir.path(), [](auto& plan) {
    plan.push_back({"model.language_model.mystery.weight", {4}, DType::kBF16, detail::UniformValues{1, 0, 1}});
  });
  const Weights<TinyE2B> w(dir.path());
  CHECK(w.report().unknown == std::vector<std::string>{"model.language_model.mystery.weight"});
}
