#pragma once
// A fixed set of worker threads, started once, that run one parallel loop at a time
// with the calling thread taking a share. A loop over [0, n) starts with one contiguous
// share per thread (range()); each thread takes its share in shrinking chunks from the
// front, and a thread whose share is empty moves the back half of the largest share
// left into its own. Cores that run at different speeds (big.LITTLE phones, a VM whose
// virtual CPUs share their host cores) then finish together, and the reads of each share
// stay sequential. Which thread runs an index depends on timing, so kernels must give
// an item the same bits whatever range it lands in; they then do so for any number of
// threads too.
//
// One pool serves a whole process (default_pool()) unless a caller passes its own: N
// sessions then do not start N sets of spinning threads. A loop started while the pool
// is busy with another (a second session on another thread, or a loop nested inside a
// loop) runs on its caller alone; kernels give the same bits either way. An exception
// thrown by the loop body stops the loop and is rethrown to the caller of parallel_for.
//
// Between loops the workers spin for up to kSpinTime (decode issues hundreds of small
// loops per token, and waking a sleeping thread costs more than many of them, most of
// all in a VM), then sleep on a condition variable. (Not std::atomic::wait: libstdc++
// 12's wait on a 64-bit atomic lost wake-ups under qemu-user and hung the aarch64 tests.)
//
// A worker joins a loop only while it is open, and the caller closes it once every
// share is claimed, then waits only for the workers that joined. On a busy machine a
// worker the scheduler has not run yet therefore costs the loop nothing: the caller and
// the workers that did run steal its share. (Waiting for every worker to check in made
// a decode step wait for a time slice per loop: 25 tok/s instead of 3890 on the toy.)

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gemma4/error.hpp"

namespace gemma4 {

// Cores this process may run on: the CPUs of its affinity mask (taskset, a container's
// cpuset) with SMT siblings counted once, and no more than a cgroup v2 CPU quota allows
// (docker --cpus). hardware_concurrency() counts every CPU of the machine and would
// oversubscribe both; a second thread on a core shares its load units, and decode is
// bound by memory reads.
inline int usable_cores() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (::sched_getaffinity(0, sizeof(mask), &mask) == 0) {
    std::set<std::string> siblings;  // one entry per core: its CPUs, as sysfs lists them
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &mask)) continue;
      std::ifstream list("/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/thread_siblings_list");
      std::string text;
      siblings.insert(list >> text ? text : "cpu " + std::to_string(cpu));  // no sysfs: the CPU alone
    }
    cores = std::max(1, static_cast<int>(siblings.size()));
  }
  std::ifstream quota_file("/sys/fs/cgroup/cpu.max");  // "max 100000" or "150000 100000"
  std::string quota;
  long long period = 0;
  if (quota_file >> quota >> period && quota != "max" && period > 0) {
    try {
      const long long allowed = (std::stoll(quota) + period - 1) / period;
      if (allowed >= 1) cores = static_cast<int>(std::min<long long>(cores, allowed));
    } catch (const std::exception&) {  // an unreadable quota limits nothing
    }
  }
  return cores;
}

