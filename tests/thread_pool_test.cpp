// The thread pool: every index runs exactly once, on a valid thread slot, for any
// loop size and thread count, and the split does not depend on timing.

#include <catch2/catch.hpp>

#include <atomic>
#include <vector>

#include "gemma4/parallel/thread_pool.hpp"

using namespace gemma4;
using Catch::Matchers::Contains;

TEST_CASE("a parallel loop runs every index once", "[threads]") {
  const int threads = GENERATE(1, 2, 3, 5);
  ThreadPool pool(threads);
  CHECK(pool.size() == threads);
  for (std::size_t n : {0u, 1u, 2u, 3u, 7u, 64u, 1000u}) {
    std::vector<std::atomic<int>> runs(n);
    std::atomic<int> bad_thread{0};
    pool.parallel_for(n, [&](int thread, std::size_t begin, std::size_t end) {
      if (thread < 0 || thread >= threads) ++bad_thread;
      // A single item runs on the caller; otherwise each thread gets its fixed range.
      const auto [want_begin, want_end] = n <= 1 ? std::pair<std::size_t, std::size_t>{0, n} : ThreadPool::range(n, thread, threads);
      if (begin != want_begin || end != want_end) ++bad_thread;
      for (std::size_t i = begin; i < end; ++i) ++runs[i];
    });
    CHECK(bad_thread == 0);
    for (std::size_t i = 0; i < n; ++i) REQUIRE(runs[i] == 1);
  }
}

TEST_CASE("a pool runs many small loops in a row", "[threads]") {
  ThreadPool pool(3);
  std::atomic<long> total{0};
  for (int loop = 0; loop < 5000; ++loop) {
    pool.parallel_for(6, [&](int, std::size_t begin, std::size_t end) { total += static_cast<long>(end - begin); });
  }
  CHECK(total == 30000);
}

TEST_CASE("thread counts", "[threads]") {
  CHECK(ThreadPool(0).size() >= 1);  // all cores
  CHECK_THROWS_WITH(ThreadPool(-1), Contains("thread count must be at least 0"));
  CHECK(ThreadPool::range(10, 0, 3) == std::pair<std::size_t, std::size_t>{0, 3});
  CHECK(ThreadPool::range(10, 2, 3) == std::pair<std::size_t, std::size_t>{6, 10});
}
