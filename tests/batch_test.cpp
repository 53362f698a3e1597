// Batches of sequences in one forward pass: each sequence's logits bit for bit those of
// its own session, for every weight format, with sequences joining and leaving; and
// bad batches as errors that change no session.

#include <catch2/catch.hpp>

#include <span>
#include <vector>

#include "gemma4/model/batch.hpp"
#include "gemma4/weights/synthetic_checkpoint.hpp"
#include "gemma4/tiny.hpp"
#include "session_support.hpp"
#include "support.hpp"

using namespace gemma4;
using namespace gemma4::test;
using Catch::Matchers::Contains;

namespace {

// One row of a [rows, vocab] buffer.
template <typename V>
std::vector<float> logits_row(const std::vector<float>& logits, std::size_t row) {
  const auto first = logits.begin() + static_cast<std::ptrdiff_t>(row * V::config.vocab_size);
  return {first, first + V::config.vocab_size};
}

}  // namespace

TEMPLATE_TEST_CASE("a batch gives each sequence the logits it gets alone, as sequences join and leave", "[batch]", TinyE2B, TinyE4B) {
  // Each weight format, each KV cache format.
  const auto [format, kv_format] = GENERATE(table<WeightFormat, KvFormat>(
      {{WeightFormat::kBF16, KvFormat::kF32}, {WeightFormat::kInt8, KvFormat::kInt8}, {WeightFormat::kInt4, KvFormat::kBF16}}));
  TempDir dir;
  write_synthetic_checkpoint(TestType::config, dir.path(), {.seed = 11});
  const Weights<TestType> w(dir.path(), {.format = format});
  constexpr std::size_t kVocab = TestType::config.vocab_size;
  // Four sequences with prompts of different lengths (past a sliding window of 16 for
  // some), each decoding its own token stream; alone, each runs prompt then tokens.
  const std::vector<int> prompt_lengths{5, 23, 1, 40}, joins_at{0, 0, 3, 6}, leaves_at{12, 7, 14, 14};
  const SessionOptions options{.max_context = 64, .prefill_chunk = 8, .kv_format = kv_format};
  std::vector<std::vector<int>> streams;
  for (std::size_t s = 0; s < prompt_lengths.size(); ++s) {
    streams.push_back(random_tokens(prompt_lengths[s] + 14, kVocab, static_cast<unsigned>(20 + s)));
  }

  Batch<TestType> batch(w, {.max_rows = 4});
  std::vector<Session<TestType>> sessions;
  sessions.reserve(streams.size());
  for (std::size_t s = 0; s < streams.size(); ++s) sessions.emplace_back(w, options);
  std::vector<std::vector<float>> batched(streams.size());  // per sequence: [decoded, vocab]
  std::vector<float> prompt_logits(kVocab), logits;
  for (int step = 0; step < 14; ++step) {
    std::vector<BatchEntry<TestType>> entries;
    std::vector<std::size_t> members;
    for (std::size_t s = 0; s < streams.size(); ++s) {
      if (step < joins_at[s] || step >= leaves_at[s]) continue;
      Session<TestType>& session = sessions[s];
      const std::size_t prompt = static_cast<std::size_t>(prompt_lengths[s]);
      if (step == joins_at[s]) session.forward(std::span(streams[s]).first(prompt), Logits::kLast, prompt_logits);  // its own prefill
      entries.push_back({&session, std::span(streams[s]).subspan(static_cast<std::size_t>(session.position()), 1)});
      members.push_back(s);
    }
    logits.resize(entries.size() * kVocab);
    batch.forward(entries, Logits::kLast, logits);
    for (std::size_t i = 0; i < members.size(); ++i) {
      const std::vector<float> row = logits_row<TestType>(logits, i);
      batched[members[i]].insert(batched[members[i]].end(), row.begin(), row.end());
    }
  }
  for (std::size_t s = 0; s < streams.size(); ++s) {
    const std::size_t prompt = static_cast<std::size_t>(prompt_lengths[s]), decoded = static_cast<std::size_t>(leaves_at[s] - joins_at[s]);
    const std::vector<int> seen(streams[s].begin(), streams[s].begin() + static_cast<std::ptrdiff_t>(prompt + decoded));
    const std::vector<float> alone = all_logits(w, seen, options);
    INFO("sequence " << s << ", format " << weight_format_name(format) << ", KV " << kv_format_name(kv_format));
    CHECK(sessions[s].position() == static_cast<int>(prompt + decoded));
    CHECK(first_difference(batched[s], std::vector<float>(alone.end() - static_cast<std::ptrdiff_t>(decoded * kVocab), alone.end())) == "");
  }
}

