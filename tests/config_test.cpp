// config.json handling: printing, comparison field by field, HF defaults, variant choice.

#include <catch2/catch.hpp>

#include "gemma4/variants.hpp"

using namespace gemma4;
using Catch::Matchers::Contains;

namespace {

nlohmann::json text_json(const ModelConfig& c) { return nlohmann::json::parse(to_json(c).dump()); }

}  // namespace

TEST_CASE("a config matches its own config.json", "[config]") {
  for (const ModelConfig* c : {&E2B::config, &E4B::config, &TinyE2B::config, &TinyE4B::config}) {
    CHECK(compare_config(*c, text_json(*c)).empty());
  }
}

TEST_CASE("every mismatching field is listed with expected and found values", "[config]") {
  auto j = text_json(E2B::config);
  j["hidden_size"] = 2048;
  j["rope_parameters"]["full_attention"]["rope_theta"] = 10000.0;
  j["layer_types"][4] = "sliding_attention";
  const auto mismatches = compare_config(E2B::config, j);
  REQUIRE(mismatches.size() == 3);
  CHECK(mismatches[0].field == "hidden_size");
  CHECK(mismatches[0].expected == "1536");
  CHECK(mismatches[0].found == "2048");
  CHECK(mismatches[1].field == "layer_types");
  CHECK(mismatches[1].expected == "35 layers, full attention at [4, 9, 14, 19, 24, 29, 34]");
  CHECK(mismatches[1].found == "35 layers, full attention at [9, 14, 19, 24, 29, 34]");
  CHECK(mismatches[2].field == "rope_parameters");
  CHECK_THAT(format_mismatches(mismatches), Contains("hidden_size: expected 1536, found 2048"));
}

TEST_CASE("numbers compare by value, not by JSON spelling", "[config]") {
  auto j = text_json(E2B::config);
  j["rope_parameters"]["sliding_attention"]["rope_theta"] = 10000;  // integer in the file
  j["final_logit_softcapping"] = 30;
  j["rms_norm_eps"] = 0.000001;
  CHECK(compare_config(E2B::config, j).empty());
}

TEST_CASE("absent fields take Hugging Face's defaults", "[config]") {
  auto j = text_json(E2B::config);
  SECTION("a default that agrees is no mismatch") {
    j.erase("global_head_dim");
    j.erase("attention_k_eq_v");
    j.erase("rope_parameters");
    CHECK(compare_config(E2B::config, j).empty());
  }
  SECTION("a default that disagrees is reported as such") {
    j.erase("num_kv_shared_layers");
    const auto mismatches = compare_config(E2B::config, j);
    REQUIRE(mismatches.size() == 1);
    CHECK(mismatches[0].found == "absent (HF default 0)");
  }
  SECTION("the default layer pattern is 5 sliding + 1 full over the file's layer count") {
    j.erase("layer_types");
    REQUIRE(compare_config(E4B::config, text_json(E4B::config)).empty());
    auto e4b = text_json(E4B::config);
    e4b.erase("layer_types");
    CHECK(compare_config(E4B::config, e4b).empty());
    CHECK(compare_config(E2B::config, j).size() == 1);
  }
}

TEST_CASE("an absurd layer count is a mismatch, not a huge allocation", "[config][hostile]") {
  auto j = text_json(E2B::config);
  j.erase("layer_types");
  for (const long long layers : {2'000'000'000ll, -3ll, 1ll << 40}) {
    j["num_hidden_layers"] = layers;
    const auto mismatches = compare_config(E2B::config, j);
    REQUIRE(!mismatches.empty());
    CHECK(mismatches[0].field == "num_hidden_layers");
  }
}

TEST_CASE("text fields are found in the multimodal wrapper or at the top level", "[config]") {
  const auto text = text_json(TinyE2B::config);
  const nlohmann::json wrapper = {{"model_type", "gemma4"}, {"text_config", text}};
  CHECK(&text_config_of(wrapper) == &wrapper["text_config"]);
  auto text_only = text;
  text_only["model_type"] = "gemma4_text";
  CHECK(&text_config_of(text_only) == &text_only);

  CHECK_THROWS_WITH(text_config_of(nlohmann::json::array()), Contains("not a JSON object"));
  CHECK_THROWS_WITH(text_config_of(nlohmann::json{{"model_type", "gemma3_text"}}), Contains("gemma3_text"));
  CHECK_THROWS_WITH(text_config_of(nlohmann::json{{"model_type", "gemma3"}, {"text_config", text}}), Contains("gemma3"));
  CHECK_THROWS_WITH(text_config_of(nlohmann::json{{"text_config", 5}}), Contains("text_config is not an object"));
}

TEST_CASE("the compiled variant matching config.json is chosen", "[config]") {
  for (const auto name : CompiledVariants::names) {
    const nlohmann::json j = {{"model_type", "gemma4"}, {"text_config", text_json(CompiledVariants::config(name))}};
    std::string_view chosen;
    CompiledVariants::with_matching(j, [&]<typename V>() { chosen = V::name; });
    CHECK(chosen == name);
  }
}

TEST_CASE("a config matching no variant names each variant's differing fields", "[config]") {
  auto j = text_json(TinyE2B::config);
  j["hidden_size"] = 96;
  try {
    CompiledVariants::with_matching(j, []<typename V>() { FAIL("no variant should match"); });
    FAIL("expected an error");
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const auto name : CompiledVariants::names) CHECK_THAT(message, Contains(std::string(name) + ":"));
    CHECK_THAT(message, Contains("hidden_size: expected 128, found 96"));
  }
  CHECK_THROWS_WITH(CompiledVariants::config("e8b"), Contains("unknown variant 'e8b'"));
}

TEST_CASE("a config prints one line per field through Boost.PFR", "[config]") {
  const std::string text = format_config(E2B::config);
  CHECK_THAT(text, Contains("  hidden_size: 1536\n"));
  CHECK_THAT(text, Contains("  num_kv_shared_layers: 20\n"));
  CHECK_THAT(text, Contains("  hidden_activation: \"gelu_pytorch_tanh\"\n"));
  CHECK(std::count(text.begin(), text.end(), '\n') == static_cast<long>(boost::pfr::tuple_size_v<ModelConfig>));
}
