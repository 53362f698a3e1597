#pragma once
// A fixed set of worker threads, started once, that run one parallel loop at a time
// with the calling thread taking a share. A loop over [0, n) is split into as many
// contiguous ranges as there are threads, always the same way for the same n and
// thread count; kernels whose per-item result does not depend on which range an item
// lands in therefore give the same bits for any number of threads.
//
// Between loops the workers spin for up to kSpinTime (decode issues hundreds of small
// loops per token, and waking a sleeping thread costs more than many of them, most of
// all in a VM), then sleep on a condition variable. The caller spins while the others
// finish. (Not std::atomic::wait: libstdc++ 12's wait on a 64-bit atomic lost wake-ups
// under qemu-user and hung the aarch64 tests.)

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "gemma4/error.hpp"

namespace gemma4 {

class ThreadPool {
 public:
  // threads: total threads including the caller; 0 means one per hardware thread.
  explicit ThreadPool(int threads = 0) {
    if (threads < 0) fail("thread count must be at least 0 (0 = all cores), got {}", threads);
    if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
#ifdef GEMMA4_MAX_THREADS
    // A build-wide cap, for targets that cannot start threads: CI's aarch64 run under
    // Debian 12's qemu-user 7.2 hangs in pthread_create on this kernel.
    threads = std::min(threads, GEMMA4_MAX_THREADS);
#endif
    size_ = threads;
    workers_.reserve(static_cast<std::size_t>(threads - 1));
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { work(i); });
  }
  ~ThreadPool() {
    stop_.store(true, std::memory_order_relaxed);
    start_generation();
    for (std::thread& t : workers_) t.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }

  // Range `part` of `parts` equal splits of [0, n).
  static std::pair<std::size_t, std::size_t> range(std::size_t n, int part, int parts) {
    const auto p = static_cast<std::size_t>(part), total = static_cast<std::size_t>(parts);
    return {n * p / total, n * (p + 1) / total};
  }

  // Calls f(thread, begin, end) for each thread's range of [0, n) and returns when all
  // are done (a loop of one item runs on the caller alone). f must not throw. thread is
  // in [0, size()): an index for per-thread scratch. Not reentrant: one loop at a time,
  // from one thread.
  template <typename F>
  void parallel_for(std::size_t n, F&& f) {
    if (size_ == 1 || n <= 1) {
      if (n > 0) f(0, std::size_t{0}, n);
      return;
    }
    job_ = Job{&call<std::remove_reference_t<F>>, &f, n};
    remaining_.store(size_ - 1, std::memory_order_relaxed);
    start_generation();
    run_part(0);
    spin_until([&] { return remaining_.load(std::memory_order_acquire) == 0; }, std::chrono::seconds(1));
    while (remaining_.load(std::memory_order_acquire) != 0) std::this_thread::yield();  // oversubscribed
  }

 private:
  struct Job {
    void (*invoke)(void* f, int thread, std::size_t begin, std::size_t end) = nullptr;
    void* f = nullptr;
    std::size_t n = 0;
  };
  static constexpr std::chrono::microseconds kSpinTime{2000};

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  // Spins until done() or until `limit` has passed; returns done(). Yields now and then,
  // so that with more threads than cores the thread being waited for gets to run.
  template <typename Done>
  static bool spin_until(Done done, std::chrono::steady_clock::duration limit) {
    constexpr std::chrono::microseconds kYieldEvery{50};
    const auto start = std::chrono::steady_clock::now();
    auto last_yield = start;
    for (;;) {
      for (int i = 0; i < 256; ++i) {
        if (done()) return true;
        pause();
      }
      const auto now = std::chrono::steady_clock::now();
      if (now - start > limit) return done();
      if (now - last_yield > kYieldEvery) {
        std::this_thread::yield();
        last_yield = now;
      }
    }
  }

  template <typename F>
  static void call(void* f, int thread, std::size_t begin, std::size_t end) {
    (*static_cast<F*>(f))(thread, begin, end);
  }

  // Publishes a new loop (or stop_) and wakes sleeping workers. Taking the mutex between
  // the increment and the notify means a worker either sees the new generation when it
  // checks under the mutex, or is already waiting and gets the notification.
  void start_generation() {
    generation_.fetch_add(1, std::memory_order_release);
    { const std::lock_guard<std::mutex> lock(sleep_mutex_); }
    wake_.notify_all();
  }

  void run_part(int thread) {
    const auto [begin, end] = range(job_.n, thread, size_);
    if (begin < end) job_.invoke(job_.f, thread, begin, end);
  }

  void work(int thread) {
    std::uint64_t seen = 0;
    for (;;) {
      spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; }, kSpinTime);
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      }
      seen = generation_.load(std::memory_order_acquire);
      if (stop_.load(std::memory_order_relaxed)) return;
      run_part(thread);
      remaining_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  int size_ = 1;
  Job job_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<int> remaining_{0};
  std::atomic<bool> stop_{false};
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::vector<std::thread> workers_;
};

}  // namespace gemma4