class ThreadPool {
 public:
  // threads: total threads including the caller; 0 means one per usable core.
  explicit ThreadPool(int threads = 0) {
    if (threads < 0) fail(ErrorKind::kInvalidArgument, "thread count must be at least 0 (0 = all cores), got {}", threads);
    if (threads == 0) threads = usable_cores();
#ifdef GEMMA4_MAX_THREADS
    // A build-wide cap, for targets that cannot start threads: CI's aarch64 run under
    // Debian 12's qemu-user 7.2 hangs in pthread_create on this kernel.
    threads = std::min(threads, GEMMA4_MAX_THREADS);
#endif
    size_ = threads;
    shares_ = std::make_unique<Share[]>(static_cast<std::size_t>(threads));
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

  // Calls f(thread, begin, end) on disjoint ranges that together cover [0, n), each of
  // whole multiples of `grain` items (the last may end at n), and returns when all are
  // done; a loop of one grain, or one started while the pool is busy, runs on the caller
  // alone. thread is in [0, size()): an index for per-thread scratch. If f throws, the
  // ranges not yet started are skipped and the first exception is rethrown here.
  template <typename F>
  void parallel_for(std::size_t n, F&& f, std::size_t grain = 1) {
    if (grain == 0) fail(ErrorKind::kInvalidArgument, "parallel_for: grain must be at least 1");
    const std::size_t grains = (n + grain - 1) / grain;
    bool idle = false;
    if (size_ == 1 || grains <= 1 || !busy_.compare_exchange_strong(idle, true, std::memory_order_acquire)) {
      if (n > 0) f(0, std::size_t{0}, n);
      return;
    }
    struct Release {
      std::atomic<bool>& busy;
      ~Release() { busy.store(false, std::memory_order_release); }
    } release{busy_};
    if (grains > std::numeric_limits<std::uint32_t>::max()) fail(ErrorKind::kInvalidArgument, "parallel_for: {} grains are more than a loop can split", grains);
    job_ = Job{&call<std::remove_reference_t<F>>, &f, n, grain};
    failure_ = nullptr;
    failed_.store(false, std::memory_order_relaxed);
    for (int t = 0; t < size_; ++t) {
      const auto [begin, end] = range(grains, t, size_);
      shares_[t].bounds.store(pack(begin, end), std::memory_order_relaxed);
    }
    const std::uint64_t loop = generation_.load(std::memory_order_relaxed) + 1;
    entry_.store(loop << 32, std::memory_order_release);  // open, nobody joined
    start_generation();
    run_shares(0);
    entry_.fetch_or(kClosed, std::memory_order_acq_rel);
    const auto joined_done = [&] { return (entry_.load(std::memory_order_acquire) & kJoinedMask) == 0; };
    spin_until(joined_done, std::chrono::seconds(1));
    while (!joined_done()) std::this_thread::yield();  // a joined worker was preempted
    if (failure_) std::rethrow_exception(failure_);
  }

 private:
  struct Job {
    void (*invoke)(void* f, int thread, std::size_t begin, std::size_t end) = nullptr;
    void* f = nullptr;
    std::size_t n = 0, grain = 1;
  };
  // A thread's share of the loop in grains: [begin, end) packed as end << 32 | begin, so
  // that its owner (from the front) and a thief (from the back) each change it with one
  // compare-and-swap. Own cache line each: the owner updates it once per chunk.
  struct alignas(64) Share {
    std::atomic<std::uint64_t> bounds{0};
  };
  static std::uint64_t pack(std::size_t begin, std::size_t end) { return static_cast<std::uint64_t>(end) << 32 | begin; }
  static std::size_t begin_of(std::uint64_t bounds) { return bounds & 0xFFFFFFFFu; }
  static std::size_t end_of(std::uint64_t bounds) { return bounds >> 32; }
  static std::size_t left_in(std::uint64_t bounds) { return end_of(bounds) > begin_of(bounds) ? end_of(bounds) - begin_of(bounds) : 0; }

  // entry_: the low 32 bits of the open loop's generation << 32 | kClosed once the
  // caller stops taking workers | how many joined and have not finished.
  static constexpr std::uint64_t kClosed = std::uint64_t{1} << 31;
  static constexpr std::uint64_t kJoinedMask = kClosed - 1;

  // A thread takes 1/kShareFraction of what is left in its share at a time (at least one
  // grain): few claims while the share is large, and small last chunks, so no thread
  // waits long for another's.
  static constexpr std::size_t kShareFraction = 4;
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

  // Runs chunks of the thread's own share, refilling it from the others, until every
  // share is empty.
  void run_shares(int thread) {
    Share& own = shares_[thread];
    std::size_t begin = 0, end = 0;
    for (;;) {
      if (!take_chunk(own, begin, end)) {
        if (!steal_into(own, thread)) return;
        continue;
      }
      if (failed_.load(std::memory_order_relaxed)) continue;  // drain the shares, run nothing more
      try {
        job_.invoke(job_.f, thread, begin * job_.grain, std::min(job_.n, end * job_.grain));
      } catch (...) {
        const std::lock_guard<std::mutex> lock(failure_mutex_);
        if (!failure_) failure_ = std::current_exception();
        failed_.store(true, std::memory_order_relaxed);
      }
    }
  }

  // Takes the next chunk of grains [begin, end) from the front of `share`; false when it
  // is empty.
  bool take_chunk(Share& share, std::size_t& begin, std::size_t& end) const {
    std::uint64_t bounds = share.bounds.load(std::memory_order_relaxed);
    while (left_in(bounds) > 0) {
      begin = begin_of(bounds);
      end = begin + std::max<std::size_t>(1, left_in(bounds) / kShareFraction);
      if (share.bounds.compare_exchange_weak(bounds, pack(end, end_of(bounds)), std::memory_order_relaxed)) return true;
    }
    return false;
  }

  // Moves the back half of the largest other share into `own` (which is empty); false
  // when every other share is empty.
  bool steal_into(Share& own, int thread) {
    for (;;) {
      Share* victim = nullptr;
      std::uint64_t seen = 0;
      for (int i = 1; i < size_; ++i) {
        Share& other = shares_[(thread + i) % size_];
        const std::uint64_t bounds = other.bounds.load(std::memory_order_relaxed);
        if (left_in(bounds) > left_in(seen)) {
          victim = &other;
          seen = bounds;
        }
      }
      if (victim == nullptr) return false;
      const std::size_t split = end_of(seen) - (left_in(seen) + 1) / 2;
      if (victim->bounds.compare_exchange_strong(seen, pack(begin_of(seen), split), std::memory_order_relaxed)) {
        own.bounds.store(pack(split, end_of(seen)), std::memory_order_relaxed);
        return true;
      }
    }
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
      if (!join(seen)) continue;  // that loop is over (or another has begun): wait for the next
      run_shares(thread);
      entry_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  // Counts this worker into loop `generation` if the caller still takes workers for it.
  bool join(std::uint64_t generation) {
    std::uint64_t entry = entry_.load(std::memory_order_acquire);
    while (entry >> 32 == static_cast<std::uint32_t>(generation) && (entry & kClosed) == 0) {
      if (entry_.compare_exchange_weak(entry, entry + 1, std::memory_order_acquire)) return true;
    }
    return false;
  }

  int size_ = 1;
  Job job_;
  std::unique_ptr<Share[]> shares_;  // [size_]
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::uint64_t> entry_{kClosed};
  std::atomic<bool> stop_{false};
  std::atomic<bool> busy_{false};    // a loop is running
  std::atomic<bool> failed_{false};  // the current loop's body threw
  std::mutex failure_mutex_;
  std::exception_ptr failure_;       // the first exception it threw
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::vector<std::thread> workers_;
};

// The pool of the whole process, one thread per usable core, started on first use:
// what sessions and loading use unless given a pool of their own.
inline ThreadPool& default_pool() {
  static ThreadPool pool;
  return pool;
}

// The pool an options struct names, or the process's when it names none (null).
inline ThreadPool& pool_or_default(ThreadPool* pool) { return pool != nullptr ? *pool : default_pool(); }

}  // namespace gemma4
