// Running tokens through a session allocates nothing: caches and scratch are sized when
// the session is created. Counted by the global operator new of allocation_counter.cpp.

#include <catch2/catch.hpp>

#include <atomic>

#include "gemma4/tiny.hpp"
#include "gemma4/weights/synthetic_checkpoint.hpp"
#include "support.hpp"

namespace gemma4::test {
extern std::atomic<long> g_allocations;
}

using namespace gemma4;
using gemma4::test::g_allocations;

TEST_CASE("prefill and decode allocate nothing", "[forward]") {
  test::TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 2});
  const Weights<TinyE2B> w(dir.path());
  const long before_session = g_allocations.load();
  Session<TinyE2B> session(w, {.max_context = 100, .prefill_chunk = 16});
  CHECK(g_allocations.load() > before_session);  // the counter sees the session's buffers
  const std::vector<int> prompt(40, 7), step{9};
  std::vector<float> all(prompt.size() * 1024), last(1024);

  const long before = g_allocations.load();
  session.forward(prompt, Logits::kAll, all);
  for (int i = 0; i < 30; ++i) session.forward(step, Logits::kLast, last);
  const long during = g_allocations.load() - before;
  CHECK(during == 0);
  CHECK(session.position() == 70);
}

TEST_CASE("batched passes and batched generation steps allocate nothing", "[batch]") {
  test::TempDir dir;
  write_synthetic_checkpoint(TinyE2B::config, dir.path(), {.seed = 2});
  const Weights<TinyE2B> w(dir.path(), {.format = WeightFormat::kInt8});
  const SessionOptions options{.max_context = 100, .prefill_chunk = 16};
  Session<TinyE2B> a(w, options), b(w, options), c(w, options);
  Batch<TinyE2B> batch(w, {.max_rows = 4});
  const std::vector<int> prompt(10, 7), step{9};
  std::vector<float> logits(3 * 1024);
  const BatchEntry<TinyE2B> entries[] = {{&a, step}, {&b, step}, {&c, step}};
  BatchGenerator<TinyE2B> generator(batch);
  Session<TinyE2B> d(w, options), e(w, options);
  const auto on_token = [](int, int) { return true; };
  generator.join(d, prompt, {.temperature = 1.0f, .seed = 3}, {}, 40, on_token);
  generator.join(e, prompt, {.temperature = 0.0f}, {}, 40, on_token);

  const long before = g_allocations.load();
  for (int i = 0; i < 20; ++i) batch.forward(entries, Logits::kLast, logits);
  for (int i = 0; i < 20; ++i) generator.step(on_token);
  CHECK(g_allocations.load() - before == 0);
  CHECK(a.position() == 20);
  CHECK(generator.result(0).tokens.size() == 21);
}
