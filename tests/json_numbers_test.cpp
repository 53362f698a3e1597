// Numbers read from files are checked to be integers (or finite numbers) in range before
// any conversion: converting 6.2e100 to int is undefined behaviour, which the tokenizer
// fuzz target once found. One regression case per kind of file.

#include <catch2/catch.hpp>

#include "gemma4/base/json.hpp"
#include "gemma4/config/config_json.hpp"
#include "gemma4/config/tiny.hpp"
#include "gemma4/sampling/sampling_options.hpp"
#include "gemma4/tokenizer/tokenizer.hpp"
#include "gemma4/weights/safetensors.hpp"
#include "small_tokenizer.hpp"
#include "support.hpp"

using namespace gemma4;
using Catch::Matchers::Contains;

namespace {
const std::string kHugeInteger = "6" + std::string(100, '0');  // parsed as a double, 6e100
}

TEST_CASE("json_integer and json_number check kind and range", "[json][hostile]") {
  using nlohmann::json;
  CHECK(json_integer<int>(json(7), "x") == 7);
  CHECK(json_integer<std::uint64_t>(json(18446744073709551615ull), "x") == 18446744073709551615ull);
  CHECK_THROWS_WITH(json_integer<int>(json::parse(kHugeInteger), "the id"), Contains("the id must be an integer in ["));
  CHECK_THROWS_WITH(json_integer<int>(json(2147483648ll), "x"), Contains("must be an integer"));
  CHECK_THROWS_WITH(json_integer<std::uint64_t>(json(-1), "x"), Contains("must be an integer"));
  CHECK_THROWS_WITH(json_integer<int>(json(2.0), "x"), Contains("got 2.0"));
  CHECK_THROWS_WITH(json_integer<int>(json("3"), "x"), Contains("must be an integer"));
  CHECK(json_number<float>(json(0.5), "x") == 0.5f);
  CHECK(json_number<float>(json(3), "x") == 3.0f);
  CHECK_THROWS_WITH(json_number<float>(json(1e300), "t"), Contains("t must be a finite number, got 1e+300"));
  CHECK_THROWS_WITH(json_number<float>(json(nullptr), "t"), Contains("must be a finite number"));
}

TEST_CASE("tokenizer.json: an added token id that is no int is an error", "[json][tokenizer][hostile]") {
  std::string text = test::small_tokenizer_json().dump();
  const std::string first_id = R"({"content":"<pad>","id":0,)";
  const auto at = text.find(first_id);
  REQUIRE(at != std::string::npos);
  text.replace(at, first_id.size(), R"({"content":"<pad>","id":)" + kHugeInteger + ",");
  CHECK_THROWS_WITH(Tokenizer::from_json_text(text), Contains("added token") && Contains("id must be an integer"));
}

TEST_CASE("config.json: a huge layer count is a mismatch, not a conversion", "[json][config][hostile]") {
  auto text = to_json(TinyE2B::config);
  for (const std::string& value : {kHugeInteger, std::string("18446744073709551615"), std::string("-3")}) {
    text["num_hidden_layers"] = nlohmann::json::parse(value);
    const auto mismatches = compare_config(TinyE2B::config, text);
    REQUIRE_FALSE(mismatches.empty());
    CHECK(mismatches.front().field == "num_hidden_layers");
  }
}

TEST_CASE("generation_config.json: numbers out of range name their field", "[json][sampling][hostile]") {
  test::TempDir dir;
  test::write_file(dir / "config.json", R"({"eos_token_id": 1})");
  const auto error_for = [&](const std::string& generation) -> std::string {
    test::write_file(dir / "generation_config.json", generation);
    try {
      read_generation_config(dir.path());
      return "";
    } catch (const Error& e) {
      return e.what();
    }
  };
  CHECK_THAT(error_for(R"({"top_k": )" + kHugeInteger + "}"), Contains("top_k must be an integer"));
  CHECK_THAT(error_for(R"({"temperature": 1e300})"), Contains("temperature must be a finite number"));
  CHECK_THAT(error_for(R"({"eos_token_id": 1e30})"), Contains("eos_token_id must be an integer"));
  CHECK_THAT(error_for(R"({"eos_token_id": [1, 99999999999999]})"), Contains("eos_token_id entry must be an integer"));
  CHECK_THAT(error_for(R"({"eos_token_id": []})"), Contains("eos_token_id is an empty list"));
  CHECK_THAT(error_for(R"({"do_sample": 3})"), Contains("do_sample must be true or false"));
  CHECK_THAT(error_for(R"([1])"), Contains("not a JSON object"));
  CHECK(error_for(R"({"top_k": 40, "temperature": null, "eos_token_id": [1, 106]})").empty());
}

TEST_CASE("safetensors: a shape or offset that is no uint64 is an error", "[json][safetensors][hostile]") {
  test::TempDir dir;
  const std::string header = R"({"w":{"dtype":"F32","shape":[)" + kHugeInteger + R"(],"data_offsets":[0,8]}})";
  test::write_file(dir / "x.safetensors", test::safetensors_bytes(header, std::string(8, '\0')));
  CHECK_THROWS_WITH(SafetensorsFile(dir / "x.safetensors"), Contains("each dimension must be an integer"));
}
