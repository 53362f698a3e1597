// The thread pool: every index runs exactly once, on a valid thread slot, in ranges of
// whole grains, for any loop size, grain and thread count; a thread that stalls
// does not hold up the loop, because the others take over its share; and with more
// threads than CPUs, workers joining late never run a loop that is over.

#include <catch2/catch.hpp>

#include <sched.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "gemma4/parallel/thread_pool.hpp"

using namespace gemma4;
using Catch::Matchers::Contains;

TEST_CASE("a parallel loop runs every index once", "[threads]") {
  const int threads = GENERATE(1, 2, 3, 5);
  ThreadPool pool(threads);
  CHECK(pool.size() == threads);
  for (std::size_t grain : {1u, 3u, 16u}) {
    for (std::size_t n : {0u, 1u, 2u, 3u, 7u, 64u, 1000u}) {
      INFO("n " << n << ", grain " << grain);
      std::vector<std::atomic<int>> runs(n);
      std::atomic<int> bad_range{0};
      pool.parallel_for(n, [&](int thread, std::size_t begin, std::size_t end) {
        if (thread < 0 || thread >= threads) ++bad_range;
        if (begin >= end || end > n || begin % grain != 0 || (end % grain != 0 && end != n)) ++bad_range;
        // A loop of one grain runs on the caller.
        if (n <= grain && thread != 0) ++bad_range;
        for (std::size_t i = begin; i < end; ++i) ++runs[i];
      }, grain);
      CHECK(bad_range == 0);
      for (std::size_t i = 0; i < n; ++i) REQUIRE(runs[i] == 1);
    }
  }
  CHECK_THROWS_WITH(pool.parallel_for(4, [](int, std::size_t, std::size_t) {}, 0), Contains("grain must be at least 1"));
}

TEST_CASE("the other threads take over the share of a thread that stalls", "[threads]") {
  const int threads = GENERATE(2, 3);
  ThreadPool pool(threads);
  const std::size_t n = 600;
  std::vector<std::atomic<int>> runs(n);
  std::atomic<std::size_t> done_elsewhere{0};
  std::atomic<bool> stalled{false}, timed_out{false};
  pool.parallel_for(n, [&](int thread, std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) ++runs[i];
    if (thread != threads - 1) {
      done_elsewhere += end - begin;
      return;
    }
    // The last thread's first chunk stalls until everything else is done (or 10 s pass).
    if (stalled.exchange(true)) return;
    const auto start = std::chrono::steady_clock::now();
    while (done_elsewhere.load() + (end - begin) < n) {
      if (std::chrono::steady_clock::now() - start > std::chrono::seconds(10)) {
        timed_out = true;
        return;
      }
      std::this_thread::yield();
    }
  });
  CHECK_FALSE(timed_out);
  for (std::size_t i = 0; i < n; ++i) REQUIRE(runs[i] == 1);
}

TEST_CASE("a pool runs many small loops in a row", "[threads]") {
  ThreadPool pool(3);
  std::atomic<long> total{0};
  for (int loop = 0; loop < 5000; ++loop) {
    pool.parallel_for(6, [&](int, std::size_t begin, std::size_t end) { total += static_cast<long>(end - begin); });
  }
  CHECK(total == 30000);
}

TEST_CASE("with more threads than CPUs, each loop still runs every index once", "[threads]") {
  // One CPU for six threads: most loops end before some worker gets to run, so workers
  // join late, or find the loop closed, all the time.
  cpu_set_t all, one;
  REQUIRE(::sched_getaffinity(0, sizeof(all), &all) == 0);
  int first = 0;
  while (!CPU_ISSET(first, &all)) ++first;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  REQUIRE(::sched_setaffinity(0, sizeof(one), &one) == 0);
  struct RestoreAffinity {
    cpu_set_t& mask;
    ~RestoreAffinity() { ::sched_setaffinity(0, sizeof(mask), &mask); }
  } restore{all};
  ThreadPool pool(6);  // its threads inherit the one CPU
  std::vector<std::atomic<int>> runs(40);
  std::atomic<int> bad{0};
  for (int loop = 1; loop <= 3000; ++loop) {
    pool.parallel_for(runs.size(), [&](int, std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) ++runs[i];
    });
    for (std::atomic<int>& r : runs) bad += r.load() != loop;
  }
  CHECK(bad == 0);
}

TEST_CASE("thread counts", "[threads]") {
  CHECK(ThreadPool(0).size() >= 1);  // all cores
  CHECK_THROWS_WITH(ThreadPool(-1), Contains("thread count must be at least 0"));
  CHECK(ThreadPool::range(10, 0, 3) == std::pair<std::size_t, std::size_t>{0, 3});
  CHECK(ThreadPool::range(10, 2, 3) == std::pair<std::size_t, std::size_t>{6, 10});
}

TEST_CASE("an exception in a loop body reaches the caller, and the pool goes on", "[threads]") {
  const int threads = GENERATE(1, 2, 3);
  ThreadPool pool(threads);
  std::atomic<int> ran{0};
  CHECK_THROWS_WITH(pool.parallel_for(100, [&](int, std::size_t begin, std::size_t end) {
    ran += static_cast<int>(end - begin);
    if (begin <= 50 && 50 < end) throw std::runtime_error("index 50 failed");
  }), Contains("index 50 failed"));
  CHECK(ran <= 100);
  std::atomic<int> total{0};
  pool.parallel_for(100, [&](int, std::size_t begin, std::size_t end) { total += static_cast<int>(end - begin); });
  CHECK(total == 100);
}

TEST_CASE("a loop started inside a loop, or on a busy pool, runs on its caller", "[threads]") {
  ThreadPool pool(2);
  std::atomic<int> inner_total{0}, bad{0};
  pool.parallel_for(8, [&](int, std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      pool.parallel_for(10, [&](int thread, std::size_t b, std::size_t e) {
        if (thread != 0 || b != 0 || e != 10) ++bad;
        inner_total += static_cast<int>(e - b);
      });
    }
  });
  CHECK(bad == 0);
  CHECK(inner_total == 80);
}

TEST_CASE("the process-wide pool has one thread per usable core", "[threads]") {
  CHECK(usable_cores() >= 1);
  CHECK(usable_cores() <= static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
#ifndef GEMMA4_MAX_THREADS
  CHECK(default_pool().size() == usable_cores());
#endif
  CHECK(&default_pool() == &default_pool());
}
