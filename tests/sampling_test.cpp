// Sampling: each filter against hand-computed distributions, seeds, and where the
// defaults come from (generation_config.json, then config.json).
#include <cmath>
#include <limits>
#include <map>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "gemma4/sampling/sampler.hpp"
#include "support.hpp"

using gemma4::Sampler;
using gemma4::SamplingOptions;
using Catch::Matchers::Contains;

namespace {

// Draw frequencies of each id over `draws` samples from fixed probabilities.
std::map<int, double> frequencies(const SamplingOptions& options, const std::vector<float>& probabilities, int draws = 20000,
                                  const std::vector<int>& history = {}) {
  Sampler sampler(options, static_cast<int>(probabilities.size()));
  std::map<int, double> counts;
  for (int i = 0; i < draws; ++i) {
    std::vector<float> logits;
    for (const float p : probabilities) logits.push_back(std::log(p));
    counts[sampler.sample(logits, history)] += 1.0 / draws;
  }
  return counts;
}

SamplingOptions plain(float temperature = 1.0f) { return {.temperature = temperature, .top_k = 0, .top_p = 1.0f, .seed = 5}; }

}  // namespace

TEST_CASE("Sampling without filters follows the softmax") {
  auto f = frequencies(plain(), {0.5f, 0.3f, 0.2f});
  CHECK(f[0] == Approx(0.5).margin(0.015));
  CHECK(f[1] == Approx(0.3).margin(0.015));
  CHECK(f[2] == Approx(0.2).margin(0.015));
  // Temperature 0.5 squares the probabilities before normalising: 25:9:4.
  f = frequencies(plain(0.5f), {0.5f, 0.3f, 0.2f});
  CHECK(f[0] == Approx(25.0 / 38).margin(0.015));
  CHECK(f[2] == Approx(4.0 / 38).margin(0.015));
}

TEST_CASE("top-k, top-p and min-p cut the distribution as Hugging Face does") {
  SamplingOptions top_k = plain();
  top_k.top_k = 2;
  auto f = frequencies(top_k, {0.5f, 0.3f, 0.2f});
  CHECK(f[2] == 0.0);
  CHECK(f[0] == Approx(0.625).margin(0.015));

  // Sorted ascending 0.2, 0.3, 0.5: cumulative 0.2 <= 1 - 0.7 is dropped, 0.5 is not.
  SamplingOptions top_p = plain();
  top_p.top_p = 0.7f;
  f = frequencies(top_p, {0.5f, 0.3f, 0.2f});
  CHECK(f[2] == 0.0);
  CHECK(f[1] == Approx(0.375).margin(0.015));

  SamplingOptions min_p = plain();
  min_p.min_p = 0.5f;  // threshold 0.25
  f = frequencies(min_p, {0.5f, 0.3f, 0.2f});
  CHECK(f[2] == 0.0);
  CHECK(f[1] > 0.3);

  // top-p never drops the most likely token.
  top_p.top_p = 0.01f;
  CHECK(frequencies(top_p, {0.5f, 0.3f, 0.2f}, 200).size() == 1);
}

TEST_CASE("top-k keeps every token tied with the k-th") {
  SamplingOptions options = plain();
  options.top_k = 2;
  const auto f = frequencies(options, {0.3f, 0.3f, 0.3f, 0.1f});
  CHECK(f.size() == 3);
  CHECK(f.count(3) == 0);
}

TEST_CASE("Greedy is the argmax, lowest id on a tie; the penalty applies first") {
  Sampler greedy({.temperature = 0.0f}, 4);
  std::vector<float> logits = {1.0f, 3.0f, 3.0f, -1.0f};
  CHECK(greedy.sample(logits, {}) == 1);

  Sampler penalized({.temperature = 0.0f, .repetition_penalty = 2.0f}, 2);
  logits = {2.0f, 1.5f};  // 2 / 2 = 1 < 1.5
  CHECK(penalized.sample(logits, std::vector<int>{0, 0, 0}) == 1);
  logits = {-1.0f, -1.5f};  // -1 * 2 = -2 < -1.5
  CHECK(penalized.sample(logits, std::vector<int>{0}) == 1);
  CHECK(logits[0] == -2.0f);  // applied once, however often the token occurs
  logits = {-1.0f, -1.5f};
  CHECK(penalized.sample(logits, std::vector<int>{}) == 0);  // and forgotten between calls
}

