// Prompt caches (model/prompt_cache.hpp): a restored session continues with the bits of
// one that never saved, in every KV format and ring size; a file that does not fit the
// session is an error naming the file and the mismatch, and leaves the session as it was.

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>

#include "gemma4/model/prompt_cache.hpp"
#include "gemma4/weights/synthetic_checkpoint.hpp"
#include "gemma4/tiny.hpp"
#include "session_support.hpp"
#include "support.hpp"

using namespace gemma4;
using namespace gemma4::test;
using Catch::Matchers::Contains;

namespace {

// Logits of `tokens` run next in `session`, which is then rewound to where it was.
template <typename V>
std::vector<float> next_logits(Session<V>& session, const std::vector<int>& tokens) {
  const int position = session.position();
  std::vector<float> logits(tokens.size() * V::config.vocab_size);
  session.forward(tokens, Logits::kAll, logits);
  session.rewind(position);
  return logits;
}

// A prompt cache file's header as JSON, and the file written back with another header.
nlohmann::json header_of(const std::string& file) {
  std::uint32_t size = 0;
  std::memcpy(&size, file.data() + 8, sizeof size);
  return nlohmann::json::parse(file.substr(12, size));
}
std::string with_header(const std::string& file, const nlohmann::json& header) {
  std::uint32_t size = 0;
  std::memcpy(&size, file.data() + 8, sizeof size);
  const std::string text = header.dump();
  const auto new_size = static_cast<std::uint32_t>(text.size());
  return file.substr(0, 8) + std::string(reinterpret_cast<const char*>(&new_size), sizeof new_size) + text + file.substr(12 + size);
}

}  // namespace

TEMPLATE_TEST_CASE("a restored prompt cache continues with the bits of a session that never saved", "[prompt-cache][host-only]", TinyE2B, TinyE4B) {
  TempDir dir;
  write_synthetic_checkpoint(TestType::config, dir.path(), {.seed = 12});
  const Weights<TestType> w(dir.path());
  const KvFormat kv = GENERATE(KvFormat::kF32, KvFormat::kBF16, KvFormat::kInt8);
  INFO("KV format " << kv_format_name(kv));
  const auto tokens = random_tokens(60, TestType::config.vocab_size, 12);
  const std::vector<int> prompt(tokens.begin(), tokens.begin() + 45), next(tokens.begin() + 45, tokens.end());  // past windows of 16
  const SessionOptions options{.max_context = 64, .prefill_chunk = 8, .kv_format = kv};
  Session<TestType> saved(w, options);
  std::vector<float> logits(TestType::config.vocab_size);
  saved.forward(prompt, Logits::kLast, logits);
  save_prompt_cache(saved, dir / "prompt.cache");
  CHECK_FALSE(std::filesystem::exists(dir.path() / fmt::format("prompt.cache.tmp{}", ::getpid())));
  const std::vector<float> want = next_logits(saved, next);

  // Into sessions whose sliding rings differ in size (another prefill chunk, or every position kept).
  for (const SessionOptions& other : {options, SessionOptions{.max_context = 64, .prefill_chunk = 3, .kv_format = kv},
                                      SessionOptions{.max_context = 64, .kv_format = kv, .rewind_anywhere = true}}) {
    INFO("prefill chunk " << other.prefill_chunk << ", rewind anywhere " << other.rewind_anywhere);
    Session<TestType> restored(w, other);
    restored.forward(std::span(tokens).first(5), Logits::kLast, logits);  // replaced by the file's state
    CHECK(restore_prompt_cache(restored, dir / "prompt.cache") == 45);
    CHECK(std::vector<int>(restored.tokens().begin(), restored.tokens().end()) == prompt);
    CHECK(first_difference(next_logits(restored, next), want) == "");
    // A ring's keys reach back only as far as the file held them.
    CHECK_FALSE(restored.can_rewind_to(10));
  }

  // Saved with every position kept, a cache is reused at any prefix.
  Session<TestType> keeping(w, {.max_context = 64, .kv_format = kv, .rewind_anywhere = true});
  keeping.forward(prompt, Logits::kLast, logits);
  save_prompt_cache(keeping, dir / "all.cache");
  Session<TestType> reused(w, {.max_context = 64, .kv_format = kv, .rewind_anywhere = true});
  restore_prompt_cache(reused, dir / "all.cache");
  REQUIRE(reused.can_rewind_to(10));
  reused.rewind(10);
  Session<TestType> fresh(w, {.max_context = 64, .kv_format = kv});
  fresh.forward(std::span(prompt).first(10), Logits::kLast, logits);
  CHECK(first_difference(next_logits(reused, next), next_logits(fresh, next)) == "");
}