TEST_CASE("a batch runs a prefilling sequence and decoding ones in one pass", "[batch]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 12});
  const Weights<TinyE2B> w(dir.path(), {.format = WeightFormat::kInt8});
  const auto a = random_tokens(30, 1024, 1), b = random_tokens(30, 1024, 2);
  Session<TinyE2B> first(w, {.max_context = 32}), second(w, {.max_context = 32});
  std::vector<float> last(1024);
  first.forward(std::span(a).first(20), Logits::kLast, last);
  Batch<TinyE2B> batch(w, {.max_rows = 16});
  std::vector<float> all(12 * 1024);
  const BatchEntry<TinyE2B> entries[] = {{&first, std::span(a).subspan(20, 1)}, {&second, std::span(b).first(11)}};
  batch.forward(entries, Logits::kAll, all);
  const auto alone_a = all_logits(w, std::vector<int>(a.begin(), a.begin() + 21), {.max_context = 32});
  const auto alone_b = all_logits(w, std::vector<int>(b.begin(), b.begin() + 11), {.max_context = 32});
  CHECK(first_difference(std::vector<float>(all.begin(), all.begin() + 1024), std::vector<float>(alone_a.end() - 1024, alone_a.end())) == "");
  CHECK(first_difference(std::vector<float>(all.begin() + 1024, all.end()), alone_b) == "");
  CHECK(first.position() == 21);
  CHECK(second.position() == 11);
}

TEST_CASE("a bad batch is an error that changes no session", "[batch][hostile]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 13});
  const Weights<TinyE2B> w(dir.path()), other(dir.path());
  Session<TinyE2B> a(w, {.max_context = 8}), b(w, {.max_context = 8}), elsewhere(other, {.max_context = 8});
  const std::vector<int> one{5}, two{5, 6}, unknown{1024}, seven(7, 3);
  std::vector<float> logits(2 * 1024);
  b.forward(seven, Logits::kLast, std::span(logits).first(1024));
  Batch<TinyE2B> batch(w, {.max_rows = 2});
  using E = BatchEntry<TinyE2B>;
  CHECK_THROWS_WITH(batch.forward(std::vector<E>{}, Logits::kLast, logits), Contains("batch: no sequences"));
  CHECK_THROWS_WITH(batch.forward(std::vector<E>{{&a, one}, {&a, one}}, Logits::kLast, logits), Contains("sequences 0 and 1 are the same session"));
  CHECK_THROWS_WITH(batch.forward(std::vector<E>{{&a, two}, {nullptr, one}}, Logits::kLast, logits), Contains("sequence 1 has no session"));
  CHECK_THROWS_WITH(batch.forward(std::vector<E>{{&a, two}, {&b, one}}, Logits::kAll, std::span(logits).first(2048)), Contains("3 tokens in one pass"));
  CHECK_THROWS_WITH(batch.forward(std::vector<E>{{&a, one}, {&b, two}}, Logits::kLast, logits), Contains("2 tokens at position 7 exceed the context of 8"));
  CHECK_THROWS_WITH(batch.forward(std::vector<E>{{&a, one}, {&elsewhere, one}}, Logits::kLast, logits), Contains("sequence 1's session runs other weights"));
  CHECK_THROWS_WITH(batch.forward(std::vector<E>{{&a, unknown}}, Logits::kLast, std::span(logits).first(1024)), Contains("token id 1024"));
  Session<TinyE2B> small_chunks(w, {.max_context = 8, .prefill_chunk = 1});
  CHECK_THROWS_WITH(batch.forward(std::vector<E>{{&small_chunks, two}}, Logits::kLast, std::span(logits).first(1024)),
                    Contains("sequence 0 runs 2 tokens in one pass, more than its session's prefill_chunk of 1"));
  CHECK_THROWS_WITH(batch.forward(std::vector<E>{{&a, one}, {&b, one}}, Logits::kAll, std::span(logits).first(1024)), Contains("needs 2048"));
  CHECK(a.position() == 0);
  CHECK(b.position() == 7);
  batch.forward(std::vector<E>{{&a, one}, {&b, one}}, Logits::kLast, logits);
  CHECK(a.position() == 1);
  CHECK(b.position() == 8);
  CHECK_THROWS_WITH(Batch<TinyE2B>(w, {.max_rows = 0}), Contains("max_rows must be at least 1"));
}