TEST_CASE("A logit of -infinity (a token a grammar forbids) is never drawn; all of them is an error") {
  const float forbidden = -std::numeric_limits<float>::infinity();
  for (const SamplingOptions& options : {SamplingOptions{.temperature = 0.0f}, SamplingOptions{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 3},
                                          SamplingOptions{.temperature = 2.0f, .top_k = 2, .top_p = 0.5f, .repetition_penalty = 1.5f, .seed = 4}}) {
    Sampler sampler(options, 6);
    for (int draw = 0; draw < 200; ++draw) {
      std::vector<float> logits = {forbidden, 3.0f, forbidden, -40.0f, forbidden, forbidden};
      const int id = sampler.sample(logits, std::vector<int>{0, 1, 2});
      REQUIRE((id == 1 || id == 3));
    }
    std::vector<float> none(6, forbidden);
    CHECK_THROWS_WITH(sampler.sample(none, {}), Contains("every logit is -infinity"));
  }
}

TEST_CASE("The same seed gives the same tokens; another seed other tokens") {
  const auto run = [](std::uint64_t seed) {
    Sampler sampler({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = seed}, 64);
    std::vector<int> out;
    for (int i = 0; i < 50; ++i) {
      std::vector<float> logits(64, 0.0f);
      out.push_back(sampler.sample(logits, out));
    }
    return out;
  };
  CHECK(run(1) == run(1));
  CHECK(run(1) != run(2));
}

TEST_CASE("Sampling settings out of range are errors naming the setting") {
  CHECK_THROWS_WITH(Sampler({.temperature = -1.0f}, 8), Contains("temperature"));
  CHECK_THROWS_WITH(Sampler({.temperature = NAN}, 8), Contains("temperature"));
  CHECK_THROWS_WITH(Sampler({.top_k = -3}, 8), Contains("top-k"));
  CHECK_THROWS_WITH(Sampler({.top_p = 0.0f}, 8), Contains("top-p"));
  CHECK_THROWS_WITH(Sampler({.top_p = 1.5f}, 8), Contains("top-p"));
  CHECK_THROWS_WITH(Sampler({.min_p = 1.0f}, 8), Contains("min-p"));
  CHECK_THROWS_WITH(Sampler({.repetition_penalty = 0.0f}, 8), Contains("repetition penalty"));
  Sampler sampler({}, 8);
  std::vector<float> short_row(7);
  CHECK_THROWS_WITH(sampler.sample(short_row, {}), Contains("7 logits for a vocabulary of 8"));
}

TEST_CASE("Defaults come from generation_config.json, else config.json's eos ids") {
  gemma4::test::TempDir dir;
  gemma4::test::write_file(dir / "config.json", R"({"text_config": {"eos_token_id": [1, 106]}})");
  auto config = gemma4::read_generation_config(dir.path());
  CHECK(config.stop_ids == std::vector<int>{1, 106});
  CHECK(config.sampling.temperature == 1.0f);
  CHECK(config.sampling.top_k == 64);
  CHECK(config.sampling.top_p == 0.95f);

  gemma4::test::write_file(dir / "generation_config.json",
                           R"({"do_sample": true, "temperature": 0.7, "top_k": 20, "top_p": 0.9, "eos_token_id": [1, 106, 50]})");
  config = gemma4::read_generation_config(dir.path());
  CHECK(config.stop_ids == std::vector<int>{1, 106, 50});
  CHECK(config.sampling.temperature == 0.7f);
  CHECK(config.sampling.top_k == 20);

  gemma4::test::write_file(dir / "generation_config.json", R"({"do_sample": false, "eos_token_id": 1})");
  config = gemma4::read_generation_config(dir.path());
  CHECK(config.sampling.greedy());
  CHECK(config.stop_ids == std::vector<int>{1});

  gemma4::test::write_file(dir / "generation_config.json", R"({"top_p": 7})");
  CHECK_THROWS_WITH(gemma4::read_generation_config(dir.path()), Contains("generation_config.json") && Contains("top-p"));
  gemma4::test::write_file(dir / "generation_config.json", R"({"eos_token_id": "one"})");
  CHECK_THROWS_WITH(gemma4::read_generation_config(dir.path()), Contains("eos_token_id"));
  gemma4::test::write_file(dir / "generation_config.json", R"({"temperature": "hot"})");
  CHECK_THROWS_WITH(gemma4::read_generation_config(dir.path()), Contains("generation_config.json"));
  std::filesystem::remove(dir / "generation_config.json");
  gemma4::test::write_file(dir / "config.json", R"({"text_config": {}})");
  CHECK_THROWS_WITH(gemma4::read_generation_config(dir.path()), Contains("cannot tell when to stop"));
  gemma4::test::write_file(dir / "config.json", R"([1, 2])");  // JSON, but no object: still our error
  CHECK_THROWS_WITH(gemma4::read_generation_config(dir.path()), Contains("cannot tell when to stop"));
}