TEST_CASE("a prompt cache that does not fit the session is an error naming the file and the mismatch, the session unchanged",
          "[prompt-cache][hostile][host-only]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir / "m", {.seed = 13});
  write_synthetic_checkpoint(TinyE2B::config, dir / "other", {.seed = 14});
  write_synthetic_checkpoint(TinyE4B::config, dir / "e4b", {.seed = 13});
  const Weights<TinyE2B> w(dir / "m");
  const auto tokens = random_tokens(40, 1024, 13);
  const SessionOptions options{.max_context = 48};
  std::vector<float> logits(1024);
  const auto save = [&]<typename V>(const Weights<V>& weights, SessionOptions o, const std::string& name) {
    Session<V> s(weights, o);
    s.forward(std::span(tokens).first(30), Logits::kLast, logits);
    save_prompt_cache(s, dir / name);
    return read_file(dir / name);
  };
  const std::string good = save(w, options, "good");

  Session<TinyE2B> session(w, options);
  session.forward(std::span(tokens).first(7), Logits::kLast, logits);
  const std::vector<int> next(tokens.begin() + 30, tokens.begin() + 34);
  const std::vector<float> before = next_logits(session, next);
  const auto refused = [&](const std::string& bytes, const std::string& message) {
    write_file(dir / "bad", bytes);
    CHECK_THROWS_WITH(restore_prompt_cache(session, dir / "bad"), Contains((dir / "bad").string()) && Contains(message));
    CHECK(session.position() == 7);
    CHECK(first_difference(next_logits(session, next), before) == "");
  };

  SECTION("another model, weight format, checkpoint or KV format") {
    refused(save(Weights<TinyE4B>(dir / "e4b"), {.max_context = 48}, "e4b.cache"), "variant \"tiny-e4b\" (this session: \"tiny-e2b\")");
    refused(save(Weights<TinyE2B>(dir / "m", {.format = WeightFormat::kInt8}), options, "int8.cache"), "weights \"int8\" (this session: \"bf16\")");
    refused(save(Weights<TinyE2B>(dir / "other"), options, "other.cache"), "checkpoint");
    refused(save(w, {.max_context = 48, .kv_format = KvFormat::kInt8}, "kv.cache"), "kv_format \"int8\" (this session: \"bf16\")");
  }
  SECTION("an int4 model with the other LM head") {
    const Weights<TinyE2B> int4(dir / "m", {.format = WeightFormat::kInt4});
    Session<TinyE2B> s(int4, options);
    save(Weights<TinyE2B>(dir / "m", {.format = WeightFormat::kInt4, .head_format = WeightFormat::kInt4}), options, "head4.cache");
    CHECK_THROWS_WITH(restore_prompt_cache(s, dir / "head4.cache"),
                      Contains("weights \"int4 with an int4 LM head\" (this session: \"int4\")"));
    CHECK(s.position() == 0);
  }
  SECTION("more tokens than the context") {
    Session<TinyE2B> small(w, {.max_context = 20});
    write_file(dir / "bad", good);
    CHECK_THROWS_WITH(restore_prompt_cache(small, dir / "bad"), Contains("holds 30 tokens, more than the session's context of 20"));
  }
  SECTION("a truncated, padded or lying file") {
    refused("", "not a gemma4 prompt cache");
    refused("GEMMA4XX" + good.substr(8), "not a gemma4 prompt cache");
    refused(good.substr(0, 11), "not a gemma4 prompt cache");
    refused(good.substr(0, 40), "truncated inside its");
    refused(good.substr(0, good.size() - 1), "bytes where its header describes");
    refused(good + "x", "bytes where its header describes");
    const std::uint32_t huge = 0xffffffffu;
    refused(good.substr(0, 8) + std::string(reinterpret_cast<const char*>(&huge), 4) + good.substr(12), "truncated inside its");
    const nlohmann::json header = header_of(good);
    refused(with_header(good, "[1, 2]"), "has no \"layout\"");
    refused(good.substr(0, 12) + "x" + good.substr(13), "not valid JSON");
    auto h = header;
    h["layout"] = 2;
    refused(with_header(good, h), "a prompt cache of layout 2; this library reads layout 1");
    h = header;
    h.erase("kv_format");
    refused(with_header(good, h), "has no \"kv_format\"");
    h = header;
    h["tokens"] = 31;
    refused(with_header(good, h), "bytes where its header describes");
    h = header;
    h["tokens"] = -1;
    refused(with_header(good, h), "-1 tokens");
    h = header;
    h["tokens"] = 1e30;
    refused(with_header(good, h), "tokens must be an integer");
    h = header;
    h["caches"][0]["position_bytes"] = 8;
    refused(with_header(good, h), "cache 0 stores 8 bytes a position");
    h = header;
    h["caches"].erase(h["caches"].size() - 1);
    refused(with_header(good, h), "\"caches\" must list");
    h = header;
    h["caches"][0]["first"] = 29;  // layer 0 slides over 16 positions: it needs 15 of them
    refused(with_header(good, h), "cache 0 starts at position 29; the next token needs it from position 15 of 30");
    h = header;
    h["caches"][4]["first"] = 1;  // layer 4 attends to every position
    refused(with_header(good, h), "cache 4 starts at position 1; the next token needs it from position 0 of 30");
    std::uint32_t header_size = 0;
    std::memcpy(&header_size, good.data() + 8, sizeof header_size);
    std::string bad_token = good;
    const std::int32_t id = 5000;
    std::memcpy(bad_token.data() + 12 + header_size + 4 * 3, &id, sizeof id);
    refused(bad_token, "token id 5000 at index 3 is outside the vocabulary");
  }
  SECTION("a missing file, an unwritable place") {
    CHECK_THROWS_WITH(restore_prompt_cache(session, dir / "none"), Contains((dir / "none").string()));
    CHECK_THROWS_WITH(save_prompt_cache(session, dir / "no-such-dir" / "x"), Contains("cannot write the prompt cache"));
    CHECK(session.position() == 7);
  }
}

// The fuzz target's seed (tests/fuzz/corpus/prompt_cache/valid.cache, written by `gemma4 run
// --raw --weights bf16 --prompt-cache` on the synthetic tiny-e2b of seed 1) fits its session,
// so that mutations reach past the identity checks; a change of the file's layout shows here.
TEST_CASE("the prompt cache fuzz target's seed file restores into its session", "[prompt-cache]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 1});
  const Weights<TinyE2B> w(dir.path());
  Session<TinyE2B> session(w, {.max_context = 64});
  CHECK(restore_prompt_cache(session, test::kSourceDir / "tests/fuzz/corpus/prompt_cache/valid.cache") > 1);
}
