// The optimised forward pass against the double-precision reference, and prefill,
// decode and any mix of them against each other.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <random>

#include "gemma4/tiny.hpp"
#include "hwy/targets.h"
#include "gemma4/weights/synthetic_checkpoint.hpp"
#include "reference_model.hpp"
#include "session_support.hpp"
#include "support.hpp"

using namespace gemma4;
using namespace gemma4::test;
using Catch::Matchers::Contains;

TEMPLATE_TEST_CASE("logits match the double-precision reference at every position", "[forward]", TinyE2B, TinyE4B) {
  // Every stored dtype, each with its own weights; bf16, as published, twice.
  const auto [dtype, seed] = GENERATE(table<DType, unsigned>({{DType::kBF16, 1u}, {DType::kBF16, 2u}, {DType::kF32, 3u}, {DType::kF16, 4u}}));
  TempDir dir;
  write_synthetic_checkpoint(TestType::config, dir.path(), {.dtype = dtype, .seed = seed});
  const Weights<TestType> w(dir.path());
  const auto tokens = random_tokens(64, TestType::config.vocab_size, seed);  // 4 sliding windows
  // An f32 KV cache: the reference keeps keys and values at full precision.
  const auto ours = all_logits(w, tokens, {.max_context = 64, .prefill_chunk = 24, .kv_format = KvFormat::kF32});
  const auto reference = reference_logits(w, tokens);
  const std::size_t vocab = TestType::config.vocab_size;
  double worst = 0;
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    double position_worst = 0;
    for (std::size_t i = 0; i < vocab; ++i) {
      const double difference = std::abs(ours[t * vocab + i] - reference[t * vocab + i]);
      position_worst = std::max(position_worst, std::isnan(difference) ? HUGE_VAL : difference);  // std::max drops a NaN
    }
    INFO("position " << t << " dtype " << dtype_name(dtype) << " seed " << seed);
    CHECK(position_worst <= 2e-3);
    worst = std::max(worst, position_worst);
  }
  WARN(TestType::name << " " << dtype_name(dtype) << " seed " << seed << ": max |ours - reference| = " << worst);
}

TEMPLATE_TEST_CASE("prefill, decode and any mix give the same logits, in every KV cache format", "[forward]", TinyE2B, TinyE4B) {
  TempDir dir;
  write_synthetic_checkpoint(TestType::config, dir.path(), {.seed = 7});
  const Weights<TestType> w(dir.path());
  const auto tokens = random_tokens(60, TestType::config.vocab_size, 7);
  const KvFormat kv = GENERATE(KvFormat::kF32, KvFormat::kBF16, KvFormat::kInt8);
  INFO("KV format " << kv_format_name(kv));
  const auto prefill = all_logits(w, tokens, {.max_context = 64, .kv_format = kv});
  // The contract is 1e-4 relative; the kernels sum every dot product in the same order
  // whatever the batch, so the results are in fact identical.
  CHECK(first_difference(logits_in_pieces(w, tokens, {1}, {.max_context = 64, .kv_format = kv}), prefill) == "");
  CHECK(first_difference(logits_in_pieces(w, tokens, {10, 1, 1, 1, 1, 1, 20}, {.max_context = 64, .kv_format = kv}), prefill) == "");
  CHECK(first_difference(logits_in_pieces(w, tokens, {3, 17, 1}, {.max_context = 60, .prefill_chunk = 5, .kv_format = kv}), prefill) == "");
}

// Attention over more than one segment (ops/attention_scratch.hpp): a chunk's blocks, a
// decode step and a step spread over threads (its segments' partial results on different
// threads) merge the same partials in the same order.
TEST_CASE("past several attention segments, prefill and decode give the same logits", "[forward][slow-emulated]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 8});
  const Weights<TinyE2B> w(dir.path());
  const int n = 2 * kAttentionSegment + 40;
  const auto tokens = random_tokens(n, TinyE2B::config.vocab_size, 8);
  const SessionOptions options{.max_context = n, .prefill_chunk = 64};
  const auto prefill = all_logits(w, tokens, options);
  // Decode steps across the edges of segments 0 and 1, and chunks that straddle them.
  CHECK(first_difference(logits_in_pieces(w, tokens, {kAttentionSegment - 3, 1, 1, 1, 1, 1, 1, 30, kAttentionSegment - 40}, options),
                         prefill) == "");
}

TEST_CASE("past several attention segments, decode on 3 threads gives the bits of one", "[forward][threads]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 9});
  const Weights<TinyE2B> w(dir.path());
  const int n = 2 * kAttentionSegment + 10;
  const auto tokens = random_tokens(n, TinyE2B::config.vocab_size, 9);
  ThreadPool one(1), three(3);
  const auto alone = all_logits(w, tokens, {.max_context = n, .pool = &one});
  // A chunk, then 30 decode steps across the edge of segment 1.
  std::vector<int> pieces(31, 1);
  pieces[0] = n - 30;
  CHECK(first_difference(logits_in_pieces(w, tokens, pieces, {.max_context = n, .pool = &three}), alone) == "");
}

