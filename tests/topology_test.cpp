// The topology rules of spec section 2, checked layer by layer for every variant.

#include <catch2/catch.hpp>

#include <set>

#include "gemma4/config/config_json.hpp"
#include "gemma4/tiny.hpp"

using namespace gemma4;

namespace {

std::set<int> full_layers(const ModelConfig& c) {
  std::set<int> full;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    if (is_full_attention(c, l)) full.insert(l);
  }
  return full;
}

}  // namespace

TEST_CASE("E2B layer table matches spec sections 1-2", "[topology]") {
  const auto& c = E2B::config;
  CHECK(full_layers(c) == std::set<int>{4, 9, 14, 19, 24, 29, 34});
  for (const LayerFacts& f : kLayers<E2B>) {
    const bool full = f.kind.attention == AttentionType::kFull;
    CHECK(f.head_dim == (full ? 512 : 256));
    CHECK(f.kind.kv_shared == (f.index >= 15));
    CHECK(f.kv_donor == (f.index < 15 ? f.index : full ? 14 : 13));
    CHECK(f.ffn_width == (f.index >= 15 ? 12288 : 6144));
    CHECK(f.kv_cache_slot == (f.index < 15 ? f.index : full ? 14 : 13));
  }
  CHECK(num_kv_caches(c) == 15);
}

TEST_CASE("E4B layer table matches spec sections 1-2", "[topology]") {
  const auto& c = E4B::config;
  CHECK(full_layers(c) == std::set<int>{5, 11, 17, 23, 29, 35, 41});
  for (const LayerFacts& f : kLayers<E4B>) {
    const bool full = f.kind.attention == AttentionType::kFull;
    CHECK(f.head_dim == (full ? 512 : 256));
    CHECK(f.kind.kv_shared == (f.index >= 24));
    CHECK(f.kv_donor == (f.index < 24 ? f.index : full ? 23 : 22));
    CHECK(f.ffn_width == 10240);
  }
}

TEST_CASE("tiny variants keep the real topology and every non-dimension field", "[topology]") {
  auto same_except_dims = [](const ModelConfig& tiny, const ModelConfig& real) {
    auto a = to_json(tiny), b = to_json(real);
    for (const char* dim : {"vocab_size", "vocab_size_per_layer_input", "hidden_size", "intermediate_size",
                            "num_key_value_heads", "head_dim", "global_head_dim", "hidden_size_per_layer_input",
                            "sliding_window"}) {
      a.erase(dim);
      b.erase(dim);
    }
    return a == b;
  };
  CHECK(same_except_dims(TinyE2B::config, E2B::config));
  CHECK(same_except_dims(TinyE4B::config, E4B::config));
  for (int l = 0; l < E2B::config.num_hidden_layers; ++l) {
    CHECK(kLayers<TinyE2B>[l].kind == kLayers<E2B>[l].kind);
    CHECK(kLayers<TinyE2B>[l].kv_donor == kLayers<E2B>[l].kv_donor);
    CHECK(kLayers<TinyE2B>[l].ffn_width == (l >= 15 ? 512 : 256));
  }
  for (int l = 0; l < E4B::config.num_hidden_layers; ++l) {
    CHECK(kLayers<TinyE4B>[l].kind == kLayers<E4B>[l].kind);
    CHECK(kLayers<TinyE4B>[l].kv_donor == kLayers<E4B>[l].kv_donor);
  }
  CHECK(TinyE2B::config.num_key_value_heads == 1);
  CHECK(TinyE4B::config.num_key_value_heads == 2);
}

TEST_CASE("configs outside the supported topology are recognised", "[topology]") {
  ModelConfig c = TinyE2B::config;
  REQUIRE(is_supported_topology(c));
  SECTION("query heads not a multiple of kv heads") { c.num_key_value_heads.value = 3; }
  SECTION("every layer KV-shared leaves no donor") { c.num_kv_shared_layers.value = c.num_hidden_layers; }
  SECTION("no full layer before the shared ones leaves full layers without a donor") {
    c.num_kv_shared_layers.value = c.num_hidden_layers - 3;
  }
  SECTION("attention_k_eq_v belongs to the larger models") { c.attention_k_eq_v.value = true; }
  SECTION("mixture of experts is out of scope") { c.enable_moe_block.value = true; }
  SECTION("odd head dims cannot rotate in pairs") { c.head_dim.value = 31; }
  CHECK_FALSE(is_supported_topology(c));
}

TEST_CASE("the last layer is full attention even off the pattern", "[topology]") {
  ModelConfig c = TinyE2B::config;
  c.num_hidden_layers.value = 33;  // pattern alone would end on a sliding layer
  CHECK(is_full_attention(c, 32));
  CHECK_FALSE(is_full_attention(c, 31));
}
