// The trained toy pair in examples/data (made by examples/train/train_toy_pair.py): the
// library reproduces the trainer's own logits from the checkpoints as exported, int8 and
// int4 keep a trained model's choices, and the trained assistant gets its drafts accepted.
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>

#include "gemma4/model/drafter.hpp"
#include "gemma4/model/generate.hpp"
#include "gemma4/testing/logit_agreement.hpp"
#include "gemma4/testing/toy_heldout.hpp"
#include "gemma4/tiny.hpp"
#include "gemma4/tokenizer/tokenizer.hpp"
#include "gemma4/weights/convert.hpp"
#include "session_support.hpp"
#include "support.hpp"

using namespace gemma4;
using namespace gemma4::test;

namespace {

constexpr std::size_t kVocab = TinyE2B::config.vocab_size;

// What the trainer wrote (tests/data/toy_pair_logits.bin): the token count T, the tokens,
// its target logits [T, vocab] and its assistant's first-step logits [T - 1, vocab], all
// little-endian, computed in double precision from the exported bf16 weights.
struct TrainerLogits {
  std::vector<int> tokens;
  std::vector<float> target, draft;
};

TrainerLogits read_trainer_logits() {
  std::ifstream in(test::kTestData / "toy_pair_logits.bin", std::ios::binary);
  REQUIRE(in);
  std::int32_t count = 0;
  in.read(reinterpret_cast<char*>(&count), sizeof count);
  REQUIRE((count > 1 && count < 4096));
  TrainerLogits r;
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(count));
  in.read(reinterpret_cast<char*>(tokens.data()), static_cast<std::streamsize>(tokens.size() * sizeof(std::int32_t)));
  r.tokens.assign(tokens.begin(), tokens.end());
  r.target.resize(static_cast<std::size_t>(count) * kVocab);
  r.draft.resize(static_cast<std::size_t>(count - 1) * kVocab);
  in.read(reinterpret_cast<char*>(r.target.data()), static_cast<std::streamsize>(r.target.size() * sizeof(float)));
  in.read(reinterpret_cast<char*>(r.draft.data()), static_cast<std::streamsize>(r.draft.size() * sizeof(float)));
  REQUIRE(in.gcount() == static_cast<std::streamsize>(r.draft.size() * sizeof(float)));
  REQUIRE(in.peek() == std::char_traits<char>::eof());
  return r;
}

std::vector<int> heldout_tokens() {
  return read_toy_heldout(test::kTestData / "toy-heldout.txt", Tokenizer::from_file(kToyTarget / "tokenizer.json")).tokens;
}

double worst_difference(std::span<const float> a, std::span<const float> b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
  return worst;
}

}  // namespace

TEST_CASE("the toy pair reproduces its trainer's logits", "[toy]") {
  const TrainerLogits expected = read_trainer_logits();
  const Weights<TinyE2B> target(kToyTarget);
  const Assistant<TinyE2BAssistant> assistant(kToyAssistant);
  // An f32 KV cache: the trainer keeps keys and values at full precision.
  const SessionOptions exact{.kv_format = KvFormat::kF32};
  const double target_error = worst_difference(all_logits(target, expected.tokens, exact), expected.target);

  // As `gemma4 logits --draft` defines its rows: positions 0..i-1 committed, b = token i,
  // h = the target's hidden row i - 1, the centroid head.
  Session<TinyE2B> session(target, exact);
  Drafter<TinyE2BAssistant> drafter(assistant, session);
  std::vector<float> logits(kVocab), hidden(TinyE2B::config.hidden_size), drafted;
  for (std::size_t i = 1; i < expected.tokens.size(); ++i) {
    session.forward(std::span(expected.tokens).subspan(i - 1, 1), Logits::kLast, logits, hidden);
    const auto row = drafter.first_step(expected.tokens[i], hidden);
    drafted.insert(drafted.end(), row.begin(), row.end());
  }
  const double draft_error = worst_difference(drafted, expected.draft);
  WARN("max |ours - trainer| over " << expected.tokens.size() << " positions: target " << target_error << ", first draft step " << draft_error);
  CHECK(target_error <= 2e-3);
  CHECK(draft_error <= 2e-3);
}