TEST_CASE("a bf16 KV cache takes half the bytes of f32, an int8 one a quarter and its scales", "[forward]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 7});
  const Weights<TinyE2B> w(dir.path());
  const auto bytes = [&](KvFormat kv) { return Session<TinyE2B>(w, {.max_context = 256, .kv_format = kv}).kv_cache_bytes(); };
  const std::size_t f32 = bytes(KvFormat::kF32);
  CHECK(bytes(KvFormat::kBF16) * 2 == f32);
  // A byte per element, and per head_dim (at least 32) elements one f32 scale: at most
  // 1/32 of the f32 bytes more.
  CHECK(bytes(KvFormat::kInt8) > f32 / 4);
  CHECK(bytes(KvFormat::kInt8) <= f32 / 4 + f32 / kValueChunk);
  CHECK(kv_format_from_name("int8") == KvFormat::kInt8);
  CHECK(kv_format_from_name("f16") == std::nullopt);
}

TEST_CASE("the last-token logits equal the last row of all logits", "[forward]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 4});
  const Weights<TinyE2B> w(dir.path());
  const auto tokens = random_tokens(20, 1024, 4);
  const auto all = all_logits(w, tokens);
  Session<TinyE2B> session(w);
  std::vector<float> last(1024);
  session.forward(tokens, Logits::kLast, last);
  CHECK(first_difference(last, std::vector<float>(all.end() - 1024, all.end())) == "");
}

TEST_CASE("a reset session runs a new sequence as a fresh one does", "[forward]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE4B::config, dir.path(), {.seed = 6});
  const Weights<TinyE4B> w(dir.path());
  const auto first = random_tokens(40, 1024, 1), second = random_tokens(30, 1024, 2);
  Session<TinyE4B> session(w, {.max_context = 40, .prefill_chunk = 8});
  std::vector<float> logits(second.size() * 1024);
  session.forward(first, Logits::kLast, std::span(logits).first(1024));
  session.reset();
  CHECK(session.position() == 0);
  session.forward(second, Logits::kAll, logits);
  CHECK(first_difference(logits, all_logits(w, second, {.max_context = 40, .prefill_chunk = 8})) == "");
}

TEST_CASE("bad input to a session is an error that leaves it unchanged", "[forward][hostile]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 4});
  const Weights<TinyE2B> w(dir.path());
  Session<TinyE2B> session(w, {.max_context = 8});
  std::vector<float> logits(1024);
  const std::vector<int> unknown_high{2, 1024}, unknown_negative{-1}, too_long(9, 5), ok{2, 5};
  CHECK_THROWS_WITH(session.forward(unknown_high, Logits::kLast, logits), Contains("token id 1024 at index 1 is outside the vocabulary"));
  CHECK_THROWS_WITH(session.forward(unknown_negative, Logits::kLast, logits), Contains("token id -1"));
  CHECK_THROWS_WITH(session.forward(too_long, Logits::kLast, logits), Contains("exceed the context of 8 positions"));
  CHECK_THROWS_WITH(session.forward(ok, Logits::kAll, logits), Contains("needs 2048"));
  CHECK(session.position() == 0);
  session.forward(ok, Logits::kLast, logits);
  CHECK(session.position() == 2);
  CHECK_THROWS_WITH(session.forward(std::vector<int>(7, 5), Logits::kLast, logits), Contains("7 tokens at position 2 exceed"));
  CHECK_THROWS_WITH(Session<TinyE2B>(w, {.max_context = 0}), Contains("max_context must be in [1, 131072]"));
}

// The best target this binary holds and the CPU has (tests/main.cpp may narrow it to one):
// in a runtime-dispatch build, the proof that the target's own code runs.
TEST_CASE("a session runs on the SIMD target the build was made for", "[forward]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 4});
  const Weights<TinyE2B> w(dir.path());
  const Session<TinyE2B> session(w);
  const std::vector<std::int64_t> targets = hwy::SupportedAndGeneratedTargets();
  REQUIRE(!targets.empty());
  CHECK(std::string(session.simd_target()) == hwy::TargetName(targets.front()));
#ifdef GEMMA4_EXPECT_SIMD_TARGET
  CHECK(std::string(session.simd_target()) == GEMMA4_EXPECT_SIMD_TARGET);  // the flags CI chose give that target
#endif
#if HWY_ARCH_X86
  const bool vnni = (targets.front() & (HWY_AVX3 | HWY_AVX3_DL)) != 0 && __builtin_cpu_supports("avx512vnni");
  const bool pairs = (targets.front() & (HWY_SSE4 | HWY_AVX2 | HWY_AVX3 | HWY_AVX3_DL)) != 0;  // x86 without VNNI
  CHECK(std::string(session.integer_dot()) == (vnni ? "AVX-512 VNNI" : pairs ? "16-bit pairs" : "portable"));
#else
  // CI runs the aarch64 suite on three emulated CPUs and says which dot product each has.
  if (const char* expected = std::getenv("GEMMA4_EXPECT_INT_DOT")) CHECK(std::string(session.integer_dot()) == expected);
#endif
}