TEST_CASE("batched generation gives each sequence the tokens it generates alone", "[batch][host-only]") {
  // 0: prompts run as their sequences join; 5: five prompt tokens a step, beside the
  // decoding rows, in chunks of the session's prefill_chunk (4) at most.
  const int prefill_rows = GENERATE(0, 5);
  TempDir dir;
  write_synthetic_checkpoint(TinyE4B::config, dir.path(), {.seed = 14});
  const Weights<TinyE4B> w(dir.path(), {.format = WeightFormat::kInt4});
  struct Request {
    std::vector<int> prompt;
    SamplingOptions sampling;
    std::vector<int> stop_ids;
    int max_new_tokens;
    int max_context;
    int joins_at;  // the step before which it joins
  };
  // Greedy and sampled, stopped by budget, by a stop id (one a greedy run reaches, found
  // below), by a full context; one joins late, into the slot a finished one left.
  std::vector<Request> requests{{random_tokens(9, 1024, 1), {.temperature = 0.0f}, {}, 12, 64, 0},
                                {random_tokens(30, 1024, 2), {.temperature = 1.0f, .seed = 5}, {}, 6, 64, 0},
                                {random_tokens(3, 1024, 3), {.temperature = 0.8f, .top_k = 0, .seed = 6}, {}, 40, 20, 1},
                                {random_tokens(17, 1024, 4), {.temperature = 0.0f}, {}, 30, 64, prefill_rows == 0 ? 7 : 20}};
  const auto alone = [&](const Request& r) {
    Session<TinyE4B> session(w, {.max_context = r.max_context});
    return Generator<TinyE4B>(session, r.sampling, r.stop_ids).generate(r.prompt, r.max_new_tokens, [](int) { return true; });
  };
  requests[3].stop_ids = {alone(requests[3]).tokens[9]};  // greedy: stops at the first time it samples that id

  Batch<TinyE4B> batch(w, {.max_rows = 3 + prefill_rows});
  BatchGenerator<TinyE4B> generator(batch, prefill_rows);
  std::vector<Session<TinyE4B>> sessions;
  sessions.reserve(requests.size());
  std::vector<int> slot_of(requests.size(), -1), request_in(3, -1);  // by request; by slot
  std::vector<std::vector<int>> streamed(requests.size());
  const auto on_token = [&](int slot, int id) {
    streamed[static_cast<std::size_t>(request_in[static_cast<std::size_t>(slot)])].push_back(id);
    return true;
  };
  std::vector<GenerationResult> batched(requests.size());
  for (int step = 0; step < 60; ++step) {
    for (std::size_t r = 0; r < requests.size(); ++r) {
      if (requests[r].joins_at != step) continue;
      sessions.emplace_back(w, SessionOptions{.max_context = requests[r].max_context, .prefill_chunk = 4});
      slot_of[r] = 0;  // the first free slot: the last request takes one a finished sequence left
      while (!generator.finished(slot_of[r])) ++slot_of[r];
      request_in[static_cast<std::size_t>(slot_of[r])] = static_cast<int>(r);
      CHECK(generator.join(sessions[r], requests[r].prompt, requests[r].sampling, requests[r].stop_ids, requests[r].max_new_tokens, on_token) ==
            slot_of[r]);
    }
    generator.step(on_token);
    for (std::size_t r = 0; r < requests.size(); ++r) {
      if (slot_of[r] >= 0 && batched[r].tokens.empty() && generator.finished(slot_of[r])) batched[r] = generator.result(slot_of[r]);
    }
  }
  for (std::size_t r = 0; r < requests.size(); ++r) {
    const GenerationResult expected = alone(requests[r]);
    INFO("request " << r);
    CHECK(batched[r].tokens == expected.tokens);
    CHECK(batched[r].stop == expected.stop);
    std::vector<int> shown = expected.tokens;  // on_token sees every token but a stop id
    if (expected.stop == StopReason::kStopToken) shown.pop_back();
    CHECK(streamed[r] == shown);
  }
  CHECK(batched[0].stop == StopReason::kMaxTokens);
  CHECK(batched[2].stop == StopReason::kContextFull);
  CHECK(batched[3].stop == StopReason::kStopToken);
  CHECK(generator.active() == 0);
}

TEST_CASE("a batched generator rejects what it cannot run, and a cancelled sequence leaves", "[batch][hostile]") {
  TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 15});
  const Weights<TinyE2B> w(dir.path());
  Batch<TinyE2B> batch(w, {.max_rows = 2});
  BatchGenerator<TinyE2B> generator(batch);
  Session<TinyE2B> a(w, {.max_context = 32}), b(w, {.max_context = 32}), c(w, {.max_context = 32});
  const std::vector<int> prompt{2, 9, 4};
  const auto on_token = [](int, int) { return true; };
  CHECK_THROWS_WITH(generator.join(a, std::vector<int>{}, {}, {}, 4, on_token), Contains("empty prompt"));
  CHECK(generator.join(a, prompt, {}, {}, 10, on_token) == 0);
  CHECK_THROWS_WITH(generator.join(a, prompt, {}, {}, 10, on_token), Contains("the session already runs a sequence here"));
  CHECK(generator.join(b, prompt, {}, {}, 10, on_token) == 1);
  CHECK_THROWS_WITH(generator.join(c, prompt, {}, {}, 10, on_token), Contains("all 2 slots are busy"));
  CHECK(c.position() == 0);
  generator.step(on_token);
  generator.cancel(0);
  CHECK(generator.finished(0));
  CHECK(generator.result(0).stop == StopReason::kCaller);
  CHECK(generator.result(0).tokens.size() == 2);
  CHECK(generator.step(on_token) == 1);
  CHECK(a.position() == 4);  // the prompt and the first sampled token; the second never ran
  CHECK(generator.join(c, prompt, {}, {}, 10, on_token) == 0);
  CHECK_THROWS_WITH(generator.result(2), Contains("no slot 2"));
}