// The thresholds are the targets of the trained-model issue (int8 99%, int4 92% top-1),
// measured over held-out text against the bf16 checkpoint: what a published checkpoint is.
TEST_CASE("quality guard on a trained model: int8 and int4 keep the bf16 checkpoint's choices", "[toy][quantized][quality][slow-emulated]") {
  const std::vector<int> tokens = heldout_tokens();
  REQUIRE(tokens.size() >= 513);
  const SessionOptions options{.max_context = static_cast<int>(tokens.size())};
  const auto reference = all_logits(Weights<TinyE2B>(kToyTarget), tokens, options);
  TempDir int8_dir, int4_dir, int4_head_dir;
  convert_checkpoint<TinyE2B>(kToyTarget, int8_dir.path(), {.format = WeightFormat::kInt8});
  convert_checkpoint<TinyE2B>(kToyTarget, int4_dir.path(), {.format = WeightFormat::kInt4});
  convert_checkpoint<TinyE2B>(kToyTarget, int4_head_dir.path(), {.format = WeightFormat::kInt4, .head_format = WeightFormat::kInt4});
  const auto measure = [&](const std::filesystem::path& model, LoadOptions load) {
    return compare_logits(reference, all_logits(Weights<TinyE2B>(model, load), tokens, options), kVocab);
  };
  const LogitAgreement int8 = measure(kToyTarget, {.format = WeightFormat::kInt8});
  const LogitAgreement int4 = measure(kToyTarget, {.format = WeightFormat::kInt4});
  const LogitAgreement packed8 = measure(int8_dir.path(), {});
  const LogitAgreement packed4 = measure(int4_dir.path(), {});
  const LogitAgreement int4_head = measure(kToyTarget, {.format = WeightFormat::kInt4, .head_format = WeightFormat::kInt4});
  const LogitAgreement packed4_head4 = measure(int4_head_dir.path(), {});
  const auto line = [](const char* name, const LogitAgreement& r) {
    return fmt::format("{} top-1 {:.4f} KL {:.2e} largest flipped lead {:.3f}", name, r.top1, r.mean_kl, r.largest_flipped_lead);
  };
  WARN("toy-e2b vs bf16 over " << int8.positions << " held-out positions (median lead " << int8.median_lead << "): " << line("int8", int8)
                               << "; " << line("int4", int4) << "; " << line("packed int8", packed8) << "; " << line("packed int4", packed4)
                               << "; " << line("int4 with an int4 head", int4_head) << "; " << line("packed int4 with an int4 head", packed4_head4));
  CHECK(int8.top1 >= 0.99);
  CHECK(packed8.top1 >= 0.99);
  CHECK(int4.top1 >= 0.92);
  CHECK(packed4.top1 >= 0.92);
  CHECK(int4_head.top1 >= 0.92);
  CHECK(packed4_head4.top1 >= 0.92);
}

// A compact KV cache against the f32 one, both over the bf16 checkpoint's weights.
TEST_CASE("quality guard on a trained model: bf16 and int8 KV caches keep the f32 cache's choices", "[toy][quality][kv][slow-emulated]") {
  const std::vector<int> tokens = heldout_tokens();
  const Weights<TinyE2B> weights(kToyTarget);
  const auto logits = [&](KvFormat kv) { return all_logits(weights, tokens, {.max_context = static_cast<int>(tokens.size()), .kv_format = kv}); };
  const std::vector<float> reference = logits(KvFormat::kF32);
  const LogitAgreement bf16 = compare_logits(reference, logits(KvFormat::kBF16), kVocab);
  const LogitAgreement int8 = compare_logits(reference, logits(KvFormat::kInt8), kVocab);
  WARN("toy-e2b KV caches vs f32 over " << bf16.positions << " held-out positions: bf16 top-1 " << bf16.top1 << " KL " << bf16.mean_kl
                                        << "; int8 top-1 " << int8.top1 << " KL " << int8.mean_kl << " largest flipped lead " << int8.largest_flipped_lead);
  // Measured: bf16 top-1 100%, KL 1.9e-6; int8 100%, KL 2.0e-5 (README, KV cache formats).
  CHECK(bf16.top1 >= 0.999);
  CHECK(bf16.mean_kl <= 1e-5);
  CHECK(int8.top1 >= 0.99);
  CHECK(int8.mean_kl <= 1e-4);
}

// Speculative greedy decoding with the trained assistant gives plain greedy decoding's
// tokens (as with any drafter) and, unlike a random assistant, gets most drafts accepted.
TEST_CASE("the trained assistant's drafts are accepted", "[toy][assistant][slow-emulated]") {
  const Weights<TinyE2B> target(kToyTarget);
  const Assistant<TinyE2BAssistant> assistant(kToyAssistant);
  const Tokenizer tokenizer = Tokenizer::from_file(kToyTarget / "tokenizer.json");
  const std::vector<int> prompt = tokenizer.encode("<bos><|turn>user\nTell me a story about the owl.<turn|>\n<|turn>model\n", {.add_bos = false});
  const std::vector<int> stops = read_generation_config(kToyTarget).stop_ids;
  Session<TinyE2B> plain_session(target, {.max_context = 256});
  const GenerationResult plain = Generator<TinyE2B>(plain_session, {.temperature = 0.0f}, stops).generate(prompt, 120, [](int) { return true; });
  Session<TinyE2B> session(target, {.max_context = 256});
  Drafter<TinyE2BAssistant> drafter(assistant, session);
  const GenerationResult fast = Generator<TinyE2B>(session, {.temperature = 0.0f}, stops).generate(prompt, 120, drafter, [](int) { return true; });
  CHECK(fast.tokens == plain.tokens);
  WARN("toy pair, greedy: " << fast.stats.accepted << " of " << fast.stats.drafted << " drafts accepted, "
                            << fast.stats.tokens_per_target_pass() << " tokens per target pass: " << tokenizer.decode(fast.tokens));
  CHECK(fast.stats.acceptance_rate() >= 0.5);  // a random assistant gets almost none accepted
}
